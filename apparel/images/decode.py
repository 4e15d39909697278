"""Decoding a photo file: any format and mode, upright, fully loaded, refused when it is not safe.

The lowest layer of the images stage: the photo pipeline (``images.photos``) and, for photo models,
the training data read photos through it, so it imports nothing of the package above ``data``.

    >>> from apparel.images.decode import open_image, on_white
    >>> on_white(open_image("shirt.png")).mode          # transparency composited on white
    'RGB'
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from apparel.data import IMAGE_SHAPE
from apparel.errors import SourceError

# A photo's declared width × height above this is refused before it is decoded (decompression
# bombs): 40 megapixels is above any phone camera's output and decodes in ~160 MB as RGBA.
MAX_PIXELS = 40_000_000
# Photos much larger than the target are decoded at a reduced JPEG scale (exact DCT scaling, so
# no detail the 28-pixel result could show is lost); this keeps a 12-megapixel photo fast.
DRAFT_SIZE = (8 * IMAGE_SHAPE[1], 8 * IMAGE_SHAPE[0])
# Modes that hold one channel: a 28×28 image in one of them is already a model input.
SINGLE_CHANNEL_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
# Everything Pillow raises for a file that is not an image, is truncated or is corrupt.
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
                IndexError, ZeroDivisionError, Image.DecompressionBombError)

Source = str | os.PathLike | bytes | Image.Image


# Pillow names a stream it could not read by its address; a reason names "the file" instead.
_STREAM_NAME = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")


def _reason(error: Exception) -> str:
    return _STREAM_NAME.sub("the file", str(error))


def describe(source: Source) -> str:
    """How error messages name a source: the path, or the size of the bytes."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return "<image>"


def open_image(source: Source, max_pixels: int = MAX_PIXELS, draft_size: tuple[int, int] = DRAFT_SIZE) -> Image.Image:
    """Decode ``source`` (a path, the bytes of a file, or a PIL image) upright and fully loaded.

    Raises ``SourceError`` (a ``ValueError``) naming the reason: not an image, truncated, too many pixels, missing.
    A large JPEG is decoded at a reduced scale, still at least ``draft_size`` (224 pixels) a side.

    >>> open_image("shirt.jpg").size
    (800, 1200)
    """
    name = describe(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise SourceError(name, "empty file, not an image")
            stream = io.BytesIO(source)
        else:
            stream = Path(source)
            if not stream.is_file():
                raise SourceError(str(stream), "file not found")
        try:
            with warnings.catch_warnings():
                # Our own limit below decides; Pillow's warning would only repeat it.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)
        except Image.DecompressionBombError as error:
            raise SourceError(name, f"too many pixels ({_reason(error)}); refused as a possible decompression bomb") from None
        except _READ_ERRORS as error:
            raise SourceError(name, f"not a readable image ({_reason(error)})") from None
    try:
        width, height = image.size
        if width * height > max_pixels:
            raise SourceError(
                name, f"too many pixels: {width}×{height}, over the limit of {max_pixels:,}; "
                "refused as a possible decompression bomb (make it smaller first)"
            )
        if width == 0 or height == 0:
            raise SourceError(name, f"image is empty ({width}×{height} pixels)")
        try:
            if image.format == "JPEG" and image is not source:
                image.draft(image.mode, draft_size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                # Animated GIF/WebP/PNG: the first frame, the one shown as the product shot, is read.
                image.load()
                return ImageOps.exif_transpose(image)  # always a new, loaded image
        except _READ_ERRORS as error:
            raise SourceError(name, f"not a readable image, truncated or corrupt ({_reason(error)})") from None
    finally:
        if image is not source:
            image.close()


def is_model_ready(image: Image.Image) -> bool:
    """True for a 28×28 single-channel image: already Fashion-MNIST-like, taken as it is."""
    return image.size[::-1] == IMAGE_SHAPE and image.mode in SINGLE_CHANNEL_MODES


def to_grayscale_array(image: Image.Image) -> np.ndarray:
    """A single-channel image as uint8, scaling 16- and 32-bit depths (Pillow's own ``convert("L")``
    clips them at 255 instead)."""
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    array = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        top = 1.0 if array.size and np.nanmax(array) <= 1.0 else 255.0
    else:
        top = 65535.0 if (image.mode.startswith("I;16") or array.max(initial=0) > 255) else 255.0
    return np.clip(np.rint(np.nan_to_num(array) * (255.0 / top)), 0, 255).astype(np.uint8)


def on_white(image: Image.Image) -> Image.Image:
    """RGB: transparency composited on white, palette/CMYK/YCbCr/16-bit converted."""
    if image.mode in SINGLE_CHANNEL_MODES:
        return Image.fromarray(to_grayscale_array(image), "L").convert("RGB")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
