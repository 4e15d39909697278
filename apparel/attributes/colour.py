"""The product's colour from its photo, as a value of Shopify's ``color`` attribute.

    >>> import numpy as np
    >>> from apparel.attributes.colour import product_colour
    >>> photo = np.full((224, 224, 3), 255, np.uint8)
    >>> photo[40:190, 60:165] = (25, 35, 75)          # a navy garment on a white sweep
    >>> colour = product_colour(photo)
    >>> colour.main.name, colour.main.gid
    ('Navy', 'gid://shopify/TaxonomyValue/15')

Every product pixel (``product_pixels``) is named by the nearest reference colour in CIEDE2000;
the names' weighted shares give the main colour, a second one when it holds a good share too, and
``Multicolor`` when no colour dominates. ``docs/colour.md`` says why and how well.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apparel.attributes.colour_space import ciede2000, srgb_to_lab
from apparel.attributes.config import ColourConfig
from apparel.attributes.product_pixels import WORK_SIDE, padding_mask, product_weights, small_rgb, white_gain
from apparel.errors import ParameterError
from apparel.taxonomy import AttributeValue, Category, attribute, load_taxonomy
from apparel.taxonomy.decide import UNCERTAIN

ATTRIBUTE = "color"

# Reference points (sRGB) of the Shopify colours a photo can show. Several per name, because a name
# covers a region (light to dark blue, olive to mint green), chosen by eye and moved only on the
# tuning half of benchmarks/data/colour_labels.csv. Gold, Silver, Bronze, Rose gold and Clear are
# left out: a metal's sheen and a clear material photograph as greys, yellows and browns, and a
# garment named "Silver" when it is grey is worse than one named "Gray".
REFERENCES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "Black": ((18, 18, 20), (38, 38, 42), (45, 42, 40)),
    "White": ((250, 250, 250), (236, 236, 232), (242, 238, 226)),
    "Gray": ((80, 80, 82), (105, 105, 108), (135, 135, 135), (165, 165, 168), (200, 200, 200), (120, 115, 110)),
    "Navy": ((22, 30, 68), (36, 46, 92), (32, 38, 58), (45, 55, 85)),
    "Blue": ((40, 90, 200), (100, 150, 220), (155, 190, 230), (75, 110, 160), (60, 130, 200), (30, 60, 160),
             (110, 140, 180), (180, 195, 215)),
    "Green": ((40, 140, 60), (100, 170, 90), (85, 95, 50), (0, 128, 120), (150, 210, 170), (30, 70, 50),
              (130, 145, 110), (0, 100, 100), (20, 150, 150), (150, 160, 130), (110, 110, 70)),  # teals, sage, olive
    "Red": ((200, 30, 40), (130, 20, 35), (225, 60, 60), (100, 25, 35)),
    "Pink": ((240, 150, 180), (225, 70, 140), (248, 200, 210), (215, 125, 135), (200, 150, 160)),
    "Purple": ((110, 50, 140), (170, 140, 200), (80, 40, 90), (150, 80, 160)),
    "Orange": ((240, 120, 30), (250, 150, 80), (230, 90, 40)),
    "Yellow": ((250, 220, 40), (220, 180, 50), (250, 240, 150)),
    "Beige": ((220, 200, 170), (200, 180, 140), (235, 222, 200), (190, 175, 155)),
    "Brown": ((120, 80, 50), (80, 55, 35), (160, 110, 70), (60, 42, 32)),
}
MULTICOLOR = "Multicolor"
# Raised whenever a photo's colour would come out otherwise (a reference colour, a rule): a
# catalog's cache keeps each photo's colour under it, and an older one is read again.
NAMING_VERSION = 4
DEFAULT_CONFIG = ColourConfig()  # built once: checking a config costs as much as naming a photo


@dataclass(frozen=True)
class ProductColour:
    """A photo's colour: the main value, a second one or ``None``, and how sure."""

    main: AttributeValue  # a value of Shopify's color attribute (Multicolor when none dominates)
    second: AttributeValue | None  # the next colour when it holds ≥ the second-colour share
    confidence: float  # the main colour's share of the product's pixels (Multicolor: 1 − the top share)
    shares: dict[str, float]  # colour name → share of the product's (weighted) pixels, largest first

    def to_dict(self) -> dict:
        """The JSON form ``predict --json`` and serve give."""
        return {**self.main.to_dict(), "confidence": round(self.confidence, 3),
                "second": self.second.to_dict() if self.second else None}

    @classmethod
    def from_dict(cls, values: dict) -> "ProductColour":
        """The colour ``to_dict`` wrote (what a batch's rows and a catalog's cache keep; the shares
        are not in it)."""
        colours, second = attribute(ATTRIBUTE), values.get("second")
        return cls(colours.value(values["name"]), colours.value(second["name"]) if second else None,
                   float(values["confidence"]), {})


