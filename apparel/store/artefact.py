"""The store model's inference artefact: partly int8, calibrated on the kinds of photo it answers.

    python -m apparel.store artefact runs/store --datasets ../shared/datasets

``model.tflite`` beside the run's ``model.keras`` (``inference.runtime`` runs it): both networks in
int8, the ops after their pooling (the classifiers and the mixing of their probabilities) and the
layers int8 moves by more than ``FLOAT_ERROR`` quantisation steps kept float (``export_model``'s
``float_tail`` and ``float_error``). Its activation ranges are measured on ``CALIBRATION_COUNT``
photos, evenly spaced over the store model's training side only: clothing-dataset-small's
``train/``, clothing-dataset-extra's training senders, and the first ``WORN_COUNT`` things of
Clothing Co-Parsing's training-side photos as worn, worn on white, cut out onto white, and its
street corners (``store.worn``), so that every kind of photo the catalogue benchmark holds, the
street corners that say "not apparel" included, has its ranges measured.

Why these settings (docs/benchmarks.md, "Partly int8"): on the catalogue benchmark's 3,478
validation products, fewer layers kept float wrote more rows otherwise than the float16 artefact
(0.45 steps: 182 rows, 0.40: 145, 0.35: 110, 0.30: 101) and more made it slower (catalog photos/s
198, 193, 176, 136): 0.35 is where the rows stop falling fast, at about 1.5× float16's speed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FLOAT_ERROR = 0.35
CALIBRATION_COUNT = 500
WORN_COUNT = 1500
JPEG_QUALITY = 90  # the worn crops are calibrated on as the JPEG files a store would upload


def calibration_photos(datasets: str | os.PathLike, scratch: str | os.PathLike) -> list[str]:
    """The calibration candidates of the module docstring, in order: the two data sets' training
    photos, then the worn things written as JPEG files under ``scratch``."""
    from apparel.store.training_set import CO_PARSING, EXTRA, SMALL, extra_photos
    from apparel.store.worn import worn_crops

    datasets, scratch = Path(datasets), Path(scratch)
    needed = (datasets / SMALL / "train", datasets / EXTRA / "labels.csv", datasets / CO_PARSING / "label_list.mat")
    if not all(path.exists() for path in needed):
        raise ValueError(f"datasets: {datasets} needs {SMALL}/train, {EXTRA}/labels.csv and {CO_PARSING}/; give the "
                         "folder that holds the three data sets")
    photos = sorted(str(path) for path in (datasets / SMALL / "train").glob("*/*.jpg"))
    photos += sorted(str(path) for path, _, split in extra_photos(datasets) if split == "train")
    crops = worn_crops(datasets / CO_PARSING, held_out=False, cut_outs=True, worn_on_white=True)
    for number, crop in zip(range(WORN_COUNT), crops):
        path = scratch / f"{number:05d}.jpg"
        crop.image.convert("RGB").save(path, quality=JPEG_QUALITY)
        photos.append(str(path))
    return photos


def write_store_artefact(run: str | os.PathLike, datasets: str | os.PathLike) -> Path:
    """Write ``run``'s ``model.tflite`` (and its metadata) as the module docstring says; returns its path."""
    from apparel.artifacts import MODEL_FILE, file_digest
    from apparel.contract import InputContract
    from apparel.images.sources import calibration_inputs
    from apparel.inference.export import export_model
    from apparel.inference.runtime import ARTEFACT_FILE

    run = Path(run)
    if not (run / MODEL_FILE).is_file():
        raise ValueError(f"run: {run} holds no {MODEL_FILE}; give the store model's run directory")
    contract = InputContract.for_run(run)
    if not contract.model_kind.reads_colour_photos:
        raise ValueError(f"run: {run} is not a photo model; give the store model's run directory")
    with tempfile.TemporaryDirectory(prefix="apparel-calibration-") as scratch:
        photos = calibration_photos(datasets, scratch)
        try:
            calibration = calibration_inputs(photos, contract, CALIBRATION_COUNT)
        except ValueError:  # its message names a parameter of export's and lists every photo
            raise ValueError(f"datasets: none of the training-side photos under {datasets} could be read; check "
                             "the data sets' files") from None
    return export_model(run, "litert", run / ARTEFACT_FILE, quantize="int8", calibration=calibration,
                        float_tail=True, float_error=FLOAT_ERROR, source_digest=file_digest(run / MODEL_FILE))
