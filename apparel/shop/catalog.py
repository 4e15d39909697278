"""Categorise a Shopify product CSV export from its product photos.

    >>> from apparel.shop.catalog import CatalogConfig, categorize_catalog
    >>> report = categorize_catalog("products.csv", "categorized.csv", CatalogConfig(images_dir="images"))
    >>> report.categorized, report.uncertain, report.failed
    (118, 4, 1)

Both header styles of Shopify's export are read: the older (``Handle``, ``Product Category``,
``Image Src``, …) and the current (``URL handle``, ``Product category``, ``Product image URL``, …).
A product's rows share its handle; its first row holds the product's fields and its first image
that can be read is classified. Its class probabilities become one Shopify category
(``apparel.taxonomy.decide``): the deepest one that is sure enough, a parent when only the parent
is ("Shoes" for a likely sandal), or none, with the reason "uncertain" or "outside the vertical".
For each product that gets one:

- the category column gets its full path (or its id, ``category_format="id"``) when empty (always
  with ``overwrite``). Which category each class stands for and how sure is sure enough come from
  the model (a store model's ``categories.json``), else the mapping file ``taxonomy.csv`` (or the
  user's own, same layout: ``apparel.shop.categories``);
- ``Type`` gets the class name when it is empty (the category's name when only a parent was sure);
- ``Tags`` gets ``apparel:<class>`` unless it has an ``apparel:`` tag already (replaced with
  ``overwrite``).

Everything else keeps its bytes: the output is the input with only the changed cells spliced in
(the ``csv`` module would re-quote every row), so untouched rows, cells, quoting, line endings and
a UTF-8 BOM stay as they were, and no row can be lost. Products left without a category, and those
whose images all failed, are listed with the reason in a review CSV beside the output, as is a
handle whose rows disagree (two titles, two images at one position: two products under one
handle?), which is still categorised as one product, and a row that holds something but no handle
(it belongs to no product, so nothing is written to it). The review CSV is for people with a
spreadsheet, so a cell there that would start a formula (``=…``, ``@…``) starts with ``'`` instead
(the output is never escaped). Finished images are cached beside the output, so an interrupted run
(even a killed one) resumes and a rerun gives the same bytes. A run holds ``<output>.lock`` while
it writes, and a second run into the same output is refused. None of these files may be the input.

The labels are the model's own class names (``InputContract``): the shipped store model
(``store``: ``t-shirt``, ``watch``, ``not-apparel``, …) unless ``model_dir`` names another run,
whose photos go through its own pipeline (a photo model's RGB square or the Fashion-MNIST 28×28).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from apparel.artifacts import MODEL_FILE, atomic_path, file_digest, one_writer, same_file
from apparel.attributes import ProductColour, gets_colour
from apparel.attributes.colour import NAMING_VERSION
from apparel.attributes.sleeve import product_sleeve
from apparel.batch.writing import full_disk_named
from apparel.batch.config import ModelSettings, ReadConfig, ReadSettings
from apparel.batch.manifest import other_separator
from apparel.batch.loop import classify, model_settings
from apparel.config import option
from apparel.contract import InputContract
from apparel.errors import ParameterError, SourceError, local_path
from apparel.inference.prediction import resolve_model_dir
from apparel.kinds.registry import PHOTO_KIND
from apparel.shop.splice import Record, encode_cell, parse_records, read_csv_text, splice
from apparel.images.sources import IMAGE_SUFFIXES, ImageSource, contained_source
from apparel.shop.categories import run_chooser
from apparel.shop.attribute_cells import (BY_PARAMETER, COLOUR, SLEEVE, CsvAttribute, attribute_tag, colour_values,
                                          metafield_columns)
from apparel.shop.decisions import KEEP, read_decisions, resolve_decisions
from apparel.taxonomy.decide import OUTSIDE, CategoryChooser, CategoryDecision
from apparel.taxonomy import Category, load_taxonomy

# Column roles and the header names of each Shopify export style (compared case-insensitively).
COLUMNS = {
    "handle": ("handle", "url handle"),
    "title": ("title",),
    "category": ("product category",),
    "type": ("type",),
    "tags": ("tags",),
    "image": ("image src", "product image url"),
    "image_position": ("image position",),
    "variant_image": ("variant image", "variant image url"),
}
COLUMNS_NAMED = 3  # the columns an error about columns holding one field names
# Review statuses of a handle whose rows disagree; the product is merged and categorised all the same.
DIFFERENT_TITLES = "handle on rows with different titles"
DIFFERENT_IMAGES = "handle on rows with different images at one position"
NO_HANDLE = "row without a handle"
REVIEW_FIELDS = ("handle", "title", "image", "status", "category", "confidence", "label", "probability", "top_k",
                 "error")
# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"), in the review CSV.
# Not defusedcsv: it leaves out tab and carriage return, and rewrites "|" inside the cells it escapes.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class CatalogConfig(ReadConfig):
    """How a catalog is categorised (``apparel catalog`` flags): how its images are read and
    predicted (``ReadConfig``, as ``apparel batch``), then the catalog's own settings."""

    mapping: str | None = option(None, "class,category CSV to use instead of the model's own categories (a store "
                                       "model's categories.json) or the shipped Shopify taxonomy mapping")
    min_confidence: float | None = option(
        None, "write the deepest category at least this likely, else leave it for review (default: the model's own, "
        "chosen on validation photos; 0.5 for a model without categories.json)", minimum=0.0, maximum=1.0)
    outside_confidence: float | None = option(
        None, "leave a product whose classes without a category (not-apparel) are at least this likely, as outside "
        "the vertical (default: the model's own; 0.5)", above=0.0, maximum=1.0)
    category_format: str = option("path", "what the category column gets: the full path, or the category's id",
                                  choices=("path", "id"))
    overwrite: bool = option(False, "replace categories that are already filled")
    tag_prefix: str = option("apparel:", "the tag written is this prefix + the class name")
    colour: bool = option(False, "also write the product's colour read from its photo (Shopify's color): in the "
                                 f"{COLOUR.header} column when the file has one, else as a "
                                 f"{COLOUR.tag_prefix}<name> tag; a colour already set is kept unless --overwrite")
    sleeve_length: bool = option(False, "also write the sleeve length the store model's classes tell (Shopify's "
                                        "sleeve_length_type, for T-shirts, polos, tank tops and long-sleeved tops): "
                                        f"in the {SLEEVE.header} column when the file has one, else as a "
                                        f"{SLEEVE.tag_prefix}<name> tag; one already set is kept unless --overwrite")

    def check(self) -> None:
        super().check()
        if not self.tag_prefix.strip():
            # Every tag starts with "": each would be taken for the tool's own, and no tag written.
            raise ParameterError("{} must not be empty: it tells the tool's tags from the merchant's (apparel:, "
                                 "say)", "tag_prefix")


