"""Per-family report: accuracy, training time, size, latency, per-class figures, confused pairs.

    .venv/bin/python benchmarks/model_report.py runs/reference runs/mlp runs/cnn apparel/shipped_models/default \
        --out docs/models.md

Each argument is a run directory written by `apparel train`. The script re-evaluates each model
on the test set (`apparel evaluate`, which also refreshes its metrics.json), times single-image
inference through `Predictor.predict_proba` after a warm-up, draws each confusion matrix into
docs/models/, and writes one Markdown page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


def single_image_latency_ms(predictor, image: np.ndarray, repeats: int = 300) -> float:
    predictor.predict_proba(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(image)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def describe_config(config: dict) -> str:
    keys = ("hidden", "width", "depth", "blocks", "dropout", "optimizer", "learning_rate", "schedule",
            "label_smoothing", "augment", "epochs", "batch_size", "seed")
    shown = [f"{key}={value}" for key, value in config.items() if key in keys and value not in (None, [], 0.0, "constant")]
    return ", ".join(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "models.md")
    args = parser.parse_args()

    from apparel import artifacts
    from apparel.kinds.fashion_mnist.data import CLASS_NAMES, load_dataset
    from apparel.training.evaluation import evaluate_run
    from apparel.training.plots import confusion_matrix_figure, save_figure
    from apparel.inference.prediction import Predictor

    dataset = load_dataset()
    figures_dir = args.out.parent / args.out.stem
    rows, sections = [], []
    for run_dir in args.run_dirs:
        config = artifacts.read_json(run_dir / artifacts.CONFIG_FILE)
        metrics = artifacts.read_json(run_dir / artifacts.METRICS_FILE)
        report = evaluate_run(run_dir, dataset=dataset)
        predictor = Predictor.from_dir(run_dir)
        latency = single_image_latency_ms(predictor, dataset.x_test[:1])
        size_mb = (run_dir / artifacts.MODEL_FILE).stat().st_size / 1e6
        label = f"{config['model']} ({run_dir.name})"
        plot = save_figure(confusion_matrix_figure(report["confusion_matrix"], title=f"{label}: confusion matrix"),
                           figures_dir / f"{run_dir.name}_confusion.png", dpi=70)
        rows.append(
            f"| {label} | {report['test_accuracy']:.4f} | {metrics['fit_seconds'] / 60:.1f} min "
            f"({metrics.get('epochs_run', config['epochs'])} epochs) | {metrics['parameters']:,} | {size_mb:.2f} MB | "
            f"{latency:.2f} ms | {describe_config(config)} |"
        )
        per_class = " | ".join(f"{report['per_class'][name]['recall']:.3f}" for name in CLASS_NAMES)
        confused = "; ".join(f"{a} ↔ {b}: {pair['mistakes']}" for pair in report["most_confused"] for a, b in [pair["classes"]])
        sections.append(
            f"### {label}\n\nPer-class accuracy (recall) on the test set:\n\n| {' | '.join(CLASS_NAMES)} |\n"
            f"|{'---|' * len(CLASS_NAMES)}\n| {per_class} |\n\nMost confused pairs (test images mistaken either way): "
            f"{confused}.\n\n![confusion matrix]({plot.relative_to(args.out.parent)})\n"
        )
        print(json.dumps({"run": str(run_dir), "test_accuracy": report["test_accuracy"], "single_image_ms": latency}), flush=True)

    page = [
        "# Model families",
        "",
        f"Generated {datetime.date.today().isoformat()} on the 2-core development machine (no GPU) by",
        f"`.venv/bin/python benchmarks/model_report.py {' '.join(str(p) for p in args.run_dirs)}`.",
        "Training time is the sum of the epochs' wall time from each run's history (the machine was",
        "shared with other jobs during some runs, so these are upper bounds); latency is the median of",
        "300 single-image calls of `Predictor.predict_proba` after a warm-up.",
        "",
        "| model | test accuracy | training time | parameters | model file | single-image latency | settings |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *sections,
    ]
    args.out.write_text("\n".join(page) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
