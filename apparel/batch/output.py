"""The output: a folder of Parquet files that pandas, DuckDB, Spark or BigQuery read as one table.

    >>> import pandas
    >>> pandas.read_parquet("predictions/")            # or DuckDB: SELECT * FROM 'predictions/*.parquet'

Each row is a manifest row, with these columns:

- every column of the manifest, as read (a CSV's as text);
- ``manifest_row`` (int64): the row's number in the manifest, from 0;
- ``label`` (string): the most likely class; null when the image could not be read;
- ``probability`` (float32): its probability;
- ``top_labels`` (list of string), ``top_probabilities`` (list of float32): the ``top_k`` most
  likely classes, best first;
- ``category_id``, ``category_gid``, ``category_path`` (string): the Shopify category chosen from
  the probabilities (``apparel.shop.categories``), null when none was sure enough or the model has
  no categories; ``category_confidence`` (float32): its probability, or, when none was written,
  the likeliest node's (the outside's for "outside the vertical"), as every interface gives it: a
  non-null confidence is not a category; ``category_reason`` (string): why none was written
  ("uncertain", "outside the vertical"), null when one was;
- ``color_name``, ``color_handle``, ``color_gid`` (string), ``color_confidence`` (float32): with
  ``--colour``, the product's colour read from its photo as a value of Shopify's ``color``
  attribute (``apparel.attributes``), where the chosen category takes a colour or the product was
  left uncertain (``gets_colour``); else null;
- ``sleeve_length_type_name``, ``sleeve_length_type_handle``, ``sleeve_length_type_gid`` (string),
  ``sleeve_length_type_confidence`` (float32): the sleeve length the model's classes tell, as a
  value of Shopify's ``sleeve_length_type`` attribute (``apparel.attributes.sleeve``), where the
  chosen category takes one and a length is sure enough; else null;
- ``model_version`` (string): the first 12 hex digits of the run's ``model.keras`` SHA-256 (the
  service's version for it; of the ``.tflite`` for an export given without its run);
- ``error`` (string): why the image could not be read, null when it was classified.

Files are ``part-<first row>-<random>.parquet``, each written whole (a temporary renamed into
place), so a run killed at any moment leaves only whole files, and a rerun skips the rows they
hold. ``_batch.json`` records what was classified with what; a rerun with another model or another
manifest is refused rather than mixed in, and so is a second run while one is writing the folder
(``_batch.lock``, there only while it runs).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from apparel.artifacts import atomic_path, one_writer, remove_stale_temporaries_of, write_json
from apparel.batch.manifest import ROW_COLUMN
from apparel.batch.writing import full_disk_named
from apparel.errors import ParameterError, SourceError

# Each column of the table, in its order, with the name of its Arrow type (``prediction_schema``).
CATEGORY_FIELDS = (("category_id", "string"), ("category_gid", "string"), ("category_path", "string"),
                   ("category_confidence", "float32"), ("category_reason", "string"))
COLOUR_FIELDS = (("color_name", "string"), ("color_handle", "string"), ("color_gid", "string"),
                 ("color_confidence", "float32"))
SLEEVE_FIELDS = (("sleeve_length_type_name", "string"), ("sleeve_length_type_handle", "string"),
                 ("sleeve_length_type_gid", "string"), ("sleeve_length_type_confidence", "float32"))
PREDICTION_FIELDS = (("label", "string"), ("probability", "float32"), ("top_labels", "list<string>"),
                     ("top_probabilities", "list<float32>"), *CATEGORY_FIELDS, *COLOUR_FIELDS, *SLEEVE_FIELDS,
                     ("model_version", "string"), ("error", "string"))
CATEGORY_COLUMNS, COLOUR_COLUMNS, SLEEVE_COLUMNS, PREDICTION_COLUMNS = (
    tuple(name for name, _ in fields) for fields in (CATEGORY_FIELDS, COLOUR_FIELDS, SLEEVE_FIELDS, PREDICTION_FIELDS))
PARTS = "part-*.parquet"         # the files of the table
RECORD_FILE = "_batch.json"      # leading "_": Parquet readers skip it
LOCK_FILE = "_batch.lock"        # there while a run writes the folder (``artifacts.one_writer``)


def prediction_schema():
    import pyarrow as pa

    types = {"string": pa.string(), "float32": pa.float32(), "list<string>": pa.list_(pa.string()),
             "list<float32>": pa.list_(pa.float32())}
    return pa.schema([(name, types[kind]) for name, kind in PREDICTION_FIELDS])


def category_columns(probabilities: np.ndarray, failed: list[bool], chooser, colours=None) -> dict:
    """The category columns, the sleeve length's where the chosen category takes one and the classes
    tell it (``attributes.sleeve``), and the colour columns where ``colours`` (JSON text per row, from
    ``predicting.photo_colours``) names one and the product gets one (``gets_colour``; see the module
    docstring); all null without a ``chooser``."""
    from apparel.attributes import gets_colour
    from apparel.attributes.sleeve import product_sleeve

    columns = {name: [None] * len(failed) for name in (*CATEGORY_COLUMNS, *COLOUR_COLUMNS, *SLEEVE_COLUMNS)}
    if chooser is None:
        return columns
    probabilities = np.nan_to_num(probabilities, nan=0.0)
    decisions = chooser.choose_all(probabilities)
    for row, (bad, decision) in enumerate(zip(failed, decisions)):
        if bad:
            continue
        found = decision.to_dict()
        for key in ("id", "gid", "path", "confidence", "reason"):
            columns[f"category_{key}"][row] = found[key]
        if colours is not None and colours[row] and gets_colour(decision.category, decision.reason):
            colour = json.loads(colours[row])
            for key in ("name", "handle", "gid", "confidence"):
                columns[f"color_{key}"][row] = colour[key]
        sleeve = product_sleeve(probabilities[row], chooser, decision.category)
        if sleeve is not None:
            for key, value in sleeve.to_dict().items():
                columns[f"sleeve_length_type_{key}"][row] = value
    return columns


def prediction_columns(probabilities: np.ndarray, errors, class_names: tuple[str, ...], top_k: int,
                       version: str, chooser=None, colours=None) -> dict:
    """The prediction columns for rows of class ``probabilities`` (NaN rows: not read, see
    ``errors``); ``chooser`` (a ``CategoryChooser``) fills the category columns, with ``colours``
    the colour columns."""
    k = max(1, min(top_k, len(class_names)))
    names = np.asarray(class_names, dtype=object)
    # A stable sort: ties rank by class order on every engine and machine.
    order = np.argsort(-np.nan_to_num(probabilities, nan=0.0), axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(probabilities, order, axis=1)
    failed = [bool(error) for error in errors]
    return {
        "label": [None if bad else names[top[0]] for bad, top in zip(failed, order)],
        "probability": [None if bad else float(p[0]) for bad, p in zip(failed, ranked)],
        "top_labels": [None if bad else list(names[top]) for bad, top in zip(failed, order)],
        "top_probabilities": [None if bad else p.tolist() for bad, p in zip(failed, ranked)],
        **category_columns(probabilities, failed, chooser, colours),
        "model_version": [version] * len(failed),
        "error": [str(error) if bad else None for bad, error in zip(failed, errors)],
    }


class ShardWriter:
    """Collects result rows and writes them ``shard_rows`` at a time as Parquet files in ``out``."""

    def __init__(self, out: Path, manifest_table, class_names: tuple[str, ...], top_k: int, version: str,
                 shard_rows: int, chooser=None):
        self.out, self.manifest_table, self.class_names, self.chooser = out, manifest_table, class_names, chooser
        self.top_k, self.version, self.shard_rows = top_k, version, shard_rows
        self.pending: list = []
        self.pending_rows = self.written = self.failed = 0

    def add(self, rows: np.ndarray, probabilities: np.ndarray, errors, colours=None) -> None:
        """Results of some manifest rows, in any order (``colours``: see ``category_columns``)."""
        import pyarrow as pa

        carried = self.manifest_table.take(pa.array(rows, type=pa.int64()))
        columns = prediction_columns(probabilities, errors, self.class_names, self.top_k, self.version, self.chooser,
                                     colours)
        table = carried.append_column(ROW_COLUMN, pa.array(rows, type=pa.int64()))
        for field in prediction_schema():
            table = table.append_column(field, pa.array(columns[field.name], type=field.type))
        self.pending.append(table)
        self.pending_rows += len(rows)
        self.failed += sum(error is not None for error in columns["error"])
        while self.pending_rows >= self.shard_rows:
            self._write(self.shard_rows)

    def close(self) -> None:
        """Write what is left. An empty manifest still gets one (empty) file: a reader of the
        folder finds the columns rather than no table at all."""
        import pyarrow as pa

        if self.pending_rows:
            self._write(self.pending_rows)
        elif self.manifest_table.num_rows == 0 and not any(self.out.glob(PARTS)):
            empty = self.manifest_table.append_column(ROW_COLUMN, pa.array([], type=pa.int64()))
            for field in prediction_schema():
                empty = empty.append_column(field, pa.array([], type=field.type))
            self._save(empty, 0)

    def _write(self, count: int) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self.pending)
        shard, rest = table.slice(0, count), table.slice(count)
        shard = shard.sort_by(ROW_COLUMN)
        self._save(shard, shard.column(ROW_COLUMN)[0].as_py())
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self.written += count

    def _save(self, shard, first_row: int) -> None:
        import pyarrow.parquet as pq

        name = f"part-{first_row:012d}-{uuid.uuid4().hex[:8]}.parquet"
        with full_disk_named(self.out / name), atomic_path(self.out / name) as temporary:
            pq.write_table(shard, temporary)


def written_rows(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the manifest rows the whole Parquet files in ``out`` hold, those of them that hold an
    error rather than a prediction)."""
    rows, failed, parts = [], [], _parts(out)
    for part in parts:
        table = _read_part(part, [ROW_COLUMN, "error"])
        numbers = table.column(ROW_COLUMN).to_numpy()
        rows.append(numbers)
        failed.append(numbers[table.column("error").is_valid().to_numpy(zero_copy_only=False)])
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    every = np.concatenate(rows)
    unique, counts = np.unique(every, return_counts=True)
    if (counts > 1).any():  # a part copied in from another run: a reader would count its rows twice
        row = int(unique[counts > 1][0])
        holding = [part.name for part, numbers in zip(parts, rows) if row in numbers]
        raise SourceError(out, f"holds manifest row {row} in more than one part ({', '.join(holding)}), and "
                               f"{int((counts > 1).sum())} such rows in all: a part from another run (or a copy) is "
                               "among them; remove the ones this run did not write, or give a new folder")
    return unique, np.unique(np.concatenate(failed))