@dataclass(frozen=True)
class CatalogReport:
    rows: int                        # data rows in the input (and, always, in the output)
    products: int                    # distinct handles
    categorized: int                 # products whose prediction was written (or already there)
    changed_cells: int               # cells that differ from the input
    uncertain: int                   # products no category was sure enough for (in the review file)
    outside: int                     # products outside the vertical, not apparel (in the review file)
    failed: int                      # products whose images could not be read (in the review file)
    no_image: int                    # products with no image at all (in the review file)
    disagreeing: int                 # handles on rows that disagree, merged as one product (in the review file too)
    predicted: int                   # images classified by the model in this run
    cached: int                      # images taken from the cache of an earlier run
    output: str
    review: str
    cache: str
    coloured: int = 0                # products whose colour was written (or already there); with colour only
    colour_read: bool = False        # the colour was read (asked for, and the model's answers take a category)
    sleeved: int = 0                 # products whose sleeve length was written (or already there); with sleeve_length
    nowhere: tuple[str, ...] = ()    # the settings asked for (colour, sleeve_length) whose column and Tags the file lacks
    decided: int = 0                 # products the merchant decided (``decisions``): none took the model's category
    no_handle: int = 0               # rows with cells but no handle: no product's, left as they are (review file)
    strangers: tuple[str, ...] = ()  # handles of ``decisions`` that name no product here (a typo, another file)
    short: int = 0                   # products given a category whose row is too short for its cell (review file)
    not_shopify: int = 0             # products whose kept category cell is none of Shopify's (review file)
    # What happened to each product, in file order (the desk's table); not part of the summary.
    outcomes: tuple[ProductOutcome, ...] = field(default=(), repr=False)

    @property
    def read_no_photo(self) -> bool:
        """Not one product the model was to look at had a photo it could read (most often the
        wrong images folder): a failed run, as batch's whose every row failed."""
        return self.failed > 0 and self.failed == self.products - self.no_image - self.decided

    def to_dict(self) -> dict:
        summary = asdict(self)
        del summary["outcomes"]
        return summary


# Review statuses of a product the model could not look at (the others are the decision's reasons).
NO_IMAGE = "no image"
UNREADABLE = "unreadable image"
ROW_TOO_SHORT = "row too short"  # a category chosen, its cell missing from the row
NOT_SHOPIFY = "not Shopify's category"  # the merchant's own category cell, kept, names no node of the taxonomy


@dataclass(frozen=True)
class ProductOutcome:
    """One product's result: what the model suggests and what was written."""

    handle: str
    title: str
    image: str                       # the image classified, else the first one ("" when it has none)
    status: str                      # "categorized", "decided", or why it is left for review (uncertain, …)
    category: str | None             # the path the product gets from this run (the model's or the merchant's)
    suggested: str | None            # the model's choice (a parent when only the parent was sure), None if none
    likeliest: str | None            # the likeliest class's own category: deeper than ``suggested`` when it was uncertain
    confidence: float | None         # the chosen category's probability; when left for review, the likeliest's
    label: str | None                # the likeliest class
    decision: str | None = None      # the merchant's decision (a category id or "keep"), None when the model's
    colour: str | None = None        # the photo's main colour (Shopify's value name) when ``colour`` read it
    sleeve: str | None = None        # the sleeve length of the model's category (its value name), with ``sleeve_length``

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- raw CSV records with their spans


def find_columns(header: Record, path: Path, image_column: str | None = None,
                 attributes: Sequence[CsvAttribute] = ()) -> dict[str, int | None]:
    """Role → the header's column index (None where it has none); ``image_column`` names the
    column of images instead of ``COLUMNS["image"]``, as its header spells it; each of
    ``attributes`` (those the run writes) gets its metafield column's. A role held by two columns is
    refused: which one to read or write would be a guess, and the other would keep what the
    merchant had."""
    names = [cell.value.strip().lower() for cell in header.cells]
    found = {role: [index for index, name in enumerate(names) if name in accepted] for role, accepted in COLUMNS.items()}
    if image_column is not None:  # the columns it stands for are not read: however many, they are no matter
        spelled = [cell.value.strip() for cell in header.cells]
        if image_column.strip() not in spelled:
            raise ParameterError(f"{{}} {image_column!r} is not a column of {path}; its columns: {', '.join(spelled)}",
                                 "image_column")
        found["image"] = [index for index, name in enumerate(spelled) if name == image_column.strip()]
    if not found["handle"]:
        separator = other_separator(names)
        if separator:
            raise SourceError(path, f"its header is one column of names separated by {separator}; a Shopify product "
                                    "export separates them by commas: save it as CSV with commas and try again")
        raise SourceError(path, "no Handle / URL handle column; is it a Shopify product export?")
    if not found["image"] and not found["variant_image"]:
        raise SourceError(path, "no Image Src / Product image URL column, so no photos to classify; name the column "
                                "that holds the image paths or URLs as image_column (--image-column)")
    if not (found["category"] or found["type"] or found["tags"]):
        raise SourceError(path, "none of Product category, Type, Tags; nothing to write")
    for attribute in attributes:
        found[attribute.role] = metafield_columns(header.cells, attribute)
    return {role: _one_column(header, indices, path) for role, indices in found.items()}


