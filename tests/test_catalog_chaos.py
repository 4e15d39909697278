"""`apparel catalog` SIGKILLed at random points, then rerun: it ends with the very bytes of a run
that was never killed, and no file it left on the way is ever half-written.

Each kill is a real process killed by the kernel, mid start-up, mid classification (the cache
growing line by line) or as the files are written; the catalog's tiny model keeps a run to seconds.
"""

import random
import subprocess
import sys
import time

import numpy as np
import pytest

from apparel.cli import main
from apparel.shop.catalog import read_cache
from conftest import render_photo
from test_catalog import OLD_HEADER, as_bytes, row
from test_sources import model_dir  # noqa: F401 (a fixture)

SEED = 13             # the kill points are drawn from it
PRODUCTS = 12         # rendered photos, one product each
MIN_CONFIDENCE = 0.5  # the tiny model's Clothing (0.46-0.57) lies on both sides: some written, some for review
RUN_TIMEOUT = 60      # seconds one run may take before the test gives up on it


@pytest.fixture
def shop(tmp_path):
    """tmp_path/products.csv: rendered photos, and the products a review lists."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for index in range(PRODUCTS):
        render_photo(index % 3, rng).save(images / f"{index}.jpg", quality=90)
        rows.append(row(handle=f"product-{index}", title=f"Product {index}", tags='"summer, sale"',
                        image_src=f"images/{index}.jpg"))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 40)
    rows += [row(handle="broken", title="=HYPERLINK(1)", image_src="images/broken.jpg"),
             row(handle="missing", title="Missing", image_src="images/nothing.jpg"),
             row(handle="no-photo", title="No Photo"),
             row(handle="fallback", title="Fallback", image_src="images/broken.jpg", image_position="1"),
             row(handle="fallback", image_src="images/0.jpg", image_position="2")]
    (tmp_path / "products.csv").write_bytes(as_bytes(OLD_HEADER, rows))
    return tmp_path


def catalog_arguments(shop_dir, model_dir, out) -> list[str]:
    return ["catalog", str(shop_dir / "products.csv"), "--out", str(out), "--model-dir", str(model_dir),
            "--images-dir", str(shop_dir), "--min-confidence", str(MIN_CONFIDENCE), "--batch-size", "1", "--read-threads", "1"]


def cache_lines(out) -> int:
    cache = out.with_name(f"{out.stem}.cache.jsonl")
    return cache.read_bytes().count(b"\n") if cache.exists() else 0


def run_until(shop_dir, model_dir, out, condition) -> bool:
    """Run ``apparel catalog`` and SIGKILL it as soon as ``condition()`` holds; whether it was
    killed (a run may finish first)."""
    child = subprocess.Popen([sys.executable, "-m", "apparel", *catalog_arguments(shop_dir, model_dir, out)],
                             cwd=shop_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + RUN_TIMEOUT
    while child.poll() is None:
        if condition():
            child.kill()
            child.wait()
            return True
        assert time.monotonic() < deadline, "a catalog run hung"
        time.sleep(0.002)
    assert child.returncode == 0, child.stderr.read().decode()
    return False


def after(seconds: float):
    """A condition that holds ``seconds`` after the run starts."""
    start = time.monotonic()
    return lambda: time.monotonic() - start > seconds


def assert_whole(shop_dir, expected: dict[str, bytes], what: str) -> None:
    """Whatever a killed run left under the final names is whole: the uninterrupted run's bytes."""
    for name in ("csv", "review.csv"):
        path = shop_dir / f"chaos.{name}"
        assert not path.exists() or path.read_bytes() == expected[f"clean.{name}"], (what, path.name)


def test_killed_runs_resume_to_the_bytes_of_an_uninterrupted_run(shop, model_dir):
    began = time.monotonic()
    clean, chaos = shop / "clean.csv", shop / "chaos.csv"
    assert main(catalog_arguments(shop, model_dir, clean)) == 0  # in this process: TensorFlow is loaded already
    expected = {name: (shop / name).read_bytes() for name in ("clean.csv", "clean.review.csv")}
    assert expected["clean.csv"] != (shop / "products.csv").read_bytes()  # something was categorised
    assert b"uncertain" in expected["clean.review.csv"] and b"'=HYPERLINK(1)" in expected["clean.review.csv"]
    images = cache_lines(clean)

    rng = random.Random(SEED)
    cached = rng.randrange(1, images - 1)
    points = [  # (what, when to kill), each run resuming from what the killed ones left
        ("start-up", lambda: after(rng.uniform(0.1, 1.5))),
        (f"{cached} of {images} images cached", lambda: lambda: cache_lines(chaos) >= cached),
        ("writing", lambda: lambda: chaos.exists() or any(shop.glob(".chaos*"))),  # a temporary appears
    ]
    kills = []
    for what, condition in points:
        if run_until(shop, model_dir, chaos, condition()):
            kills.append(what)
        assert_whole(shop, expected, what)
    # Every image is cached now, so a run is short (no TensorFlow): time one, then kill some anywhere in it.
    started = time.monotonic()
    run_until(shop, model_dir, chaos, lambda: False)
    short_run = time.monotonic() - started
    for _ in range(3):
        if run_until(shop, model_dir, chaos, after(rng.uniform(0.05, 0.7 * short_run))):
            kills.append("a cached run")
        assert_whole(shop, expected, "a cached run")
    assert len(kills) >= 3, kills

    assert not run_until(shop, model_dir, chaos, lambda: False)  # to the end
    assert (shop / "chaos.csv").read_bytes() == expected["clean.csv"]
    assert (shop / "chaos.review.csv").read_bytes() == expected["clean.review.csv"]
    assert read_cache(shop / "chaos.cache.jsonl", 10) == read_cache(shop / "clean.cache.jsonl", 10)
    assert sorted(path.name for path in shop.iterdir()) == [  # no temporary left behind
        "chaos.cache.jsonl", "chaos.csv", "chaos.review.csv", "clean.cache.jsonl", "clean.csv", "clean.review.csv",
        "images", "products.csv"]
    print(f"{len(kills)} kills ({'; '.join(kills)}) in {time.monotonic() - began:.1f} s")  # shown with -s
