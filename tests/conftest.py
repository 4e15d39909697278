"""Shared fixtures: tiny synthetic data, so tests run in seconds."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from apparel.data import DEFAULT_DATA_DIR, FILES, Dataset  # noqa: E402

NUM_SAMPLES = 256
REAL_DATA = (DEFAULT_DATA_DIR / FILES["test_labels"][0]).is_file()
needs_real_data = pytest.mark.skipif(not REAL_DATA, reason="dataset-fashion-mnist is not installed (make setup)")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, then each dimension, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array)))
    return path


def synthetic_arrays(samples: int = NUM_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Noise with a bright square whose row depends on the label, so a model can learn something."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", samples), ("test", samples // 4)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        images = rng.integers(0, 60, size=(count, 28, 28))
        for image, label in zip(images, labels):
            image[2 + 2 * label : 6 + 2 * label, 8:20] = 255
        arrays[f"{split}_images"] = images.astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    return arrays


@pytest.fixture
def idx_dir(tmp_path) -> Path:
    """A directory of the four gzipped IDX files, laid out as Debian's package lays them out."""
    for key, array in synthetic_arrays().items():
        write_idx_gz(tmp_path / FILES[key][0], array)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    arrays = synthetic_arrays()
    scale = np.float32(255.0)
    return Dataset(
        arrays["train_images"].astype(np.float32) / scale,
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"].astype(np.float32) / scale,
        arrays["test_labels"].astype(np.int64),
    )
