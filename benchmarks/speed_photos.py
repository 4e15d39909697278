"""Prediction speed of the commands a user runs, the default runtime (LiteRT) against Keras, in one run.

For each runtime (``--runtime litert``, the default, and ``--runtime keras``):

- cold start: ``apparel predict one.jpg`` in a fresh process, wall time and peak memory (the
  median and the largest of ``--cold-runs`` runs);
- steady photos/s of ``apparel predict`` (``batch.loop.predict_sources``) and ``apparel catalog``
  (``shop.catalog.categorize_catalog``, a product CSV of the same photos, fresh cache) on
  ``--photos`` local photos, the model loaded and warmed up first (best of ``--rounds``);
- top-1 accuracy on clothing-dataset-small's validation split, through ``predict_sources``.

    .venv/bin/python benchmarks/speed_photos.py --datasets ../shared/datasets --out runs/speed-photos

The machine may be shared: compare the ratios of one run, not figures across runs. The last line
is the whole report as one JSON object (also written to ``--out/speed_photos.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SMALL = "clothing-dataset-small"
RUNTIMES = ("litert", "keras")


def cold_start(photo: Path, runtime: str, runs: int) -> dict:
    """``apparel predict photo`` in fresh processes: wall seconds (median) and peak RSS (MB, largest)."""
    walls, peaks = [], []
    for _ in range(runs):
        began = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "apparel", "predict", str(photo), "--runtime", runtime],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(process.pid, 0)
        walls.append(time.perf_counter() - began)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"apparel predict failed: {process.stderr.read().decode()[-2000:]}")
        peaks.append(usage.ru_maxrss / 1024)  # kilobytes on Linux
    return {"wall_s": round(statistics.median(walls), 3), "peak_mb": round(max(peaks), 1)}


def steady_predict(predictor, sources, rounds: int) -> float:
    from apparel.batch.loop import predict_sources

    predict_sources(sources[:64], predictor)  # warm-up: the interpreter's or the graph's first batches
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        outcomes = predict_sources(sources, predictor)
        best = min(best, time.perf_counter() - began)
        assert not any("error" in outcome for outcome in outcomes)
    return round(len(sources) / best, 1)


def steady_catalog(predictor, photos: list[Path], images_dir: Path, work: Path, rounds: int,
                   colour: bool = False, warm_up: bool = True) -> float:
    """Photos/s of ``apparel catalog`` (``--colour`` with ``colour``), best of ``rounds`` (after a
    warm-up round unless ``warm_up`` is False)."""
    from apparel.shop.catalog import CatalogConfig, categorize_catalog

    products = work / "products.csv"
    with open(products, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Handle", "Title", "Product Category", "Type", "Tags", "Image Src"])
        for number, photo in enumerate(photos):
            writer.writerow([f"product-{number}", f"Product {number}", "", "", "", str(photo.relative_to(images_dir))])
    config = CatalogConfig(images_dir=str(images_dir), colour=colour)
    best = float("inf")
    for round_ in range(0 if warm_up else 1, rounds + 1):  # round 0 is the warm-up
        began = time.perf_counter()
        report = categorize_catalog(products, work / f"out-{round_}.csv", config, predictor=predictor)
        if round_:
            best = min(best, time.perf_counter() - began)
        assert report.predicted == len(photos) and report.cached == 0
        assert (report.coloured > 0) == colour, report  # the colour step ran when asked, only then
    return round(len(photos) / best, 1)


def accuracy(predictor, folder: Path) -> dict:
    from apparel.batch.loop import predict_sources
    from apparel.images.sources import expand_sources

    outcomes = predict_sources(expand_sources([str(folder)]), predictor, top_k=1)
    right = sum(Path(outcome["file"]).parent.name == outcome["label"] for outcome in outcomes)
    return {"accuracy": round(right / len(outcomes), 4), "photos": len(outcomes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared/datasets")
    parser.add_argument("--model-dir", default="store", help="run directory or shipped model (default: store)")
    parser.add_argument("--photos", type=int, default=500, help="local photos timed (default 500, from train/)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds; the best counts (default 2)")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold starts per runtime (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/speed-photos")
    args = parser.parse_args(argv)

    from apparel.images.sources import expand_sources
    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND

    train, validation = args.datasets / SMALL / "train", args.datasets / SMALL / "validation"
    everything = sorted(train.glob("*/*.jpg"))
    step = max(1, len(everything) // args.photos)
    photos = everything[::step][: args.photos]
    sources = expand_sources([str(path) for path in photos])
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"photos": len(photos), "cores": len(os.sched_getaffinity(0)), "model_dir": args.model_dir}
    # Litert first: TensorFlow, once imported for Keras, stays in the process.
    for runtime in RUNTIMES:
        print(f"{runtime}: cold start …", file=sys.stderr, flush=True)
        figures = {"cold": cold_start(photos[0], runtime, args.cold_runs)}
        predictor = load_predictor(args.model_dir, kind=PHOTO_KIND, runtime=runtime)
        print(f"{runtime}: predict, catalog, accuracy …", file=sys.stderr, flush=True)
        figures["predict_photos_per_s"] = steady_predict(predictor, sources, args.rounds)
        with tempfile.TemporaryDirectory(prefix="speed-photos-") as work:
            figures["catalog_photos_per_s"] = steady_catalog(predictor, photos, train, Path(work), args.rounds)
        figures["validation"] = accuracy(predictor, validation)
        report[runtime] = figures
        print(f"{runtime}: {json.dumps(figures)}", flush=True)
    lite, keras = report["litert"], report["keras"]
    report["ratios"] = {
        "predict": round(lite["predict_photos_per_s"] / keras["predict_photos_per_s"], 2),
        "catalog": round(lite["catalog_photos_per_s"] / keras["catalog_photos_per_s"], 2),
        "cold_wall": round(keras["cold"]["wall_s"] / lite["cold"]["wall_s"], 2),
        "accuracy_points": round(100 * (lite["validation"]["accuracy"] - keras["validation"]["accuracy"]), 2),
    }
    (args.out / "speed_photos.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
