"""Which pixels of a product photo are the product: not the background, not a model's skin.

    >>> import numpy as np
    >>> from apparel.attributes.colour_space import srgb_to_lab
    >>> from apparel.attributes.product_pixels import product_weights, small_rgb
    >>> photo = np.full((224, 224, 3), 255, np.uint8); photo[60:170, 70:150] = (20, 40, 160)
    >>> weights = product_weights(srgb_to_lab(small_rgb(photo)))
    >>> bool(weights[28, 28] > 0), float(weights[2, 2])
    (True, 0.0)

Three rules, each cheap enough for the prediction loop (about 56×56 pixels):

- **Background from the border.** A product photo's border is background (the white studio sweep,
  a floor, a bed, the photo model's white padding). The border's colours that cover a good part of
  it are the background's; pixels near one of them (by a distance that grows with how uneven the
  border is) and connected to the border are background. A garment that touches the border on one
  side is not a background colour, because it covers little of the border.
- **Skin**, by colour: the hue, chroma and lightness box that holds most skin pixels of Clothing
  Co-Parsing's labelled photos (``docs/colour.md`` gives the figures). Skin-coloured pixels are
  left out only when they are a minority of the foreground: a beige or pink product is mostly
  "skin-coloured", and then its pixels stay.
- **The centre counts more.** The product is centred in catalogue photos; a model's hair, face,
  shoes and other garments are towards the edges.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from apparel.attributes.colour_space import lch
from apparel.attributes.config import ColourConfig

# The side the photo is reduced to before anything else: enough pixels for a colour histogram,
# few enough for the colour step to cost a small part of a prediction.
WORK_SIDE = 56
# Four-connected neighbours: scipy's default for labelling, dilating and eroding, given once rather
# than built again at each call.
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def small_rgb(photo: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``photo`` (H×W×3, uint8 or float 0–255) reduced to at most ``side`` pixels a side (box
    filter, Pillow's C code: the 224-pixel model input in a tenth of a millisecond), as uint8."""
    from apparel.inference.inputs import photo_pixels

    array = np.asarray(photo)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 2:
        raise ValueError(f"a colour photo is an H×W×3 array at least 2 pixels a side, got shape {array.shape}; "
                         "pass the RGB photo")
    if array.dtype != np.uint8:  # the models' pixel-scale rule: 0–1 floats are 0–1, NaN is refused
        array = np.rint(photo_pixels(array)).astype(np.uint8)
    height, width = array.shape[:2]
    factor = max(height, width) / side
    image = Image.fromarray(array)
    if factor > 1:
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=1.0)
    return np.asarray(image)


def white_gain(rgb: np.ndarray, padding: np.ndarray | None = None, percentile: float = 90.0,
               max_gain: float = 1.3) -> np.ndarray:
    """Each channel's scale (3 float32s) that makes the photo's brightest pixels (its ``percentile``,
    the padding left out) white, by at most ``max_gain``: a white shirt photographed in a dim room
    under a warm lamp is white again, and a studio photo, already white, is left as it was."""
    rgb = np.asarray(rgb)
    pixels = rgb[~padding] if padding is not None and not padding.all() else rgb.reshape(-1, 3)
    bright = _percentile(pixels, percentile)
    return np.clip(250.0 / np.maximum(bright, 1.0), 1.0, max_gain)


def _percentile(pixels: np.ndarray, percentile: float) -> np.ndarray:
    """Each channel's ``percentile`` of ``pixels`` (N×3), as float32: ``np.percentile``'s linear rule
    on the float32 values with a Python-number percentile, to the bit (a test holds it to that),
    from one partition, at a third of its cost on a photo's few thousand pixels."""
    position = (len(pixels) - 1) * (percentile / 100)
    low = int(position)
    high = min(low + 1, len(pixels) - 1)
    ordered = np.partition(pixels, [low, high], axis=0)
    below, above = ordered[low].astype(np.float32), ordered[high].astype(np.float32)
    # A Python float, as numpy's own for a scalar percentile: the arithmetic stays float32, and it
    # interpolates from the nearer end.
    fraction = position - low
    if fraction >= 0.5:
        return above - (above - below) * (1 - fraction)
    return below + (above - below) * fraction


