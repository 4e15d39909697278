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
    "schedule": (str, "learning-rate schedule: constant (default), cosine, one-cycle"),
    "label_smoothing": (float, "label smoothing (default 0)"),
    "early_stopping": (int, "stop after this many epochs without a better validation accuracy"),
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
        config = config.replace(**read_config_file(args.config))
    flags = {key: getattr(args, key) for key in TRAIN_FLAGS if getattr(args, key) is not None}
    if args.metrics:
        flags["metrics"] = [name.strip() for name in args.metrics.split(",") if name.strip()]
    if args.augment is not None:
        flags["augment"] = [name.strip() for name in args.augment.split(",") if name.strip()]
    if args.mixed_precision is not None:
        flags["mixed_precision"] = args.mixed_precision
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
    result = train(config, out_dir=args.out, data_dir=args.data_dir, verbose=1 if sys.stdout.isatty() else 2, resume=args.resume)
    metrics = result.metrics

    def figure(key: str) -> str:
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.4f}"

    print(
        f"{config.model}: test accuracy {figure('test_accuracy')}, test loss {figure('test_loss')}, "
        f"train accuracy {figure('train_accuracy')}, train loss {figure('train_loss')}, "
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
    from apparel.prediction import Predictor
    from apparel.sources import FetchConfig, expand_sources, predict_sources

    model_dir, files = _split_model_dir(args)
    if not files:
        raise ValueError("give at least one image: a file, folder, glob pattern or http(s) URL")
    sources = expand_sources(files)
    predictor = Predictor.from_litert(args.litert) if args.litert else Predictor.from_dir(model_dir)
    fetch = FetchConfig(timeout=args.timeout, allow_private=args.allow_private)
    from tqdm import tqdm

    # A bar only for many images, and only on a terminal (disable=None), so pipes stay clean.
    with tqdm(total=len(sources), unit="image", file=sys.stderr, disable=True if len(sources) < 20 else None) as bar:
        outcomes = predict_sources(sources, predictor, top_k=args.top_k, fetch=fetch, progress=bar.update)
    results = [outcome for outcome in outcomes if "error" not in outcome]
    failures = [outcome for outcome in outcomes if "error" in outcome]
    if args.json:
        print(json.dumps(outcomes, indent=2))
    elif args.csv:
        import csv

        k = max([len(result["top_k"]) for result in results], default=args.top_k)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("label", "probability")] + ["error"])
        for outcome in outcomes:
            ranked = [value for item in outcome.get("top_k", []) for value in (item["label"], f"{item['probability']:.6f}")]
            writer.writerow([outcome["file"]] + ranked + [""] * (2 * k - len(ranked)) + [outcome.get("error", "")])
    else:
        if results:
            rows = [[result["file"]] + [f"{item['label']} {item['probability']:.1%}" for item in result["top_k"]] for result in results]
            header = ["file"] + [f"top {i}" for i in range(1, len(rows[0]))]
            widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
            for row in [header] + rows:
                print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        for failure in failures:
            print(f"{failure['file']}: error: {failure['error']}", file=sys.stderr)
    return 1 if failures and not results else 0


def cmd_preprocess(args) -> int:
    from apparel.photos import draw_steps, pipeline_steps
    from apparel.sources import FetchConfig, fetch_url, is_url

    source = fetch_url(args.file, FetchConfig(allow_private=args.allow_private)) if is_url(args.file) else args.file
    steps = pipeline_steps(source)
    draw_steps(source, args.out)
    print(" → ".join(f"{name} {image.width}×{image.height}" for name, image in steps))
    print(f"wrote {args.out}")
    return 0


def cmd_catalog(args) -> int:
    _quiet_tensorflow()
    from tqdm import tqdm

    from apparel.catalog import CatalogConfig, categorize_catalog

    config = CatalogConfig(model_dir=args.model_dir, images_dir=args.images_dir, mapping=args.mapping,
                           min_confidence=args.min_confidence, overwrite=args.overwrite,
                           allow_private=args.allow_private, timeout=args.timeout)
    _status(f"categorising {args.csv} → {args.out} …")
    with tqdm(unit="image", file=sys.stderr, disable=None) as bar:
        report = categorize_catalog(args.csv, args.out, config, progress=bar.update)
    print(f"{report.products} products in {report.rows} rows: {report.categorized} categorised, "
          f"{report.low_confidence} below --min-confidence {config.min_confidence:g}, "
          f"{report.failed} with unreadable images, {report.no_image} without images")
    print(f"{report.changed_cells} cells changed; {report.predicted} images classified, {report.cached} from the cache")
    print(f"wrote {report.output}")
    print(f"review: {report.review}")
    return 0


