"""The ``apparel`` command: one subcommand per library function.

The package's modules import TensorFlow, Keras, matplotlib and Optuna only inside the functions that
use them, so ``apparel --help`` answers at once; FastAPI loads only for ``apparel serve``. Flags of
the configs (training, catalog, service) are made from their dataclass fields.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import functools
import json
import os
import sys
from pathlib import Path

from apparel.kinds.fashion_mnist import data
from apparel.artifacts import CONFIG_FILE, MODEL_FILE, shipped_model_names
from apparel.bench import report as bench_report
from apparel.bench.spec import AXES, BenchSettings
from apparel.bench.study import AXIS_TYPES, SETTING_TYPES, build_study, parse_axis, read_study_file, redact, run_study
from apparel.config import TrainConfig
from apparel.contract import InputContract, metadata_path
from apparel.training.evaluation import evaluate_run, keep_figures
from apparel.images.fetch import FetchConfig, fetch_url, is_url
from apparel.images.steps_figure import draw_steps, model_steps
from apparel.images.sources import calibration_inputs, expand_sources
from apparel.inference.export import export_model
from apparel.inference.prediction import MODEL_DIR_ENV, Predictor, default_model_note, resolve_model_dir
from apparel.inference.runtime import DEFAULT_RUNTIME, RUNTIMES, load_predictor
from apparel.kinds.base import Kind, figure
from apparel.kinds.registry import PHOTO_KIND, kind_for_inputs
from apparel.training.models import MODELS
from apparel.errors import ParameterError
from apparel.flags import add_config_flags, config_changes, flag_name, port_number, train_config_from_args
from apparel.training.plots import write_plots
from apparel.serve.config import ServiceConfig
from apparel.shop.catalog import CatalogConfig, categorize_catalog
from apparel.shop.attribute_cells import BY_PARAMETER
from apparel.batch.loop import predict_sources
from apparel.batch.run import BatchConfig, classify_manifest
from apparel.training.trainer import kind_of, train

REPORT_URL = "https://github.com/apparel/apparel/issues"  # where an unexpected error is reported
# A shipped model is named where a run directory is asked for: it lives inside the installed package.
SHIPPED_NAME = f"a shipped model's name, {' or '.join(shipped_model_names())}"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's C++ start-up lines (absl, oneDNN: "All log messages before
    absl::InitializeLog() …") unless asked for; they must be set before TensorFlow is imported."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO, WARNING and ERROR lines
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")  # absl's pre-InitializeLog lines


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _say_default_model(model_dir, kind: Kind) -> None:
    """Say which model a command picked when it was given none: ``kind``'s shipped model."""
    if model_dir is None:
        _status(f"using {default_model_note(kind)}; give a run directory to use another")


def cmd_data(args) -> int:
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


def cmd_train(args) -> int:
    config = train_config_from_args(args)
    _status(f"training {config.model} ({config.optimizer}, {config.epochs} epochs, batch {config.batch_size}) → {args.out}")
    result = train(config, out_dir=args.out, data_dir=args.data_dir, verbose=1 if sys.stdout.isatty() else 2,
                   resume=args.resume, overwrite=args.overwrite)
    metrics = result.metrics
    kind = kind_of(config)
    print(
        f"{config.model}: {kind.measured(metrics)}, train accuracy {figure(metrics, 'train_accuracy')}, "
        f"train loss {figure(metrics, 'train_loss')} (last epoch), {metrics['fit_seconds']:.1f} s, "
        f"{metrics['parameters']:,} parameters"
    )
    for warning in kind.warnings(metrics):
        _status(f"warning: {warning}")
    print(f"wrote {args.out}/model.keras, config.json, history.json, metrics.json")
    return 0


