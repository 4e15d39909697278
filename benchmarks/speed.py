"""Training and inference speed: the walk-through's code as written against `apparel`, side by side.

    .venv/bin/python benchmarks/speed.py                           # 3 epochs, 3 paired rounds: ~4 min
    .venv/bin/python benchmarks/speed.py --epochs 20 --rounds 1    # the 20-epoch accuracy comparison

Each measurement runs in its own process, so peak memory (max RSS) is per path and no path warms
another's caches. Every phase runs once per round, in turn; ratios are taken within a round and
the medians over rounds are reported. Epoch times exclude the first epoch (graph tracing and
compilation). The last line printed is one JSON object with every figure.
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
from apparel.artifacts import shipped_model_dir  # noqa: E402  (this checkout's package, above)


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

    from apparel.kinds.fashion_mnist.data import load_raw

    (inp_train, out_train), (inp_test, out_test) = load_raw(args.data_dir)
    inp_train, inp_test = inp_train / 255.0, inp_test / 255.0
    # Unseeded, as the walk-through runs it. Seeding here would not be neutral: under a global
    # seed, Keras 3's numpy input repeats one shuffle order every epoch, which costs this model
    # about 1.3 points of test accuracy (docs/performance.md).
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
    from apparel.training.trainer import train

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
    from apparel.inference.prediction import load_model

    return load_model(args.model_dir_mlp)


def phase_reference_predict(args) -> dict:
    """The walk-through's softmax wrapper and ``predict`` on the 10,000 test images."""
    import keras

    from apparel.kinds.fashion_mnist.data import load_dataset

    x_test = load_dataset(args.data_dir).x_test
    probability_model = keras.Sequential([_reference_model(args), keras.layers.Softmax()])
    times = _time_calls(lambda: probability_model.predict(x_test, verbose=0), args.repeats)
    classes = probability_model.predict(x_test, verbose=0).argmax(axis=-1)
    np.save(args.scratch / "reference_classes.npy", classes)
    return {"seconds": float(np.median(times)), "images_per_second": len(x_test) / float(np.median(times))}


def _inference_paths(args):
    """Candidate batch-inference paths of `apparel` for the seed-mlp run: name → function."""
    from apparel.inference.export import export_model
    from apparel.inference.litert import LiteRTPredictor
    from apparel.inference.prediction import Predictor

    predictor = Predictor.from_dir(args.model_dir_mlp)
    paths = {"keras-compiled": predictor.predict_proba}
    tflite = export_model(args.model_dir_mlp, "litert", args.scratch / "model.tflite")
    paths["litert"] = LiteRTPredictor(tflite).predict_proba
    return paths


def phase_apparel_predict(args) -> dict:
    """Each `apparel` batch path on the 10,000 test images; the fastest is reported."""
    from apparel.kinds.fashion_mnist.data import load_dataset

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
    """Single-image latency of the service's default path (`Predictor.predict_proba` on one
    image), and of the same model exported to LiteRT (`apparel serve --litert`)."""
    from apparel.kinds.fashion_mnist.data import load_dataset
    from apparel.inference.export import export_model
    from apparel.inference.prediction import Predictor

    images = load_dataset(args.data_dir).x_test
    results = {}
    for label, model_dir in (("seed_mlp", args.model_dir_mlp), ("default", args.model_dir_default)):
        if model_dir is None or not (Path(model_dir) / "model.keras").exists():
            continue
        tflite = export_model(model_dir, "litert", args.scratch / f"{label}.tflite")
        for suffix, predictor in (("", Predictor.from_dir(model_dir)), ("_litert", Predictor.from_litert(tflite, model_dir))):
            # A different test image each call, as a service sees them.
            calls = iter(range(args.latency_repeats + 1))
            times = np.array(_time_calls(lambda: predictor.predict_proba(images[next(calls) % len(images)][None]),
                                         args.latency_repeats)) * 1000
            results[label + suffix] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
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
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds of every phase; ratios are their medians")
    parser.add_argument("--repeats", type=int, default=7, help="timed batch-inference calls per path")
    parser.add_argument("--latency-repeats", type=int, default=500, help="timed single-image calls")
    parser.add_argument("--data-dir")
    parser.add_argument("--model-dir-mlp", help="seed-mlp run for inference (default: train one, --epochs)")
    parser.add_argument("--model-dir-default", default=str(shipped_model_dir("default")))
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
        from apparel.training.trainer import train

        print(f"training a seed-mlp ({args.epochs} epochs) for the inference measurements …", flush=True)
        args.model_dir_mlp = str(args.scratch / "seed-mlp")
        train(TrainConfig(epochs=args.epochs, seed=args.seed), data_dir=args.data_dir, out_dir=args.model_dir_mlp, verbose=0)
    passthrough += ["--model-dir-mlp", args.model_dir_mlp]

    # Paired rounds: every phase runs once per round, in turn, and each ratio is taken within a
    # round, so a slow spell of this shared machine slows both sides of a ratio, not one.
    rounds = []
    for number in range(1, args.rounds + 1):
        figures, rss = {}, {}
        for name in PHASES:
            print(f"round {number}/{args.rounds}: {name} …", flush=True)
            figures[name], rss[name] = run_phase(name, passthrough)
        rounds.append(summarise_round(figures, rss, args))
    report(rounds, args)