def cmd_plots(args) -> int:
    _quiet_tensorflow()
    from apparel.plots import write_plots

    _status("drawing plots …")
    for path in write_plots(args.model_dir, data_dir=args.data_dir):
        print(path)
    return 0


def cmd_export(args) -> int:
    _quiet_tensorflow()
    from apparel.export import export_model

    _status(f"exporting {args.model_dir or 'the shipped model'} as {args.format} …")
    print(export_model(args.model_dir, args.format, args.out))
    return 0


def cmd_models(args) -> int:
    from apparel.models import MODELS

    for name, spec in MODELS.items():
        defaults = ", ".join(f"{key}={value}" for key, value in spec.defaults().items())
        print(f"{name:<9} {spec.description}\n{'':<9} defaults: {defaults}; validation split {spec.validation_split}")
    return 0


def cmd_serve(args) -> int:
    _quiet_tensorflow()
    from apparel.service import run_server

    settings = {key: getattr(args, key) for key in ("max_batch", "max_wait_ms", "max_body_bytes", "taxonomy") if getattr(args, key) is not None}
    _status(f"loading the model and serving on http://{args.host}:{args.port}/ (Ctrl-C stops) …")
    run_server(args.model_dir, host=args.host, port=args.port, access_log=args.access_log,
               inference_threads=args.inference_threads, litert=args.litert, **settings)
    return 0


