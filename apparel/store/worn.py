"""Things as worn: crops of Clothing Co-Parsing's street photos by their per-pixel labels, each
with the Shopify category of its label, and patches of street with nothing worn in them (not a
product at all). The store model's only photos of belts, sunglasses, socks, ties, watches and
jewellery, so the held-out photos' are measured on; the garment head learns from the other photos'
garments and bags (``training_set.WORN_CLASSES``).

Each thing can come on three backdrops (``WornCrop.backdrop``):

- ``street``: cropped from the photo with what was around it;
- ``cut out`` (``cut_outs``): its own pixels (its label's mask) alone on a white square, as a
  catalogue shows a bag, a belt or a shoe; measured on, never trained on (a head that saw only
  its bags on white could learn that white means bag);
- ``worn on white`` (``worn_on_white``): the same crop with the street behind the person made
  white (every labelled pixel kept: skin, hair, the other clothes), as a store photographs a
  garment on a model in a studio: the kind of photo most of a fashion catalogue is. Measured on;
  a garment head can learn from the training side's too (``training_set``, tried and not shipped).

    >>> from apparel.store.worn import worn_crops
    >>> crop = next(worn_crops("../shared/datasets/clothing-co-parsing", held_out=True))
    >>> crop.label, crop.category, crop.image.size
    ('shoes', 'aa-8', (180, 96))
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Co-Parsing label → Shopify category (the deepest one the label tells). Labels that name no
# product (accessories, glasses of unknown kind, intimate, romper) are left out.
CATEGORIES = {
    "bag": "aa-5-4", "purse": "aa-5-4", "belt": "aa-2-6", "boots": "aa-8-3", "bra": "aa-1-6-3", "bracelet": "aa-6-3",
    "cardigan": "aa-1-13-3", "clogs": "aa-8", "coat": "aa-1-10-2", "dress": "aa-1-4", "earrings": "aa-6-6",
    "flats": "aa-8-9", "gloves": "aa-2-13", "hat": "aa-2-17", "heels": "aa-8-10", "hoodie": "aa-1-13-13",
    "jacket": "aa-1-10-2", "jeans": "aa-1-12-4", "jumper": "aa-1-13-12", "leggings": "aa-1-12-8", "loafers": "aa-8",
    "necklace": "aa-6-8", "pants": "aa-1-12", "pumps": "aa-8-10", "ring": "aa-6-9", "sandals": "aa-8-6",
    "scarf": "aa-2-26", "shirt": "aa-1-13-7", "shoes": "aa-8", "shorts": "aa-1-14", "skirt": "aa-1-15",
    "sneakers": "aa-8-8", "socks": "aa-1-18", "stockings": "aa-1-6-6", "suit": "aa-1-19", "sunglasses": "aa-2-27",
    "sweater": "aa-1-13-12", "sweatshirt": "aa-1-13-14", "swimwear": "aa-1-20", "t-shirt": "aa-1-13-8",
    "tie": "aa-2-23", "tights": "aa-1-6-6", "top": "aa-1-13", "vest": "aa-1-10-6", "wallet": "aa-5-5",
    "watch": "aa-6-11", "wedges": "aa-8", "blazer": "aa-1-10-2", "blouse": "aa-1-13-1", "bodysuit": "aa-1-13-2",
    "cape": "aa-1-10-2-3", "panties": "aa-1-6-11",
}
BACKGROUND = "background"
# What a store sells beside clothes: the ImageNet side's kind of product, reported on its own.
ACCESSORIES = {"bag", "purse", "belt", "sunglasses", "socks", "tie", "scarf", "watch", "necklace", "bracelet", "ring",
               "earrings", "gloves", "wallet"}
MIN_PIXELS = 400  # a watch or a ring is a few hundred pixels of a 550×830 photo
# Alone on white, anything smaller is a few strokes that no one could name.
CUTOUT_MIN_PIXELS = 1500
MIN_SIDE = 24
MARGIN = 0.1
PATCH = 160  # a corner of the street, when no labelled pixel is in it
HELD_OUT_EVERY = 5  # photo numbers divisible by 5 are measured on (benchmarks/worn_crops.py's split)
STREET, CUT_OUT, WORN_ON_WHITE = "street", "cut out", "worn on white"
NOTHING = 0  # the label of pixels that are none of the person's ("null")


@dataclass(frozen=True)
class WornCrop:
    image: object  # a PIL image
    label: str  # the Co-Parsing label, or "background"
    category: str | None  # its Shopify category id; None for background (not a product)
    photo: str  # the photo's number
    backdrop: str = STREET  # STREET, CUT_OUT or WORN_ON_WHITE (the module docstring)


def worn_crops(root: str | os.PathLike, held_out: bool = True, cut_outs: bool = False,
               worn_on_white: bool = False) -> Iterator[WornCrop]:
    """Every labelled thing of the held-out photos (or of the others), then a corner of street
    where one holds nothing labelled, photo by photo; with ``cut_outs``, each thing large enough
    also alone on white, and with ``worn_on_white`` its crop with the street made white, right
    after its crop (see the module docstring): one read of each photo."""
    import scipy.io
    from PIL import Image

    root = Path(root)
    names = [str(item[0]) for item in scipy.io.loadmat(root / "label_list.mat")["label_list"][0]]
    for mat in sorted((root / "annotations" / "pixel-level").glob("*.mat")):
        if (int(mat.stem) % HELD_OUT_EVERY == 0) != held_out:
            continue
        labels = scipy.io.loadmat(mat)["groundtruth"]
        photo = Image.open(root / "photos" / f"{mat.stem}.jpg").convert("RGB")
        pixels = np.asarray(photo)
        studio = None  # the photo with the street made white, made when first needed
        for index in np.unique(labels):
            category = CATEGORIES.get(names[index])
            if category is None:
                continue
            mask = labels == index
            rows, cols = np.nonzero(mask)
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if len(rows) < MIN_PIXELS or min(bottom - top, right - left) < MIN_SIDE:
                continue
            box = margin_box(top, bottom, left, right, photo.height, photo.width)
            yield WornCrop(photo.crop(box), names[index], category, mat.stem)
            if cut_outs and len(rows) >= CUTOUT_MIN_PIXELS:
                yield WornCrop(cut_out(pixels, mask, box), names[index], category, mat.stem, CUT_OUT)
            if worn_on_white:
                if studio is None:
                    studio = Image.fromarray(np.where((labels == NOTHING)[..., None], 255, pixels).astype(np.uint8))
                yield WornCrop(studio.crop(box), names[index], category, mat.stem, WORN_ON_WHITE)
        height, width = labels.shape
        for y, x in ((0, 0), (0, width - PATCH), (height - PATCH, 0), (height - PATCH, width - PATCH)):
            if (labels[y : y + PATCH, x : x + PATCH] == 0).mean() > 0.98:
                yield WornCrop(photo.crop((x, y, x + PATCH, y + PATCH)), BACKGROUND, None, mat.stem)
                break


def margin_box(top: int, bottom: int, left: int, right: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the box of a thing's pixels with a tenth of its size around it
    (``MARGIN``), within a photo of ``height``×``width``: how a thing is framed, worn or on white."""
    dy, dx = int(MARGIN * (bottom - top)), int(MARGIN * (right - left))
    return max(0, left - dx), max(0, top - dy), min(width, right + dx), min(height, bottom + dy)


def cut_out(photo: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]):
    """The masked pixels of ``photo`` (H×W×3) inside ``box``, centred on a white square (an image)."""
    from PIL import Image

    left, top, right, bottom = box
    pixels = np.where(mask[top:bottom, left:right, None], photo[top:bottom, left:right], 255)
    side = max(bottom - top, right - left)
    square = np.full((side, side, 3), 255, dtype=np.uint8)
    y, x = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    square[y : y + bottom - top, x : x + right - left] = pixels
    return Image.fromarray(square)
