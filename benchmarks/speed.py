"""Training and inference speed: the walk-through's code as written against `apparel`, side by side.

    .venv/bin/python benchmarks/speed.py                 # 3 epochs each, about 2 minutes
    .venv/bin/python benchmarks/speed.py --epochs 20     # also compares 20-epoch test accuracy

Each measurement runs in its own process, so peak memory (max RSS) is per path and no path warms
another's caches. Epoch times exclude the first epoch (graph tracing and compilation). The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


class EpochTimer:
    """Keras callback recording wall seconds per epoch (built lazily: keras is imported late)."""

    @staticmethod
    def create():
        import keras

        class Timer(keras.callbacks.Callback):
            seconds: list

            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._started)

        return Timer()


def steady(seconds: list[float]) -> float:
    """Median epoch time after the first (compilation) epoch."""
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def phase_reference_train(args) -> dict:
    """The walk-through's training code as written: numpy arrays, batch 32, default compile."""
    import keras

    from apparel.data import load_raw

    (inp_train, out_train), (inp_test, out_test) = load_raw(args.data_dir)
    inp_train, inp_test = inp_train / 255.0, inp_test / 255.0
    keras.utils.set_random_seed(args.seed)
    my_model = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(20)]
    )
    my_model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    timer = EpochTimer.create()
    my_model.fit(inp_train, out_train, epochs=args.epochs, callbacks=[timer], verbose=0)
    loss, accuracy = my_model.evaluate(inp_test, out_test, verbose=0)
    return {"epoch_seconds": steady(timer.seconds), "all_epoch_seconds": timer.seconds, "test_accuracy": accuracy}


def phase_apparel_train(args) -> dict:
    """`apparel train`'s default path for the same model, data, batch size and epochs."""
    from apparel.config import TrainConfig
    from apparel.training import train

    result = train(TrainConfig(epochs=args.epochs, seed=args.seed), data_dir=args.data_dir, verbose=0)
    seconds = result.history["seconds"]
    return {"epoch_seconds": steady(seconds), "all_epoch_seconds": seconds, "test_accuracy": result.metrics["test_accuracy"]}


def _time_calls(function, repeats: int) -> list[float]:
    function()  # warm up: tracing, compilation, allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def _reference_model(args):
    from apparel.prediction import load_model

    return load_model(args.model_dir_mlp)


def phase_reference_predict(args) -> dict:
    """The walk-through's softmax wrapper and ``predict`` on the 10,000 test images."""
    import keras

    from apparel.data import load_dataset

    x_test = load_dataset(args.data_dir).x_test
    probability_model = keras.Sequential([_reference_model(args), keras.layers.Softmax()])
    times = _time_calls(lambda: probability_model.predict(x_test, verbose=0), args.repeats)
    classes = probability_model.predict(x_test, verbose=0).argmax(axis=-1)
    np.save(args.scratch / "reference_classes.npy", classes)
    return {"seconds": float(np.median(times)), "images_per_second": len(x_test) / float(np.median(times))}


def _inference_paths(args):
    """Candidate batch-inference paths of `apparel` for the seed-mlp run: name → function."""
    from apparel.export import LiteRTPredictor, export_model
    from apparel.prediction import Predictor

    predictor = Predictor.from_dir(args.model_dir_mlp)
    paths = {"keras-compiled": predictor.predict_proba}
    tflite = export_model(args.model_dir_mlp, "litert", args.scratch / "model.tflite")
    paths["litert"] = LiteRTPredictor(tflite).predict_proba
    return paths


def phase_apparel_predict(args) -> dict:
    """Each `apparel` batch path on the 10,000 test images; the fastest is reported."""
    from apparel.data import load_dataset

    x_test = load_dataset(args.data_dir).x_test
    results = {}
    for name, predict in _inference_paths(args).items():
        times = _time_calls(lambda: predict(x_test), args.repeats)
        seconds = float(np.median(times))
        classes = predict(x_test).argmax(axis=-1)
        np.save(args.scratch / f"{name}_classes.npy", classes)
        results[name] = {"seconds": seconds, "images_per_second": len(x_test) / seconds}
    return results


def phase_latency(args) -> dict:
    """Single-image latency of the service's path (`Predictor.predict_proba` on one image)."""
    from apparel.data import load_dataset
    from apparel.prediction import Predictor

    image = load_dataset(args.data_dir).x_test[:1]
    results = {}
    for label, model_dir in (("seed_mlp", args.model_dir_mlp), ("default", args.model_dir_default)):
        if model_dir is None or not (Path(model_dir) / "model.keras").exists():
            continue
        predictor = Predictor.from_dir(model_dir)
        times = np.array(_time_calls(lambda: predictor.predict_proba(image), args.latency_repeats)) * 1000
        results[label] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    return results


PHASES = {
    "reference_train": phase_reference_train,
    "apparel_train": phase_apparel_train,
    "reference_predict": phase_reference_predict,
    "apparel_predict": phase_apparel_predict,
    "latency": phase_latency,
}


