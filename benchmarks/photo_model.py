"""The shipped photo model on labelled photos: accuracy, speed, and the Fashion-MNIST model beside it.

For each labelled folder (a folder of class folders; default: clothing-dataset-small's
`validation/` and the worn-garment crops kept aside by `benchmarks/worn_crops.py`) it prints top-1
accuracy, per-class recall and the most confused pairs, and draws the confusion matrix; the
Fashion-MNIST model (the shipped `default`) is scored on the same photos with its classes mapped onto
the photo classes as generously as they allow. Then end-to-end throughput — read, decode, resize,
infer, the path `apparel predict` takes — with the Keras model and with its LiteRT export, and the
single-photo latency (p50), and the training time recorded in the run's metrics.json.

    .venv/bin/python benchmarks/photo_model.py
    .venv/bin/python benchmarks/photo_model.py --folders shop/labelled --model-dir runs/photos

The last line is the whole report as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDERS = (ROOT.parent / "shared/datasets/clothing-dataset-small/validation", ROOT / "runs/worn-crops/heldout")
# Fashion-MNIST's classes onto clothing-dataset-small's: the closest photo class, or none (Bag).
# hat, shorts and skirt have no Fashion-MNIST counterpart, so that model cannot get them right.
FASHION_TO_PHOTO = {
    "T-shirt/top": "t-shirt", "Trouser": "pants", "Pullover": "longsleeve", "Dress": "dress", "Coat": "outwear",
    "Sandal": "shoes", "Shirt": "shirt", "Sneaker": "shoes", "Bag": None, "Ankle boot": "shoes",
}


def accuracy_on(predictor, folder: Path, out_dir: Path) -> dict:
    from apparel.kinds.photo.measure import evaluate_photo_model
    from apparel.kinds.photo.data import read_labelled_photos
    from apparel.training.plots import confusion_matrix_figure

    contract = predictor.contract
    photos = read_labelled_photos(folder, contract.class_names)
    report = evaluate_photo_model(predictor.model, photos, contract.size, contract.class_names)
    name = folder.name if folder.name != "heldout" else "worn-heldout"
    figure = confusion_matrix_figure(report["confusion_matrix"], f"Confusion matrix ({name})", contract.class_names)
    figure.savefig(out_dir / f"photos_{name}_confusion.png", dpi=120, bbox_inches="tight")
    return {"folder": str(folder), "images": report["images"], "accuracy": report["accuracy"],
            "recall": {cls: row["recall"] for cls, row in report["per_class"].items()},
            "most_confused": report["most_confused"][:3]}


def fashion_model_on(folder: Path, class_names: tuple[str, ...]) -> float:
    """The Fashion-MNIST default model on the same photos, its classes mapped generously."""
    from apparel.batch.loop import predict_sources
    from apparel.images.sources import expand_sources
    from apparel.inference.prediction import Predictor

    predictor = Predictor.from_dir(None)
    outcomes = predict_sources(expand_sources([str(folder)]), predictor, top_k=1)
    right = [FASHION_TO_PHOTO[o["label"]] == Path(o["file"]).parent.name for o in outcomes if "label" in o]
    return round(sum(right) / len(right), 4)


def throughput(predictor, files: list[str], rounds: int) -> dict:
    """Photos per second through `predict_sources` (parallel reading, batched inference), median
    over ``rounds`` after a warm-up, and the single-photo latency p50 over 50 calls."""
    from apparel.batch.loop import predict_sources
    from apparel.images.sources import expand_sources

    sources = expand_sources(files)
    predict_sources(sources[:64], predictor, batch_size=32)  # warm-up: tracing, thread pools, caches
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        predict_sources(sources, predictor, batch_size=32)
        rates.append(len(sources) / (time.perf_counter() - started))
    latencies = []
    for source in sources[:50]:
        started = time.perf_counter()
        predict_sources([source], predictor, batch_size=1, workers=1)
        latencies.append(1000 * (time.perf_counter() - started))
    return {"photos": len(sources), "photos_per_second": round(statistics.median(rates), 1),
            "rounds": [round(rate, 1) for rate in rates], "single_photo_p50_ms": round(statistics.median(latencies), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="photos", help="photo run directory, or a shipped model's name")
    parser.add_argument("--folders", nargs="+", default=[str(f) for f in DEFAULT_FOLDERS if f.is_dir()],
                        help="labelled folders (class folders) to measure on")
    parser.add_argument("--speed-photos", type=int, default=320, help="photos timed end to end")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs/photo-benchmark"), help="where the confusion matrices go")
    args = parser.parse_args(argv)

    from apparel import artifacts
    from apparel.inference.export import export_model
    from apparel.inference.prediction import Predictor

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_dir(args.model_dir)
    model_dir = predictor.model_dir  # a shipped model's name resolved to its folder
    metrics = artifacts.read_json(model_dir / artifacts.METRICS_FILE)
    report = {"model_dir": str(model_dir), "input_size": predictor.contract.size,
              "training_seconds": metrics.get("fit_seconds"), "folders": []}
    for folder in map(Path, args.folders):
        result = accuracy_on(predictor, folder, out_dir)
        result["fashion_mnist_model_accuracy"] = fashion_model_on(folder, predictor.contract.class_names)
        report["folders"].append(result)
        print(f"{folder}: {result['accuracy']:.4f} top-1 on {result['images']} photos "
              f"(Fashion-MNIST model: {result['fashion_mnist_model_accuracy']:.4f})")
        print("  recall: " + ", ".join(f"{cls} {value:.2f}" for cls, value in result["recall"].items()))
    files = sorted(str(p) for p in Path(args.folders[0]).rglob("*.jpg"))[: args.speed_photos]
    report["keras"] = throughput(predictor, files, args.rounds)
    with tempfile.TemporaryDirectory() as scratch:
        litert_file = Path(scratch) / "photos.tflite"
        export_model(model_dir, "litert", litert_file)
        report["litert"] = throughput(Predictor.from_litert(litert_file, model_dir), files, args.rounds)
    for path in ("keras", "litert"):
        print(f"{path}: {report[path]['photos_per_second']} photos/s end to end (read, decode, resize, infer), "
              f"single photo p50 {report[path]['single_photo_p50_ms']} ms")
    print(f"training: {report['training_seconds']} s")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