def cmd_evaluate(args) -> int:
    _say_default_model(args.model_dir, kind_for_inputs(args.images is not None))
    model_dir = resolve_model_dir(args.model_dir, kind_for_inputs(args.images is not None))
    _status(f"evaluating {model_dir} on {args.images or 'the test set'} …")
    # The figures are shown before metrics.json is asked to take them: a run that takes no new
    # file (read-only) would otherwise lose the minutes they took.
    report = evaluate_run(model_dir, data_dir=args.data_dir, images=args.images, write=False)
    if args.images is None:
        print(f"test accuracy {report['test_accuracy']:.4f}, test loss {report['test_loss']:.4f} ({report['test_images']} images)")
    else:
        skipped = f", {report['images_skipped']} unreadable left out" if report.get("images_skipped") else ""
        print(f"accuracy {report['images_accuracy']:.4f}, loss {report['images_loss']:.4f} "
              f"({report['images_images']} photos in {args.images}{skipped})")
    width = max(12, *(len(name) + 1 for name in report["per_class"]))
    print(f"{'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
    for name, row in report["per_class"].items():
        print(f"{name:<{width}} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>7}")
    confused = "; ".join(f"{a} ↔ {b}: {pair['mistakes']}" for pair in report["most_confused"][:3] for a, b in [pair["classes"]])
    print(f"most confused: {confused or 'none, no photo was taken for another class'}")
    if not keep_figures(model_dir, report):
        print(f"{model_dir} is a shipped model: its metrics.json is left as shipped; copy the folder to keep "
              "these figures in it")
    else:
        print(f"updated {model_dir}/metrics.json")
    return 0


def _split_model_dir(args) -> tuple[str | None, list[str]]:
    """``predict [DIR] FILE...``: the first argument is the model when it is a run directory, or
    a shipped model's name (``apparel predict photos shirt.jpg``) that names nothing here."""
    files = list(args.files)
    model_dir = args.model_dir
    # A run's config.json marks it too: one whose model.keras is gone is refused as a run, not read
    # as a folder of photos (its plots/*.png classified by the default model).
    if model_dir is None and files and ((Path(files[0]) / MODEL_FILE).is_file() or (Path(files[0]) / CONFIG_FILE).is_file()
                                        or (files[0] in shipped_model_names() and not Path(files[0]).exists())):
        model_dir = files.pop(0)
    elif model_dir is None and len(files) > 1 and not Path(files[0]).suffix and not Path(files[0]).exists():
        # A model's name misspelt would be read as one more missing photo, and the others classified
        # by the default model: said before any photo is read.
        near = difflib.get_close_matches(files[0], shipped_model_names(), n=1)
        if near:
            raise ValueError(f"{files[0]!r} is neither a file nor a model here; did you mean the shipped model "
                             f"{near[0]!r}? (shipped: {', '.join(shipped_model_names())})")
    return model_dir, files


def cmd_predict(args) -> int:
    model_dir, files = _split_model_dir(args)
    if not files:
        raise ValueError("give at least one image: a file, folder, glob pattern or http(s) URL")
    sources = expand_sources(files)
    # Without a model directory, photos go to the shipped store model, arrays to the Fashion-MNIST one.
    arrays = [source.path is not None and source.path.suffix.lower() == ".npy" for source in sources]
    if model_dir is None and not os.environ.get(MODEL_DIR_ENV) and not args.litert and any(arrays) and not all(arrays):
        raise ValueError("give .npy arrays and photos in separate calls: without a model named, arrays go to the "
                         "Fashion-MNIST model and photos to the store model")
    kind = kind_for_inputs(not all(arrays))
    if not args.litert:  # a .tflite carries its own contract
        _say_default_model(model_dir, kind)
    predictor = (Predictor.from_litert(args.litert, model_dir) if args.litert
                 else load_predictor(model_dir, kind=kind, runtime=args.runtime))
    fetch = FetchConfig(timeout=args.timeout, allow_private=args.allow_private)
    from tqdm import tqdm

    # A bar only for many images, and only on a terminal (disable=None), so pipes stay clean.
    categorize = attributes = None
    from apparel.shop.categories import optional_run_chooser, run_chooser

    # A mapping given by name must fit the model (an error says which class lacks a row). Every kind
    # of model gets its category, as in catalog, batch and serve: a Fashion-MNIST "Sandal" is Shoes.
    chooser = (run_chooser(predictor.model_dir, predictor.class_names, args.mapping, export=args.litert)
               if args.mapping else optional_run_chooser(predictor.model_dir, predictor.class_names,
                                                         export=args.litert))
    if chooser is not None:
        categorize = lambda probabilities: [decision.to_dict() for decision in chooser.choose_all(probabilities)]  # noqa: E731
        # Only --json shows them: the table and the CSV are not slowed for the colour; and a 28×28
        # grey input has none to read.
        if args.json and predictor.contract.model_kind.reads_colour_photos:
            from apparel.attributes import product_attributes  # "color", "sleeve_length_type"

            attributes = functools.partial(product_attributes, chooser=chooser)
    with tqdm(total=len(sources), unit="image", file=sys.stderr, disable=True if len(sources) < 20 else None) as bar:
        outcomes = predict_sources(sources, predictor, top_k=args.top_k, fetch=fetch, progress=bar.update,
                                   categorize=categorize, attributes=attributes)
    results = [outcome for outcome in outcomes if "error" not in outcome]
    failures = [outcome for outcome in outcomes if "error" in outcome]
    if args.json:
        print(json.dumps(outcomes, indent=2))
    elif args.csv:
        import csv

        k = max([len(result["top_k"]) for result in results], default=args.top_k)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("label", "probability")]
                        + ["category_id", "category", "category_confidence", "category_reason", "error"])
        for outcome in outcomes:
            ranked = [value for item in outcome.get("top_k", []) for value in (item["label"], f"{item['probability']:.6f}")]
            category = outcome.get("category") or {}
            confidence = category.get("confidence")
            writer.writerow([outcome["file"]] + ranked + [""] * (2 * k - len(ranked))
                            + [category.get("id") or "", category.get("path") or "",
                               "" if confidence is None else f"{confidence:.6f}", category.get("reason") or "",
                               outcome.get("error", "")])
    else:
        if results:
            rows = [[result["file"]] + [f"{item['label']} {item['probability']:.1%}" for item in result["top_k"]]
                    + ([_category_text(result["category"])] if "category" in result else []) for result in results]
            header = ["file"] + [f"top {i}" for i in range(1, len(results[0]["top_k"]) + 1)]
            header += ["category"] if "category" in results[0] else []
            widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
            for row in [header] + rows:
                print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        for failure in failures:
            print(f"{failure['file']}: error: {failure['error']}", file=sys.stderr)
    return 1 if failures and not results else 0


