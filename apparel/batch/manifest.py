"""Reading a manifest: a CSV or Parquet file with one image per row.

    >>> from apparel.batch.manifest import read_manifest
    >>> manifest = read_manifest("photos.csv")
    >>> manifest.image_column, manifest.table.num_rows
    ('image_url', 120000)

The image column is the one named ``--image-column``, else the first of ``IMAGE_COLUMNS`` present
(names compared case-insensitively); it holds local paths or http(s) URLs. Every column is carried
into the output as it is. A CSV's cells are read as text, never guessed: a product ID ``00123``
stays ``00123``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from apparel.errors import URL_PATTERN, ParameterError, SourceError

# The last two: a Shopify product export's image column, in its older and its current header style.
IMAGE_COLUMNS = ("image", "image_url", "url", "path", "image src", "product image url")
ROW_COLUMN = "manifest_row"  # the row's number in the manifest, from 0: the key a rerun resumes by


@dataclass(frozen=True)
class Manifest:
    path: Path
    table: object                    # pyarrow.Table, the manifest's columns as read
    image_column: str

    def references(self) -> list[str]:
        """The image column's cells as text ("" for an empty cell)."""
        column = _text_column(self.table, self.image_column, self.path)
        return ["" if value is None else value for value in column.to_pylist()]


def read_manifest(path: str | os.PathLike, image_column: str | None = None,
                  reserved: tuple[str, ...] = ()) -> Manifest:
    """The manifest at ``path`` (``.parquet`` or ``.pq``: Parquet, else CSV); ``reserved`` are
    column names the output adds, which the manifest must not have."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{{}} {path} is not a file", "manifest")
    table = _read_table(path)
    # Case folded: Parquet readers that ignore case (DuckDB, BigQuery) refuse a "Label" beside "label",
    # and two columns of one name made an output no reader opens.
    seen: dict[str, str] = {}
    for name in table.column_names:
        if name.casefold() in seen:
            raise SourceError(path, f"has two columns named {seen[name.casefold()]!r} and {name!r}; rename one")
        seen[name.casefold()] = name
    added = {name.casefold() for name in (ROW_COLUMN, *reserved)}
    clashes = [name for name in table.column_names if name.casefold() in added]
    if clashes:
        raise SourceError(path, f"has a column {clashes[0]!r}, which the output adds; rename it")
    manifest = Manifest(path, table, _image_column(table.column_names, image_column, path))
    images = _text_column(table, manifest.image_column, path)  # refused now, before a model is loaded
    _one_line_each(images, manifest.image_column, path)
    return manifest


def _names_an_image(name: str) -> bool:
    """Whether a column's name is a photo's path or URL rather than a name."""
    from apparel.images.sources import IMAGE_SUFFIXES  # not at the top: it brings NumPy and Pillow

    return bool(URL_PATTERN.match(name)) or Path(name.strip()).suffix.lower() in IMAGE_SUFFIXES


def _one_line_each(images, name: str, path: Path) -> None:
    """Refuse an image cell that holds a line break: no path or URL has one, and a CSV quote left
    open swallows the rows after it into one cell (Arrow reads it to the end of the file)."""
    import pyarrow.compute as pc

    broken = pc.index(pc.match_substring_regex(images, "[\r\n]"), True).as_py()
    if broken >= 0:
        raise SourceError(path, f"the image cell of row {broken} (from 0, as manifest_row counts) in column {name!r} "
                                "holds a line break: a quote opened there is never closed; close it, or remove it")


def _read_table(path: Path):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pq.read_table(path)
        names = pa_csv.open_csv(path).schema.names
        text = pa_csv.ConvertOptions(column_types={name: pa.string() for name in names},
                                     strings_can_be_null=False)
        return pa_csv.read_csv(path, convert_options=text)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:  # the last: header names that are not UTF-8
        kind = "Parquet" if path.suffix.lower() in (".parquet", ".pq") else "CSV"
        # A UTF-16 file (a spreadsheet's "Unicode text") reads as one odd column, so its mark is
        # looked for; Arrow's reason would quote its rows, NUL bytes and all, onto the terminal.
        head = _head(path) if kind == "CSV" else b""  # a Parquet file is binary by design
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise SourceError(path, f"cannot be read as {kind}: it is UTF-16 text (a spreadsheet's \"Unicode text\"); "
                                    "save the manifest as UTF-8") from None
        reason = str(error).splitlines()[0]
        if b"\x00" in head or not reason.replace("\t", " ").isprintable():  # a photo or another binary file
            raise SourceError(path, f"cannot be read as {kind}: it holds bytes that are no text; give the manifest, "
                                    "a CSV or Parquet table with a column of image paths or URLs") from None
        # Decimal commas in its cells make Arrow fail on the rows before the header is judged.
        header = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        separator = None if "," in header else other_separator([header])
        if separator:
            raise _separated(path, separator) from None
        # Arrow names the column, not the row: the fix is the file's encoding as a whole.
        hint = "; save the manifest as UTF-8" if "invalid UTF8" in reason else ""
        shown = reason if len(reason) <= 200 else f"{reason[:200]}…"
        raise SourceError(path, f"cannot be read as {kind} ({shown}){hint}") from None


def other_separator(names: list[str]) -> str | None:
    """"semicolons" or "tabs" when a CSV's header read as one column is names separated by them (a
    spreadsheet's export in a locale that writes decimal commas), else None."""
    return next((name for mark, name in ((";", "semicolons"), ("\t", "tabs")) if len(names) == 1 and mark in names[0]),
                None)