def background_mask(lab: np.ndarray, padding: np.ndarray | None = None, config: ColourConfig = ColourConfig(),
                    border: int = 2) -> np.ndarray:
    """True where ``lab`` is background: near a colour that covers ≥ ``config.min_border_share`` of
    the photo's border and connected to it. A flat border gets a distance of
    ``config.background_tolerance``; an uneven one (a rug) ``config.background_spread`` times its
    spread, at most ``config.max_background_tolerance``; a studio's white sweep always the flat
    distance, however uneven its border looks. ``padding`` marks the white bars the photo
    model's square input adds: they are background, and the photo's own border is the ring inside
    them."""
    from scipy import ndimage  # here: importing it would double the time `apparel --help` takes

    min_border_share, tolerance = config.min_border_share, config.background_tolerance
    spread_factor, max_tolerance = config.background_spread, config.max_background_tolerance

    height, width = lab.shape[:2]
    padding = np.zeros((height, width), bool) if padding is None else padding
    if padding.any():  # and the column where the resize blended the padding into the photo
        padding = ndimage.binary_dilation(padding, _CROSS)
    top, bottom, left, right = _inside(padding)
    edge = np.zeros((height, width), bool)
    edge[top:bottom, left:right] = True
    edge[top + border:bottom - border, left + border:right - border] = False
    near = padding.copy()
    ring = lab[edge & ~padding]
    modes = _border_modes(ring, min_border_share) if len(ring) else []
    # On a studio's white sweep (pure white, which merges with the padding, or a white holding half
    # the border) the other colours at the border are the product touching the frame: a model cut
    # off at the knees, a coat as tall as the photo. They are not background. On the labelled photos
    # (floors, beds, walls) the rule changes no answer.
    pure_white = np.mean(ring[:, 0] >= 99.5) >= min_border_share if len(ring) else False
    sweep = [(centre, spread, share) for centre, spread, share in modes
             if _is_white(centre) and (pure_white or share >= 0.5)]
    pixels = lab.reshape(-1, 3)
    for centre, spread, _ in sweep or modes:
        distance = np.sqrt(_squared_distances(pixels, centre)).reshape(height, width)
        # A sweep's spread is not a rug's pattern but JPEG noise, light falling off and the blend at
        # the product's edge, larger still in a small thumbnail: times 2.5 it reached the lit parts
        # of a white or pale garment (a falling-off sweep comes out as several modes, each flat).
        near |= distance < (tolerance if sweep else min(max(tolerance, spread_factor * spread), max_tolerance))
    labels, count = ndimage.label(near, _CROSS)
    touching = np.zeros(count + 1, bool)
    touching[labels[(edge | padding) & near]] = True
    touching[0] = False
    return touching[labels]


def _is_white(lab: np.ndarray) -> bool:
    """A studio's white (or very light grey) sweep: light and nearly colourless."""
    return bool(lab[0] >= 90 and np.hypot(lab[1], lab[2]) <= 6)


def padding_mask(rgb: np.ndarray, max_white_inside: float = 0.1) -> np.ndarray:
    """The pure-white bars on two opposite sides that padding a photo to a square adds. None when the
    photo fills the square, when pure white makes bars on all four sides or much of the picture
    between them (``max_white_inside``): then it is a studio's white background, which the border
    rule handles as it is."""
    white = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) >= 254.5
    mask = np.zeros(white.shape, bool)
    axes = 0
    for axis in (0, 1):
        full = white.all(axis=axis)  # columns (axis 0) or rows (axis 1) that are all pure white
        lead = int(np.argmin(full)) if not full.all() else 0
        trail = int(np.argmin(full[::-1])) if not full.all() else 0
        if lead and trail and abs(lead - trail) <= 2:
            axes += 1
            if axis == 0:
                mask[:, :lead], mask[:, len(full) - trail:] = True, True
            else:
                mask[:lead], mask[len(full) - trail:] = True, True
    if axes != 1 or white[~mask].mean() > max_white_inside:
        return np.zeros(white.shape, bool)
    return mask