def _category_text(category: dict) -> str:
    """A decision as a person reads it: the category's path and confidence, or why there is none."""
    if category["path"] is None:
        return f"— ({category['reason']}, {category['confidence']:.0%})"
    return f"{category['path'].split(' > ', 1)[-1]} {category['confidence']:.0%}"


def cmd_preprocess(args) -> int:
    source = fetch_url(args.file, FetchConfig(allow_private=args.allow_private)) if is_url(args.file) else args.file
    # The photo model's pipeline unless --model names another run (config.json alone says which).
    _say_default_model(args.model_dir, PHOTO_KIND)
    contract = InputContract.for_run(resolve_model_dir(args.model_dir, PHOTO_KIND))
    steps = model_steps(source, contract)
    draw_steps(source, args.out, contract=contract)
    print(" → ".join(f"{name} {image.width}×{image.height}" for name, image in steps))
    print(f"wrote {args.out}")
    return 0


def cmd_catalog(args) -> int:
    from tqdm import tqdm

    config = CatalogConfig(**config_changes(args, CatalogConfig))
    _say_default_model(config.model_dir, PHOTO_KIND)
    _status(f"categorising {args.csv} → {args.out} …")
    with tqdm(unit="image", file=sys.stderr, disable=None) as bar:
        report = categorize_catalog(args.csv, args.out, config, progress=bar.update, decisions=args.decisions)
    print(f"{report.products} products in {report.rows} rows: {report.categorized} categorised, "
          f"{report.uncertain} uncertain, {report.outside} outside the vertical, "
          f"{report.failed} with unreadable images, {report.no_image} without images")
    if report.decided:
        print(f"{report.decided} products as decided in {args.decisions}, whatever their photos say")
    if report.strangers:
        shown = ", ".join(report.strangers[:5]) + (", …" if len(report.strangers) > 5 else "")
        print(f"apparel catalog: warning: {len(report.strangers)} handles of {args.decisions} name no product of "
              f"{args.csv} ({shown}): check their spelling", file=sys.stderr)
    if report.disagreeing:
        print(f"{report.disagreeing} handles on rows that disagree (titles, images), each merged as one product")
    if report.no_handle:
        print(f"{report.no_handle} rows without a handle, no product's: left as they are (listed in the review)")
    if report.short:
        print(f"{report.short} products whose rows are too short for the category cell: left as they are "
              "(listed in the review)")
    if report.not_shopify:
        print(f"{report.not_shopify} products whose own category is not one of Shopify's: kept as they are "
              "(listed in the review)")
    for parameter in report.nowhere:
        print(f"apparel catalog: warning: {flag_name(parameter)}: {args.csv} has neither a "
              f"\"{BY_PARAMETER[parameter].header}\" column nor Tags, so none was written; add one of them",
              file=sys.stderr)
    if config.colour and not report.colour_read:
        print(f"apparel catalog: warning: --colour: {NO_CATEGORY_COLOUR}", file=sys.stderr)
    elif config.colour:
        print(f"{report.coloured} products with their colour (written, or the merchant's kept)")
    if config.sleeve_length:
        print(f"{report.sleeved} products with their sleeve length (written, or the merchant's kept)")
    print(f"{report.changed_cells} cells changed; {report.predicted} images classified, {report.cached} from the cache")
    print(f"wrote {report.output}")
    print(f"review: {report.review}")
    if report.read_no_photo:
        folder = config.images_dir or Path(args.csv).resolve().parent
        print(f"apparel catalog: error: none of the {report.failed} products' images could be read (each one's "
              f"reason is in the review); local image paths are read inside {folder}: give the folder that "
              "holds them with --images-dir", file=sys.stderr)
        return 1
    return 0


