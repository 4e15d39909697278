"""A photo as a store's small thumbnail: shrunk to fit a box (60×80 pixels is common) and saved as
a JPEG, what the catalogue benchmark measures and what the store model's ImageNet side learns to
read (``apparel.store.distil``).

    >>> from PIL import Image
    >>> from apparel.images.thumbnails import thumbnail_jpeg
    >>> data = thumbnail_jpeg(Image.new("RGB", (600, 800), "navy"), (60, 80))
    >>> Image.open(io.BytesIO(data)).size
    (60, 80)
"""

from __future__ import annotations

import io
import os

THUMBNAIL_QUALITY = 90  # a store's small JPEGs


def shrunk(image, box: tuple[int, int]):
    """``image`` (PIL) upright and as the models read it (transparency on white: ``on_white``),
    shrunk to fit ``box`` (width, height), its aspect kept (Lanczos)."""
    from PIL import Image, ImageOps

    from apparel.images.decode import on_white

    image = on_white(ImageOps.exif_transpose(image))
    image.thumbnail(box, Image.Resampling.LANCZOS)
    return image


def thumbnail_jpeg(image, box: tuple[int, int]) -> bytes:
    """``image`` (PIL) as a store's small thumbnail: ``shrunk`` to fit ``box``, a JPEG's bytes."""
    encoded = io.BytesIO()
    shrunk(image, box).save(encoded, "JPEG", quality=THUMBNAIL_QUALITY)
    return encoded.getvalue()


def thumbnail_of(photo, box: tuple[int, int]) -> bytes:
    """``thumbnail_jpeg`` of ``photo``: a path or a PIL image (a crop made in memory)."""
    from PIL import Image

    if isinstance(photo, (str, os.PathLike)):
        with Image.open(photo) as image:
            return thumbnail_jpeg(image, box)
    return thumbnail_jpeg(photo, box)