def cmd_bench(args) -> int:
    _quiet_tensorflow()
    from apparel import bench_report
    from apparel.benchmarking import AXIS_TYPES, SETTING_TYPES, build_study, parse_axis, read_study_file, redact, run_study

    options = read_study_file(args.study_file) if args.study_file else {"axes": {}, "settings": {}, "train": {}}
    axes = {**options["axes"], **{name: parse_axis(name, getattr(args, name)) for name in AXIS_TYPES if getattr(args, name) is not None}}
    settings = {**options["settings"], **{key: getattr(args, key) for key in SETTING_TYPES if getattr(args, key, None) is not None}}
    spec, bench_settings = build_study(axes, settings, options["train"])
    name, storage = bench_settings.study_name(spec), redact(bench_settings.storage)
    what = f"a grid of {spec.size()}" if spec.search is None else f"{spec.search} TPE trials over a space of {spec.size()}"
    _status(f"study {name} in {storage}: {what}, {bench_settings.workers} worker(s); rerun the same command to resume")
    records = run_study(spec, bench_settings)
    print(bench_report.results_table(records))
    export = settings.get("export")
    if export:
        meta = {"study": name, "storage": storage, "spec": spec.describe()}
        for path in bench_report.write_exports(records, export, meta):
            print(f"wrote {path}")
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
    train.add_argument("--augment", help="comma-separated training augmentations: shift, flip, erase (default none)")
    train.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 compute with float32 weights (default off: no gain on this CPU)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (same parameters)")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="recompute test metrics, per-class figures and the confusion matrix")
    evaluate.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    evaluate.add_argument("--data-dir", help=data_dir_help)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="classify product photos: files, folders, glob patterns, URLs")
    predict.add_argument("files", nargs="+", metavar="[DIR] IMAGE",
                         help="optional run directory, then images: files (any size, JPEG/PNG/WebP/…, or .npy), "
                              "folders (searched recursively), glob patterns, http(s) URLs")
    predict.add_argument("--model-dir", help="run directory (default: the first argument if it is one, else the shipped model)")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to show (default 3)")
    predict.add_argument("--litert", help="run this exported .tflite model (apparel export --format litert) instead of Keras")
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV")
    predict.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per URL (default 10)")
    predict.add_argument("--allow-private", action="store_true", help="also fetch URLs on private, loopback and link-local addresses")
    predict.set_defaults(handler=cmd_predict)

    preprocess = commands.add_parser("preprocess", help="show the photo pipeline's steps for one image")
    preprocess.add_argument("file", help="image file or http(s) URL")
    preprocess.add_argument("--out", required=True, help="PNG to write, the steps side by side")
    preprocess.add_argument("--allow-private", action="store_true", help="also fetch URLs on private addresses")
    preprocess.set_defaults(handler=cmd_preprocess)

    catalog = commands.add_parser("catalog", help="fill categories, types and tags of a Shopify product CSV from its photos")
    catalog.add_argument("csv", help="Shopify product export (either header style)")
    catalog.add_argument("--out", required=True, help="CSV to write (a review CSV and an image cache go beside it)")
    catalog.add_argument("--model-dir", "--model", dest="model_dir", help="run directory (default: the shipped model)")
    catalog.add_argument("--images-dir", help="folder that local image paths resolve inside (default: the CSV's folder)")
    catalog.add_argument("--mapping", help="class,category CSV to use instead of the shipped Shopify taxonomy mapping")
    catalog.add_argument("--min-confidence", type=float, default=0.5, help="write predictions at least this likely (default 0.5)")
    catalog.add_argument("--overwrite", action="store_true", help="replace categories that are already filled")
    catalog.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per image URL (default 10)")
    catalog.add_argument("--allow-private", action="store_true", help="also fetch URLs on private, loopback and link-local addresses")
    catalog.set_defaults(handler=cmd_catalog)

    plots = commands.add_parser("plots", help="write sample grids, predictions, curves and confusion matrix PNGs")
    plots.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    plots.add_argument("--data-dir", help=data_dir_help)
    plots.set_defaults(handler=cmd_plots)

    export = commands.add_parser("export", help="export a model as LiteRT (.tflite), SavedModel or ONNX")
    export.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    export.add_argument("--format", required=True, choices=["litert", "saved_model", "onnx"])
    export.add_argument("--out", required=True, help="file (.tflite, .onnx) or directory (saved_model) to write")
    export.set_defaults(handler=cmd_export)

    models = commands.add_parser("models", help="list the registered models and their defaults")
    models.set_defaults(handler=cmd_models)

    serve = commands.add_parser("serve", help="serve predictions over HTTP: TF-Serving REST API, photo uploads, web page")
    serve.add_argument("model_dir", nargs="?", help="run directory (default: the shipped model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--max-batch", type=int, help="images per model call (default 64)")
    serve.add_argument("--max-wait-ms", type=float, help="how long a batch waits for more requests (default 2)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body accepted (default 16 MiB)")
    serve.add_argument("--inference-threads", type=int, help="TensorFlow threads per operation (default: one per core)")
    serve.add_argument("--taxonomy", help="class → store category CSV (default: the shipped apparel/taxonomy.csv)")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    serve.add_argument("--litert", help="run this exported .tflite of the model (apparel export --format litert) instead of Keras")
    serve.set_defaults(handler=cmd_serve)

    bench = commands.add_parser("bench", help="benchmark study over optimizers, activations, widths, epochs … (Optuna)")
    list_help = "comma-separated values to try"
    for name, help_text in (("models", "registered model names"), ("optimizers", "Keras optimizer names"),
                            ("activations", "Keras activation names"), ("hidden", "hidden widths"),
                            ("outputs", "output logits"), ("epochs", "epoch counts"), ("batch_sizes", "batch sizes"),
                            ("learning_rates", "learning rates ('default': the optimizer's)"), ("seeds", "seeds (repeats)")):
        bench.add_argument("--" + name.replace("_", "-"), dest=name, metavar="A,B", help=f"{help_text}; {list_help}")
    bench.add_argument("--study-file", help="TOML file of axes and settings (flags override it)")
    bench.add_argument("--search", type=int, metavar="N", help="run N trials of Optuna's TPE instead of the full grid")
    bench.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of the study database (default sqlite:///runs/bench/bench.db)")
    bench.add_argument("--study", metavar="NAME", help="study name (default: derived from the axes)")
    bench.add_argument("--workers", type=int, metavar="N", help="local worker processes (default 1); threads are divided among them")
    bench.add_argument("--export", metavar="DIR", help="write results.csv, results.md, results.json and charts here")
    bench.add_argument("--limit", type=int, metavar="N", help="train on the first N training images (quick studies)")
    bench.add_argument("--validation-split", type=float, help="hold out this fraction of the training set; TPE then steers on it")
    bench.add_argument("--data-dir", help=data_dir_help)
    bench.add_argument("--no-verify", dest="verify_data", action="store_false", default=None,
                       help="skip the SHA-256 check of the data (other IDX data of the same layout)")
    bench.add_argument("--retry-failed", action="store_true", default=None, help="run trials that raised once more")
    bench.set_defaults(handler=cmd_bench)
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
    except BrokenPipeError:
        # The reader went away (`apparel predict … | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