def has_colour(category: Category | str | None) -> bool:
    """Whether Shopify's node for ``category`` (a ``Category``, or its id, GID or path) takes a
    colour (every Apparel & Accessories one does); None, no category, takes none."""
    if category is None:
        return False
    if isinstance(category, str):
        category = load_taxonomy().get(category)
    if not isinstance(category, Category):
        raise ParameterError(f"{{}} must be a Category or its id, GID or path, got {type(category).__name__} "
                             f"{category!r:.60}", "category")
    return ATTRIBUTE in category.attributes


# Raised whenever gets_colour gives a colour to other products (2: uncertain ones too): a batch
# folder records it, so that a resume never mixes rows of two rules.
COLOUR_RULE = 2


def gets_colour(category: Category | None, reason: str | None) -> bool:
    """Whether a product's answer carries its photo's colour: when its category's node takes one,
    and when it was left uncertain, a product of the store whose kind alone was unsure (every node of
    Apparel & Accessories and of Luggage & Bags takes a colour, their roots too). Not when it is
    outside the vertical (a perfume, a street) or its node takes none (a gift card)."""
    return has_colour(category) if category is not None else reason == UNCERTAIN


def photo_attributes(photos: np.ndarray, categories: list[dict | None]) -> list[dict]:
    """For each photo (N×H×W×3, the model's inputs, 0–255) and its category (``CategoryDecision.to_dict``,
    or None), the attribute fields to add to its answer: ``{"color": …}`` when ``gets_colour``,
    else ``{}``."""
    taxonomy = load_taxonomy()
    fields = []
    for photo, category in zip(photos, categories, strict=True):
        node = taxonomy.get(category["id"]) if category and category.get("id") else None
        wanted = category is not None and gets_colour(node, category.get("reason"))
        fields.append({"color": product_colour(_input_bytes(photo)).to_dict()} if wanted else {})
    return fields


def _input_bytes(photo: np.ndarray) -> np.ndarray:
    """A photo model's input as bytes: its values are 0–255 whatever their type (the server's are
    float32), so a nearly black photo, every value 0 or 1, is not taken for a 0–1 photo."""
    photo = np.asarray(photo)
    if photo.dtype == np.uint8:
        return photo
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def product_colour(photo: np.ndarray, config: ColourConfig | None = None) -> ProductColour:
    """The colour of the product in ``photo`` (H×W×3 RGB, at least 2 pixels a side: the photo
    model's padded 224×224 input will do); ``config``'s thresholds, or the tuned defaults.

    Pixel values follow the models' rule: ``uint8`` is 0–255; any other type is 0–255 when a value
    is above 1, else 0–1. A photo as read from a file is ``uint8``; give a nearly black photo (every
    value 0 or 1) as ``uint8``, or as floats it is read as 0–1, 255 times brighter."""
    config = config or DEFAULT_CONFIG
    if not isinstance(config, ColourConfig):
        raise ParameterError(f"{{}} must be a ColourConfig, got {type(config).__name__}", "config")
    if isinstance(photo, (str, bytes, bytearray, os.PathLike)):
        raise ParameterError("{} is the photo's pixels, not its file: read it first (predictor.contract.decode(path), "
                             "or PIL.Image.open(path).convert(\"RGB\"))", "photo")
    second_share, multicolor_share = config.second_share, config.multicolor_share
    rgb = small_rgb(photo, WORK_SIDE)
    padding = padding_mask(rgb)
    # Which pixels are the product is read from the photo as it is (its pure whites are the padding's
    # and the studio's); their names from the photo brightened to a white point.
    weights = product_weights(srgb_to_lab(rgb), padding, config)
    names = name_pixels(rgb, white_gain(rgb, padding, config.white_percentile, config.max_gain))
    totals = np.bincount(names.ravel(), weights=weights.ravel(), minlength=len(REFERENCES))
    order = np.argsort(-totals)
    shares = totals[order] / max(totals.sum(), 1e-9)
    colour_names = list(REFERENCES)
    ranked = {colour_names[index]: round(float(share), 4) for index, share in zip(order, shares) if share > 0}
    values = attribute(ATTRIBUTE)
    if shares[0] < multicolor_share and shares[2] >= second_share * shares[0]:
        return ProductColour(values.value(MULTICOLOR), None, float(1 - shares[0]), ranked)
    second = values.value(colour_names[order[1]]) if shares[1] >= second_share else None
    return ProductColour(values.value(colour_names[order[0]]), second, float(shares[0]), ranked)