def cmd_batch(args) -> int:
    from tqdm import tqdm

    config = BatchConfig(**config_changes(args, BatchConfig))
    if config.litert is None:  # a .tflite carries its own contract
        _say_default_model(config.model_dir, PHOTO_KIND)
    _status(f"classifying {args.manifest} → {args.out} ({config.engine} engine) …")
    with tqdm(unit="image", file=sys.stderr, disable=None) as bar:
        report = classify_manifest(args.manifest, args.out, config, progress=bar.update)
    done = report.classified + report.failed
    rate = f", {done / report.seconds:.1f} images/s" if done and report.seconds else ""
    earlier = (f" ({report.skipped_failed} of them unreadable then: --retry-failed reads them again)"
               if report.skipped_failed else "")
    print(f"{report.rows} rows: {report.classified} classified, {report.failed} unreadable (a row each, with its "
          f"error), {report.skipped} already in {report.out}{earlier}; {report.seconds:.1f} s{rate}")
    if report.retried:
        print(f"{report.retried} rows an earlier run could not read were read again")
    print(f"wrote {report.out}")
    if config.colour and not report.colour_read:
        print(f"apparel batch: warning: --colour: {NO_CATEGORY_COLOUR}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.failed > len(report.errors):
        print(f"… and {report.failed - len(report.errors)} more, each in its row's error column", file=sys.stderr)
    if report.rows and not report.predicted_in_out:  # nothing read: a wrong --images-dir or column, not bad photos
        if report.failed and not report.skipped:
            return _fail(args, f"every row failed ({report.failed}); the first errors are above", 1)
        return _fail(args, f"no row of {report.out} holds a prediction: every one failed, in this run or an earlier "
                           "one; mend the cause (the rows' error column says it) and rerun with --retry-failed", 1)
    return 0


def cmd_plots(args) -> int:
    _say_default_model(args.model_dir, kind_for_inputs(args.images is not None))
    _status("drawing plots …")
    for path in write_plots(args.model_dir, data_dir=args.data_dir, images=args.images, out=args.out):
        print(path)
    return 0


def cmd_export(args) -> int:
    _say_default_model(args.model_dir, PHOTO_KIND)
    model_dir = resolve_model_dir(args.model_dir, PHOTO_KIND)
    _status(f"exporting {model_dir} as {args.format} …")
    calibration = (calibration_inputs(args.calibration, InputContract.for_run(model_dir), args.calibration_count)
                   if args.calibration else None)
    out = export_model(model_dir, args.format, args.out, quantize=args.quantize, calibration=calibration,
                       float_tail=args.float_tail, float_error=args.float_error)
    print(out)
    print(metadata_path(out))
    return 0


def cmd_models(args) -> int:
    width = max(len(name) for name in MODELS) + 1
    for name, spec in MODELS.items():
        defaults = ", ".join(f"{key}={value}" for key, value in spec.defaults().items())
        print(f"{name:<{width}} {spec.description}\n{'':<{width}} defaults: {defaults}; validation split "
              f"{spec.validation_split}")
    return 0


def cmd_serve(args) -> int:
    # FastAPI and uvicorn load only when serving, so that every other command starts at once.
    from apparel.serve.app import run_server

    settings = config_changes(args, ServiceConfig)
    if args.model_dir is None and args.litert is None and settings.get("model_repository") is None:
        _status(f"using {default_model_note(PHOTO_KIND)}; give a run directory to serve another"
                if os.environ.get(MODEL_DIR_ENV) else "using the shipped models store (the default, also served as "
                "apparel), photos and fashion-mnist; give a run directory to serve another")
    # Where it serves is said once it does (uvicorn's "running on" line): the port may be taken.
    _status("loading the models …")
    run_server(args.model_dir, host=args.host, port=args.port, access_log=args.access_log,
               inference_threads=args.inference_threads, litert=args.litert, **settings)
    return 0


def cmd_bench(args) -> int:
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


def cmd_taxonomy_search(args) -> int:
    from apparel.taxonomy import load_taxonomy
    from apparel.taxonomy.lookup import found_text, no_match_text

    found = load_taxonomy().search(args.words, args.limit)
    if not found:  # as grep: the hint on stderr, exit 1, stdout only matches
        print(no_match_text(args.words), file=sys.stderr)
        return 1
    print(found_text(found))
    return 0


def cmd_taxonomy_show(args) -> int:
    from apparel.taxonomy.lookup import show_text

    print(show_text(args.category))
    return 0


# Why --colour read nothing: a colour is read from a photo, for a store category.
NO_CATEGORY_COLOUR = ("this model reads no colour (a Fashion-MNIST model's 28×28 grey inputs have none, and your "
                      "own classes without a --mapping get no store category for one to go with), so none was read; "
                      "give a photo model with categories (the shipped store model is the default)")


class SuggestingParser(argparse.ArgumentParser):
    """argparse's parser, whose errors show the subcommand's usage and name the closest flag to
    each unknown one: `apparel predict --jsn` → "did you mean --json?"."""

    arguments: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self.arguments = list(sys.argv[1:] if args is None else args)  # each subparser: what follows its name
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        command = self  # the innermost command given (`taxonomy search`), whose usage an error shows
        while (chosen := next((action for action in command._get_positional_actions()
                               if isinstance(action, argparse._SubParsersAction)), None)) is not None:
            if getattr(parsed, chosen.dest, None) not in chosen.choices:
                break
            command = chosen.choices[getattr(parsed, chosen.dest)]
        # `apparel predict a.jpg --top-k 3 b.jpg`: argparse takes a list's items only before the first
        # flag; the words after it belong to the command's one list (images, search words).
        lists = [action for action in command._get_positional_actions() if action.nargs in ("+", "*")]
        before, after = unknown, []
        if "--" in unknown:  # after it every word is one of them, a name starting with "-" too
            split = unknown.index("--")
            before, after = unknown[:split], unknown[split + 1:]
        if unknown and len(lists) == 1 and not any(word.startswith("-") and word != "-" for word in before):
            setattr(parsed, lists[0].dest, [*getattr(parsed, lists[0].dest), *before, *after])
            unknown = []
        if unknown:  # reported by the subcommand's parser, which shows its own usage and flags
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def error(self, message: str):
        guesses = []
        for argument in self.arguments:
            if argument == "--":
                break
            flag = argument.split("=", 1)[0]
            if (flag.startswith("-") and flag not in self._option_string_actions
                    and not self._negative_number_matcher.match(flag)):
                closest = difflib.get_close_matches(flag, self._option_string_actions, n=1, cutoff=0.6)
                guesses += [f"{closest[0]} for {flag}"] if closest else []
        super().error(f"{message} (did you mean {', '.join(guesses)}?)" if guesses else message)


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="apparel", description="Classify clothing images with Keras: store photos (a fine-tuned EfficientNet-Lite0) and Fashion-MNIST.")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_data, _add_train, _add_evaluate, _add_predict, _add_preprocess, _add_catalog, _add_batch, _add_plots, _add_export, _add_models, _add_serve, _add_bench, _add_taxonomy):
        add(commands)
    _verbose_anywhere(commands)
    return parser