def _one_column(header: Record, found: list[int], path: Path) -> int | None:
    """The one index in ``found`` (None when empty); two or more are refused, naming them (the
    first ``COLUMNS_NAMED``: a file may repeat a header thousands of times)."""
    if len(found) > 1:
        named = [f"{header.cells[index].value.strip()[:80]!r} (column {index + 1})" for index in found[:COLUMNS_NAMED]]
        if len(found) > COLUMNS_NAMED:
            named.append(f"{len(found) - COLUMNS_NAMED:,} more")
        raise SourceError(path, f"{', '.join(named[:-1])} and {named[-1]} hold the same field; keep one of them "
                                "and try again")
    return found[0] if found else None


@dataclass
class Product:
    handle: str
    row: Record                      # the row holding the product's fields
    images: list[str]                # image references in display order
    disagreements: list[tuple[str, str]] = field(default_factory=list)  # (review status, what disagrees)


def group_products(records: list[Record], columns: dict[str, int | None]) -> list[Product]:
    """The products of a catalog's data ``records``, by handle. Rows of one handle that disagree
    (two titles; two images at one position) are merged all the same, and the product keeps a
    note of it for the review file (rows numbered as a spreadsheet numbers them, the header 1)."""
    products: dict[str, Product] = {}
    positions: dict[str, list[tuple[float, int, str]]] = {}
    titles: dict[str, tuple[str, int]] = {}                      # handle → its first title, and where
    placed: dict[tuple[str, float], tuple[str, int]] = {}         # (handle, position) → its first image, and where
    for order, record in enumerate(records):
        handle = record.value(columns["handle"]).strip()
        if not handle:
            continue
        product = products.get(handle)
        if product is None:
            product = products[handle] = Product(handle, record, [])
            positions[handle] = []
        elif not product.row.value(columns["title"]).strip() and record.value(columns["title"]).strip():
            product.row = record
        title = record.value(columns["title"]).strip()
        if title:
            _note_disagreement(product, DIFFERENT_TITLES, titles.setdefault(handle, (title, order)), (title, order))
        image = record.value(columns["image"]).strip()
        if image:
            try:
                position = float(record.value(columns["image_position"]))
            except ValueError:
                position = float("inf")
            positions[handle].append((position, order, image))
            if position != float("inf"):
                _note_disagreement(product, DIFFERENT_IMAGES, placed.setdefault((handle, position), (image, order)),
                                   (image, order), f"position {position:g}: ")
    for record in records:  # variant images, after the product's own
        handle = record.value(columns["handle"]).strip()
        image = record.value(columns["variant_image"]).strip()
        if handle and image:
            positions[handle].append((float("inf"), len(records), image))
    for handle, product in products.items():
        for _, _, image in sorted(positions[handle], key=lambda item: item[:2]):
            if image not in product.images:
                product.images.append(image)
    return list(products.values())


def rows_without_handle(records: list[Record], columns: dict[str, int | None]) -> list[dict]:
    """Review rows for the data ``records`` that hold something but no handle: Shopify reads such a
    row as no product's, so it is categorised as none (its title and image, where it has them, help
    the merchant find it; rows numbered as a spreadsheet numbers them, the header 1). A row of empty
    cells is no one's concern."""
    review = []
    for order, record in enumerate(records):
        if record.value(columns["handle"]).strip() or not any(cell.value.strip() for cell in record.cells):
            continue
        review.append({"handle": "", "title": record.value(columns["title"]), "image": record.value(columns["image"]),
                       "status": NO_HANDLE,
                       "error": f"row {order + 2} has no Handle / URL handle, so it is no product's and was left "
                                "as it is; give it its product's handle"})
    return review


def _note_disagreement(product: Product, status: str, first: tuple[str, int], this: tuple[str, int],
                       where: str = "") -> None:
    """Note on ``product`` that a row's value differs from the first row's (once per ``status``)."""
    if this[0] != first[0] and status not in (noted for noted, _ in product.disagreements):
        product.disagreements.append((status, f"{where}{first[0]!r} (row {first[1] + 2}), {this[0]!r} "
                                              f"(row {this[1] + 2}); merged as one product"))


def cache_key(source: ImageSource, model_digest: str, contract: InputContract = InputContract()) -> str | None:
    """What identifies a finished image: the model (its file's digest), its input kind and size,
    the pipeline, and the URL or the file's path, size and modification time. None for a source
    that cannot be read."""
    if source.url is not None:
        identity = source.url
    elif source.path is not None:
        try:
            stat = source.path.stat()
        except OSError:
            return None
        identity = f"{source.path}|{stat.st_size}|{stat.st_mtime_ns}"
    else:
        return None
    return f"{model_digest[:16]}|{contract.kind}{contract.size}|v{contract.model_kind.pipeline_version}|{identity}"


class CachedImage(NamedTuple):
    probabilities: list[float]
    colour: ProductColour | None  # when a run with colour read it (under this naming version)


def read_cache(path: Path, num_classes: int) -> dict[str, CachedImage]:
    """The finished images of earlier runs (``num_classes`` probabilities each, and the colour when
    one was read); a line cut short by an interruption, or one whose probabilities no model wrote
    (NaN, below 0, above 1), is skipped: that image is read again."""
    cache = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                key, probabilities = str(entry["key"]), [float(p) for p in entry["probabilities"]]
                # A colour of another naming version, or one that cannot be read back, is read again.
                colour = (ProductColour.from_dict(entry["colour"])
                          if entry.get("colour_version") == NAMING_VERSION and entry.get("colour") else None)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if len(probabilities) == num_classes and all(-1e-6 <= p <= 1 + 1e-6 for p in probabilities):
                cache[key] = CachedImage(probabilities, colour)
    return cache


