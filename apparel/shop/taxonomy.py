"""Class → Shopify taxonomy path: ``taxonomy.csv`` (``class,category``) or your own mapping.

    >>> from apparel.shop.taxonomy import load_mapping
    >>> load_mapping()["Dress"]
    'Apparel & Accessories > Clothing > Dresses'
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from apparel.data import CLASS_NAMES
from apparel.errors import SourceError
from apparel.shop.splice import read_csv_text

DEFAULT_MAPPING = Path(__file__).resolve().parent / "taxonomy.csv"


def load_mapping(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Class name → taxonomy path, from a CSV with the columns ``class`` and ``category``.

    Every class must appear; an empty category means "do not write a category for this class".
    """
    path = Path(path) if path is not None else DEFAULT_MAPPING
    _, text = read_csv_text(path)
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"class", "category"} <= set(rows[0]):
        raise SourceError(path, "needs the columns class,category (one row per class)")
    mapping = {}
    for row in rows:
        name = (row["class"] or "").strip()
        if name not in CLASS_NAMES:
            raise SourceError(path, f"unknown class {name!r}; the classes are {', '.join(CLASS_NAMES)}")
        mapping[name] = (row["category"] or "").strip()
    missing = [name for name in CLASS_NAMES if name not in mapping]
    if missing:
        raise SourceError(path, f"no row for {', '.join(missing)}; give every class a row (an empty category skips it)")
    return mapping
