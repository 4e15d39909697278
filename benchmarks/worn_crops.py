"""Garments as worn: crops of Clothing Co-Parsing's people, by their per-pixel labels, filed into
the ten classes of clothing-dataset-small.

    python worn_crops.py ../shared/datasets/clothing-co-parsing runs/worn-crops
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# Co-Parsing label -> clothing-dataset-small class. Labels with no counterpart (bags, belts,
# tops of unclear sleeve, swimwear…) are left out.
WORN_CLASSES = {
    "dress": "dress", "hat": "hat",
    "sweater": "longsleeve", "sweatshirt": "longsleeve", "hoodie": "longsleeve", "jumper": "longsleeve",
    "cardigan": "longsleeve",
    "coat": "outwear", "jacket": "outwear", "blazer": "outwear",
    "pants": "pants", "jeans": "pants",
    "shirt": "shirt", "blouse": "shirt",
    "shoes": "shoes", "boots": "shoes", "sneakers": "shoes", "sandals": "shoes", "heels": "shoes",
    "flats": "shoes", "loafers": "shoes", "pumps": "shoes", "wedges": "shoes", "clogs": "shoes",
    "shorts": "shorts", "skirt": "skirt", "t-shirt": "t-shirt",
}
MIN_PIXELS = 2000
MIN_SIDE = 48
MARGIN = 0.1
HELDOUT_EVERY = 5  # photo ids divisible by 5 are kept aside for measuring


def extract(root: Path, out: Path) -> dict:
    import scipy.io
    from PIL import Image

    names = [str(item[0]) for item in scipy.io.loadmat(root / "label_list.mat")["label_list"][0]]
    counts: dict = {}
    for mat in sorted((root / "annotations" / "pixel-level").glob("*.mat")):
        labels = scipy.io.loadmat(mat)["groundtruth"]
        photo = Image.open(root / "photos" / f"{mat.stem}.jpg").convert("RGB")
        split = "heldout" if int(mat.stem) % HELDOUT_EVERY == 0 else "train"
        for index in np.unique(labels):
            target = WORN_CLASSES.get(names[index])
            if target is None:
                continue
            rows, cols = np.nonzero(labels == index)
            if len(rows) < MIN_PIXELS:
                continue
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if min(bottom - top, right - left) < MIN_SIDE:
                continue
            dy, dx = int(MARGIN * (bottom - top)), int(MARGIN * (right - left))
            box = (max(0, left - dx), max(0, top - dy), min(photo.width, right + dx), min(photo.height, bottom + dy))
            folder = out / split / target
            folder.mkdir(parents=True, exist_ok=True)
            photo.crop(box).save(folder / f"{mat.stem}-{names[index]}.jpg", quality=92)
            counts[(split, target)] = counts.get((split, target), 0) + 1
    return counts


if __name__ == "__main__":
    result = extract(Path(sys.argv[1]), Path(sys.argv[2]))
    for key in sorted(result):
        print(*key, result[key])