def open_cache(path: Path):
    """The cache opened for appending. A last line cut short by an interruption is ended first,
    so the next entry starts a line of its own instead of being glued to it (and lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")
    if handle.tell() > 0:
        with open(path, "rb") as existing:
            existing.seek(-1, os.SEEK_END)
            if existing.read(1) != b"\n":
                handle.write("\n")
    return handle


# ---------------------------------------------------------------- the catalog run


def lock_path(out: Path) -> Path:
    """The lock file held beside ``out`` while a run writes it (``x.csv`` → ``x.csv.lock``)."""
    return out.with_name(f"{out.name}.lock")


def companion_paths(out: Path) -> tuple[Path, Path]:
    """(review CSV, image cache) beside the output: ``x.csv`` → ``x.review.csv``, ``x.cache.jsonl``."""
    return out.with_name(f"{out.stem}.review{out.suffix or '.csv'}"), out.with_name(f"{out.stem}.cache.jsonl")


def _with_tag(tags: str, tag: str, prefix: str, overwrite: bool) -> str:
    """``tags`` with ``tag`` added. A tag of ours already there (same prefix) is kept, as a filled
    category is, unless ``overwrite``; the user's own tags and their spacing are never changed."""
    items = [item.strip() for item in tags.split(",") if item.strip()]
    ours = [item for item in items if item.lower().startswith(prefix.lower())]
    if [item.lower() for item in ours] == [tag.lower()] or (ours and not overwrite):
        return tags
    if not ours:
        return f"{tags.rstrip()}, {tag}" if tags.strip() else tag
    return ", ".join([item for item in items if item not in ours] + [tag])


def categorize_catalog(
    csv_path: str | os.PathLike,
    out: str | os.PathLike,
    config: CatalogConfig = CatalogConfig(),
    predictor=None,
    progress: Callable[[int], object] | None = None,
    decisions: Mapping[str, str] | str | os.PathLike | None = None,
) -> CatalogReport:
    """Write ``out``: the catalog with categories, types and tags filled from the product photos;
    a review CSV and the image cache beside it. See the module docstring for the rules.

    ``predictor`` (anything with ``predict_proba``, and ``contract`` when it is not the
    contract of ``config.model_dir``) replaces loading the model; the model directory still
    names the cache's model. ``progress(n)`` is called as images finish. ``decisions`` maps a
    handle to the merchant's category (id, GID or path; written whatever the photo says, over a
    filled one too) or to ``"keep"`` (left as it is): ``apparel.shop.decisions``; or the path of
    such a CSV (``read_decisions``), which is then refused as a file to write too.
    """
    csv_path, out = local_path(csv_path, "csv_path"), local_path(out, "out")
    if not isinstance(config, CatalogConfig):
        raise ParameterError(f"{{}} must be a CatalogConfig (CatalogConfig(images_dir=…)), got {type(config).__name__}",
                             "config")
    if predictor is not None and not callable(getattr(predictor, "predict_proba", None)):
        raise ParameterError(f"{{}} must have predict_proba (a loaded Predictor: load_predictor(…)), got "
                             f"{type(predictor).__name__}; a model's name or folder goes in config.model_dir",
                             "predictor")
    if progress is not None and not callable(progress):
        raise ParameterError(f"{{}} must be a function of the images finished, got {type(progress).__name__}",
                             "progress")
    decisions_file = (None if decisions is None or isinstance(decisions, Mapping)
                      else local_path(decisions, "decisions"))
    images_dir = _checked_paths(csv_path, out, config, decisions_file)
    if decisions_file is not None:
        decisions = read_decisions(decisions_file)
    decided = resolve_decisions(decisions)  # an unknown category is said before any photo is read
    bom, text = read_csv_text(csv_path)
    records = parse_records(text)
    if not records:
        raise SourceError(csv_path, "empty; expected a Shopify product export with a header row")
    header, rows = records[0], records[1:]
    attributes = [attribute for parameter, attribute in BY_PARAMETER.items() if getattr(config, parameter)]
    columns = find_columns(header, csv_path, config.image_column, attributes)
    products = group_products(rows, columns)
    model_dir = _model_dir(config, predictor)
    review_path, cache_path = companion_paths(out)
    # A second run would append to the cache and race to write.
    with _no_empty_folder_left(out), one_writer(lock_path(out), "out", out):
        classifier = Classifier(config, model_dir, cache_path, predictor, progress)
        chooser = run_chooser(model_dir, classifier.class_names, config.mapping, config.min_confidence,
                              config.outside_confidence)
        classifier.classify(products, images_dir)
        colours = classifier.colours if classifier.colour else None
        cells = decide_cells(products, header, columns, classifier, chooser, config, colours, decided)
        orphans = rows_without_handle(rows, columns)
        # Both written in full before either is renamed into place, the review just before the output:
        # a run killed while writing leaves the last run's pair (only a kill between the two renames
        # leaves this run's review beside it, which a rerun, from the cache, puts right).
        with full_disk_named(out), atomic_path(out) as temporary:
            temporary.write_bytes(bom + splice(text, cells.edits).encode("utf-8"))
            write_review(review_path, cells.review + orphans)
    return CatalogReport(
        rows=len(rows), products=len(products), categorized=cells.categorized,
        changed_cells=len(cells.edits), uncertain=cells.uncertain, outside=cells.outside,
        failed=cells.failed,
        no_image=cells.no_image, disagreeing=cells.disagreeing, no_handle=len(orphans), predicted=classifier.predicted,
        cached=classifier.cached,
        output=str(out), review=str(review_path), cache=str(cache_path), coloured=cells.coloured,
        colour_read=classifier.colour, sleeved=cells.sleeved,
        nowhere=tuple(attribute.parameter for attribute in attributes if columns[attribute.role] is None
                      and columns["tags"] is None and (attribute is not COLOUR or classifier.colour)),
        decided=cells.decided, short=cells.short, not_shopify=cells.not_shopify, outcomes=tuple(cells.outcomes),
        strangers=tuple(sorted(set(decided or ()) - {product.handle for product in products})),
    )


