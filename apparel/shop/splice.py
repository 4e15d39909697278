"""The byte-preserving CSV splicer: parse a CSV into cells that know their place in the bytes, and
write back only the cells that changed (the ``csv`` module would re-quote every row).

    >>> from apparel.shop.splice import parse_records
    >>> [cell.value for cell in parse_records('a,b\n')[0].cells]
    ['a', 'b']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from apparel.errors import SourceError

BOM = b"\xef\xbb\xbf"


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


# A quoted cell ends at a quote that is not one of a doubled pair: without the look-ahead, an
# unclosed cell holding "" would backtrack and end at the first quote of a pair, hiding the cut.
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"(?!")')
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
        raise SourceError(path, "file not found") from None
    except OSError as error:  # a folder, no permission, …
        raise SourceError(path, f"cannot read it ({error.strerror or error}); give a readable CSV file") from None
    return decode_csv(raw, path)


def decode_csv(raw: bytes, name) -> tuple[bytes, str]:
    """(BOM or b"", text) of a UTF-8 CSV's bytes (a file's, or an upload's named ``name``)."""
    bom = BOM if raw.startswith(BOM) else b""
    try:
        return bom, raw[len(bom):].decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(name, f"not UTF-8 ({error}); export it from Shopify again or save it as UTF-8") from None


# ---------------------------------------------------------------- mapping, products, cache


def splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end) span replaced by its new text; everything else as it was."""
    pieces, position = [], 0
    for start, end, replacement in sorted(edits):
        pieces.extend([text[position:start], replacement])
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