def name_pixels(rgb: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """The index (in ``REFERENCES``' order) of each sRGB pixel's colour name (values 0–255, the
    last axis the channels), each channel first scaled by ``gain`` (one factor or three:
    ``white_gain``'s brightening) and clipped to 255."""
    rgb = np.asarray(rgb)
    scale = np.broadcast_to(np.asarray(1.0 if gain is None else gain, np.float32), (3,))
    if rgb.dtype == np.uint8:  # 256 levels a channel: scale and cut the levels, not the pixels
        cells = _cells(np.clip(np.arange(256, dtype=np.float32)[:, None] * scale, 0, 255))
        red, green, blue = cells[rgb[..., 0], 0], cells[rgb[..., 1], 1], cells[rgb[..., 2], 2]
    else:
        cells = _cells(np.clip(rgb * scale, 0, 255))
        red, green, blue = cells[..., 0], cells[..., 1], cells[..., 2]
    side = 256 // _CELL  # one index into the flat table: a third of the cost of three
    return _name_table().ravel()[(red * side + green) * side + blue]


def _cells(rgb: np.ndarray) -> np.ndarray:
    """The naming table's cell of each channel value (0–255)."""
    return np.clip(rgb // _CELL, 0, 256 // _CELL - 1).astype(np.intp)


# The naming table's cells are 8 sRGB levels wide: a 32³ table, after which naming a photo is a
# lookup. Computing it takes about a second (CIEDE2000 from every cell to every reference colour),
# which every cold `apparel predict --json`, catalog, batch worker and server would pay: it ships
# beside this file (``colour_names.npz``, 3 KB, with the references it was computed from) and is
# computed only when those are not today's ``REFERENCES`` (``make colour-table`` writes it again;
# a test holds the two equal).
_CELL = 8
_TABLE_FILE = Path(__file__).with_name("colour_names.npz")
# functools.cache alone lets threads that name their first photos together each compute the table:
# a fresh server's first 16 concurrent uploads, each on a worker thread, answered nothing for 4 s on
# two cores. The lock makes them wait for one computation.
_NAME_TABLE_LOCK = threading.Lock()


def prepare_colour_naming() -> None:
    """Load the colour naming table now (computing it, about a second, if the shipped one is not of
    today's reference colours) rather than at the first photo, as a server does before it takes
    traffic.

    >>> prepare_colour_naming()
    """
    _name_table()


def _name_table() -> np.ndarray:
    with _NAME_TABLE_LOCK:
        return _loaded_name_table()


def _reference_rows() -> np.ndarray:
    """Every reference colour as (index of its name, red, green, blue): what the table is of."""
    return np.array([(index, *rgb) for index, points in enumerate(REFERENCES.values()) for rgb in points],
                    dtype=np.int64)


@functools.cache
def _loaded_name_table() -> np.ndarray:
    try:
        with np.load(_TABLE_FILE, allow_pickle=False) as shipped:
            table = shipped["table"]
            if (shipped["cell"].shape == () and int(shipped["cell"]) == _CELL
                    and np.array_equal(shipped["references"], _reference_rows())
                    and table.shape == (256 // _CELL,) * 3 and table.dtype == np.uint8
                    and int(table.max()) < len(REFERENCES)):
                return table
    # Missing, cut short, a byte flipped (zipfile, zlib and numpy each raise their own): computed,
    # as it would be without the file, rather than every photo failing.
    except Exception:  # noqa: BLE001
        pass
    return computed_name_table()


def computed_name_table() -> np.ndarray:
    """Each 8-level sRGB cell's colour name (index in ``REFERENCES``' order): the nearest reference
    colour to the cell's centre in CIEDE2000."""
    levels = np.arange(_CELL / 2, 256, _CELL)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    references = _reference_rows()
    reference_lab = srgb_to_lab(references[:, 1:].astype(np.float64))
    grid_lab = srgb_to_lab(grid)
    # In slices: CIEDE2000's intermediates over the whole grid at once would take some 400 MB,
    # more than a cold `apparel predict` needs for everything else.
    nearest = np.concatenate([ciede2000(grid_lab[start : start + 2048, None, :], reference_lab[None, :, :]).argmin(axis=1)
                              for start in range(0, len(grid_lab), 2048)])
    side = len(levels)
    return references[nearest, 0].reshape(side, side, side).astype(np.uint8)


def write_name_table(path: Path = _TABLE_FILE) -> Path:
    """Compute the naming table and write it (with the references and cell width it is of) to
    ``path``, atomically."""
    from apparel.artifacts import atomic_path

    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, table=computed_name_table(), references=_reference_rows(), cell=_CELL)
    return path
