"""The garment photos the store model's head learns from, as ``train/`` and ``validation/``
folders of class folders (what ``apparel train --images`` reads), linked, not copied, from the
data sets in ``../shared/datasets``.

    >>> from apparel.store.training_set import link_training_set
    >>> link_training_set("../shared/datasets", "runs/store-photos")["train"]["polo"]
    96

- clothing-dataset-small keeps its own ``train/`` and ``validation/`` split;
- clothing-dataset-extra adds its labels (polo, hoodie, blazer, blouse, top, undershirt, body and
  more of the ten). Its photos of one sender look alike, so a sender's photos stay on one side:
  senders whose CRC-32 is divisible by 5 are validation. Photos its contributors marked "Not sure",
  "Other" or "Skip" fit no class and are left out.
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path

SMALL = "clothing-dataset-small"
EXTRA = "clothing-dataset-extra"
# clothing-dataset-extra's labels as class names (clothing-dataset-small's spelling for its ten).
EXTRA_CLASSES = {
    "T-Shirt": "t-shirt", "Shoes": "shoes", "Pants": "pants", "Polo": "polo", "Undershirt": "undershirt",
    "Longsleeve": "longsleeve", "Blazer": "blazer", "Hoodie": "hoodie", "Outwear": "outwear", "Body": "body",
    "Dress": "dress", "Shorts": "shorts", "Top": "top", "Shirt": "shirt", "Blouse": "blouse", "Hat": "hat",
    "Skirt": "skirt",
}
VALIDATION_EVERY = 5


def extra_split(sender_id: str) -> str:
    """``validation`` or ``train`` for one sender of clothing-dataset-extra (stable across runs)."""
    return "validation" if zlib.crc32(sender_id.encode()) % VALIDATION_EVERY == 0 else "train"


def extra_photos(datasets: str | os.PathLike) -> list[tuple[Path, str, str]]:
    """(photo, class, split) of clothing-dataset-extra's photos that have a class."""
    root = Path(datasets) / EXTRA
    photos = []
    with open(root / "labels.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = EXTRA_CLASSES.get(row["label"])
            if name is not None:
                photos.append((root / "images" / f"{row['image']}.jpg", name, extra_split(row["sender_id"])))
    return photos


def link_training_set(datasets: str | os.PathLike, out: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Link every labelled garment photo into ``out/{train,validation}/<class>/``; returns the
    counts per split and class. Rerunning replaces nothing that is already linked."""
    datasets, out = Path(datasets).resolve(), Path(out)
    if not (datasets / SMALL / "train").is_dir() or not (datasets / EXTRA / "labels.csv").is_file():
        raise ValueError(f"datasets: {datasets} needs {SMALL}/train and {EXTRA}/labels.csv; "
                         "give the folder that holds both data sets")
    photos = [(photo, photo.parent.name, split)
              for split in ("train", "validation")
              for photo in sorted((datasets / SMALL / split).glob("*/*.jpg"))]
    photos += extra_photos(datasets)
    counts: dict[str, dict[str, int]] = {"train": {}, "validation": {}}
    for photo, name, split in photos:
        link = out / split / name / photo.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(photo)
        counts[split][name] = counts[split].get(name, 0) + 1
    return counts
