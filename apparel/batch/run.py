"""``apparel batch``: classify every image of a manifest into a Parquet data set, resumably.

    >>> from apparel.batch.run import BatchConfig, classify_manifest
    >>> report = classify_manifest("photos.csv", "predictions/", BatchConfig(engine="ray"))
    >>> report.classified, report.failed, report.skipped
    (1998, 2, 0)

Rows already in ``out`` (whole files of an earlier run of the same manifest and model) are
skipped, so a crashed run continues where it stopped; see ``output`` for the schema.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from apparel.attributes.colour import COLOUR_RULE, NAMING_VERSION
from apparel.attributes.sleeve import SLEEVE_RULE
from apparel.batch.config import BatchConfig, ReadSettings
from apparel.batch.loop import classify, model_settings
from apparel.batch.manifest import read_manifest
from apparel.batch.output import (PREDICTION_COLUMNS, ShardWriter, check_record, drop_failed_rows, folder_lock,
                                  manifest_identity, remove_stale_parts, written_rows)
from apparel.errors import ParameterError
from apparel.shop.categories import optional_run_chooser

__all__ = ["BatchConfig", "BatchReport", "classify_manifest"]

FIRST_ERRORS = 5  # failed rows a report quotes; every failed row has its error in the output


@dataclass(frozen=True)
class BatchReport:
    rows: int                        # rows in the manifest
    skipped: int                     # rows written by an earlier run, not classified again
    classified: int                  # rows this run predicted
    failed: int                      # rows this run could not read (a row each, with its error)
    seconds: float                   # this run's wall time, model loading and Ray's start included
    engine: str
    out: str
    errors: tuple[str, ...] = ()     # this run's first FIRST_ERRORS failed rows: "row N ('reference'): reason"
    colour_read: bool = False        # the colour was read (asked for, and the model's answers take a category)
    skipped_failed: int = 0          # of ``skipped``, rows an earlier run could not read (``retry_failed`` reads them)
    retried: int = 0                 # rows an earlier run could not read, classified again (``retry_failed``)

    @property
    def predicted_in_out(self) -> int:
        """Rows of the folder, this run's and earlier ones', that hold a prediction."""
        return self.classified + self.skipped - self.skipped_failed

    def to_dict(self) -> dict:
        return asdict(self)


def classify_manifest(manifest_path: str | os.PathLike, out: str | os.PathLike, config: BatchConfig = BatchConfig(),
                      progress: Callable[[int], object] | None = None) -> BatchReport:
    """Classify the images of ``manifest_path`` into the Parquet data set ``out`` (see the module
    docstring); ``progress(n)`` is called as rows finish."""
    began = time.perf_counter()
    if not os.fspath(out):  # Path("") would be the current folder
        raise ParameterError("{} is empty; give the folder to write the Parquet files into", "out")
    out = Path(out)
    manifest = read_manifest(manifest_path, config.image_column, PREDICTION_COLUMNS)
    images_dir = Path(config.images_dir) if config.images_dir is not None else manifest.path.resolve().parent
    if not images_dir.is_dir():
        raise ParameterError(f"{{}} {images_dir} is not a folder", "images_dir")
    model, contract = model_settings(config, config.litert, config.predictor_threads)
    # Before anything is written: an unreadable categories.json is refused now, not after the record.
    chooser = optional_run_chooser(model.model_dir, contract.class_names, export=config.litert)
    # The colour goes with a category, and is read from a photo: 28×28 grey arrays have none.
    model = dataclasses.replace(model, colour=config.colour and chooser is not None
                                and contract.model_kind.reads_colour_photos)
    with folder_lock(out):  # held to the end: a second run into out is refused, not mixed in
        record = check_record(out, {
            **manifest_identity(manifest.path), "image_column": manifest.image_column,
            "images_dir": str(images_dir.resolve()), "model_version": model.version, "artefact": model.artefact,
            "top_k": config.top_k, "categories": chooser.version if chooser is not None else None,
            "colour": config.colour,
            "colour_rule": COLOUR_RULE if config.colour else None,
            # Which products get a colour (the rule) and how a photo's colour is named (the version):
            # rows of either kind of earlier run are not mixed with this one's.
            "colour_naming": NAMING_VERSION if config.colour else None,
            # How the sleeve length is told, for every model, since its columns are in every file: a
            # folder of an earlier rule, or from before the columns, is not resumed into one table.
            "sleeve_rule": SLEEVE_RULE})
        read = ReadSettings(str(images_dir.resolve()), contract, config.fetch(), config.read_threads)
        remove_stale_parts(out)
        retried = drop_failed_rows(out) if config.retry_failed else 0
        written, written_failed = written_rows(out)
        rows = np.setdiff1d(np.arange(manifest.table.num_rows, dtype=np.int64), written)
        references = manifest.references()
        pending = [references[row] for row in rows]
        writer = ShardWriter(out, manifest.table, contract.class_names, config.top_k, record["model_version"],
                             config.shard_rows, chooser)
        results = classify(rows, pending, read, model, config.batch_size, engine=config.engine,
                           predictors=config.predictors, address=config.ray_address)
        errors = []
        for result in results:
            writer.add(result["row"], result["probabilities"], result["error"], result.get("colour"))
            # The lowest rows, whichever order the engine finishes them in.
            errors = sorted(errors + [(int(row), f"row {row} ({references[row]!r}): {error}")
                                      for row, error in zip(result["row"], result["error"]) if error])[:FIRST_ERRORS]
            if progress is not None:
                progress(len(result["row"]))
        writer.close()
        return BatchReport(rows=manifest.table.num_rows, skipped=manifest.table.num_rows - len(rows),
                           classified=writer.written - writer.failed, failed=writer.failed,
                           seconds=round(time.perf_counter() - began, 3), engine=config.engine, out=str(out),
                           errors=tuple(text for _, text in errors), colour_read=model.colour,
                           skipped_failed=len(written_failed), retried=retried)
