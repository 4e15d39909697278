"""A synthetic store for the desk's tests: tiny one-colour product photos, a Shopify export of
them, and a predictor that reads the colour (no model to load)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from apparel.contract import InputContract
from apparel.desk.jobs import JobStore
from apparel.desk.runner import Desk
from apparel.shop.catalog import CatalogConfig
from conftest import PHOTO_CLASSES

BOM = "\ufeff"
HEADER = ["Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Variant SKU",
          "Image Src", "Image Position"]
# Photo colour → the stub's probabilities over PHOTO_CLASSES (dress, shoes, t-shirt); at a
# min_confidence of 0.6: a dress; Clothing, as the T-shirt is uncertain; uncertain (shoes 0.55).
COLOURS = {"red": ((200, 30, 30), (0.9, 0.05, 0.05)),
           "blue": ((30, 30, 200), (0.4, 0.1, 0.5)),
           "green": ((30, 200, 30), (0.45, 0.55, 0.0))}
SETTINGS = CatalogConfig(min_confidence=0.6, batch_size=16, read_threads=2)


class ColourPredictor:
    """Stands in for a model: the photo's strongest channel picks its row of ``COLOURS``.
    ``delay`` seconds per batch make a job slow enough to interrupt and to watch fill."""

    contract = InputContract(kind="photo", size=32, class_names=PHOTO_CLASSES)

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, 0

    def predict_proba(self, images):
        self.calls += 1
        time.sleep(self.delay)
        rows = {0: COLOURS["red"][1], 2: COLOURS["blue"][1], 1: COLOURS["green"][1]}
        channels = np.asarray(images, dtype=np.float64).reshape(len(images), -1, 3).mean(axis=1)
        return np.asarray([rows[_strongest(mean)] for mean in channels])


class FailingOnce(ColourPredictor):
    """The colour predictor, except that its ``fail_at``-th call raises (a model file gone, a disk full)."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at = fail_at

    def predict_proba(self, images):
        if self.calls + 1 == self.fail_at:
            self.calls += 1
            raise RuntimeError("the model's disk went away")
        return super().predict_proba(images)


class ShirtPredictor(ColourPredictor):
    """Surely a T-shirt, whatever the photo."""

    def predict_proba(self, images):
        return np.tile([0.05, 0.05, 0.9], (len(images), 1))


def _strongest(mean: np.ndarray) -> int:
    """The channel that stands out of a one-colour photo."""
    return int(np.argmax(mean - mean.mean()))


def stub_model_dir(root: Path) -> Path:
    """A run directory whose model.keras only names the cache (the predictor is the stub)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.keras").write_bytes(b"the colour predictor")
    return root


def sleeved_model_dir(root: Path) -> Path:
    """``stub_model_dir`` with a store model's category record: its T-shirts short-sleeved."""
    from apparel import artifacts

    stub_model_dir(root)
    artifacts.write_json(root / artifacts.CATEGORIES_FILE, {
        "categories": {"dress": "aa-1-4", "shoes": "aa-8", "t-shirt": "aa-1-13-8"},
        "sleeve_length_type": {"t-shirt": "Short"}, "category_threshold": 0.6, "outside_threshold": 0.5})
    return root


def write_store(root: Path, count: int, colours=("red", "blue", "green")) -> tuple[Path, Path]:
    """(catalog CSV, images folder): ``count`` products, each with its own tiny photo of one of
    ``colours`` in turn; every fifth has a second variant row, the last has no photo."""
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = [",".join(HEADER)]
    for number in range(count):
        colour = colours[number % len(colours)]
        handle = f"product-{number:04d}"
        image = ""
        if number < count - 1:
            image = f"photos/{handle}.jpg"
            (images / "photos").mkdir(exist_ok=True)
            Image.new("RGB", (24, 24), COLOURS[colour][0]).save(images / image, quality=90)
        title = f'"{colour.title()} thing, no. {number}"' if number % 2 else f"{colour.title()} thing {number}"
        tags = '"sale, new"' if number % 7 == 0 else ""
        lines.append(f"{handle},{title},<p>Soft</p>,Acme,,,{tags},SKU-{number},{image},1")
        if number % 5 == 0:
            lines.append(f"{handle},,,,,,,SKU-{number}-L,,")
    path = root / "products.csv"
    path.write_bytes((BOM + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path, images


def colour_desk(jobs: Path, images: Path, model_dir: Path, predictor) -> Desk:
    """A desk over ``jobs`` that runs ``predictor`` with the tests' catalog settings."""
    return Desk(JobStore(jobs), SETTINGS.replace(images_dir=str(images)), lambda: (model_dir, predictor))


def arrow_key_latencies(page, presses: int = 30) -> list[float]:
    """Seconds from each ArrowDown to the next row drawn as the cursor's (rows product-0001…),
    the cursor starting on product-0000: the page's input latency (the desk tests and
    benchmarks/desk_check.py)."""
    latencies = []
    for number in range(1, presses + 1):
        begun = time.perf_counter()
        page.keyboard.press("ArrowDown")
        page.wait_for_function("h => document.querySelector('.row.cursor')?.dataset.handle === h",
                               arg=f"product-{number:04d}", polling="raf")
        latencies.append(time.perf_counter() - begun)
    return latencies