VERBOSE_HELP = ("show TensorFlow's log lines, and a traceback for an unexpected error (the few lines TensorFlow and "
                "LiteRT print as they start, \"All log messages before absl::InitializeLog()\", oneDNN's note and "
                "\"Created TensorFlow Lite XNNPACK delegate\", show either way: their C++ loggers have no setting "
                "Python reaches)")


def _verbose_anywhere(commands) -> None:
    """-v after the command too (`apparel predict -v a.jpg` was "unrecognized arguments: -v"), in
    every command's parser and theirs; SUPPRESS keeps a -v given before the command."""
    for command in commands.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _verbose_anywhere(action)


DATA_DIR_HELP = "directory with the Fashion-MNIST IDX files (default $APPAREL_DATA_DIR or Debian's)"


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="verify the data set and print its shapes")
    data.add_argument("--data-dir", help=DATA_DIR_HELP)
    data.add_argument("--keras-cache", action="store_true", help="also copy it into Keras's cache for load_data()")
    data.set_defaults(handler=cmd_data)


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model and write a run directory")
    train.add_argument("--out", required=True, help="run directory to write")
    train.add_argument("--config", help="JSON or TOML file of parameters (flags override it)")
    train.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_config_flags(train, TrainConfig)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (same parameters)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its files only)")
    train.set_defaults(handler=cmd_train)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="recompute test metrics, per-class figures and the confusion matrix")
    evaluate.add_argument("model_dir", nargs="?", help=f"run directory or {SHIPPED_NAME} (left out: the shipped model)")
    evaluate.add_argument("--data-dir", help=DATA_DIR_HELP)
    evaluate.add_argument("--images", metavar="FOLDER",
                          help="measure a photo model on these labelled photos: a folder of class folders or a path,label CSV")
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="classify product photos: files, folders, glob patterns, URLs")
    predict.add_argument("files", nargs="+", metavar="[DIR] IMAGE",
                         help="optional run directory, then images: files (any size, JPEG/PNG/WebP/…, or .npy), "
                              "folders (searched recursively), glob patterns, http(s) URLs")
    predict.add_argument("--model-dir", help=f"run directory or {SHIPPED_NAME} (default: the first argument if it is one, else the shipped store model; for .npy arrays the Fashion-MNIST one)")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to show (default 3)")
    predict.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                         help="litert: the model's LiteRT artefact, made once beside it (no TensorFlow; the default); "
                              "keras: the Keras model")
    predict.add_argument("--litert", help="run this exported .tflite file (apparel export --format litert) instead of the "
                                          "model directory's own artefact")
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV")
    predict.add_argument("--mapping", help="class,category CSV instead of the model's own categories")
    predict.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per URL (default 10)")
    predict.add_argument("--allow-private", action="store_true", help="also fetch URLs on private, loopback and link-local addresses")
    predict.set_defaults(handler=cmd_predict)