def drop_failed_rows(out: Path) -> int:
    """Remove the rows that hold an error from ``out``'s files (each file written again whole, or
    removed when no row is left), so that a run classifies them again; returns how many. A run
    killed meanwhile has only lost rows that it, rerun, classifies."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dropped = 0
    for part in _parts(out):
        table = _read_part(part)
        failed = table.column("error").is_valid()
        count = pc.sum(failed).as_py() or 0
        if not count:
            continue
        if count == table.num_rows:
            part.unlink()
        else:
            with full_disk_named(part), atomic_path(part) as temporary:
                pq.write_table(table.filter(pc.invert(failed)), temporary)
        dropped += count
    return dropped


def remove_stale_parts(out: Path) -> None:
    """Remove the temporaries of part files whose writer was killed: each part's name is new, so no
    later write removes them, and a reader of ``*.parquet`` (DuckDB) fails on an empty one."""
    remove_stale_temporaries_of(out, PARTS)


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob(PARTS)) if out.is_dir() else []


def _read_part(part: Path, columns: list[str] | None = None):
    """One part file's table (``columns`` of it), or a ``ParameterError`` saying how to go on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if not part.is_file():
            raise OSError("not a file")
        return pq.read_table(part, columns=columns)
    except (OSError, pa.ArrowException) as error:
        raise ParameterError(f"{{}} {part.parent}: {part.name} is damaged ({error}); remove it and rerun the same "
                             "command: its rows are classified again", "out") from None