def _inside(padding: np.ndarray) -> tuple[int, int, int, int]:
    """The box (top, bottom, left, right) the padding leaves."""
    rows, columns = np.flatnonzero(~padding.all(axis=1)), np.flatnonzero(~padding.all(axis=0))
    if len(rows) == 0 or len(columns) == 0:
        return 0, padding.shape[0], 0, padding.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _squared_distances(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance of each pixel (N×3) to each centre (K×3 or 3), channel by channel: numpy's
    sum over an axis of three is several times slower than two additions."""
    difference = pixels[:, 0, None] - centres.reshape(-1, 3)[:, 0]
    total = difference * difference
    for channel in (1, 2):
        difference = pixels[:, channel, None] - centres.reshape(-1, 3)[:, channel]
        total += difference * difference
    return total if centres.ndim == 2 else total[:, 0]


def _border_modes(pixels: np.ndarray, min_share: float, clusters: int = 5,
                  rounds: int = 6) -> list[tuple[np.ndarray, float, float]]:
    """The border's main colours: k-means clusters (farthest-point start) holding ≥ ``min_share`` of
    its pixels, each as (mean, spread, share of the border)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    centres = [pixels[np.argmin(_squared_distances(pixels, np.median(pixels, axis=0)))]]
    nearest = _squared_distances(pixels, centres[0])
    while len(centres) < clusters and nearest.max() >= 64:  # the rest is within a flat background's noise
        centres.append(pixels[nearest.argmax()])
        nearest = np.minimum(nearest, _squared_distances(pixels, centres[-1]))
    centres = np.array(centres)
    count = len(centres)
    owner = None
    doubled = 2 * pixels
    for _ in range(rounds):
        # The nearest centre by |c|² − 2 p·c (a pixel's own |p|² is the same for every centre): one
        # product of small matrices instead of a difference per channel. Only an exact tie between
        # two centres can round the other way.
        previous, owner = owner, ((centres * centres).sum(axis=1) - doubled @ centres.T).argmin(axis=1)
        if previous is not None and np.array_equal(owner, previous):
            break  # the same owners give the same means: every further round is this one
        sizes = np.bincount(owner, minlength=count)
        # One bincount for the three channels: bin 3·cluster + channel, each summed in pixel order.
        sums = np.bincount((3 * owner[:, None] + np.arange(3)).ravel(), weights=pixels.ravel(),
                           minlength=3 * count).reshape(count, 3)
        centres = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centres)
    squared = _squared_distances(pixels, centres)[np.arange(len(pixels)), owner]
    spread = np.sqrt(np.bincount(owner, weights=squared, minlength=count) / np.maximum(sizes, 1))
    return [(centres[index], float(spread[index]), float(sizes[index] / len(pixels))) for index in range(count)
            if sizes[index] >= min_share * len(pixels)]


# Skin in CIELAB: warm hues (red to yellow), moderate chroma, mid to high lightness. Chosen on Clothing
# Co-Parsing's skin pixels against its garment pixels (benchmarks/colour.py --fit-skin), measured on
# the photos kept aside (--skin).
SKIN_HUE = (20.0, 75.0)
SKIN_CHROMA = (10.0, 45.0)
SKIN_LIGHTNESS = (20.0, 95.0)


def skin_mask(lab: np.ndarray) -> np.ndarray:
    """True where the pixel has the colour of skin."""
    lightness, chroma, hue = lch(lab)
    return ((hue >= SKIN_HUE[0]) & (hue <= SKIN_HUE[1]) & (chroma >= SKIN_CHROMA[0]) & (chroma <= SKIN_CHROMA[1])
            & (lightness >= SKIN_LIGHTNESS[0]) & (lightness <= SKIN_LIGHTNESS[1]))


@functools.lru_cache(maxsize=16)
def centre_weights(height: int, width: int, sigma: float = 0.35) -> np.ndarray:
    """A Gaussian bump over the photo, 1 at the centre; ``sigma`` is a fraction of each side (read
    only: one array per size, shared by every photo)."""
    rows = (np.arange(height) + 0.5) / height - 0.5
    columns = (np.arange(width) + 0.5) / width - 0.5
    weights = np.exp(-(rows[:, None] ** 2 + columns[None, :] ** 2) / (2 * sigma ** 2))
    weights.flags.writeable = False
    return weights


def product_weights(lab: np.ndarray, padding: np.ndarray | None = None,
                    config: ColourConfig = ColourConfig()) -> np.ndarray:
    """Each pixel's weight in the product's colour: 0 for background and (a minority of) skin,
    else the centre weight. When the background rule leaves almost nothing (a white product on
    white), every pixel counts."""
    height, width = lab.shape[:2]
    from scipy import ndimage

    weights = centre_weights(height, width, config.centre_sigma)
    foreground = ~background_mask(lab, padding, config)
    if foreground.mean() < config.min_foreground:
        return weights.copy()
    skin = np.zeros_like(foreground)
    skin[foreground] = skin_mask(lab[foreground])  # the hue's arctangent for the product's pixels only
    if (weights * skin).sum() < config.max_skin_share * (weights * foreground).sum():
        foreground &= ~skin
    # The ring of pixels along the background is a blend of the two (a black leg on white is grey
    # there); the inside is the product's colour.
    inside = ndimage.binary_erosion(foreground, _CROSS)
    return weights * (inside if inside.mean() >= config.min_foreground else foreground)
