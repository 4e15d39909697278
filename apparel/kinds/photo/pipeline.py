"""A product photo as a colour model's input: the whole photo, upright, on white, padded to a
square with white and resized to N×N RGB.

    >>> from apparel.kinds.photo.pipeline import photo_to_rgb
    >>> photo_to_rgb("shirt.jpg", 224).shape
    (224, 224, 3)

Padding rather than cropping keeps the ends of long garments (dresses, trousers, a pair of shoes
side by side) in the picture; white is the background of most product photos.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from apparel.images.decode import MAX_DECODE_BYTES, MAX_PIXELS, WORK_PIXELS, Source, on_white, open_image

# Bilinear with Pillow's reducing gap: within noise of Lanczos for a 224-pixel network input and
# about twice as fast on a 500-pixel photo.
RESAMPLE = Image.Resampling.BILINEAR


def photo_to_rgb(source: Source, size: int, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
    """uint8 (size, size, 3): ``source`` (a path, the bytes of an image file or a PIL image)
    composited on white, centred on a white square and resized.

    Raises ``ValueError`` with the reason when it is not a readable image.
    """
    return np.asarray(photo_rgb_steps(source, size, max_pixels, max_bytes)[-1][1], dtype=np.uint8)


def photo_rgb_steps(source: Source, size: int, max_pixels: int = MAX_PIXELS,
                    max_bytes: int = MAX_DECODE_BYTES) -> list[tuple[str, Image.Image]]:
    """Every named step of ``photo_to_rgb``, the last being its result: the photo as read,
    composited on white, padded to a white square, resized to ``size``×``size`` (a step with
    nothing to do passes its image on unchanged).

    >>> [name for name, image in photo_rgb_steps("shirt.jpg", 224)]
    ['original', 'on white', 'square', 'resized']
    """
    original = open_image(source, max_pixels, draft_size=(size, size), max_bytes=max_bytes)
    image = on_white(original)
    steps = [("original", original), ("on white", image)]
    # A long, thin photo (40000×3) would make a square of its longest side, gigapixels: it is
    # reduced first, so that the square stays within WORK_PIXELS.
    factor = math.ceil(max(image.size) / math.isqrt(WORK_PIXELS))
    if factor > 1:
        image = image.reduce(factor)
    side = max(image.size)
    if image.width != image.height:
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = square
    steps.append(("square", image))
    if side != size:
        image = image.resize((size, size), RESAMPLE, reducing_gap=2.0)
    steps.append(("resized", image))
    return steps
