"""Decoding a photo file: the accepted formats, any mode, upright, shrunk to what the models need,
refused when it is not safe.

The lowest layer of the images stage: each kind's pixel pipeline (``kinds/*/pipeline.py``) and the
photo training data read photos through it, so it imports nothing of the package but the foundations.

    >>> from apparel.images.decode import decode_cost, open_image, on_white
    >>> on_white(open_image("shirt.png")).mode          # transparency composited on white
    'RGB'
    >>> decode_cost(png_bytes)                          # bytes its decoding takes, from the header
    4000000

Every reason an image cannot be read, whatever a decoder raises for it, is a ``SourceError`` (a
``ValueError``), so one bad file is one refused image, never a stopped run or a server error.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageMode, ImageOps, UnidentifiedImageError

from apparel.kinds.fashion_mnist.data import IMAGE_SHAPE
from apparel.errors import ParameterError, SourceError

# The formats product photos come in. Pillow reads dozens more (PSD, EPS, FITS, DDS, …), each a
# parser that product photos never need and an attacker could aim at; they are not even tried.
# (A JPEG with a multi-picture extension, as phones write, opens as JPEG's subtype MPO.)
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"
# A photo's declared width × height above this is refused before it is decoded (decompression
# bombs): 40 megapixels is above any phone camera's output.
MAX_PIXELS = 40_000_000
# ... and a side longer than JPEG's largest (WebP's is 16,383). A decoder's cost grows with the rows
# as well as the pixels: a 75 KB PNG of 1×39,000,000 pixels, within MAX_PIXELS, took 1.8 s to open
# where a 6000×6000 one takes 0.06 s.
MAX_SIDE = 65_535
# The memory one image may take to decode: width × height × the bytes a pixel of its mode takes
# in Pillow, at the scale it is decoded at (a large JPEG is decoded reduced), plus what its decoder
# holds beside it (see ``decode_cost``). 256 MiB holds a 40-megapixel RGBA PNG or JPEG (4:2:0,
# progressive too) and a 16-megapixel WebP (libwebp keeps ~16 bytes a pixel: a 12-megapixel one
# measured 186 MB at peak), so a phone's or a store's largest photo passes; four decoding at once
# (the service's default) stay near 1 GB.
MAX_DECODE_BYTES = 256 * 1024**2
# Photos much larger than the target are decoded at a reduced JPEG scale (exact DCT scaling), and
# other formats reduced by whole factors right after decoding, both keeping at least this size, so
# no detail the 28-pixel result could show is lost; this keeps a 12-megapixel photo fast.
DRAFT_SIZE = (8 * IMAGE_SHAPE[1], 8 * IMAGE_SHAPE[0])
# ... and at most about this many pixels (an image of extreme aspect ratio is reduced further), so
# the pipeline's full-resolution steps (compositing, float conversion, trimming) stay small.
WORK_PIXELS = 4_000_000
# Rows converted at a time while reducing: a palette or 16-bit image is converted a band at a
# time, never whole at full resolution.
BAND_PIXELS = 1_000_000
# Modes that hold one channel: a 28×28 image in one of them is already a model input.
SINGLE_CHANNEL_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}

Source = str | os.PathLike | bytes | Image.Image


# Pillow names a stream it could not read by its address; a reason names "the file" instead.
_STREAM_NAME = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")


def _reason(error: Exception) -> str:
    return _STREAM_NAME.sub("the file", str(error)) or type(error).__name__


def describe(source: Source) -> str:
    """How error messages name a source: the path, or the size of the bytes."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return "<image>"


def bytes_per_pixel(mode: str) -> int:
    """The bytes one pixel of ``mode`` takes in Pillow's memory: every multi-band mode is stored
    in 4 bytes (RGB too), a single band in its own size (1 for L and P, 2 for I;16, 4 for I and F)."""
    description = ImageMode.getmode(mode)
    return 4 if len(description.bands) > 1 else np.dtype(description.typestr).itemsize


