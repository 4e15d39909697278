"""Class → Shopify taxonomy path: ``taxonomy.csv`` (``class,category``) or your own mapping.

    >>> from apparel.shop.taxonomy import load_mapping
    >>> load_mapping()["Dress"]
    'Apparel & Accessories > Clothing > Dresses'
    >>> load_mapping(class_names=predictor.class_names)["dress"]      # a photo model's classes
    'Apparel & Accessories > Clothing > Dresses'

The shipped file has a row for each class of both shipped models: the ten Fashion-MNIST classes
(``Dress``, ``T-shirt/top``, …) and the ten photo classes (``dress``, ``t-shirt``, …). Names are
compared exactly, so ``Shirt`` and ``shirt`` are two rows.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from apparel.data import CLASS_NAMES
from apparel.errors import SourceError
from apparel.shop.splice import read_csv_text

DEFAULT_MAPPING = Path(__file__).resolve().parent / "taxonomy.csv"


def load_mapping(path: str | os.PathLike | None = None, class_names: Sequence[str] | None = None) -> dict[str, str]:
    """Class name → taxonomy path, from a CSV with the columns ``class`` and ``category``.

    Every class of the model (``class_names``, default: the Fashion-MNIST classes) needs a row;
    rows for other classes are kept (one file serves several models), a class named twice is an
    error. An empty category means "do not write a category for this class".
    """
    path = Path(path) if path is not None else DEFAULT_MAPPING
    class_names = CLASS_NAMES if class_names is None else tuple(class_names)
    _, text = read_csv_text(path)
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"class", "category"} <= set(rows[0]):
        raise SourceError(path, "needs the columns class,category (one row per class)")
    mapping = {}
    for row in rows:
        name = (row["class"] or "").strip()
        if not name:
            raise SourceError(path, "a row has no class name")
        if name in mapping:
            raise SourceError(path, f"class {name!r} has two rows; give each class one row")
        mapping[name] = (row["category"] or "").strip()
    missing = [name for name in class_names if name not in mapping]
    if missing:
        raise SourceError(path, f"no row for {', '.join(missing)}; give every class of the model a row "
                                "(an empty category skips it)")
    return mapping
