"""Shared fixtures: tiny synthetic data, so tests run in seconds."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from apparel.kinds.fashion_mnist.data import DEFAULT_DATA_DIR, FILES, Dataset  # noqa: E402

NUM_SAMPLES = 256
REAL_DATA = (DEFAULT_DATA_DIR / FILES["test_labels"][0]).is_file()
needs_real_data = pytest.mark.skipif(not REAL_DATA, reason="dataset-fashion-mnist is not installed (make setup)")
# `make test` sets this: it has just run `make setup`, so a test skipped for something setup
# installs (the data, Chromium, PostgreSQL) means a broken install, and fails instead.
STRICT = os.environ.get("APPAREL_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and "make setup" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"skipped although `make setup` has run: {report.longrepr}"


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


# Photo models: garment-like shapes in colour on white, one shape per class, rendered here (no
# data set photo is committed). A model trained on them for an epoch learns them.
PHOTO_CLASSES = ("dress", "shoes", "t-shirt")


def render_photo(label: int, rng: np.random.Generator, size: tuple[int, int] = (96, 120)):
    """A PIL photo of class ``PHOTO_CLASSES[label]``: a dark coloured shape on a white ground."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 160, 3))
    x, y = (int(v) for v in rng.integers(8, 24, 2))
    if label == 0:    # a long trapezium
        draw.polygon([(x + 20, y), (x + 40, y), (x + 60, y + 80), (x, y + 80)], fill=colour)
    elif label == 1:  # a low wide block
        draw.rectangle([x, y + 50, x + 60, y + 75], fill=colour)
    else:             # a T
        draw.rectangle([x, y, x + 60, y + 18], fill=colour)
        draw.rectangle([x + 20, y, x + 40, y + 60], fill=colour)
    return image


@pytest.fixture(scope="session")
def sleeve_run(photo_run, tmp_path_factory) -> Path:
    """``photo_run`` with a category record as the store model's is (``categories.json``): its
    classes' categories, and ``t-shirt`` telling short sleeves (``apparel.attributes.sleeve``)."""
    import shutil

    from apparel import artifacts

    run_dir = tmp_path_factory.mktemp("sleeve-run") / "run"
    shutil.copytree(photo_run, run_dir)
    artifacts.write_json(run_dir / artifacts.CATEGORIES_FILE, {
        "categories": {"dress": "aa-1-4", "shoes": "aa-8", "t-shirt": "aa-1-13-8"},
        "sleeve_length_type": {"t-shirt": "Short"}, "category_threshold": 0.5, "outside_threshold": 0.5})
    return run_dir


def answering(run_dir: Path, probabilities):
    """The Keras predictor of ``run_dir``, answering ``probabilities`` for every image: the tiny
    random-weight models are sure of nothing, and what follows a sure answer (a sleeve length) is
    tested through the real serving and prediction code with one."""
    from apparel.inference.prediction import Predictor

    predictor = Predictor.from_dir(run_dir)
    logits = np.log(np.asarray(probabilities, dtype=np.float32))[None]
    predictor._forward = lambda batch: np.repeat(logits, len(batch), axis=0)
    return predictor


def write_photo_folders(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """``root/<class>/<n>.jpg`` for each of PHOTO_CLASSES."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(PHOTO_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            render_photo(label, rng).save(root / name / f"{index}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def photo_run(tmp_path_factory) -> Path:
    """A run directory of a tiny photo model (efficientnet-lite0 at 32×32, random weights, three
    classes), written as ``apparel train`` writes one, with its input contract."""
    from apparel import artifacts
    from apparel.config import TrainConfig
    from apparel.contract import CONFIG_KEY, InputContract
    from apparel.training.models import create_model

    run_dir = tmp_path_factory.mktemp("photo-run")
    model = create_model("efficientnet-lite0", image_size=32, outputs=len(PHOTO_CLASSES), weights=None)
    artifacts.save_model(model, run_dir / artifacts.MODEL_FILE)
    contract = InputContract(kind="photo", size=32, class_names=PHOTO_CLASSES)
    TrainConfig(model="efficientnet-lite0", image_size=32).save(run_dir / artifacts.CONFIG_FILE, {CONFIG_KEY: contract.to_dict()})
    artifacts.write_json(run_dir / artifacts.METRICS_FILE, {"validation_accuracy": 0.5})
    return run_dir


@contextlib.contextmanager
def another_run_holding(lock: Path):
    """Another process holding ``lock``'s flock for the block, as a run writing an output does."""
    code = ("import fcntl, os, sys; descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(descriptor, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen([sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline() == "held\n"
            yield
        finally:
            holder.stdin.close()                     # it reads to the end, then exits: the lock is let go
            holder.wait(10)


def noting_the_loop(function):
    """``function`` wrapped to note, at each call, whether it ran on an event loop's thread (True)
    or on a worker thread (False); returns the wrapper and the list of notes."""
    import asyncio

    notes = []

    def noting(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            notes.append(True)
        except RuntimeError:
            notes.append(False)
        return function(*args, **kwargs)

    return noting, notes