def _add_preprocess(commands) -> None:
    preprocess = commands.add_parser("preprocess", help="show the photo pipeline's steps for one image")
    preprocess.add_argument("file", help="image file or http(s) URL")
    preprocess.add_argument("--out", required=True, help="image to write, the steps side by side (PNG, or the format its name says: steps.jpg)")
    preprocess.add_argument("--allow-private", action="store_true", help="also fetch URLs on private addresses")
    preprocess.add_argument("--model", dest="model_dir", metavar="DIR",
                            help="show the steps to this run's input (a photo model's: on white, square, resized; a "
                                 "Fashion-MNIST model's: 28×28 grayscale); default: $APPAREL_MODEL_DIR, else the "
                                 "shipped store model")
    preprocess.set_defaults(handler=cmd_preprocess)


def _add_catalog(commands) -> None:
    catalog = commands.add_parser("catalog", help="fill categories, types and tags of a Shopify product CSV from its photos")
    catalog.add_argument("csv", help="Shopify product export (either header style)")
    catalog.add_argument("--out", required=True, help="CSV to write (a review CSV and an image cache go beside it)")
    catalog.add_argument("--model", dest="model_dir", help=argparse.SUPPRESS)  # the old spelling of --model-dir
    catalog.add_argument("--decisions", help="CSV of handle,category: the merchant's own category for a product "
                         "(id or path), or keep to leave it as it is; the model changes none of them (the desk's "
                         "decisions.csv)")
    add_config_flags(catalog, CatalogConfig)
    catalog.set_defaults(handler=cmd_catalog)


