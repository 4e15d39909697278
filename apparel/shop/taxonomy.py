"""Class → Shopify taxonomy category: ``taxonomy.csv`` (``class,category``) or your own mapping.

    >>> from apparel.shop.taxonomy import load_mapping
    >>> load_mapping()["Dress"].path                                   # what the catalog writes
    'Apparel & Accessories > Clothing > Dresses'
    >>> load_mapping(class_names=predictor.class_names)["t-shirt"].id  # a photo model's classes
    'aa-1-13-8'

The shipped file has a row for each class of the shipped models ``default`` and ``photos``: the
ten Fashion-MNIST classes (``Dress``, ``T-shirt/top``, …) and the ten photo classes (``dress``,
``t-shirt``, …); the store model brings its own (``categories.json``). Names are
compared exactly, so ``Shirt`` and ``shirt`` are two rows. A category is a node of Shopify's
Standard Product Taxonomy (``apparel.taxonomy``), given as its full path, its id (``aa-1-13-8``) or
its GID; ``apparel taxonomy search WORDS`` finds one.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from apparel.kinds.fashion_mnist.data import CLASS_NAMES
from apparel.errors import ParameterError, SourceError
from apparel.shop.splice import read_csv_text
from apparel.taxonomy import Category, load_taxonomy

DEFAULT_MAPPING = Path(__file__).resolve().parent / "taxonomy.csv"


def load_mapping(path: str | os.PathLike | None = None,
                 class_names: Sequence[str] | None = None) -> dict[str, Category | None]:
    """Class name → taxonomy node, from a CSV with the columns ``class`` and ``category``.

    Every class of the model (``class_names``, default: the Fashion-MNIST classes) needs a row;
    rows for other classes are kept (one file serves several models), a class named twice is an
    error. An empty category (None) means "do not write a category for this class"; any other must
    be a node of the taxonomy, or the file is refused with the line that names it.
    """
    path = Path(path) if path is not None else DEFAULT_MAPPING
    class_names = CLASS_NAMES if class_names is None else tuple(class_names)
    _, text = read_csv_text(path)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"class", "category"} <= set(reader.fieldnames):
        raise SourceError(path, "needs the columns class,category (one row per class)")
    taxonomy = load_taxonomy()
    mapping = {}
    for row in reader:
        name, category = (row["class"] or "").strip(), (row["category"] or "").strip()
        if not name:
            raise SourceError(path, f"line {reader.line_num}: a row has no class name")
        if name in mapping:
            raise SourceError(path, f"line {reader.line_num}: class {name!r} has two rows; give each class one row")
        node = taxonomy.find(category) if category else None
        if category and node is None:
            raise SourceError(path, f"line {reader.line_num}: category {taxonomy.unknown_reason(category)}")
        mapping[name] = node
    if not mapping:
        raise SourceError(path, "has no rows; give one row per class (class,category)")
    missing = [name for name in class_names if name not in mapping]
    if missing and path == DEFAULT_MAPPING:  # the package's own file: not the one to edit
        raise ParameterError(f"this model's classes {', '.join(missing)} have no Shopify category of their own; give "
                             "{} FILE, a CSV of class,category rows (docs/your-own-categories.md)", "mapping")
    if missing:
        raise SourceError(path, f"no row for {', '.join(missing)}; give every class of the model a row "
                                f"(an empty category skips it){_case_hint(missing, mapping)}")
    return mapping


def _case_hint(missing: Sequence[str], mapping: dict) -> str:
    """The rows that name a missing class in other letters: names are compared exactly, and a
    ``Shirt`` row for the class ``shirt`` looks right to the eye."""
    by_fold = {name.casefold(): name for name in mapping}
    near = [f"{by_fold[name.casefold()]!r} for {name!r}" for name in missing if name.casefold() in by_fold]
    return f"; the file has {', '.join(near)}: class names are compared with their capitals" if near else ""
