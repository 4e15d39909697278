"""Which Shopify category each of a model's classes stands for, and when to write one: what
``catalog``, ``predict``, ``batch`` and ``serve`` all ask before they answer with a category.

    >>> from apparel.shop.categories import run_chooser
    >>> chooser = run_chooser(predictor.model_dir, predictor.class_names)      # the store model's
    >>> chooser.choose(probabilities).to_dict()
    {'id': 'aa-1-13-8', 'gid': 'gid://shopify/TaxonomyCategory/aa-1-13-8', 'path': '… > T-Shirts', ...}

A run directory may carry its own ``categories.json`` (the store model's: every class's category
and the two thresholds chosen on validation photos, ``apparel.store.calibrate``, and which classes
tell a sleeve length, ``apparel.attributes.sleeve``). Otherwise the
classes are looked up in the mapping (``--mapping``, else the shipped ``taxonomy.csv``) and the
thresholds are ``DEFAULT_THRESHOLDS``. A mapping or a threshold given explicitly always wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from apparel.artifacts import CATEGORIES_FILE, run_or_shipped, shipped_model_names
from apparel.attributes.sleeve import ATTRIBUTE as SLEEVE_KEY, check_sleeve_classes
from apparel.contract import metadata_path
from apparel.errors import ParameterError, SourceError, local_path
from apparel.shop.taxonomy import load_mapping
from apparel.taxonomy.decide import CategoryChooser

# For a run without categories.json: the old fixed cut for the category, and classes mapped to
# no category ("not ours") taking the product out of the vertical once they hold half of it.
DEFAULT_THRESHOLDS = {"category_threshold": 0.5, "outside_threshold": 0.5}


def _categories_record(model_dir, export) -> tuple[dict, Path] | None:
    """(the categories record, the file it came from): the run's ``categories.json``, else the
    categories an export of it carries in its metadata (``apparel export``); None when neither has."""
    model_dir = None if model_dir is None else run_or_shipped(model_dir)
    if model_dir is not None and (Path(model_dir) / CATEGORIES_FILE).is_file():
        path, key = Path(model_dir) / CATEGORIES_FILE, None
    elif export is not None and metadata_path(export).is_file():
        path, key = metadata_path(export), "categories"
    else:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record = record.get(key) if key is not None else record
        if record is None:
            return None
        record["categories"], record["category_threshold"], record["outside_threshold"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SourceError(path, f"unreadable ({error}); restore it from the run or rebuild the model") from None
    return record, path


def run_chooser(model_dir: str | os.PathLike | None, class_names: Sequence[str], mapping: str | os.PathLike | None = None,
                category_threshold: float | None = None, outside_threshold: float | None = None,
                export: str | os.PathLike | None = None) -> CategoryChooser:
    """The category chooser for a model (see the module docstring); ``export`` names a LiteRT or
    ONNX export of it, whose metadata may carry the run's categories; ``model_dir`` may be a
    shipped model's name (``"store"``)."""
    if model_dir is not None and not run_or_shipped(local_path(model_dir, "model_dir")).is_dir():
        raise ParameterError(f"{{}} {model_dir} is no folder; give a run directory or a shipped model's name "
                             f"({', '.join(shipped_model_names())})", "model_dir")
    if isinstance(class_names, str) or not (isinstance(class_names, Sequence)
                                            and all(isinstance(name, str) for name in class_names)):
        raise ParameterError(f"{{}} must be the model's class names, a list of str (predictor.class_names), got "
                             f"{class_names!r:.60}", "class_names")
    found = _categories_record(model_dir, export)
    record = None if found is None else found[0]
    if mapping is not None or record is None:
        categories = load_mapping(mapping, class_names)
    else:
        categories = record["categories"]
        missing = [name for name in class_names if name not in categories]
        if missing:
            raise SourceError(found[1], f"no category for {', '.join(missing)}; rebuild the model or give --mapping")
    thresholds = record if record is not None else DEFAULT_THRESHOLDS
    # The sleeve classes are the model's (its classes were measured for them), whatever mapping
    # names the categories.
    try:
        sleeve_classes = check_sleeve_classes(record.get(SLEEVE_KEY) or {}) if record is not None else {}
    except ValueError as error:
        raise SourceError(found[1], f"{SLEEVE_KEY}: {error}; rebuild the model") from None
    return CategoryChooser(
        {name: categories[name] for name in class_names},
        thresholds["category_threshold"] if category_threshold is None else category_threshold,
        thresholds["outside_threshold"] if outside_threshold is None else outside_threshold,
        sleeve_classes,
    )


def optional_run_chooser(model_dir: str | os.PathLike | None, class_names: Sequence[str],
                         mapping: str | os.PathLike | None = None,
                         export: str | os.PathLike | None = None) -> CategoryChooser | None:
    """``run_chooser`` with the model's thresholds, or None for a model whose classes neither its
    run (nor its export) nor the mapping (``mapping``, else the shipped one) all give a category —
    a merchant's own classes: prediction goes on without one."""
    if mapping is None and _categories_record(model_dir, export) is not None:
        return run_chooser(model_dir, class_names, export=export)
    if not set(class_names) <= set(load_mapping(mapping, class_names=())):
        return None
    return run_chooser(model_dir, class_names, mapping, export=export)
