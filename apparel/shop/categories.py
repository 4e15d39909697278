"""Which Shopify category each of a model's classes stands for, and when to write one: what
``catalog``, ``predict``, ``batch`` and ``serve`` all ask before they answer with a category.

    >>> from apparel.shop.categories import run_chooser
    >>> chooser = run_chooser("store", predictor.class_names)
    >>> chooser.choose(probabilities).to_dict()
    {'id': 'aa-1-13-8', 'gid': 'gid://shopify/TaxonomyCategory/aa-1-13-8', 'path': '… > T-Shirts', ...}

A run directory may carry its own ``categories.json`` (the store model's: every class's category
and the two thresholds chosen on validation photos, ``apparel.store.calibrate``). Otherwise the
classes are looked up in the mapping (``--mapping``, else the shipped ``taxonomy.csv``) and the
thresholds are ``DEFAULT_THRESHOLDS``. A mapping or a threshold given explicitly always wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from apparel.errors import SourceError
from apparel.shop.taxonomy import load_mapping
from apparel.taxonomy.decide import CategoryChooser

CATEGORIES_FILE = "categories.json"
# For a run without categories.json: the old fixed cut for the category, and classes mapped to
# no category ("not ours") taking the product out of the vertical once they hold half of it.
DEFAULT_THRESHOLDS = {"category_threshold": 0.5, "outside_threshold": 0.5}


def read_run_categories(model_dir: str | os.PathLike | None) -> dict | None:
    """The run's ``categories.json``, or None when it has none."""
    if model_dir is None:
        return None
    path = Path(model_dir) / CATEGORIES_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["categories"], record["category_threshold"], record["outside_threshold"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SourceError(path, f"unreadable ({error}); restore it from the run or rebuild the model") from None
    return record


def run_chooser(model_dir: str | os.PathLike | None, class_names: Sequence[str], mapping: str | os.PathLike | None = None,
                category_threshold: float | None = None, outside_threshold: float | None = None) -> CategoryChooser:
    """The category chooser for a model (see the module docstring)."""
    record = read_run_categories(model_dir)
    if mapping is not None or record is None:
        categories = load_mapping(mapping, class_names)
    else:
        categories = record["categories"]
        missing = [name for name in class_names if name not in categories]
        if missing:
            raise SourceError(Path(model_dir) / CATEGORIES_FILE, f"no category for {', '.join(missing)}; "
                              "rebuild the model or give --mapping")
    thresholds = record if record is not None else DEFAULT_THRESHOLDS
    return CategoryChooser(
        {name: categories[name] for name in class_names},
        thresholds["category_threshold"] if category_threshold is None else category_threshold,
        thresholds["outside_threshold"] if outside_threshold is None else outside_threshold,
    )


def optional_run_chooser(model_dir: str | os.PathLike | None, contract) -> CategoryChooser | None:
    """``run_chooser`` with the defaults, or None for a model whose classes neither its run nor the
    shipped mapping give a category (a merchant's own classes): prediction goes on without one."""
    if read_run_categories(model_dir) is None and not set(contract.class_names) <= set(load_mapping(class_names=())):
        return None
    return run_chooser(model_dir, contract.class_names)