def folder_lock(out: Path):
    """Held for a run's writing of ``out`` (made): a second run into the folder is refused."""
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{{}} {out} is a file; give a folder for the Parquet data set", "out")
    return one_writer(out / LOCK_FILE, "out", out)


def check_record(out: Path, record: dict) -> dict:
    """Write ``out/_batch.json`` for a new output; for an existing one, refuse another run's.
    Returns the record the run goes on with: ``record``, except for an output begun before
    ``model_version`` named ``model.keras`` (it named the LiteRT file that answered, and there was
    no ``artefact``), which resumes when that file answers now, its rows keeping the version they
    began with."""
    path = out / RECORD_FILE
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            earlier = None
        if not isinstance(earlier, dict):
            raise ParameterError(f"{{}} {out}: {RECORD_FILE} is damaged, so its Parquet files cannot be told to be "
                                 "this run's; give a new folder, or empty this one to start again", "out")
        if ("artefact" not in earlier and record.get("artefact") is not None
                and earlier.get("model_version") == record["artefact"]):
            record = {key: value for key, value in record.items() if key != "artefact"} | {
                "model_version": earlier["model_version"]}
        for key, value in record.items():
            if key == "colour" and isinstance(earlier.get(key), bool) and earlier[key] != value:
                # The one difference the user chose with a flag: say which way resumes.
                raise ParameterError(f"{{}} {out} was begun {'with' if earlier[key] else 'without'} the colour read; "
                                     f"resume it {'with' if earlier[key] else 'without'} {{}}, or give a new folder",
                                     "out", "colour")
            if key == "sleeve_rule" and key not in earlier:
                # Its files lack the sleeve length's columns: a table of both would lose them unread.
                raise ParameterError(f"{{}} {out} was begun by an earlier apparel, whose files have no sleeve length "
                                     "columns; give a new folder, or remove it to start again", "out")
            if earlier.get(key) != value:
                raise ParameterError(f"{{}} {out} holds the output of another run ({key}: {earlier.get(key)!r}, now "
                                     f"{value!r}); give a new folder, or remove it to start again", "out")
        return record
    if out.is_dir() and any(out.glob(PARTS)):
        raise ParameterError(f"{{}} {out} holds Parquet files of an unknown run; give a new folder, or empty this one "
                             "to start again", "out")
    out.mkdir(parents=True, exist_ok=True)
    with full_disk_named(path):
        write_json(path, record)
    return record


def manifest_identity(path: Path) -> dict:
    """What a rerun must find unchanged for the rows already written to still be its rows: the
    manifest's content (it may have moved)."""
    from apparel.artifacts import file_digest

    return {"manifest_sha256": file_digest(path)}