def run_phase(name: str, argv: list[str]) -> tuple[dict, float]:
    """Run one phase in a child process; return its result and its peak RSS in MiB."""
    command = [sys.executable, __file__, "--phase", name, *argv]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {name} failed (status {status}); rerun it alone: {' '.join(command)}")
    result = json.loads(output.strip().splitlines()[-1])
    return result, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=7, help="timed batch-inference calls per path")
    parser.add_argument("--latency-repeats", type=int, default=500, help="timed single-image calls")
    parser.add_argument("--data-dir")
    parser.add_argument("--model-dir-mlp", help="seed-mlp run for inference (default: train one, --epochs)")
    parser.add_argument("--model-dir-default", default=str(REPOSITORY / "models" / "default"))
    parser.add_argument("--scratch", type=Path, default=REPOSITORY / "runs" / "speed")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return

    args.scratch.mkdir(parents=True, exist_ok=True)
    passthrough = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--repeats", str(args.repeats),
                   "--latency-repeats", str(args.latency_repeats), "--scratch", str(args.scratch),
                   "--model-dir-default", args.model_dir_default]
    if args.data_dir:
        passthrough += ["--data-dir", args.data_dir]
    if args.model_dir_mlp is None:
        from apparel.config import TrainConfig
        from apparel.training import train

        print(f"training a seed-mlp ({args.epochs} epochs) for the inference measurements …", flush=True)
        args.model_dir_mlp = str(args.scratch / "seed-mlp")
        train(TrainConfig(epochs=args.epochs, seed=args.seed), data_dir=args.data_dir, out_dir=args.model_dir_mlp, verbose=0)
    passthrough += ["--model-dir-mlp", args.model_dir_mlp]

    figures = {}
    rss = {}
    for name in PHASES:
        print(f"running {name} …", flush=True)
        figures[name], rss[name] = run_phase(name, passthrough)

    reference, ours = figures["reference_train"], figures["apparel_train"]
    train_ratio = reference["epoch_seconds"] / ours["epoch_seconds"]
    print(f"\n(a/b) training seed-mlp, batch 32, {args.epochs} epochs, seconds per epoch after the first:")
    print(f"  reference code  {reference['epoch_seconds']:.3f} s   test accuracy {reference['test_accuracy']:.4f}   peak RSS {rss['reference_train']:.0f} MiB")
    print(f"  apparel train   {ours['epoch_seconds']:.3f} s   test accuracy {ours['test_accuracy']:.4f}   peak RSS {rss['apparel_train']:.0f} MiB")
    print(f"  ratio           {train_ratio:.2f}×")

    reference_predict = figures["reference_predict"]
    reference_classes = np.load(args.scratch / "reference_classes.npy")
    paths = figures["apparel_predict"]
    fastest = min(paths, key=lambda name: paths[name]["seconds"])
    print("\n(c) batch inference, 10,000 test images, median of repeated calls:")
    print(f"  reference predict     {reference_predict['seconds']:.4f} s  {reference_predict['images_per_second']:>10,.0f} images/s   peak RSS {rss['reference_predict']:.0f} MiB")
    identical = {}
    for name, figure in paths.items():
        identical[name] = bool(np.array_equal(np.load(args.scratch / f"{name}_classes.npy"), reference_classes))
        print(f"  apparel {name:<13} {figure['seconds']:.4f} s  {figure['images_per_second']:>10,.0f} images/s   "
              f"{reference_predict['seconds'] / figure['seconds']:.1f}×  identical classes: {identical[name]}")
    print(f"  (peak RSS of the apparel inference process: {rss['apparel_predict']:.0f} MiB)")
    inference_ratio = reference_predict["seconds"] / paths[fastest]["seconds"]

    latency = figures["latency"]
    print("\n(d) single-image latency of the service's path (Predictor.predict_proba):")
    for label, figure in latency.items():
        print(f"  {label:<9} p50 {figure['p50_ms']:.3f} ms   p99 {figure['p99_ms']:.3f} ms")

    summary = {
        "train_ratio": round(train_ratio, 3),
        "inference_ratio": round(inference_ratio, 3),
        "fastest_inference_path": fastest,
        "identical_classes": identical[fastest],
        "test_accuracy_reference": reference["test_accuracy"],
        "test_accuracy_apparel": ours["test_accuracy"],
        "epoch_seconds_reference": round(reference["epoch_seconds"], 4),
        "epoch_seconds_apparel": round(ours["epoch_seconds"], 4),
        "inference_seconds_reference": round(reference_predict["seconds"], 4),
        "inference_seconds_apparel": round(paths[fastest]["seconds"], 4),
        "single_image_p50_ms": round(latency["seed_mlp"]["p50_ms"], 4),
        "single_image_p99_ms": round(latency["seed_mlp"]["p99_ms"], 4),
        "epochs": args.epochs,
        "peak_rss_mib": {name: round(value) for name, value in rss.items()},
    }
    if "default" in latency:
        summary["default_model_single_image_p50_ms"] = round(latency["default"]["p50_ms"], 4)
        summary["default_model_single_image_p99_ms"] = round(latency["default"]["p99_ms"], 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
