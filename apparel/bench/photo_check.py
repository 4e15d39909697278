"""The product-photo check: does the photo pipeline give the model what Fashion-MNIST gave it?

Each test image is rendered as a product photo — upscaled to about 400 px, negated back to a light
background, coloured, given a margin, saved as JPEG in memory — then run through
:func:`apparel.kinds.fashion_mnist.pipeline.photo_to_input`. The model's accuracy on those inputs is compared with its
accuracy on the original images; the drop is what the pipeline costs.

    >>> from apparel.bench.photo_check import photo_check
    >>> from apparel.inference.prediction import Predictor
    >>> report = photo_check(Predictor.from_dir("runs/reference"), x_test_uint8, y_test)
    >>> report.drop_points
    0.9

By default (``colours="luma"``) the colour keeps each pixel's luma (ITU-R 601, the weights of
Pillow's grayscale conversion): a Fashion-MNIST image *is* the luma of a coloured photo, so a colour
with that luma is a photo the data set could have come from. With ``colours="any"`` the garment is
dyed instead: a colour from :data:`ANY_PALETTE` (black, navy, red, pastels, off-white…) replaces its
brightness, so a pale garment is a faint one, as a real dyed garment photographed on white would
be. ``background`` tints the light: the background and the garment are both multiplied by a random
light tone, as a grey or tinted sweep (or an off white balance) would show them.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from apparel.config import Config, option
from apparel.kinds.fashion_mnist.data import IMAGE_SHAPE
from apparel.errors import ParameterError
from apparel.kinds.fashion_mnist.pipeline import photo_to_input

# Garment colours as (R, G, B); their chroma is laid on the garment, their luma is not.
PALETTE = (
    (200, 30, 45),    # red
    (30, 60, 150),    # navy
    (40, 120, 60),    # green
    (230, 180, 40),   # mustard
    (120, 70, 40),    # brown
    (150, 60, 160),   # purple
    (240, 130, 160),  # pink
    (60, 160, 200),   # sky blue
    (128, 128, 128),  # grey (no colour)
)
# colours="any": garment colours as (R, G, B) that replace its brightness, from black to off-white.
ANY_PALETTE = (
    (20, 20, 25),     # black
    (60, 60, 65),     # charcoal
    (25, 35, 90),     # navy
    (50, 80, 200),    # royal blue
    (190, 25, 35),    # red
    (110, 20, 40),    # burgundy
    (30, 90, 50),     # forest green
    (110, 110, 60),   # olive
    (120, 70, 40),    # brown
    (220, 170, 40),   # mustard
    (150, 150, 150),  # mid grey
    (120, 180, 225),  # sky blue
    (200, 185, 230),  # lavender (pastel)
    (245, 185, 200),  # pink (pastel)
    (180, 225, 195),  # mint (pastel)
    (225, 215, 195),  # cream (off-white)
    (215, 215, 215),  # light grey (white-ish)
)


@dataclass(frozen=True)
class PhotoCheckConfig(Config):
    """How test images are rendered as product photos."""

    size: int = option(400, "longest edge of the upscaled garment, pixels", minimum=28)
    margin: tuple[float, float] = option((0.05, 0.25), "margin per side, a random fraction of `size` in this range")
    jpeg_quality: tuple[int, int] = option((75, 95), "random JPEG quality per photo, in this range")
    seed: int = option(0, "the colours, margins and qualities drawn")
    colours: str = option("luma", "garment colour: 'luma' keeps each pixel's brightness, 'any' dyes the garment "
                          "a random colour (black to off-white) that replaces it", choices=("luma", "any"))
    background: tuple[int, int] = option((255, 255), "random light tone per channel, in this range, that tints "
                                         "background and garment alike; (255, 255) is white")

    def check(self) -> None:
        low, high = self.margin
        if not 0 <= low <= high:
            raise ParameterError(f"{{}} must be (low, high) with 0 <= low <= high, got {self.margin}", "margin")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ParameterError(f"{{}} must be (low, high) within 1..100, got {self.jpeg_quality}", "jpeg_quality")
        low, high = self.background
        if not 0 <= low <= high <= 255:
            raise ParameterError(f"{{}} must be (low, high) within 0..255, got {self.background}", "background")


@dataclass(frozen=True)
class PhotoCheckReport:
    images: int                     # test images checked
    original_accuracy: float        # the model on the Fashion-MNIST images as they are
    photo_accuracy: float           # the model on the same images rendered as photos and piped back
    drop_points: float              # (original - photo) accuracy, in percentage points
    failed: int                     # photos the pipeline refused (counted as wrong)
    seconds: float                  # rendering and pipeline time, all images
    config: dict                    # the PhotoCheckConfig used

    def to_dict(self) -> dict:
        return asdict(self)


def render_product_photo(image: np.ndarray, rng: np.random.Generator, config: PhotoCheckConfig = PhotoCheckConfig()) -> bytes:
    """A 28×28 uint8 Fashion-MNIST image (light on black) as the JPEG bytes of a product photo:
    upscaled, dark-on-white, coloured, with a margin of the background's colour.

    >>> jpeg = render_product_photo(x_test[0], np.random.default_rng(0))
    """
    garment = Image.fromarray(np.asarray(image, dtype=np.uint8), "L").resize((config.size, config.size), Image.Resampling.BICUBIC)
    strength = np.asarray(garment, dtype=np.float32) / 255.0     # 1 on the garment, 0 on the background
    if config.colours == "any":
        colour = np.asarray(ANY_PALETTE[rng.integers(len(ANY_PALETTE))], dtype=np.float32)
        # The dye replaces the brightness: white where strength is 0, the colour where it is 1.
        rgb = 255.0 + strength[..., None] * (colour - 255.0)
    else:
        luma = 255.0 - np.asarray(garment, dtype=np.float32)          # negated: light background
        colour = np.asarray(PALETTE[rng.integers(len(PALETTE))], dtype=np.float32)
        colour_cb, colour_cr = np.asarray(Image.new("RGB", (1, 1), tuple(int(c) for c in colour)).convert("YCbCr").getpixel((0, 0))[1:], dtype=np.float32)
        planes = [luma, 128.0 + strength * (colour_cb - 128.0), 128.0 + strength * (colour_cr - 128.0)]
        ycbcr = Image.merge("YCbCr", [Image.fromarray(np.clip(np.rint(p), 0, 255).astype(np.uint8), "L") for p in planes])
        rgb = np.asarray(ycbcr.convert("RGB"), dtype=np.float32)
    low, high = config.margin
    left, top, right, bottom = (int(rng.uniform(low, high) * config.size) for _ in range(4))
    # Drawn only when it can vary, so the default draws (and photos) are those of a white background.
    tone = (255, 255, 255) if config.background == (255, 255) else tuple(int(t) for t in rng.integers(config.background[0], config.background[1] + 1, 3))
    rgb = rgb * (np.asarray(tone, dtype=np.float32) / 255.0)
    photo = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    canvas = Image.new("RGB", (config.size + left + right, config.size + top + bottom), tone)
    canvas.paste(photo, (left, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    return buffer.getvalue()


def photos_as_inputs(images: np.ndarray, config: PhotoCheckConfig = PhotoCheckConfig(), progress=None) -> tuple[np.ndarray, int]:
    """Render every image as a photo and pipe it back: (float32 (N, 28, 28), number refused).

    A refused photo becomes a blank input, so it counts as a wrong prediction.
    """
    rng = np.random.default_rng(config.seed)
    inputs = np.zeros((len(images), *IMAGE_SHAPE), dtype=np.float32)
    failed = 0
    for index, image in enumerate(images):
        try:
            inputs[index] = photo_to_input(render_product_photo(image, rng, config))
        except ValueError:
            failed += 1
        if progress is not None:
            progress(1)
    return inputs, failed


def photo_check(predictor, images: np.ndarray, labels: np.ndarray, config: PhotoCheckConfig = PhotoCheckConfig(), progress=None) -> PhotoCheckReport:
    """Accuracy on ``images`` (uint8 (N, 28, 28)) as they are and as product photos piped back."""
    import time

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be uint8 (N, 28, 28) as in the IDX files, got {images.dtype} {images.shape}")
    labels = np.asarray(labels)
    original = float((predictor.predict(images) == labels).mean())
    start = time.perf_counter()
    inputs, failed = photos_as_inputs(images, config, progress)
    seconds = time.perf_counter() - start
    photo = float((predictor.predict(inputs) == labels).mean())
    return PhotoCheckReport(
        images=len(images),
        original_accuracy=round(original, 4),
        photo_accuracy=round(photo, 4),
        drop_points=round(100 * (original - photo), 2),
        failed=failed,
        seconds=round(seconds, 2),
        config=asdict(config),
    )
