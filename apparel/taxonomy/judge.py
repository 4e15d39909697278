"""How a written category compares with the true one, in the words of the catalogue benchmark.

    >>> from apparel.taxonomy.judge import judge
    >>> judge(load_taxonomy().get("aa-8"), "aa-8-6")       # "Shoes" for a sandal
    'parent'

- ``exact``: the true category;
- ``parent``: a true ancestor of it below the vertical's root ("Shoes" for a sandal);
- ``blank-right``: nothing written for something that is no product of the vertical (its truth
  is None: cosmetics, a street corner);
- ``wrong``: any other category, or any category at all for something outside the vertical;
- ``blank``: nothing written for a product of the vertical (left for review).

Right is the first three. A category that is not a node of the taxonomy cannot be written (the
chooser only holds nodes), so "invalid" never occurs here.
"""

from __future__ import annotations

from apparel.taxonomy.categories import Category, load_taxonomy


def judge(written: Category | None, truth: str | None) -> str:
    """``exact``, ``parent``, ``blank-right``, ``wrong`` or ``blank`` (see the module docstring)."""
    if written is None:
        return "blank-right" if truth is None else "blank"
    if truth is None:
        return "wrong"
    taxonomy = load_taxonomy()
    true = taxonomy.get(truth)
    if written.id == true.id:
        return "exact"
    if written.parent_id is not None and taxonomy.is_ancestor(written, true):
        return "parent"
    return "wrong"
