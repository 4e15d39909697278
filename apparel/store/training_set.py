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
  "Other" or "Skip" fit no class and are left out;
- Clothing Co-Parsing adds garments as worn and bags as carried: crops of its training-side
  photos (those not held out by ``worn.HELD_OUT_EVERY``) by their per-pixel labels, written as JPEG
  files under ``out`` (they are cut from the photos, so they cannot be links). Catalogue photos
  are often worn by a model; with these crops the store model is right more often on every
  validation set (docs/store-model.md).
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from pathlib import Path

SMALL = "clothing-dataset-small"
EXTRA = "clothing-dataset-extra"
CO_PARSING = "clothing-co-parsing"
# clothing-dataset-extra's labels as class names (clothing-dataset-small's spelling for its ten).
EXTRA_CLASSES = {
    "T-Shirt": "t-shirt", "Shoes": "shoes", "Pants": "pants", "Polo": "polo", "Undershirt": "undershirt",
    "Longsleeve": "longsleeve", "Blazer": "blazer", "Hoodie": "hoodie", "Outwear": "outwear", "Body": "body",
    "Dress": "dress", "Shorts": "shorts", "Top": "top", "Shirt": "shirt", "Blouse": "blouse", "Hat": "hat",
    "Skirt": "skirt",
}
VALIDATION_EVERY = 5
LINK_RECORD = "link.json"  # the options a folder was linked with
# Clothing Co-Parsing label → garment class, for the crops of worn garments. Bags and purses are a
# class of their own: without one, the head could only call a carried bag one of the clothes around
# it. Labels of other things the head has no class for (belts, socks…: the ImageNet side's) and of
# unclear kind are left out.
WORN_CLASSES = {
    "bag": "bag", "purse": "bag",
    "dress": "dress", "hat": "hat", "sweater": "longsleeve", "sweatshirt": "longsleeve", "jumper": "longsleeve",
    "cardigan": "longsleeve", "hoodie": "hoodie", "coat": "outwear", "jacket": "outwear", "blazer": "blazer",
    "pants": "pants", "jeans": "pants", "leggings": "pants", "shirt": "shirt", "blouse": "blouse", "top": "top",
    "shoes": "shoes", "boots": "shoes", "sneakers": "shoes", "sandals": "shoes", "heels": "shoes", "flats": "shoes",
    "loafers": "shoes", "pumps": "shoes", "wedges": "shoes", "clogs": "shoes", "shorts": "shorts", "skirt": "skirt",
    "t-shirt": "t-shirt",
}
# Tried, not the shipped recipe (docs/store-model.md): the worn things the head has no class for
# (suits, stockings, scarves, belts, socks, jewellery…) as one class, ``other-apparel``, which names
# no category but the vertical (classes.csv), so that the head can say "none of mine".
OTHER_APPAREL = "other-apparel"
OTHER_LABELS = ("suit", "vest", "cape", "stockings", "tights", "socks", "scarf", "belt", "gloves", "tie", "wallet",
                "bracelet", "necklace", "earrings", "ring", "watch", "sunglasses")
# Smaller crops show too little of a garment to learn from.
WORN_MIN_AREA = 4000
WORN_MIN_SIDE = 48


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


def write_worn_crops(datasets: str | os.PathLike, out: str | os.PathLike, worn_on_white: bool = False,
                     other_apparel: bool = False) -> dict[str, int]:
    """Write the worn-garment crops of Clothing Co-Parsing's training-side photos into
    ``out/train/<class>/``; returns the count per class. A crop already written is kept.

    Two ways were tried and are not the shipped recipe (docs/store-model.md): ``worn_on_white``,
    each crop again with the street made white (``worn.WORN_ON_WHITE``, as a store photographs a
    garment on a model), and ``other_apparel``, the crops of ``OTHER_LABELS`` as one class. Each
    made the head more often exact and, at the thresholds chosen on validation, more often wrong."""
    from apparel.store.worn import WORN_ON_WHITE, worn_crops

    classes = {**WORN_CLASSES, **({label: OTHER_APPAREL for label in OTHER_LABELS} if other_apparel else {})}
    counts: dict[str, int] = {}
    for crop in worn_crops(Path(datasets) / CO_PARSING, held_out=False, worn_on_white=worn_on_white):
        name = classes.get(crop.label)
        width, height = crop.image.size
        if name is None or width * height < WORN_MIN_AREA or min(width, height) < WORN_MIN_SIDE:
            continue
        backdrop = "-white" if crop.backdrop == WORN_ON_WHITE else ""
        path = Path(out) / "train" / name / f"ccp-{crop.photo}-{crop.label}{backdrop}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            crop.image.save(path, quality=92)
        counts[name] = counts.get(name, 0) + 1
    return counts


def link_training_set(datasets: str | os.PathLike, out: str | os.PathLike, worn_on_white: bool = False,
                      other_apparel: bool = False) -> dict[str, dict[str, int]]:
    """Link every labelled garment photo into ``out/{train,validation}/<class>/`` and write the
    worn crops beside them (``write_worn_crops``, with its two options); returns the counts per
    split and class. Rerunning replaces nothing that is already there, so a folder made with other
    options is refused (its crops would be mixed in): ``out/link.json`` records them."""
    datasets, out = Path(datasets).resolve(), Path(out)
    if not (datasets / SMALL / "train").is_dir() or not (datasets / EXTRA / "labels.csv").is_file():
        raise ValueError(f"datasets: {datasets} needs {SMALL}/train and {EXTRA}/labels.csv; "
                         "give the folder that holds both data sets")
    options = {"worn_on_white": worn_on_white, "other_apparel": other_apparel}
    record = out / LINK_RECORD
    # A folder linked before options were recorded was linked without them.
    linked = (json.loads(record.read_text(encoding="utf-8")) if record.is_file()
              else {key: False for key in options} if (out / "train").is_dir() else options)
    if linked != options:
        raise ValueError(f"out: {out} was linked with other options ({json.dumps(linked)}); give a fresh folder")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(options) + "\n", encoding="utf-8")
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
    for name, count in write_worn_crops(datasets, out, worn_on_white, other_apparel).items():
        counts["train"][name] = counts["train"].get(name, 0) + count
    return counts
