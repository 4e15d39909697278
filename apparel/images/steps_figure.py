"""The steps from a photo to a model's input, drawn side by side: ``apparel preprocess``'s
figure, so a person can see what the model is given.

    >>> from apparel.images.steps_figure import draw_steps
    >>> draw_steps("shirt.jpg", "steps.png")
    PosixPath('steps.png')
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from apparel.artifacts import atomic_path, same_file
from apparel.contract import FASHION_MNIST, InputContract
from apparel.errors import ParameterError
from apparel.images.decode import MAX_DECODE_BYTES, MAX_PIXELS, Source, on_white


def model_steps(source: Source, contract: InputContract = FASHION_MNIST,
                max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES) -> list[tuple[str, Image.Image]]:
    """The named steps from the photo as read to the input of the model of ``contract``: the
    Fashion-MNIST pipeline's (``pipeline_steps``) or a photo model's (``photo_rgb_steps``), as its kind says."""
    return contract.model_kind.steps(source, contract.size, max_pixels, max_bytes)


def draw_steps(source: Source, out: str | os.PathLike, height: int = 168,
               contract: InputContract = FASHION_MNIST) -> Path:
    """Draw the steps to the model input of ``contract`` (default: the Fashion-MNIST pipeline)
    side by side, each scaled to ``height`` and labelled, into ``out``.

    >>> draw_steps("shirt.jpg", "steps.png")
    PosixPath('steps.png')
    """
    if isinstance(source, (str, os.PathLike)) and same_file(source, out):
        raise ParameterError(f"{{}} {out} is the photo drawn; write the figure to a new file, e.g. "
                             f"{Path(out).with_name(Path(out).stem + '-steps.png')}", "out")
    steps = model_steps(source, contract)
    label_height, gap = 24, 8
    tiles = []
    for name, image in steps:
        shown = on_white(image) if image.mode not in ("RGB", "L") else image.convert("RGB")
        # Scaled to ``height``, but no wider than 4 × ``height``: a long, thin photo would
        # otherwise make a canvas millions of pixels wide.
        scale = min(height / shown.height, 4 * height / shown.width)
        tile_size = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
        # Small steps are enlarged pixel by pixel, so the 28×28 grid stays visible.
        resample = Image.Resampling.NEAREST if shown.height < height else Image.Resampling.LANCZOS
        # "x", not "×": Pillow's built-in bitmap font has no "×".
        tiles.append((f"{name} {image.width}x{image.height}", shown.resize(tile_size, resample)))
    canvas = Image.new("RGB", (sum(t.width for _, t in tiles) + gap * (len(tiles) + 1), height + label_height + 2 * gap), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for label, tile in tiles:
        canvas.paste(tile, (x, gap + label_height))
        draw.rectangle([x - 1, gap + label_height - 1, x + tile.width, gap + label_height + tile.height], outline=(160, 160, 160))
        draw.text((x, gap), label, fill="black")
        x += tile.width + gap
    out = Path(out)
    # The format the name says (shirt.jpg a JPEG), PNG for a name that says none Pillow writes.
    image_format = Image.registered_extensions().get(out.suffix.lower(), "PNG")
    with atomic_path(out) as temporary:
        canvas.save(temporary, format=image_format)
    return out
