"""A merchant's own decisions about products: what ``apparel catalog --decisions`` and the desk
pass to ``categorize_catalog``, so a product a person decided is never changed by the model.

A decisions file is a CSV of ``handle,category``: the category as a taxonomy id, GID or full path
(the product gets it, whatever the photo says), or the word ``keep`` (the product's cells stay as
they are). The desk writes one per job and offers it for download, so the same file reproduces
the desk's output from the command line.

    >>> from apparel.shop.decisions import read_decisions, write_decisions, KEEP
    >>> write_decisions("decisions.csv", {"summer-dress": "aa-1-4", "gift-card": KEEP})
    >>> read_decisions("decisions.csv")
    {'gift-card': 'keep', 'summer-dress': 'aa-1-4'}
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from apparel.artifacts import atomic_path
from apparel.errors import ParameterError, SourceError
from apparel.taxonomy import Category, load_taxonomy

KEEP = "keep"  # the product's cells stay as the store wrote them
FIELDS = ("handle", "category")


def read_decisions(path: str | os.PathLike) -> dict[str, str]:
    """Handle → category (id, GID or path) or ``KEEP``, from a decisions CSV. Every category is
    checked against the taxonomy here, so a typo is said before any photo is read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError(path, "file not found; give a CSV of handle,category") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(path, f"cannot read it ({error}); give a UTF-8 CSV of handle,category") from None
    reader = csv.DictReader(io.StringIO(text))
    if [name.strip().lower() for name in reader.fieldnames or ()] != list(FIELDS):
        raise SourceError(path, f"the header must be {','.join(FIELDS)}, got {','.join(reader.fieldnames or ())}")
    decisions, rows = {}, {}
    for number, row in enumerate(reader, start=2):
        handle, category = (row.get(name) or "" for name in reader.fieldnames)
        handle, category = handle.strip(), category.strip()
        if not handle:
            raise SourceError(path, f"row {number} has no handle")
        try:
            decided = decided_category(category)
        except ValueError as error:
            raise SourceError(path, f"row {number} ({handle}): {error}") from None
        if decisions.get(handle, decided) != decided:  # the same decision twice is no conflict
            raise SourceError(path, f"row {number} ({handle}) decides it otherwise than row {rows[handle]}; "
                                    "keep the row you mean")
        decisions[handle], rows[handle] = decided, rows.get(handle, number)
    return decisions


def decided_category(value: str) -> str:
    """``value`` as a decision: ``KEEP``, or the id of the category it names (a ``ParameterError``
    naming the closest categories when it names none)."""
    if value.strip().lower() == KEEP:
        return KEEP
    if not value.strip():
        raise ValueError(f"no category; give a category id or path, or {KEEP!r} to leave the product as it is")
    return load_taxonomy().get(value.strip()).id


def resolve_decisions(decisions: Mapping[str, str] | None) -> dict[str, Category | None]:
    """Handle → the decided ``Category``, or None for ``KEEP``: what ``decide_cells`` takes."""
    taxonomy = load_taxonomy()
    strays = [(handle, value) for handle, value in (decisions or {}).items()
              if not (isinstance(handle, str) and isinstance(value, str))]
    if strays:
        raise ParameterError(f"{{}} maps a product's handle to a category id, path or {KEEP!r}, each a str; got "
                             f"{strays[0][0]!r}: {strays[0][1]!r}", "decisions")
    return {handle: None if decided_category(value) == KEEP else taxonomy.get(value)
            for handle, value in (decisions or {}).items()}


def write_decisions(path: str | os.PathLike, decisions: Mapping[str, str]) -> None:
    """Write ``decisions`` (handle → category id or ``KEEP``) as a decisions CSV, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(FIELDS)
            writer.writerows(sorted(decisions.items()))
