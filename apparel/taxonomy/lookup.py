"""What ``apparel taxonomy search`` and ``apparel taxonomy show`` print.

    >>> print(search_text("tee", limit=1))
    aa-1-13-8  Apparel & Accessories > Clothing > Clothing Tops > T-Shirts
    >>> print(show_text("aa-1-13-8"))      # id, GID, path, children, attributes and their values
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from apparel.taxonomy.attributes import defined_attributes
from apparel.taxonomy.categories import Category, load_taxonomy


def search_text(words: str | Sequence[str], limit: int = 10) -> str:
    """One line per matching category, best first: its id, then its full path; or what to try
    when none matches."""
    found = load_taxonomy().search(words, limit)
    return found_text(found) if found else no_match_text(words)


def found_text(found: Sequence[Category]) -> str:
    """The categories a search found, one line each: id, then full path."""
    width = max(len(category.id) for category in found)
    return "\n".join(f"{category.id:<{width}}  {category.path}" for category in found)


def no_match_text(words: str | Sequence[str]) -> str:
    query = words if isinstance(words, str) else " ".join(words)
    return (f"no category matches {query!r}; try fewer words or another word for the thing "
            "(every word must appear in the category's path)")


def show_text(category: str | Category) -> str:
    """A category's id, GID, path, children and attributes (with the values that ship)."""
    taxonomy = load_taxonomy()
    node = taxonomy.get(category)
    lines = [node.path, f"  id:        {node.id}", f"  gid:       {node.gid}",
             f"  vertical:  {node.vertical}"]
    children = taxonomy.children(node)
    lines.append(f"children ({len(children)}):" if children else "children: none (a leaf)")
    width = max((len(child.id) for child in children), default=0)
    lines += [f"  {child.id:<{width}}  {child.name}" for child in children]
    lines += _attribute_lines(node, taxonomy.release)
    return "\n".join(lines)


def _attribute_lines(node: Category, release: str) -> list[str]:
    if not node.attributes:
        return [f"attributes: none in the shipped data (this vertical comes from release {release}, "
                "which lists no attributes)"]
    defined = defined_attributes()
    width = max(len(name) for name in node.attributes)
    lines = [f"attributes ({len(node.attributes)}):"]
    for name in node.attributes:
        if name not in defined:
            lines.append(f"  {name:<{width}}  (its values are not in the shipped data)")
            continue
        attribute = defined[name]
        values = ", ".join(value.name for value in attribute.values)
        text = f"{attribute.name} ({len(attribute.values)}): {values}"
        wrapped = textwrap.wrap(text, width=100 - width - 4, subsequent_indent=" " * 4)
        lines.append(f"  {name:<{width}}  {wrapped[0]}")
        lines += [f"  {'':<{width}}  {line}" for line in wrapped[1:]]
    return lines