def _check_source_type(source) -> None:
    """Refuse what is none of the sources a photo can be given as (``pathlib`` would raise a bare
    TypeError about ``os.PathLike`` for a number, None or a list)."""
    if isinstance(source, (str, os.PathLike, bytes, bytearray, Image.Image)):
        return
    if isinstance(source, np.ndarray):
        raise ParameterError(f"{{}} is an array of pixels (shape {source.shape}), already decoded; give it to the "
                             "model as it is (predict_proba), or give the photo's path or file bytes here", "source")
    raise ParameterError(f"{{}} must be a photo's path, its file's bytes or a PIL image, got {type(source).__name__} "
                         f"{source!r:.60}", "source")


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    """``source`` opened in an accepted format, its header read and nothing decoded yet."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise SourceError(name, "empty file, not an image")
        stream = io.BytesIO(source)
    else:
        stream = Path(source)
        try:
            found = stream.is_file()
        except (OSError, ValueError) as error:  # a name too long, a NUL byte, a folder unreadable
            raise SourceError(name, f"cannot read the file ({getattr(error, 'strerror', None) or error})") from None
        if not found:
            raise SourceError(name, "a folder, not an image file" if stream.is_dir() else "file not found")
    try:
        with warnings.catch_warnings():
            # Our own limits below decide; Pillow's warning would only repeat them.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream, formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:  # Pillow's own, far larger limit: its numbers would contradict ours
        raise SourceError(name, "too many pixels, refused before decoding as a possible decompression bomb "
                                "(make it smaller first)") from None
    except UnidentifiedImageError:
        raise SourceError(name, f"not a readable image: not {ACCEPTED_NAMES}, or damaged") from None
    except Exception as error:  # noqa: BLE001 — a parser's own error (NotImplementedError, struct.error, …) for a bad header
        raise SourceError(name, f"not a readable image ({_reason(error)})") from None


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise SourceError(
            name, f"too many pixels: {width}×{height}, over the limit of {max_pixels:,}; "
            "refused as a possible decompression bomb (make it smaller first)"
        )
    if max(width, height) > MAX_SIDE:
        raise SourceError(name, f"a side of {max(width, height):,} pixels ({width}×{height}), over the limit of "
                                f"{MAX_SIDE:,}: no photo is that long; refused before decoding (make it smaller first)")
    if width == 0 or height == 0:
        raise SourceError(name, f"image is empty ({width}×{height} pixels)")


def _cost(image: Image.Image, declared: tuple[int, int]) -> int:
    """The bytes decoding ``image`` (opened, not loaded; drafted if a JPEG, ``declared`` its size
    before) takes: the image itself, and what its decoder holds beside it."""
    width, height = image.size
    if image.format == "WEBP":
        # Pillow decodes every WebP through libwebp's animation decoder, which keeps an RGBA
        # canvas and the previous one beside Pillow's own copy: 16 bytes a pixel, measured.
        return width * height * 16
    cost = width * height * bytes_per_pixel(image.mode)
    if image.info.get("progressive") and getattr(image, "layer", None):
        # libjpeg holds a progressive JPEG's DCT coefficients for the whole image, 2 bytes
        # each, at full scale whatever the draft: per component, its share of the pixels.
        most = max(h * v for _, h, v, _ in image.layer) or 1
        cost += declared[0] * declared[1] * 2 * sum(h * v for _, h, v, _ in image.layer) // most
    return cost


def _check_cost(image: Image.Image, declared: tuple[int, int], name: str, max_bytes: int) -> None:
    cost = _cost(image, declared)
    if cost > max_bytes:
        raise SourceError(
            name, f"decoding it takes {cost:,} bytes ({declared[0]}×{declared[1]} pixels, {image.format or 'image'} "
            f"of mode {image.mode}), over the limit of {max_bytes:,} bytes per image; refused (make it smaller first)"
        )


def decode_cost(source: Source, draft_size: tuple[int, int] = DRAFT_SIZE) -> int:
    """The bytes decoding ``source`` takes, read from its header alone: width × height × the bytes
    a pixel of its mode takes, at the scale ``open_image`` decodes it at, plus what the decoder
    holds beside it (a WebP's canvases, a progressive JPEG's coefficients). ``SourceError`` when
    even the header cannot be read. A caller with a budget for several images sums these first.

    >>> decode_cost(open("shirt.png", "rb").read())     # an 800×1200 RGB PNG
    3840000
    """
    if isinstance(source, Image.Image):
        return _cost(source, source.size)
    name = describe(source)
    with _open(source, name) as image:
        try:
            declared = image.size
            image.draft(image.mode, draft_size)
            return _cost(image, declared)
        except Exception as error:  # noqa: BLE001 — as in open_image
            raise SourceError(name, f"not a readable image ({_reason(error)})") from None


def open_image(source: Source, max_pixels: int = MAX_PIXELS, draft_size: tuple[int, int] = DRAFT_SIZE,
               max_bytes: int = MAX_DECODE_BYTES) -> Image.Image:
    """Decode ``source`` (a path, the bytes of a file, or a PIL image) upright, fully loaded and
    reduced to what the models need: a JPEG decoded at a reduced scale still at least ``draft_size``
    (224 pixels) a side, any image then reduced by a whole factor while it stays twice that, and
    further to at most about ``WORK_PIXELS``. The mode is one of L, LA, I, I;16, F, RGB, RGBA.

    Raises ``SourceError`` (a ``ValueError``) naming the reason: not an image in an accepted
    format, truncated or corrupt, too many pixels, over ``max_bytes`` decoded, missing.

    >>> open_image("shirt.png").size                   # a 2000×3000 photo
    (500, 750)
    """
    _check_source_type(source)
    name = describe(source)
    image = source if isinstance(source, Image.Image) else _open(source, name)
    try:
        _check_pixels(image, name, max_pixels)
        declared = image.size
        if image is not source:
            image.draft(image.mode, draft_size)  # a reduced DCT scale for a JPEG; nothing for others
        _check_cost(image, declared, name, max_bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Animated GIF/WebP/PNG: the first frame, the one shown as the product shot, is read.
            image.load()
        # Handed to the reduced copy below, which carries no metadata. Read once decoded: Pillow
        # turns a TIFF upright itself while decoding it, and drops its orientation.
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        reduced = _reduced(image, _factor(image.size, draft_size))
        if reduced is not image:
            reduced.getexif()[ExifTags.Base.Orientation] = orientation
        return ImageOps.exif_transpose(reduced)  # always a new image, the original's file closed below
    except SourceError:
        raise
    except Exception as error:  # noqa: BLE001 — decoders raise many types for a corrupt body (OSError, NotImplementedError, …)
        raise SourceError(name, f"not a readable image, truncated or corrupt ({_reason(error)})") from None
    finally:
        if image is not source:
            image.close()


def _factor(size: tuple[int, int], draft_size: tuple[int, int]) -> int:
    """The whole factor to reduce an image of ``size`` by: the largest that keeps twice
    ``draft_size``, and more where that still leaves over ``WORK_PIXELS``. Twice: averaging
    blocks of pixels blurs the garment's edges that trimming finds, where a JPEG's draft (exact
    DCT scaling) keeps them, so a margin is kept; photos up to twice that size are not reduced."""
    width, height = size
    keeping = min(width // max(1, 2 * draft_size[0]), height // max(1, 2 * draft_size[1]))
    bounding = math.ceil(math.sqrt(width * height / WORK_PIXELS))
    return max(1, keeping, bounding)


def _work_mode(image: Image.Image) -> str:
    """The mode the pipeline works in for ``image``'s: its own where the next steps take it,
    else the nearest of L, LA, I, F, I;16, RGB, RGBA (transparency kept as alpha)."""
    mode = image.mode
    if mode in ("L", "LA", "I", "F", "RGB", "RGBA") and not (mode == "RGB" and "transparency" in image.info):
        return mode
    if mode == "1":
        return "L"
    if mode.startswith("I;16"):
        return "I;16"
    if mode == "La":
        return "LA"
    if mode in ("PA", "RGBa") or "transparency" in image.info:
        return "RGBA"
    return "RGB"


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    """``image`` in its work mode, reduced ``factor`` times (box averaging): a band of rows at a
    time, so that converting a palette, 16-bit or premultiplied copy never takes the whole image
    at full resolution."""
    mode = _work_mode(image)
    if factor == 1 and mode == image.mode:
        return image
    # Pillow reduces 16-bit grayscale as 32-bit, then it goes back to 16 bits (the values fit).
    reducing_mode = "I" if mode == "I;16" else mode
    width, height = image.size
    band = factor * max(1, BAND_PIXELS // (width * factor))
    reduced = Image.new(reducing_mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, band):
        piece = image.crop((0, top, width, min(height, top + band)))
        if piece.mode != reducing_mode:
            piece = piece.convert(reducing_mode)
        reduced.paste(piece.reduce(factor) if factor > 1 else piece, (0, top // factor))
    return reduced.convert(mode) if mode != reducing_mode else reduced


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