def summarise_round(figures: dict, rss: dict, args) -> dict:
    """One round's ratios and figures, checked against the reference's predicted classes."""
    reference_classes = np.load(args.scratch / "reference_classes.npy")
    paths = figures["apparel_predict"]
    for name in paths:
        paths[name]["identical_classes"] = bool(
            np.array_equal(np.load(args.scratch / f"{name}_classes.npy"), reference_classes)
        )
    fastest = min(paths, key=lambda name: paths[name]["seconds"])
    return {
        "figures": figures,
        "rss": rss,
        "fastest": fastest,
        "train_ratio": figures["reference_train"]["epoch_seconds"] / figures["apparel_train"]["epoch_seconds"],
        "inference_ratio": figures["reference_predict"]["seconds"] / paths[fastest]["seconds"],
    }


def _spread(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.median(values):.{digits}f} (range {min(values):.{digits}f}–{max(values):.{digits}f})"


def report(rounds: list[dict], args) -> None:
    """Print the per-round table, the medians over rounds, and the JSON summary line."""
    first = rounds[0]["figures"]
    column = lambda phase, key: [r["figures"][phase][key] for r in rounds]  # noqa: E731
    peak = {name: max(r["rss"][name] for r in rounds) for name in rounds[0]["rss"]}
    train_ratios = [r["train_ratio"] for r in rounds]
    inference_ratios = [r["inference_ratio"] for r in rounds]

    print(f"\n(a/b) training seed-mlp, batch 32, {args.epochs} epochs, seconds per epoch after the first, "
          f"{len(rounds)} paired round(s):")
    # The reference runs unseeded, so its accuracy differs from round to round; apparel's does not.
    reference_accuracy = float(np.median(column("reference_train", "test_accuracy")))
    print(f"  reference code  {_spread(column('reference_train', 'epoch_seconds'))} s   "
          f"test accuracy {_spread(column('reference_train', 'test_accuracy'), 4)}   peak RSS {peak['reference_train']:.0f} MiB")
    print(f"  apparel train   {_spread(column('apparel_train', 'epoch_seconds'))} s   "
          f"test accuracy {first['apparel_train']['test_accuracy']:.4f}   peak RSS {peak['apparel_train']:.0f} MiB")
    print(f"  ratio per round {', '.join(f'{ratio:.2f}' for ratio in train_ratios)}   median {np.median(train_ratios):.2f}×")

    print("\n(c) batch inference, 10,000 test images, median of repeated calls per round:")
    seconds = column("reference_predict", "seconds")
    print(f"  reference predict     {_spread(seconds, 4)} s  {10_000 / np.median(seconds):>10,.0f} images/s   "
          f"peak RSS {peak['reference_predict']:.0f} MiB")
    for name in first["apparel_predict"]:
        path_seconds = [r["figures"]["apparel_predict"][name]["seconds"] for r in rounds]
        identical = all(r["figures"]["apparel_predict"][name]["identical_classes"] for r in rounds)
        print(f"  apparel {name:<13} {_spread(path_seconds, 4)} s  {10_000 / np.median(path_seconds):>10,.0f} images/s   "
              f"{np.median(seconds) / np.median(path_seconds):.1f}×  identical classes: {identical}")
    print(f"  (peak RSS of the apparel inference process: {peak['apparel_predict']:.0f} MiB)")
    print(f"  ratio per round (fastest path) {', '.join(f'{ratio:.1f}' for ratio in inference_ratios)}   "
          f"median {np.median(inference_ratios):.1f}×")

    print("\n(d) single-image latency, the service's default path (Predictor.predict_proba) and its --litert "
          "path, median over rounds:")
    latency = {
        label: {key: float(np.median([r["figures"]["latency"][label][key] for r in rounds])) for key in ("p50_ms", "p99_ms")}
        for label in first["latency"]
    }
    for label, figure in latency.items():
        print(f"  {label:<16} p50 {figure['p50_ms']:.3f} ms   p99 {figure['p99_ms']:.3f} ms")

    fastest = max(set(r["fastest"] for r in rounds), key=[r["fastest"] for r in rounds].count)
    summary = {
        "train_ratio": round(float(np.median(train_ratios)), 3),
        "train_ratio_per_round": [round(ratio, 3) for ratio in train_ratios],
        "inference_ratio": round(float(np.median(inference_ratios)), 3),
        "inference_ratio_per_round": [round(ratio, 3) for ratio in inference_ratios],
        "fastest_inference_path": fastest,
        "identical_classes": all(r["figures"]["apparel_predict"][r["fastest"]]["identical_classes"] for r in rounds),
        "test_accuracy_reference": round(reference_accuracy, 4),
        "test_accuracy_reference_per_round": [round(value, 4) for value in column("reference_train", "test_accuracy")],
        "test_accuracy_apparel": first["apparel_train"]["test_accuracy"],
        "epoch_seconds_reference": round(float(np.median(column("reference_train", "epoch_seconds"))), 4),
        "epoch_seconds_apparel": round(float(np.median(column("apparel_train", "epoch_seconds"))), 4),
        "inference_seconds_reference": round(float(np.median(seconds)), 4),
        "inference_seconds_apparel": round(
            float(np.median([r["figures"]["apparel_predict"][r["fastest"]]["seconds"] for r in rounds])), 4
        ),
        "single_image_p50_ms": round(latency["seed_mlp"]["p50_ms"], 4),
        "single_image_p99_ms": round(latency["seed_mlp"]["p99_ms"], 4),
        "epochs": args.epochs,
        "rounds": len(rounds),
        "peak_rss_mib": {name: round(value) for name, value in peak.items()},
    }
    if "default" in latency:
        summary["default_model_single_image_p50_ms"] = round(latency["default"]["p50_ms"], 4)
        summary["default_model_single_image_p99_ms"] = round(latency["default"]["p99_ms"], 4)
    for label in ("seed_mlp_litert", "default_litert"):
        if label in latency:
            summary[f"{label}_single_image_p50_ms"] = round(latency[label]["p50_ms"], 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