def _add_batch(commands) -> None:
    batch = commands.add_parser("batch", help="classify a CSV/Parquet manifest of images into a Parquet data set (local or Ray)")
    batch.add_argument("manifest", help="CSV or Parquet file, one image (path or http(s) URL) per row, other columns carried")
    batch.add_argument("--out", required=True, help="folder of Parquet files to write; rerun the same command to resume")
    add_config_flags(batch, BatchConfig)
    batch.set_defaults(handler=cmd_batch)


def _add_plots(commands) -> None:
    plots = commands.add_parser("plots", help="write sample grids, predictions, curves and confusion matrix PNGs")
    plots.add_argument("model_dir", nargs="?", help=f"run directory or {SHIPPED_NAME} (left out: the shipped model)")
    plots.add_argument("--data-dir", help=DATA_DIR_HELP)
    plots.add_argument("--images", metavar="FOLDER",
                       help="draw a photo model on these labelled photos: a folder of class folders or a path,label CSV")
    plots.add_argument("--out", metavar="DIR", help="folder for the figures (default: the run's plots/; for a shipped "
                                                    "model, plots-NAME here: the package's own folder is left as shipped)")
    plots.set_defaults(handler=cmd_plots)


def _add_export(commands) -> None:
    export = commands.add_parser("export", help="export a model as LiteRT (.tflite), SavedModel or ONNX")
    export.add_argument("model_dir", nargs="?", help=f"run directory or {SHIPPED_NAME} (default: $APPAREL_MODEL_DIR, "
                                                     "else the shipped store model, as for predict, serve and catalog)")
    export.add_argument("--format", required=True, choices=["litert", "saved_model", "onnx"])
    export.add_argument("--out", required=True, help="file (.tflite, .onnx) or directory (saved_model) to write")
    export.add_argument("--quantize", choices=["float16", "int8"],
                        help="LiteRT: float16 weights (half the file, the same answers), or int8 (fastest; give "
                             "--calibration photos like those it will see)")
    export.add_argument("--calibration", nargs="+", metavar="IMAGES",
                        help="with --quantize int8: files, folders or glob patterns of example photos (training "
                             "photos, never the ones it is measured on); --calibration-count of them, evenly spaced")
    export.add_argument("--calibration-count", type=int, default=200, help="example photos used (default 200)")
    export.add_argument("--float-tail", action="store_true",
                        help="with --quantize int8: keep float the ops after the networks' pooling (the classifiers "
                             "and the store model's mixing of their probabilities)")
    export.add_argument("--float-error", type=float, metavar="STEPS",
                        help="with --quantize int8: keep float the layers whose int8 output is off by more than "
                             "STEPS quantisation steps on the calibration photos (0.7 flags the worst)")
    export.set_defaults(handler=cmd_export)


def _add_models(commands) -> None:
    models = commands.add_parser("models", help="list the registered models and their defaults")
    models.set_defaults(handler=cmd_models)