@contextlib.contextmanager
def _no_empty_folder_left(out: Path):
    """The block run; if it fails, the folders it made for ``out`` are removed while empty: a run
    refused before it wrote (a --mapping that does not read, a model that does not load) leaves
    nothing behind it, as the refusals before any folder is made. One holding the cache stays."""
    made = [folder for folder in out.absolute().parents if not folder.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: a cache, or what another process put there
                break
        raise


def _checked_paths(csv_path: Path, out: Path, config: CatalogConfig, decisions: Path | None = None) -> Path:
    """The folder local image paths resolve inside, after checking the files to write."""
    _check_written_paths(csv_path, out, {"mapping": config.mapping, "decisions": decisions})
    if config.images_dir is None:
        return csv_path.resolve().parent
    return images_folder(config.images_dir)


def images_folder(images_dir: str | os.PathLike) -> Path:
    """``images_dir`` as the folder local image paths resolve inside; refused, named, when it is none."""
    if not Path(images_dir).is_dir():
        raise ParameterError(f"{{}} {images_dir} is not a folder; give the folder that holds the local photos the "
                             "CSV names (their paths are read inside it)", "images_dir")
    return Path(images_dir)


def _check_written_paths(csv_path: Path, out: Path, other_inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse a file to write (the output, its review CSV, its cache) that is an input (the CSV, or
    ``other_inputs``' files by parameter) or another of them: ``catalog x.review.csv --out x.csv``
    would replace its own input with the review."""
    if not out.name:  # "" (read as "."), or "/"
        raise ParameterError("{} names no file; give the file to write, e.g. categorized.csv", "out")
    review, cache = companion_paths(out)
    companions = (("review CSV", review), ("image cache", cache), ("lock file", lock_path(out)))
    if out.is_dir():
        raise ParameterError(f"{{}} {out} is a folder; give a file name, e.g. {out / 'categorized.csv'}", "out")
    if out.suffix.lower() in IMAGE_SUFFIXES - {".npy"}:  # a product's photo, which the CSV's text would replace
        raise ParameterError(f"{{}} {out} names an image file; the output is a CSV: give e.g. "
                             f"{out.with_name('categorized.csv')}", "out")
    for role, written in companions:
        if written.is_dir():
            raise ParameterError(f"{{}} {out} would write its {role} to {written}, a folder; give the output "
                                 "another name", "out")
    if same_file(csv_path, out):
        raise ParameterError(f"{{}} {out} is the input file; write to a new file and keep the original export", "out")
    for role, written in companions:
        if same_file(csv_path, written):
            raise ParameterError(f"{{}} {csv_path} is the {role} of {{}} {out}, which would replace it; "
                                 "give the output another name", "csv_path", "out")
    named = (("output", out), *companions)
    for parameter, read in other_inputs.items():
        for role, written in (named if read is not None else ()):
            if same_file(Path(read), written):
                raise ParameterError(f"{{}} {read} is the {role} of {{}} {out}, which would replace it; "
                                     "give the output another name", parameter, "out")
    for (role, path), (other_role, other) in itertools.combinations(named, 2):
        if same_file(path, other):
            raise ParameterError(f"{{}} {out}: the {role} {path} and the {other_role} {other} are one file (a link?); "
                                 "give the output another name", "out")


def _model_dir(config: CatalogConfig, predictor) -> Path:
    """The model whose categories and cache the catalog uses: ``config.model_dir``, else a loaded
    ``predictor``'s own folder, else the default. Another model's predictor beside
    ``config.model_dir`` is refused: its answers were read with the store model's categories (the
    photo model's got "sleeve_classes names hoodie, polo…, not classes of this model")."""
    own = getattr(predictor, "model_dir", None)
    if config.model_dir is None and own is not None:
        return Path(own)
    model_dir = resolve_model_dir(config.model_dir, kind=PHOTO_KIND)
    if own is not None and Path(own).resolve() != model_dir.resolve():
        raise ParameterError(f"{{}} is the model of {own}, but {{}} names {model_dir}; give config.model_dir the "
                             "predictor's folder, or leave it out", "predictor", "model_dir")
    return model_dir


class Classifier:
    """Classifies each product's first readable image, through the cache of finished images.

    Each product's images are tried in order until one is read: first images first, for all
    products, each round through the read-and-predict loop (``batch.loop``) on the configured
    engine. After ``classify``, ``outcome`` maps a handle to (image, probabilities over
    ``class_names``) and ``errors`` a handle to the reasons its images could not be read. With
    ``config.colour`` (a model that takes categories), ``colours`` maps a handle to its image's
    colour, named from the same read (``predicting.Predict``) and kept in the cache with it: a
    cached image without one is read again.
    """

    def __init__(self, config: CatalogConfig, model_dir: Path, cache_path: Path, predictor=None,
                 progress: Callable[[int], object] | None = None):
        self.config, self.model_dir, self.cache_path = config, model_dir, cache_path
        self.predictor, self.progress = predictor, progress or (lambda count: None)
        if predictor is None:
            self.model, contract = model_settings(config)
        else:  # what the model takes and answers: the predictor's own, else the run directory's record
            self.model = ModelSettings(str(model_dir))
            contract = getattr(predictor, "contract", None) or InputContract.for_run(model_dir)
        self.contract = contract
        self.colour = config.colour and contract.model_kind.reads_colour_photos
        if self.colour:
            self.model = replace(self.model, colour=True)
        # The cache's model: the file that answers (the LiteRT artefact's numbers are not Keras's).
        answering = getattr(predictor, "export_path", None) or self.model.litert or model_dir / MODEL_FILE
        self.model_digest = file_digest(answering)
        self.cache = read_cache(cache_path, self.contract.num_classes)
        self.outcome: dict[str, tuple[str, list[float]]] = {}
        self.errors: dict[str, list[str]] = {}
        self.colours: dict[str, ProductColour] = {}
        self.predicted = self.cached = 0
        self._cache_file = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names

    def classify(self, products: list[Product], images_dir: Path) -> None:
        self.errors.update({product.handle: [] for product in products})
        if self.config.engine == "ray":  # one start of Ray for every round of images
            from apparel.batch.engine_ray import ray_session

            with ray_session(self.config.ray_address):
                return self._classify(products, images_dir)
        return self._classify(products, images_dir)

    def _classify(self, products: list[Product], images_dir: Path) -> None:
        try:
            for attempt in itertools.count():
                pending = [(p, contained_source(p.images[attempt], images_dir)) for p in products
                           if p.handle not in self.outcome and attempt < len(p.images)]
                if not pending:
                    break
                self._predict(self._take_cached(pending), images_dir)
        finally:
            if self._cache_file is not None:
                self._cache_file.close()

    def _take_cached(self, pending: list[tuple[Product, ImageSource]]) -> list[tuple[Product, ImageSource, str | None]]:
        """Answer what the cache holds; return the rest, with their cache keys."""
        to_read = []
        for product, source in pending:
            key = cache_key(source, self.model_digest, self.contract)
            cached = self.cache.get(key) if key is not None else None
            if cached is not None and (cached.colour is not None or not self.colour):
                self.outcome[product.handle] = (source.name, cached.probabilities)
                if self.colour:
                    self.colours[product.handle] = cached.colour
                self.cached += 1
                self.progress(1)
            else:
                to_read.append((product, source, key))
        return to_read

    def _predict(self, to_read: list[tuple[Product, ImageSource, str | None]], images_dir: Path) -> None:
        """Read and predict ``to_read`` through the loop, a batch at a time, the readable images of
        a batch predicted together; each finished batch goes to the cache."""
        if not to_read:
            return
        # Resolved here: Ray's workers need not share this process's working directory.
        read = ReadSettings(str(images_dir.resolve()), self.contract, self.config.fetch(), self.config.read_threads)
        results = classify(np.arange(len(to_read)), [source.name for _, source, _ in to_read], read, self.model,
                           self.config.batch_size, engine=self.config.engine, packed=True,
                           address=self.config.ray_address, predictor=self.predictor)
        for result in results:
            lines = []
            colours = result["colour"] if self.colour else [""] * len(result["row"])
            for row, probabilities, error, colour in zip(result["row"], result["probabilities"], result["error"],
                                                         colours):
                product, source, key = to_read[row]
                self.progress(1)
                if error:
                    self.errors[product.handle].append(f"{source.name}: {error}")
                    continue
                values = [round(float(p), 6) for p in probabilities]
                self.outcome[product.handle] = (source.name, values)
                self.predicted += 1
                entry = {"key": key, "probabilities": values}
                if colour:
                    entry.update(colour=json.loads(colour), colour_version=NAMING_VERSION)
                    self.colours[product.handle] = ProductColour.from_dict(entry["colour"])
                if key is not None:
                    self.cache[key] = CachedImage(values, self.colours.get(product.handle) if colour else None)
                    lines.append(json.dumps(entry) + "\n")
            self._remember(lines)

    def _remember(self, lines: list[str]) -> None:
        if not lines:
            return
        with full_disk_named(self.cache_path):
            if self._cache_file is None:
                self._cache_file = open_cache(self.cache_path)
            try:
                self._cache_file.writelines(lines)
                self._cache_file.flush()  # an interruption keeps every finished batch
            except OSError:
                # Closed now, what it could not write dropped: closing it later would try again and
                # raise the bare error over this one. A line cut short is skipped on reading.
                with contextlib.suppress(OSError):
                    self._cache_file.close()
                self._cache_file = None
                raise


@dataclass
class Decisions:
    """The cells to write, as (start, end, new text) in the original text, and the review rows."""

    edits: list[tuple[int, int, str]] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)
    categorized: int = 0
    uncertain: int = 0
    outside: int = 0
    failed: int = 0
    no_image: int = 0
    disagreeing: int = 0
    coloured: int = 0
    sleeved: int = 0
    decided: int = 0
    short: int = 0
    not_shopify: int = 0
    outcomes: list[ProductOutcome] = field(default_factory=list)

    def count_attributes(self, unwritten: set[str], colour: set[str] | None = None,
                         sleeve: set[str] | None = None) -> None:
        """Counts a product's colour and sleeve length (their cells' roles, None when it got none)
        where each is in the file now: written, or the merchant's kept; not in a row too short for
        its cell (``unwritten``, reviewed as such)."""
        self.coloured += colour is not None and not colour & unwritten
        self.sleeved += sleeve is not None and not sleeve & unwritten


def decide_cells(products: list[Product], header: Record, columns: dict[str, int | None], classifier: Classifier,
                 chooser: CategoryChooser, config: CatalogConfig,
                 colours: Mapping[str, ProductColour] | None = None,
                 decided: Mapping[str, Category | None] | None = None) -> Decisions:
    """What to write for each product, and which products a person should review (and why).
    ``colours`` (handle → colour) adds the colour cells where the product gets one (``gets_colour``).
    ``decided`` (handle → the merchant's category, None to leave it as it is) wins over the model:
    such a product gets the merchant's cells (and its photo's colour) and is not listed for review
    as uncertain."""
    decisions, decided = Decisions(), decided or {}
    for product in products:
        title = product.row.value(columns["title"])
        decisions.disagreeing += bool(product.disagreements)
        decisions.review += [{"handle": product.handle, "title": title, "image": (product.images or [""])[0],
                              "status": status, "error": detail} for status, detail in product.disagreements]
        outcome, decision = _model_outcome(product, title, classifier, chooser, config.sleeve_length)
        if colours and product.handle in colours:
            outcome = replace(outcome, colour=colours[product.handle].main.name)
        if product.handle in decided:
            _apply_decision(product, decided[product.handle], outcome, header, columns, chooser, config, colours,
                            decisions)
            continue
        decisions.outcomes.append(outcome)
        if decision is None and outcome.status == NO_IMAGE:
            decisions.no_image += 1
            decisions.review.append({"handle": product.handle, "title": title, "status": NO_IMAGE})
            continue
        if decision is None:
            decisions.failed += 1
            decisions.review.append({"handle": product.handle, "title": title, "image": outcome.image,
                                     "status": UNREADABLE, "error": " | ".join(classifier.errors[product.handle])})
            continue
        probabilities = classifier.outcome[product.handle][1]
        order = np.argsort(probabilities)[::-1]
        names = classifier.class_names
        base = {"handle": product.handle, "title": title, "image": outcome.image, "label": outcome.label,
                "probability": f"{probabilities[order[0]]:.4f}"}
        held = held_category(product, columns, config, decision.category)
        if held is not None and held[1] is None:
            # The merchant's cell is kept, and Shopify's importer drops what it names: said, not counted.
            decisions.not_shopify += 1
            decisions.review.append({**base, "status": NOT_SHOPIFY, "error": f"its category cell holds {held[0]!r}, "
                                     "which is not a category of Shopify's product taxonomy; give it one (apparel "
                                     "taxonomy search WORDS), or empty the cell to have it filled"})
            wanted = wanted_cells(product, columns, outcome.label, decision.category, chooser, config,
                                  keep_category=True) if decision.category is not None else {}
            _edit_cells(product, wanted, header, columns, base, decisions)
            decisions.outcomes[-1] = replace(outcome, status=NOT_SHOPIFY, category=None, sleeve=None)
            continue
        if decision.category is None and held is not None:
            # The model is unsure, but the cell holds one of Shopify's categories, kept: categorised.
            decisions.categorized += 1
            decisions.outcomes[-1] = replace(outcome, status="categorized", category=held[1].path)
            wanted = {}
            colour = _add_colour(product, held[1], None, colours, columns, wanted, config)
            decisions.count_attributes(_edit_cells(product, wanted, header, columns, base, decisions), colour)
            continue
        if decision.category is None:
            if decision.reason == OUTSIDE:
                decisions.outside += 1
            else:
                decisions.uncertain += 1
            decisions.review.append({**base, "status": decision.reason, "confidence": f"{decision.confidence:.4f}",
                                     "top_k": "; ".join(f"{names[i]} {probabilities[i]:.4f}" for i in order[:3])})
            # Left uncertain, it is still one of the store's products: its colour is written all the same.
            wanted = {}
            colour = _add_colour(product, None, decision.reason, colours, columns, wanted, config)
            decisions.count_attributes(_edit_cells(product, wanted, header, columns, base, decisions), colour)
            continue
        base["category"] = decision.category.path
        base["confidence"] = f"{decision.confidence:.4f}"
        wanted = wanted_cells(product, columns, outcome.label, decision.category, chooser, config,
                              keep_category=held is not None)
        # The attributes of the category the cell holds once written: the merchant's kept one, if any.
        holds = held[1] if held is not None else decision.category
        colour = _add_colour(product, holds, None, colours, columns, wanted, config)
        # The sleeve length the classes tell goes with their category only (not a kept "Boots").
        sleeve = _add_sleeve(product, outcome.sleeve if holds.id == decision.category.id else None, columns, wanted,
                             config)
        if held is not None:  # the desk's table shows what the cell holds
            decisions.outcomes[-1] = replace(outcome, category=holds.path,
                                             sleeve=outcome.sleeve if holds.id == decision.category.id else None)
        unwritten = _edit_cells(product, wanted, header, columns, base, decisions)
        # Categorised when its category cell holds the category now (written, or the merchant's kept).
        if "category" in unwritten:
            decisions.short += 1
            decisions.outcomes[-1] = replace(decisions.outcomes[-1], status=ROW_TOO_SHORT)  # the desk's table says so too
        else:
            decisions.categorized += 1
        decisions.count_attributes(unwritten, colour, sleeve)
    return decisions


def _model_outcome(product: Product, title: str, classifier: Classifier, chooser: CategoryChooser,
                   sleeve_length: bool = False) -> tuple[ProductOutcome, CategoryDecision | None]:
    """What the model made of ``product`` (its status is the review status when left; with
    ``sleeve_length``, the sleeve length of its category) and the category decision behind it,
    None when it has no readable photo."""
    if not product.images:
        return ProductOutcome(product.handle, title, "", NO_IMAGE, None, None, None, None, None), None
    if product.handle not in classifier.outcome:
        return ProductOutcome(product.handle, title, product.images[0], UNREADABLE, None, None, None, None,
                              None), None
    image, probabilities = classifier.outcome[product.handle]
    label = classifier.class_names[int(np.argmax(probabilities))]
    decision, own = chooser.choose(probabilities), chooser.category_of(label)
    suggested = decision.category.path if decision.category is not None else None
    sleeve = product_sleeve(probabilities, chooser, decision.category) if sleeve_length else None
    outcome = ProductOutcome(product.handle, title, image, decision.reason or "categorized", suggested, suggested,
                             own.path if own is not None else None, round(decision.confidence, 4), label,
                             sleeve=sleeve.value.name if sleeve is not None else None)
    return outcome, decision


def _apply_decision(product: Product, category: Category | None, outcome: ProductOutcome, header: Record,
                    columns: dict[str, int | None], chooser: CategoryChooser, config: CatalogConfig,
                    colours: Mapping[str, ProductColour] | None, decisions: Decisions) -> None:
    """The merchant's ``category`` for ``product`` (None: leave its cells as they are). The merchant
    chose the category, not the colour: the photo's colour is written as for the model's category.
    The sleeve length, told by the classes, only where the merchant accepted the model's own
    category: one who decided otherwise decided against the classes that tell it."""
    decisions.decided += 1
    decisions.outcomes.append(replace(outcome, status="decided", decision=KEEP if category is None else category.id,
                                      category=None if category is None else category.path))
    if category is None:
        return
    base = {"handle": product.handle, "title": outcome.title, "image": outcome.image, "category": category.path}
    wanted = wanted_cells(product, columns, outcome.label, category, chooser, config, chosen_by_merchant=True)
    colour = _add_colour(product, category, None, colours, columns, wanted, config)
    sleeve = _add_sleeve(product, outcome.sleeve, columns, wanted, config) if outcome.suggested == category.path else None
    decisions.count_attributes(_edit_cells(product, wanted, header, columns, base, decisions), colour, sleeve)


def _add_colour(product: Product, category: Category | None, reason: str | None,
                colours: Mapping[str, ProductColour] | None, columns: dict[str, int | None], wanted: dict[str, str],
                config: CatalogConfig) -> set[str] | None:
    """Adds ``product``'s colour cells to ``wanted`` when its photo's colour was read and the
    product gets one (``attributes.gets_colour``: its category takes a colour, or it was left
    uncertain; not outside the vertical, nor a gift card); returns their roles (``_add_attribute``)."""
    if not (colours and product.handle in colours and gets_colour(category, reason)):
        return None
    return _add_attribute(product, COLOUR, colour_values(colours[product.handle]), columns, wanted, config)


def _add_sleeve(product: Product, sleeve: str | None, columns: dict[str, int | None], wanted: dict[str, str],
                config: CatalogConfig) -> set[str] | None:
    """Adds the cells of ``sleeve``, the sleeve length of the model's category for ``product``
    (``ProductOutcome.sleeve``: None when not asked for, or none told), to ``wanted``; returns
    their roles (``_add_attribute``)."""
    return None if sleeve is None else _add_attribute(product, SLEEVE, [sleeve], columns, wanted, config)


def _add_attribute(product: Product, attribute: CsvAttribute, values: list[str], columns: dict[str, int | None],
                   wanted: dict[str, str], config: CatalogConfig) -> set[str] | None:
    """Adds ``attribute_edits`` to ``wanted``; returns the roles of the cells it wants (none when the
    merchant's value is kept), or None when the file has no place for it."""
    edits = attribute_edits(product, columns, attribute, values, wanted, config.overwrite)
    wanted.update(edits or {})
    return None if edits is None else set(edits)


def _edit_cells(product: Product, wanted: dict[str, str], header: Record, columns: dict[str, int | None], base: dict,
                decisions: Decisions) -> set[str]:
    """The edits that give ``product``'s row the ``wanted`` cells; a row too short for one is
    reviewed, and its role returned among those left unwritten."""
    unwritten = set()
    for role, value in wanted.items():
        index = columns[role]
        if index >= len(product.row.cells):
            decisions.review.append({**base, "status": ROW_TOO_SHORT,
                                     "error": f"the row has no {header.cells[index].value} cell; it was left as it was"})
            unwritten.add(role)
            continue
        cell = product.row.cells[index]
        if value != cell.value:
            decisions.edits.append((cell.start, cell.end, encode_cell(value, cell.quoted)))
    return unwritten


def wanted_cells(product: Product, columns: dict[str, int | None], label: str | None, category: Category,
                 chooser: CategoryChooser, config: CatalogConfig, chosen_by_merchant: bool = False,
                 keep_category: bool = False) -> dict[str, str]:
    """Role → value for a product whose chosen category is ``category`` and likeliest class
    ``label``: the category column (the node's full path, or its id with ``category_format``) when
    empty (or ``overwrite``; never with ``keep_category``: ``held_category``), type when empty, our
    tag. Type and tag name the class when the category is the class's own; when only a parent was
    sure ("Shoes" for a likely sandal), they name that category instead, so no cell claims more
    than the photo supports. A category ``chosen_by_merchant`` replaces a filled one and our earlier
    tag, as ``overwrite`` does."""
    named = label if label is not None and chooser.category_of(label) == category else category.name
    overwrite = config.overwrite or chosen_by_merchant
    wanted = {}
    if columns["category"] is not None and not keep_category:
        if overwrite or not product.row.value(columns["category"]).strip():
            wanted["category"] = category.id if config.category_format == "id" else category.path
    if columns["type"] is not None and not product.row.value(columns["type"]).strip():
        wanted["type"] = named
    if columns["tags"] is not None:
        wanted["tags"] = _with_tag(product.row.value(columns["tags"]), config.tag_prefix + named,
                                   config.tag_prefix, overwrite)
    return wanted


def held_category(product: Product, columns: dict[str, int | None], config: CatalogConfig,
                  chosen: Category | None) -> tuple[str, Category | None] | None:
    """The category cell's own text and its node (None when it names none of Shopify's) where the
    run leaves the cell as it is: filled, without ``overwrite``; with it, when it holds a category
    below the ``chosen`` one (T-Shirts, where the photo told only Clothing: its ancestor would lose
    what the merchant knew). None where the run writes the cell, or the file has none."""
    if columns["category"] is None:
        return None
    text = product.row.value(columns["category"]).strip()
    if not text:
        return None
    taxonomy = load_taxonomy()
    node = taxonomy.find(text)
    if config.overwrite and not (node is not None and chosen is not None and taxonomy.is_ancestor(chosen, node)):
        return None
    return text, node


def attribute_edits(product: Product, columns: dict[str, int | None], attribute: CsvAttribute, values: list[str],
                    wanted: dict[str, str], overwrite: bool) -> dict[str, str] | None:
    """``values`` (the main one first) in ``attribute``'s metafield column when the file has one (kept
    when filled, unless ``overwrite``), else the main one as its tag (``color:navy``) beside the tags
    ``wanted`` already writes (``apparel.shop.attribute_cells``); None when the file has neither
    column."""
    if columns.get(attribute.role) is not None:
        if overwrite or not product.row.value(columns[attribute.role]).strip():
            return {attribute.role: ", ".join(values)}
        return {}
    if columns["tags"] is None:
        return None
    tags = wanted.get("tags", product.row.value(columns["tags"]))
    return {"tags": _with_tag(tags, attribute_tag(attribute, values[0]), attribute.tag_prefix, overwrite)}


def write_review(path: Path, review: list[dict]) -> None:
    """The review CSV, every cell made safe to open in a spreadsheet (``spreadsheet_safe``). Only
    this file is: the output keeps the store's own cells byte for byte, as Shopify reads them."""
    with full_disk_named(path), atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REVIEW_FIELDS)
            writer.writeheader()
            # Numbers and empty cells stay as they are: only text can be read as a formula.
            writer.writerows({key: spreadsheet_safe(value) if isinstance(value, str) else value
                              for key, value in row.items()} for row in review)


def spreadsheet_safe(value: str) -> str:
    """``value`` as a spreadsheet shows it but never runs it: one that would start a formula
    (``=HYPERLINK(…)``, ``@SUM(…)``, ``-1+1``) gets a leading ``'``, which marks a cell as text.

        >>> spreadsheet_safe("@SUM(A1:A9)"), spreadsheet_safe("Summer dress")
        ("'@SUM(A1:A9)", 'Summer dress')
    """
    return "'" + value if value.startswith(FORMULA_STARTS) else value
