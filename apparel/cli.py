"""The ``apparel`` command: one subcommand per library function.

Heavy libraries (TensorFlow, matplotlib) are imported inside each subcommand, so ``apparel --help``
answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

TRAIN_FLAGS = {
    # flag: (type, help)
    "model": (str, "registered model name (see `apparel models`); default seed-mlp"),
    "hidden": (int, "hidden width (seed-mlp: 256)"),
    "outputs": (int, "number of output logits (seed-mlp: 20, as the reference; 10 is natural)"),
    "activation": (str, "Keras activation name: relu, tanh, sigmoid, gelu, …"),
    "depth": (int, "hidden layers (mlp) or residual stages (resnet)"),
    "blocks": (int, "residual blocks per stage (resnet)"),
    "width": (int, "filters of the first convolution (cnn, resnet)"),
    "dropout": (float, "dropout rate"),
    "optimizer": (str, "Keras optimizer name: adam, ftrl, sgd, rmsprop, adamw, nadam, lion, …"),
    "learning_rate": (float, "learning rate (default: the optimizer's own)"),
    "epochs": (int, "training epochs (default 20)"),
    "batch_size": (int, "batch size (default 32)"),
    "seed": (int, "random seed (default 0)"),
    "limit": (int, "train on the first N training images only"),
    "validation_split": (float, "fraction of the training set held out (default: the model's)"),
    "steps_per_execution": (int, "training steps per compiled call (default 64)"),
}


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up banner says nothing a user can act on.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_data(args) -> int:
    from apparel import data

    _status(f"reading and verifying {data.resolve_data_dir(args.data_dir)} …")
    dataset = data.load_dataset(args.data_dir, scaled=False)
    names = {"x_train": "Input training data", "y_train": "Output training data",
             "x_test": "Input testing data", "y_test": "Output testing data"}
    for key, shape in dataset.shapes().items():
        print(f"{names[key]:<22} {shape}")
    counts = ", ".join(f"{name} {int((dataset.y_train == i).sum())}" for i, name in enumerate(data.CLASS_NAMES))
    print(f"Training images per class: {counts}")
    if args.keras_cache:
        target = data.install_keras_cache(args.data_dir)
        print(f"Installed into Keras's cache: {target} (keras.datasets.fashion_mnist.load_data() now works offline)")
    return 0


def train_config_from_args(args):
    """Defaults, then ``--config`` file, then flags that were given."""
    from apparel.config import TrainConfig, read_config_file

    config = TrainConfig()
    if args.config:
        values = read_config_file(args.config)
        values.pop("versions", None)
        config = config.replace(**values)
    flags = {key: getattr(args, key) for key in TRAIN_FLAGS if getattr(args, key) is not None}
    if args.metrics:
        flags["metrics"] = [name.strip() for name in args.metrics.split(",") if name.strip()]
    if args.batch_norm is not None:
        flags["batch_norm"] = args.batch_norm
    if args.jit_compile is not None:
        flags["jit_compile"] = args.jit_compile
    return config.replace(**flags)


def cmd_train(args) -> int:
    _quiet_tensorflow()
    from apparel.training import train

    config = train_config_from_args(args)
    _status(f"training {config.model} ({config.optimizer}, {config.epochs} epochs, batch {config.batch_size}) → {args.out}")
    result = train(config, out_dir=args.out, data_dir=args.data_dir, verbose=1 if sys.stdout.isatty() else 2)
    metrics = result.metrics
    print(
        f"{config.model}: test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
        f"train accuracy {metrics['train_accuracy']:.4f}, train loss {metrics['train_loss']:.4f}, "
        f"{metrics['fit_seconds']:.1f} s ({metrics['epoch_seconds']:.2f} s/epoch), {metrics['parameters']:,} parameters"
    )
    print(f"wrote {args.out}/model.keras, config.json, history.json, metrics.json")
    return 0


def cmd_evaluate(args) -> int:
    _quiet_tensorflow()
    from apparel.evaluation import evaluate_run
    from apparel.prediction import resolve_model_dir

    model_dir = resolve_model_dir(args.model_dir)
    _status(f"evaluating {model_dir} on the test set …")
    report = evaluate_run(model_dir, data_dir=args.data_dir)
    print(f"test accuracy {report['test_accuracy']:.4f}, test loss {report['test_loss']:.4f} ({report['test_images']} images)")
    print(f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
    for name, row in report["per_class"].items():
        print(f"{name:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>7}")
    confused = "; ".join(f"{a} ↔ {b}: {pair['mistakes']}" for pair in report["most_confused"][:3] for a, b in [pair["classes"]])
    print(f"most confused: {confused}")
    print(f"updated {model_dir}/metrics.json")
    return 0


def _split_model_dir(args) -> tuple[str | None, list[str]]:
    """``predict [DIR] FILE...``: the first argument is the model when it is a run directory."""
    from apparel.artifacts import MODEL_FILE

    files = list(args.files)
    model_dir = args.model_dir
    if model_dir is None and files and (Path(files[0]) / MODEL_FILE).is_file():
        model_dir = files.pop(0)
    return model_dir, files


def cmd_predict(args) -> int:
    _quiet_tensorflow()
    import numpy as np

    from apparel.prediction import Predictor, read_image_file

    model_dir, files = _split_model_dir(args)
    if not files:
        raise ValueError("give at least one image file (28×28 PNG/JPEG or .npy) to classify")
    predictor = Predictor.from_dir(model_dir)
    names, batches, failures = [], [], []
    for file in files:
        try:
            images = read_image_file(file)
        except ValueError as error:
            failures.append({"file": file, "error": str(error)})
            continue
        names.extend([file] if len(images) == 1 else [f"{file}[{i}]" for i in range(len(images))])
        batches.append(images)
    results = []
    if batches:
        probabilities = predictor.predict_proba(np.concatenate(batches))
        for name, top in zip(names, predictor.top_k(probabilities, args.top_k)):
            results.append({"file": name, "label": top[0][0], "probability": round(top[0][1], 6),
                            "top_k": [{"label": label, "probability": round(p, 6)} for label, p in top]})
    if args.json:
        print(json.dumps(results + failures, indent=2))
    else:
        for result in results:
            ranked = ", ".join(f"{item['label']} {item['probability']:.1%}" for item in result["top_k"])
            print(f"{result['file']}: {ranked}")
        for failure in failures:
            print(f"{failure['file']}: error: {failure['error']}", file=sys.stderr)
    return 1 if failures and not results else 0


def cmd_plots(args) -> int:
    _quiet_tensorflow()
    from apparel.plots import write_plots

    _status("drawing plots …")
    for path in write_plots(args.model_dir, data_dir=args.data_dir):
        print(path)
    return 0


def cmd_models(args) -> int:
    from apparel.models import MODELS

    for name, spec in MODELS.items():
        defaults = ", ".join(f"{key}={value}" for key, value in spec.defaults().items())
        print(f"{name:<9} {spec.description}\n{'':<9} defaults: {defaults}; validation split {spec.validation_split}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apparel", description="Classify clothing images with Keras (Fashion-MNIST).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_dir_help = "directory with the Fashion-MNIST IDX files (default $APPAREL_DATA_DIR or Debian's)"

    data = commands.add_parser("data", help="verify the data set and print its shapes")
    data.add_argument("--data-dir", help=data_dir_help)
    data.add_argument("--keras-cache", action="store_true", help="also copy it into Keras's cache for load_data()")
    data.set_defaults(handler=cmd_data)

    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--out", required=True, help="run directory to write")
    train.add_argument("--config", help="JSON or TOML file of parameters (flags override it)")
    train.add_argument("--data-dir", help=data_dir_help)
    for key, (kind, help_text) in TRAIN_FLAGS.items():
        train.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, help=help_text)
    train.add_argument("--metrics", help="comma-separated Keras metric names (default: accuracy)")
    train.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalisation (mlp)")
    train.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None, help="XLA compilation")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="recompute test metrics, per-class figures and the confusion matrix")
    evaluate.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    evaluate.add_argument("--data-dir", help=data_dir_help)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("files", nargs="+", metavar="[DIR] FILE", help="optional run directory, then images (28×28 PNG/JPEG, .npy)")
    predict.add_argument("--model-dir", help="run directory (default: the first argument if it is one, else the shipped model)")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to show (default 3)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(handler=cmd_predict)

    plots = commands.add_parser("plots", help="write sample grids, predictions, curves and confusion matrix PNGs")
    plots.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    plots.add_argument("--data-dir", help=data_dir_help)
    plots.set_defaults(handler=cmd_plots)

    models = commands.add_parser("models", help="list the registered models and their defaults")
    models.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"apparel {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"apparel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
