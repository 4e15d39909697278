"""Categorise a Shopify product CSV export from its product photos.

    >>> from apparel.catalog import CatalogConfig, categorize_catalog
    >>> report = categorize_catalog("products.csv", "categorized.csv", CatalogConfig(images_dir="images"))
    >>> report.categorized, report.low_confidence, report.failed
    (118, 4, 1)

Both header styles of Shopify's export are read: the older (``Handle``, ``Product Category``,
``Image Src``, …) and the current (``URL handle``, ``Product category``, ``Product image URL``, …).
A product's rows share its handle; its first row holds the product's fields and its first image
that can be read is classified. For each product predicted with at least ``min_confidence``:

- the category column gets the Shopify taxonomy path of the class when it is empty (always with
  ``overwrite``), from the mapping file ``taxonomy.csv`` (or the user's own, same layout);
- ``Type`` gets the class name when it is empty;
- ``Tags`` gets ``apparel:<class>`` unless it has an ``apparel:`` tag already (replaced with
  ``overwrite``).

Everything else keeps its bytes: the output is the input with only the changed cells spliced in
(the ``csv`` module would re-quote every row), so untouched rows, cells, quoting, line endings and
a UTF-8 BOM stay as they were, and no row can be lost. Products below ``min_confidence``, and those
whose images all failed, are listed in a review CSV beside the output. Finished images are cached
beside the output, so an interrupted run resumes and a rerun gives the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from apparel.data import CLASS_NAMES
from apparel.sources import FetchConfig, ImageSource, is_url, read_sources, resolve_inside

DEFAULT_MAPPING = Path(__file__).resolve().parent / "taxonomy.csv"
BOM = b"\xef\xbb\xbf"
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
REVIEW_FIELDS = ("handle", "title", "image", "status", "label", "probability", "top_k", "error")


@dataclass(frozen=True)
class CatalogConfig:
    """How a catalog is categorised (``apparel catalog`` flags)."""

    model_dir: str | None = None     # run directory; None: $APPAREL_MODEL_DIR or models/default
    images_dir: str | None = None    # local image paths resolve inside it; None: the CSV's folder
    mapping: str | None = None       # class → taxonomy CSV; None: the shipped apparel/taxonomy.csv
    min_confidence: float = 0.5      # predictions below it are not written, only listed for review
    overwrite: bool = False          # replace a category that is already filled
    allow_private: bool = False      # fetch image URLs from private/loopback addresses too
    timeout: float = 10.0            # seconds per image URL
    tag_prefix: str = "apparel:"     # the tag written is prefix + class name
    batch_size: int = 64             # images predicted together (and cached together)
    workers: int = 4                 # images read and fetched in parallel

    def __post_init__(self):
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {self.min_confidence}")
        if self.timeout <= 0 or self.batch_size < 1 or self.workers < 1:
            raise ValueError("timeout, batch_size and workers must be positive")


@dataclass(frozen=True)
class CatalogReport:
    rows: int                        # data rows in the input (and, always, in the output)
    products: int                    # distinct handles
    categorized: int                 # products whose prediction was written (or already there)
    changed_cells: int               # cells that differ from the input
    low_confidence: int              # products below min_confidence (in the review file)
    failed: int                      # products whose images could not be read (in the review file)
    no_image: int                    # products with no image at all (in the review file)
    predicted: int                   # images classified by the model in this run
    cached: int                      # images taken from the cache of an earlier run
    output: str
    review: str
    cache: str

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- raw CSV records with their spans


@dataclass
class Cell:
    start: int                       # span of the raw cell text in the decoded file
    end: int
    value: str
    quoted: bool


@dataclass
class Record:
    start: int
    end: int                         # end of the record's cells, before its line ending
    cells: list[Cell] = field(default_factory=list)

    def value(self, index: int | None) -> str:
        return self.cells[index].value if index is not None and index < len(self.cells) else ""


_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"')
_UNQUOTED = re.compile(r"[^,\r\n]*")


def parse_records(text: str) -> list[Record]:
    """Split CSV text (RFC 4180, as Shopify writes it) into records that keep each cell's span.

    Blank lines are not records. Values equal what ``csv.reader`` reads.
    """
    records, position, length = [], 0, len(text)
    while position < length:
        record = Record(position, position)
        while True:
            if position < length and text[position] == '"':
                match = _QUOTED.match(text, position)
                if match is None:
                    line = text.count("\n", 0, position) + 1
                    raise ValueError(f"line {line}: a quoted cell is never closed; is the CSV complete?")
                value = match.group(1).replace('""', '"')
                end = match.end()
                extra = _UNQUOTED.match(text, end).end()  # stray text after the closing quote
                value += text[end:extra]
                record.cells.append(Cell(position, extra, value, True))
                position = extra
            else:
                end = _UNQUOTED.match(text, position).end()
                record.cells.append(Cell(position, end, text[position:end], False))
                position = end
            if position < length and text[position] == ",":
                position += 1
                continue
            break
        record.end = position
        if text.startswith("\r\n", position):
            position += 2
        elif position < length:
            position += 1  # "\n" or "\r"
        if record.end > record.start:
            records.append(record)
    return records


def encode_cell(value: str, quoted: bool) -> str:
    """A cell as CSV text, quoted as it was before or when its value needs it."""
    if quoted or any(c in value for c in ',"\r\n') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def read_csv_text(path: Path) -> tuple[bytes, str]:
    """(BOM or b"", text) of a UTF-8 CSV file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as error:  # a folder, no permission, …
        raise ValueError(f"{path}: cannot read it ({error.strerror or error}); give a readable CSV file") from None
    bom = BOM if raw.startswith(BOM) else b""
    try:
        return bom, raw[len(bom):].decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 ({error}); export it from Shopify again or save it as UTF-8") from None


