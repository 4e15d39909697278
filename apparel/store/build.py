"""Build the store model's run directory from a fine-tuned garment run: calibrated on validation
photos, its categories and thresholds written beside it.

    python -m apparel.store build runs/store-garments --datasets ../shared/datasets --out runs/store

The output is a run directory like any other (``model.keras``, ``config.json`` with the input
contract, ``metrics.json``) plus ``categories.json``: every class's Shopify category, the
temperatures and thresholds chosen on validation (``calibrate.py``) and the validation figures.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.attributes.sleeve import ATTRIBUTE as SLEEVE_KEY, STORE_SLEEVE_CLASSES
from apparel.contract import CONFIG_KEY, InputContract
from apparel.store import calibrate as calibration
from apparel.store.model import branches, build_store_model, read_classes, store_class_names
from apparel.store.training_set import CO_PARSING, SMALL, extra_photos
from apparel.store.worn import ACCESSORIES, CUT_OUT, WORN_ON_WHITE, worn_crops


def validation_photos(datasets: str | os.PathLike, head_classes: tuple[str, ...]):
    """(photo: a path or PIL image, its category id or None, its validation set, its head class
    index or -1) for every validation photo (see ``calibrate.py``)."""
    datasets, categories = Path(datasets), read_classes()
    photos = [(path, path.parent.name, "small") for path in sorted((datasets / SMALL / "validation").glob("*/*.jpg"))]
    photos += [(path, name, "extra") for path, name, split in extra_photos(datasets) if split == "validation"]
    for path, name, group in photos:
        yield path, categories[name][0], group, head_classes.index(name) if name in head_classes else -1
    for crop in worn_crops(datasets / CO_PARSING, held_out=True, cut_outs=True, worn_on_white=True):
        kind = crop_set(crop)
        yield crop.image, crop.category, f"{kind} accessories" if crop.label in ACCESSORIES else kind, -1


def with_thumbnails(rows: list[tuple]) -> list[tuple]:
    """``validation_photos``' rows, then each again as a store's thumbnail (JPEG bytes) of
    ``calibrate.THUMBNAIL_BOX``, in the set ``calibrate.as_thumbnail`` names."""
    from apparel.images.thumbnails import thumbnail_of

    return rows + [(thumbnail_of(photo, calibration.THUMBNAIL_BOX), truth, calibration.as_thumbnail(group), label)
                   for photo, truth, group, label in rows]


def crop_set(crop) -> str:
    """The validation set a Co-Parsing crop belongs to (before "accessories" is added): "street"
    for a corner with nothing worn, else by its backdrop."""
    if crop.category is None:
        return "street"
    return {CUT_OUT: "on white", WORN_ON_WHITE: "worn on white"}.get(crop.backdrop, "worn")


def branch_logits(two, photos: list, size: int, batch_size: int = 32,
                  progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both branches' logits for each photo (a path, PIL image or image file's bytes, read as a photo
    model reads it). ``progress``: a bar's label on stderr."""
    from apparel.kinds.photo.data import progress_bar
    from apparel.kinds.photo.pipeline import photo_to_rgb

    heads, imagenets = [], []
    with progress_bar(len(photos), progress, "photo") as bar:
        for start in range(0, len(photos), batch_size):
            chunk = photos[start : start + batch_size]
            head, imagenet = two.predict_on_batch(np.stack([photo_to_rgb(photo, size) for photo in chunk]).astype(np.float32))
            heads.append(np.asarray(head))
            imagenets.append(np.asarray(imagenet))
            bar.update(len(chunk))
    return np.concatenate(heads), np.concatenate(imagenets)


def build_store_run(garment_run: str | os.PathLike, datasets: str | os.PathLike, out: str | os.PathLike,
                    imagenet_top: str | os.PathLike | None = None, show_progress: bool = False) -> dict:
    """Write the store model's run directory ``out`` (see the module docstring); returns the
    contents of its categories.json. ``imagenet_top``: the ImageNet side's top blocks taught to
    read thumbnails (``distil.py``'s weights file), else the pretrained ones. ``show_progress``:
    a bar on stderr while the validation photos are read and predicted."""
    from apparel.inference.prediction import load_model

    garment_run, out = Path(garment_run), Path(out)
    contract = InputContract.for_run(garment_run)
    if not contract.model_kind.reads_colour_photos:
        raise ValueError(f"garment_run: {garment_run} is not a photo model; give an `apparel train --images` run")
    started = time.perf_counter()
    garment_model = load_model(garment_run)
    rows = with_thumbnails(list(validation_photos(datasets, contract.class_names)))
    photos, truths, sets, labels = (list(column) for column in zip(*rows))
    head_logits, imagenet_logits = branch_logits(branches(garment_model, imagenet_top), photos, contract.size,
                                                 progress="validation photos" if show_progress else None)
    store_classes = store_class_names(contract.class_names)
    settings, figures = calibration.calibrate(head_logits, imagenet_logits, truths, sets, np.asarray(labels),
                                              store_classes)
    model, class_names = build_store_model(garment_model, contract.class_names, settings.mixing, imagenet_top)
    categories = read_classes()
    record = {
        "categories": {name: categories[name][0] or None for name in class_names},
        # The classes that tell a sleeve length, measured on this model (docs/colour.md#sleeve-length).
        SLEEVE_KEY: {name: STORE_SLEEVE_CLASSES[name] for name in class_names if name in STORE_SLEEVE_CLASSES},
        **settings.to_dict(),
        "chosen_on": "validation photos: clothing-dataset-small validation/ (small), clothing-dataset-extra's "
                     "validation senders (extra), Clothing Co-Parsing's held-out street corners (street), each as "
                     "given and shrunk to a {}x{} thumbnail (small {}x{}, ...); its held-out crops (worn), the same worn "
                     "on white (worn on white) and cut out onto white (on white) are reported, not chosen on"
                     .format(*calibration.THUMBNAIL_BOX, *calibration.THUMBNAIL_BOX),
        "validation": figures,
        "garment_run": str(garment_run),
        "imagenet_top": _imagenet_top_record(imagenet_top),
    }
    out.mkdir(parents=True, exist_ok=True)
    artifacts.save_model(model, out / artifacts.MODEL_FILE)
    config = json.loads((garment_run / artifacts.CONFIG_FILE).read_text(encoding="utf-8"))
    config[CONFIG_KEY] = InputContract(kind="photo", size=contract.size, class_names=class_names).to_dict()
    artifacts.write_json(out / artifacts.CONFIG_FILE, config)
    for name in ("history.json", "metrics.json"):
        if (garment_run / name).is_file():
            shutil.copyfile(garment_run / name, out / name)
    artifacts.write_json(out / artifacts.CATEGORIES_FILE, record)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _imagenet_top_record(weights: str | os.PathLike | None) -> dict | None:
    """What the ImageNet side's top blocks are: None, as pretrained; else the weights file and the
    record ``distil.py`` wrote beside it."""
    if weights is None:
        return None
    from apparel.store.distil import RECORD_FILE

    record = Path(weights).with_name(RECORD_FILE)
    return {"weights": str(weights),
            **(json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {})}