def _separated(path: Path, separator: str) -> SourceError:
    return SourceError(path, f"its header is one column of names separated by {separator}; a CSV manifest separates "
                             "them by commas: save it as CSV with commas and try again")


def _head(path: Path) -> bytes:
    """The file's first 4 KB (none when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4096)
    except OSError:
        return b""


def _text_column(table, name: str, path: Path):
    """The column ``name`` as Arrow strings. Bytes (Parquet's binary) must be UTF-8: the first row
    that is not is named; a column that cannot be text (a list, a struct) is refused, named."""
    import pyarrow as pa

    column = table.column(name)
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        for row, value in enumerate(column.to_pylist()):
            try:
                (value or b"").decode("utf-8")
            except UnicodeDecodeError as error:
                raise SourceError(path, f"the image column {name!r} holds bytes that are not UTF-8 text in row {row} "
                                        f"(from 0, as manifest_row counts; {error.reason} at byte {error.start}); it "
                                        "should hold one path or URL per row, as UTF-8 text") from None
    raise ParameterError(f"{{}} {name!r}: the image column of {path} is {column.type}; it should be text (string), "
                         "one path or URL per row: name the column that holds them", "image_column")


def _image_column(names: list[str], wanted: str | None, path: Path) -> str:
    # A list of paths with no header line: its first path read as the column's name, and that
    # photo never classified (naming it as the column, as the message below invites, lost it).
    headless = next((name for name in names if _names_an_image(name)), None)
    if headless is not None:
        raise SourceError(path, f"has no header line: its first line, {headless!r}, is an image, not a column's name; "
                                "add a first line naming the column (such as image): read as it is, the first photo "
                                "would be taken for that name and never classified")
    if wanted is not None:
        if wanted not in names:
            raise ParameterError(f"{{}} {wanted!r} is not a column of {path}; its columns: {', '.join(names)}",
                                 "image_column")
        return wanted
    lowered = {name.lower(): name for name in reversed(names)}
    for candidate in IMAGE_COLUMNS:
        if candidate in lowered:
            return lowered[candidate]
    separator = other_separator(names)
    if separator:
        raise _separated(path, separator)
    raise ParameterError(f"{path} has no column named {', '.join(IMAGE_COLUMNS)}; its columns: {', '.join(names)}; "
                         "name the one with the images with {}", "image_column")