# ---------------------------------------------------------------- mapping, products, cache


def load_mapping(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Class name → taxonomy path, from a CSV with the columns ``class`` and ``category``.

    Every class must appear; an empty category means "do not write a category for this class".
    """
    path = Path(path) if path is not None else DEFAULT_MAPPING
    _, text = read_csv_text(path)
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"class", "category"} <= set(rows[0]):
        raise ValueError(f"{path}: needs the columns class,category (one row per class)")
    mapping = {}
    for row in rows:
        name = (row["class"] or "").strip()
        if name not in CLASS_NAMES:
            raise ValueError(f"{path}: unknown class {name!r}; the classes are {', '.join(CLASS_NAMES)}")
        mapping[name] = (row["category"] or "").strip()
    missing = [name for name in CLASS_NAMES if name not in mapping]
    if missing:
        raise ValueError(f"{path}: no row for {', '.join(missing)}; give every class a row (an empty category skips it)")
    return mapping


def find_columns(header: Record, path: Path) -> dict[str, int | None]:
    names = [cell.value.strip().lower() for cell in header.cells]
    columns = {}
    for role, accepted in COLUMNS.items():
        columns[role] = next((names.index(name) for name in accepted if name in names), None)
    if columns["handle"] is None:
        raise ValueError(f"{path}: no Handle / URL handle column; is it a Shopify product export?")
    if columns["image"] is None and columns["variant_image"] is None:
        raise ValueError(f"{path}: no Image Src / Product image URL column, so no photos to classify")
    if columns["category"] is None and columns["type"] is None and columns["tags"] is None:
        raise ValueError(f"{path}: none of Product category, Type, Tags; nothing to write")
    return columns


@dataclass
class Product:
    handle: str
    row: Record                      # the row holding the product's fields
    images: list[str]                # image references in display order


def group_products(records: list[Record], columns: dict[str, int | None]) -> list[Product]:
    products: dict[str, Product] = {}
    positions: dict[str, list[tuple[float, int, str]]] = {}
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
        image = record.value(columns["image"]).strip()
        if image:
            try:
                position = float(record.value(columns["image_position"]))
            except ValueError:
                position = float("inf")
            positions[handle].append((position, order, image))
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


def image_source(reference: str, images_dir: Path) -> ImageSource:
    if is_url(reference):
        scheme = reference.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            return ImageSource(reference, url=reference)
        return ImageSource(reference, error=f"only http and https URLs are fetched, not {scheme}://")
    try:
        return ImageSource(reference, path=resolve_inside(reference, images_dir))
    except ValueError as error:
        return ImageSource(reference, error=str(error).removeprefix(f"{reference}: "))


def cache_key(source: ImageSource, model_digest: str) -> str | None:
    """What identifies a finished image: the model, the pipeline, and the URL or the file's
    path, size and modification time. None for a source that cannot be read."""
    from apparel.photos import PIPELINE_VERSION

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
    return f"{model_digest[:16]}|v{PIPELINE_VERSION}|{identity}"


def read_cache(path: Path) -> dict[str, list[float]]:
    """The finished images of earlier runs; a line cut short by an interruption is skipped."""
    cache = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                key, probabilities = str(entry["key"]), [float(p) for p in entry["probabilities"]]
            except (ValueError, KeyError, TypeError):
                continue
            if len(probabilities) == len(CLASS_NAMES):
                cache[key] = probabilities
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


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- the catalog run


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
) -> CatalogReport:
    """Write ``out``: the catalog with categories, types and tags filled from the product photos;
    a review CSV and the image cache beside it. See the module docstring for the rules.

    ``predictor`` (anything with ``predict_proba``) replaces loading ``config.model_dir``;
    ``progress(n)`` is called as images finish.
    """
    from apparel.artifacts import atomic_path
    from apparel.prediction import resolve_model_dir

    csv_path, out = Path(csv_path), Path(out)
    if out.resolve() == csv_path.resolve():
        raise ValueError(f"--out {out} is the input file; write to a new file and keep the original export")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {out / 'categorized.csv'}")
    bom, text = read_csv_text(csv_path)
    records = parse_records(text)
    if not records:
        raise ValueError(f"{csv_path}: empty; expected a Shopify product export with a header row")
    header, rows = records[0], records[1:]
    columns = find_columns(header, csv_path)
    mapping = load_mapping(config.mapping)
    products = group_products(rows, columns)
    images_dir = Path(config.images_dir) if config.images_dir is not None else csv_path.resolve().parent
    if config.images_dir is not None and not images_dir.is_dir():
        raise ValueError(f"--images-dir {images_dir} is not a folder")
    review_path, cache_path = companion_paths(out)

    model_file = resolve_model_dir(config.model_dir) / "model.keras"
    model_digest = file_digest(model_file)
    cache = read_cache(cache_path)
    fetch = FetchConfig(timeout=config.timeout, allow_private=config.allow_private)

    # Try each product's images in order until one is read: first images first, for all products.
    outcome: dict[str, tuple[str, list[float] | None]] = {}   # handle → (image, probabilities)
    errors: dict[str, list[str]] = {product.handle: [] for product in products}
    predicted = cached = 0
    attempt = 0
    cache_file = None
    try:
        while True:
            pending = [(p, image_source(p.images[attempt], images_dir)) for p in products
                       if p.handle not in outcome and attempt < len(p.images)]
            if not pending:
                break
            attempt += 1
            to_read = []
            for product, source in pending:
                key = cache_key(source, model_digest)
                if key is not None and key in cache:
                    outcome[product.handle] = (source.name, cache[key])
                    cached += 1
                    if progress is not None:
                        progress(1)
                else:
                    to_read.append((product, source, key))
            for start in range(0, len(to_read), config.batch_size):
                batch = to_read[start : start + config.batch_size]
                inputs, done = [], []
                for (product, source, key), (_, array, error) in zip(batch, read_sources([s for _, s, _ in batch], fetch, config.workers)):
                    if error is None and len(array) == 0:  # one input row per entry of done, always
                        error = "holds no images"
                    if error is not None:
                        errors[product.handle].append(f"{source.name}: {error}")
                    else:
                        inputs.append(array[:1])
                        done.append((product, source, key))
                    if progress is not None:
                        progress(1)
                if not inputs:
                    continue
                if predictor is None:
                    from apparel.prediction import Predictor

                    predictor = Predictor.from_dir(model_file.parent)
                probabilities = np.asarray(predictor.predict_proba(np.concatenate(inputs)), dtype=np.float64)
                predicted += len(done)
                lines = []
                for (product, source, key), row in zip(done, probabilities, strict=True):
                    values = [round(float(p), 6) for p in row]
                    outcome[product.handle] = (source.name, values)
                    if key is not None:
                        cache[key] = values
                        lines.append(json.dumps({"key": key, "probabilities": values}) + "\n")
                if lines:
                    if cache_file is None:
                        cache_file = open_cache(cache_path)
                    cache_file.writelines(lines)
                    cache_file.flush()  # an interruption keeps every finished batch
    finally:
        if cache_file is not None:
            cache_file.close()

    # Decide the cells to write and collect the review rows.
    edits: list[tuple[int, int, str]] = []
    review: list[dict] = []
    categorized = low = failed = no_image = 0
    for product in products:
        title = product.row.value(columns["title"])
        if not product.images:
            no_image += 1
            review.append({"handle": product.handle, "title": title, "status": "no image"})
            continue
        if product.handle not in outcome:
            failed += 1
            review.append({"handle": product.handle, "title": title, "image": product.images[0],
                           "status": "unreadable image", "error": " | ".join(errors[product.handle])})
            continue
        image, probabilities = outcome[product.handle]
        order = np.argsort(probabilities)[::-1]
        label, confidence = CLASS_NAMES[order[0]], probabilities[order[0]]
        if confidence < config.min_confidence:
            low += 1
            review.append({"handle": product.handle, "title": title, "image": image, "status": "low confidence",
                           "label": label, "probability": f"{confidence:.4f}",
                           "top_k": "; ".join(f"{CLASS_NAMES[i]} {probabilities[i]:.4f}" for i in order[:3])})
            continue
        categorized += 1
        wanted = {}
        if columns["category"] is not None and mapping[label]:
            current = product.row.value(columns["category"])
            if config.overwrite or not current.strip():
                wanted["category"] = mapping[label]
        if columns["type"] is not None and not product.row.value(columns["type"]).strip():
            wanted["type"] = label
        if columns["tags"] is not None:
            wanted["tags"] = _with_tag(product.row.value(columns["tags"]), config.tag_prefix + label, config.tag_prefix, config.overwrite)
        for role, value in wanted.items():
            index = columns[role]
            if index >= len(product.row.cells):
                review.append({"handle": product.handle, "title": title, "image": image, "status": "row too short",
                               "label": label, "probability": f"{confidence:.4f}",
                               "error": f"the row has no {header.cells[index].value} cell; it was left as it was"})
                continue
            cell = product.row.cells[index]
            if value != cell.value:
                edits.append((cell.start, cell.end, encode_cell(value, cell.quoted)))

    # Splice the changed cells into the original text; everything else keeps its bytes.
    pieces, position = [], 0
    for start, end, replacement in sorted(edits):
        pieces.extend([text[position:start], replacement])
        position = end
    pieces.append(text[position:])
    with atomic_path(out) as temporary:
        temporary.write_bytes(bom + "".join(pieces).encode("utf-8"))
    with atomic_path(review_path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REVIEW_FIELDS)
            writer.writeheader()
            writer.writerows(review)
    return CatalogReport(
        rows=len(rows), products=len(products), categorized=categorized, changed_cells=len(edits),
        low_confidence=low, failed=failed, no_image=no_image, predicted=predicted, cached=cached,
        output=str(out), review=str(review_path), cache=str(cache_path),
    )
