"""Turn a product photo of any size and colour into the model's 28×28 input, the way Fashion-MNIST
was made from Zalando's product photos (Xiao, Rasul, Vollgraf 2017, section 2):

1. trim the edges close to the corner colour (within 5 % of the maximum intensity),
2. resize the longest edge to 28,
3. sharpen with a Gaussian of radius and σ 1.0,
4. extend the short edge to 28, the garment centred,
5. negate the intensities,
6. convert to 8-bit grayscale,
7. stretch the levels: the background to 0, the brightest pixel to 255 (not in the paper, but
   every Fashion-MNIST image spans that range; it makes the garment's colour and the background's
   tone irrelevant).

    >>> from apparel.kinds.fashion_mnist.pipeline import photo_to_input, pipeline_steps
    >>> image = photo_to_input("shirt.jpg")          # float32 (28, 28) in [0, 1]
    >>> [name for name, _ in pipeline_steps("shirt.jpg")]
    ['original', 'on white', 'trimmed', 'resized', 'sharpened', 'padded', 'negated', 'grayscale', 'stretched']

Before step 1 the photo is read (JPEG, PNG, WebP, GIF, BMP or TIFF) in any mode (RGB, RGBA or LA
composited on white, palette, grayscale, CMYK, 16-bit), turned upright by its EXIF orientation and,
when large, reduced by a whole factor that keeps it at least 448 pixels a side (``decode``). An image
that is already 28×28 and single-channel is taken as it is: it is read as Fashion-MNIST-like (light
garment on black).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from apparel.kinds.fashion_mnist.data import IMAGE_SHAPE
from apparel.errors import SourceError
from apparel.images.decode import (  # re-exported: the pipeline's first step
    MAX_DECODE_BYTES,
    MAX_PIXELS,
    Source,
    describe,
    is_model_ready,
    on_white,
    open_image,
    to_grayscale_array,
)

SIZE = IMAGE_SHAPE[0]  # the square model input's side
# Step 1: a row or column is background when every pixel is within this fraction of the maximum
# intensity of the corner colour (root-mean-square distance over R, G, B, so 5 % is 12.75 levels).
TRIM_FUZZ = 0.05
# Step 2: antialiased (Lanczos) rather than the paper's plain subsampling. The paper started from
# Zalando's small thumbnails; from a full-size photo, skipping rows and columns would alias badly.
RESAMPLE = Image.Resampling.LANCZOS
# Step 3: the paper's Gaussian sharpening of radius and σ 1.0, as ImageMagick's `-sharpen 1x1`
# computes it: a 3×3 kernel (radius 1) of a σ = 1 Gaussian, negated, its centre set to twice the
# kernel's sum, normalised to sum 1.
# (Pillow's UnsharpMask has no radius: its σ = 1 blur spans about 7×7 pixels and sharpens harder.)
SHARPEN_RADIUS = 1
SHARPEN_SIGMA = 1.0


def sharpen_kernel(radius: int = SHARPEN_RADIUS, sigma: float = SHARPEN_SIGMA) -> ImageFilter.Kernel:
    """ImageMagick's sharpen kernel as a Pillow filter.

    >>> image.filter(sharpen_kernel())
    """
    offsets = np.arange(-radius, radius + 1)
    u, v = np.meshgrid(offsets, offsets)
    kernel = -np.exp(-(u**2 + v**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    kernel[radius, radius] = -2.0 * kernel.sum()
    size = 2 * radius + 1
    return ImageFilter.Kernel((size, size), kernel.ravel().tolist(), scale=float(kernel.sum()))


SHARPEN = sharpen_kernel()
# Step 7: Fashion-MNIST's images span the full range whatever the garment's colour: the brightest
# pixel is 254 or 255 in every test image, the background 0. A photo of a navy, red or pastel garment
# does not: negated, its maximum is dim (a pale garment is a faint one), and a light-grey or tinted
# background negates to a grey, not to black. So the negated background colour is mapped to 0 and
# the brightest pixel to 255, clipped: colour and background drop out, the garment's shading stays.
# The brightest pixel, not a percentile: in Fashion-MNIST it is often one pixel (the sharpening's
# overshoot), and after the resize to 28 a JPEG speck is averaged away. A photo with less contrast
# than MIN_RANGE levels is stretched as if its maximum were that far above the background, so the
# noise of an almost empty photo (white on white) is amplified at most 255 / MIN_RANGE times.
MIN_RANGE = 16
# Bump when the output for the same photo changes: caches of finished images key on it.
PIPELINE_VERSION = 3


def corner_colour(image: Image.Image) -> tuple[int, int, int]:
    """The background colour of an RGB image: the median of its four corner pixels (so one odd
    corner, a watermark or a JPEG speck, does not decide)."""
    width, height = image.size
    corners = [image.getpixel(xy) for xy in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1))]
    return tuple(int(round(value)) for value in np.median(np.asarray(corners, dtype=np.float64), axis=0))


def trim_box(image: Image.Image, background: tuple[int, int, int], fuzz: float = TRIM_FUZZ) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the RGB ``image``'s pixels farther than ``fuzz`` from
    ``background``; None when there are none."""
    difference = np.asarray(ImageChops.difference(image, Image.new("RGB", image.size, background)))
    # Sum of squared channel differences through a lookup table: several times faster than floats.
    squared = _SQUARES[difference[..., 0]]
    squared += _SQUARES[difference[..., 1]]
    squared += _SQUARES[difference[..., 2]]
    foreground = squared > 3 * (fuzz * 255.0) ** 2
    rows = np.flatnonzero(foreground.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(foreground.any(axis=0))
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


_SQUARES = np.arange(256, dtype=np.uint32) ** 2


def sharpen(image: Image.Image, kernel: ImageFilter.Kernel = SHARPEN) -> Image.Image:
    """``image`` (RGB or L) sharpened; the border repeats its edge pixels (ImageMagick's default
    virtual pixels), where Pillow alone would leave the outermost pixels unfiltered."""
    radius = kernel.filterargs[0][0] // 2
    array = np.asarray(image)
    padding = ((radius, radius), (radius, radius)) + ((0, 0),) * (array.ndim - 2)
    extended = Image.fromarray(np.pad(array, padding, mode="edge"), image.mode)
    return extended.filter(kernel).crop((radius, radius, radius + image.width, radius + image.height))


def stretch_levels(grayscale: Image.Image, background: tuple[int, int, int], min_range: int = MIN_RANGE) -> Image.Image:
    """The negated 8-bit ``grayscale`` image with the level of the negated ``background`` colour
    mapped to 0 and its brightest pixel to 255 (at most ``255 / min_range`` times amplified)."""
    negated_background = tuple(255 - value for value in background)
    low = Image.new("RGB", (1, 1), negated_background).convert("L").getpixel((0, 0))
    pixels = np.asarray(grayscale, dtype=np.float32)
    high = max(float(pixels.max()), low + min_range)
    stretched = (pixels - low) * (255.0 / (high - low))
    return Image.fromarray(np.clip(np.rint(stretched), 0, 255).astype(np.uint8), "L")


def _steps(image: Image.Image, name: str) -> list[tuple[str, Image.Image]]:
    steps = [("original", image)]
    if is_model_ready(image):
        return steps + [("grayscale", Image.fromarray(to_grayscale_array(image), "L"))]
    rgb_image = on_white(image)
    steps.append(("on white", rgb_image))
    background = corner_colour(rgb_image)
    box = trim_box(rgb_image, background)
    if box is None:
        # No size named: the image here may be a reduced copy of the photo.
        raise SourceError(name, "image is all one colour, nothing but background; give a photo of the garment")
    trimmed = rgb_image.crop(box)
    steps.append(("trimmed", trimmed))
    width, height = trimmed.size
    scale = SIZE / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = trimmed.resize(new_size, RESAMPLE, reducing_gap=3.0)
    steps.append(("resized", resized))
    sharpened = sharpen(resized)
    steps.append(("sharpened", sharpened))
    # The canvas takes the photo's own background colour, so after negation it matches the rest.
    padded = Image.new("RGB", (SIZE, SIZE), background)
    padded.paste(sharpened, ((SIZE - new_size[0]) // 2, (SIZE - new_size[1]) // 2))
    steps.append(("padded", padded))
    negated = ImageOps.invert(padded)
    steps.append(("negated", negated))
    grayscale = negated.convert("L")
    steps.append(("grayscale", grayscale))
    steps.append(("stretched", stretch_levels(grayscale, background)))
    return steps


def pipeline_steps(source: Source, max_pixels: int = MAX_PIXELS,
                   max_bytes: int = MAX_DECODE_BYTES) -> list[tuple[str, Image.Image]]:
    """Every named step from the photo as read to the 28×28 grayscale model input (the last step).

    >>> [name for name, image in pipeline_steps("shirt.jpg")][-1]
    'stretched'
    """
    return _steps(open_image(source, max_pixels, max_bytes=max_bytes), describe(source))


def photo_to_input(source: Source, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
    """The model input for one photo: float32 (28, 28) in [0, 1], light garment on black.

    ``source`` is a path, the bytes of an image file, or a PIL image. Raises ``ValueError`` with
    the reason when it is not an image in an accepted format, is truncated, has too many pixels,
    takes over ``max_bytes`` decoded or shows nothing.

    >>> photo_to_input("shirt.jpg").shape
    (28, 28)
    """
    last = pipeline_steps(source, max_pixels, max_bytes)[-1][1]
    return np.asarray(last, dtype=np.float32) / np.float32(255.0)