def _add_taxonomy(commands) -> None:
    taxonomy = commands.add_parser("taxonomy", help="look up Shopify's product taxonomy: the categories --mapping "
                                                    "and the catalog take (search by word, show a node)")
    lookups = taxonomy.add_subparsers(dest="lookup", required=True, metavar="LOOKUP")
    search = lookups.add_parser("search", help="categories whose names match every word, best first: id and full path")
    search.add_argument("words", nargs="+", metavar="WORD", help="e.g. tee, t-shirt, rain coat")
    search.add_argument("--limit", type=int, default=10, help="at most this many categories (default 10)")
    search.set_defaults(handler=cmd_taxonomy_search)
    show = lookups.add_parser("show", help="a category's id, GID, full path, children and attributes")
    show.add_argument("category", metavar="CATEGORY", help="an id (aa-1-13-8), a GID or a full path (quoted)")
    show.set_defaults(handler=cmd_taxonomy_show)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve models by name: TF Serving REST, Open Inference Protocol (HTTP, "
                                              "gRPC), photo uploads, web page; hot reload of --model-repository")
    serve.add_argument("model_dir", nargs="?", help=f"one run directory or {SHIPPED_NAME}, served as `apparel` (default: the shipped models "
                                                    "store, photos and fashion-mnist, or --model-repository)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    add_config_flags(serve, ServiceConfig)
    serve.add_argument("--inference-threads", type=int, help="with --runtime keras: TensorFlow threads per operation (default: one per core)")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    serve.add_argument("--litert", help="run this exported .tflite of the model (apparel export --format litert) instead "
                                        "of the model directory's own artefact")
    serve.set_defaults(handler=cmd_serve)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="benchmark study over optimizers, activations, widths, epochs … (Optuna)")
    for axis, name in AXES.items():
        help_text = TrainConfig.help(name)
        bench.add_argument(flag_name(axis), dest=axis, metavar="A,B", help=f"values to try, comma-separated ('default': the model's or optimizer's own): {help_text}")
    bench.add_argument("--study-file", help="TOML file of axes and settings (flags override it)")
    bench.add_argument("--search", type=int, metavar="N", help="run N trials of Optuna's TPE instead of the full grid")
    bench.add_argument("--export", metavar="DIR", help="write results.csv, results.md, results.json and charts here")
    for name in ("limit", "validation_split"):  # fixed in every trial
        bench.add_argument(flag_name(name), type=TrainConfig.value_type(name), help=TrainConfig.help(name))
    add_config_flags(bench, BenchSettings)
    bench.set_defaults(handler=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A user's mistake (any ``ValueError`` or ``OSError``) is one line on stderr
    and exit code 2; anything else is a bug: a short note saying how to report it, exit code 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (`apparel predict … | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ParameterError as error:  # the library names parameters; say which flags they are
        flags = ", ".join(flag_name(parameter) for parameter in error.parameters)
        return _fail(args, f"{error} ({flags})", 2)
    except OSError as error:
        if error.filename is None or not error.strerror:
            return _fail(args, str(error) or type(error).__name__, 2)
        # Not Python's "[Errno 2] …": the file named may be one written beside an output (its
        # lock, its temporary), so for a missing or forbidden place the message says where to look.
        hint = ("; check that its folder exists and that you may read and write there"
                if error.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS) else "")
        return _fail(args, f"{os.fsdecode(error.filename)}: {error.strerror.lower()}{hint}", 2)
    except ValueError as error:
        return _fail(args, str(error) or type(error).__name__, 2)
    except KeyboardInterrupt:
        print(f"apparel {args.command}: interrupted{RESUMING.get(args.command, '')}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: say so briefly, the traceback only when asked for
        if args.verbose:
            raise
        return _fail(args, f"unexpected {type(error).__name__}: {error}. This is a bug: please report it at "
                           f"{REPORT_URL} with the command and `apparel -v {args.command} …`'s output", 1)


# What an interrupted command keeps, and how to go on from it.
RESUMING = {
    "catalog": "; the images it finished are in its cache: run the same command again to go on",
    "batch": "; the parts it finished are in its output folder: run the same command again to go on",
    "train": "; run the same command with --resume (and without --overwrite) to go on from its last finished "
             "epoch, or with --overwrite to start again if none had finished",
}


def _fail(args, message: str, code: int) -> int:
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [message]
    # One line; TensorFlow's own errors begin "in user code:" and say what went wrong last.
    shown = lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    print(f"apparel {args.command}: error: {shown}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
