"""Command-line smoke tests on the real data (small subsets) or synthetic files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apparel.cli import main
from apparel.kinds.fashion_mnist.data import CLASS_NAMES
from conftest import needs_real_data


def test_help_is_instant_and_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "apparel", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("data", "train", "evaluate", "predict", "plots"):
        assert command in out
    # The help must not pull TensorFlow in.
    code = "import apparel.cli, sys; apparel.cli.build_parser(); print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_data_reports_missing_files_as_an_error(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path)]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import REAL_DATA

    if not REAL_DATA:
        pytest.skip("dataset-fashion-mnist is not installed (make setup)")
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), "--epochs", "1", "--limit", "2000", "--hidden", "64"]) == 0
    return out


@needs_real_data
def test_train_evaluate_plots(run_dir, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_images"] == 2000 and metrics["test_images"] == 10000
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "Ankle boot" in out
    assert "confusion_matrix" in json.loads((run_dir / "metrics.json").read_text())
    assert main(["plots", str(run_dir)]) == 0
    names = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert names == ["confusion_matrix.png", "predictions.png", "samples_named.png", "samples_numbered.png", "training_curves.png"]
    with Image.open(run_dir / "plots" / "predictions.png") as image:
        assert image.size[0] > 500


@needs_real_data
def test_predict_prints_json_for_png_and_npy(run_dir, tmp_path, capsys):
    from apparel.kinds.fashion_mnist.data import load_dataset

    test = load_dataset(scaled=False)
    Image.fromarray(test.x_test[1]).save(tmp_path / "one.png")
    np.save(tmp_path / "two.npy", test.x_test[2:4])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", str(run_dir), str(tmp_path / "one.png"), str(tmp_path / "two.npy"), str(tmp_path / "bad.png"), "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == [str(tmp_path / "one.png"), f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]", str(tmp_path / "bad.png")]
    for result in results[:3]:
        assert set(result) == {"file", "label", "probability", "top_k", "category"}
        assert len(result["top_k"]) == 2 and result["top_k"][0]["label"] == result["label"]
    assert "not a readable image" in results[3]["error"]


def test_predict_says_what_is_wrong_with_each_input(tmp_path, capsys, tiny_dataset):
    from PIL import ImageDraw

    from apparel.config import TrainConfig
    from apparel.training.trainer import train

    train(TrainConfig(epochs=1, hidden=8), dataset=tiny_dataset, out_dir=tmp_path / "run", verbose=0)
    np.save(tmp_path / "wide.npy", np.full((2, 40, 30), 0.5, dtype=np.float32))
    Image.new("L", (40, 30)).save(tmp_path / "blank.png")
    garment = Image.new("L", (40, 30))
    ImageDraw.Draw(garment).rectangle((10, 5, 30, 25), fill=200)
    garment.save(tmp_path / "garment.png")  # any size of photo goes through the photo pipeline
    files = [str(tmp_path / name) for name in ("wide.npy", "blank.png")]
    assert main(["predict", "--model-dir", str(tmp_path / "run"), *files]) == 1  # nothing predicted
    error = capsys.readouterr().err
    assert "wide.npy: error: images must be 28×28 arrays" in error and "got 2×40×30" in error
    assert "blank.png: error: image is all one colour" in error
    assert main(["predict", "--model-dir", str(tmp_path / "run"), *files, str(tmp_path / "garment.png"), "--json"]) == 0
    results = {Path(result["file"]).name: result for result in json.loads(capsys.readouterr().out)}
    assert "label" in results["garment.png"] and "error" in results["blank.png"]


def test_predict_csv_has_one_padded_row_per_input(tmp_path, capsys, tiny_dataset):
    import csv
    import io

    from apparel.config import TrainConfig
    from apparel.training.trainer import train

    train(TrainConfig(epochs=1, hidden=8), dataset=tiny_dataset, out_dir=tmp_path / "run", verbose=0)
    np.save(tmp_path / "two.npy", tiny_dataset.x_test[:2])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", "--model-dir", str(tmp_path / "run"), str(tmp_path / "two.npy"), str(tmp_path / "bad.png"),
                 "--csv", "--top-k", "2"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "label_1", "probability_1", "label_2", "probability_2",
                       "category_id", "category", "category_confidence", "category_reason", "error"]
    assert [row[0] for row in rows[1:]] == [f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]", str(tmp_path / "bad.png")]
    assert all(len(row) == 10 for row in rows)  # the failed row is padded to the header's width
    for row in rows[1:3]:
        assert row[1] in CLASS_NAMES and row[3] in CLASS_NAMES and float(row[2]) >= float(row[4]) and row[9] == ""
        # A category as catalog, batch and serve give it (the walk-through's classes through taxonomy.csv).
        assert row[5].startswith("aa-") and row[6].startswith("Apparel & Accessories") or row[8] == "uncertain"
    assert rows[3][1:9] == [""] * 8 and "not a readable image" in rows[3][9]


def test_models_lists_every_registered_model_with_its_defaults(capsys):
    from apparel.training.models import MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, spec in MODELS.items():
        assert f"{name} " in out and spec.description in out
    assert "hidden=256, outputs=20" in out  # the walk-through's model, as the reference builds it


@needs_real_data
def test_data_keras_cache_makes_keras_load_data_work_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert main(["data", "--keras-cache"]) == 0
    assert "Installed into Keras's cache" in capsys.readouterr().out
    cached = sorted(path.name for path in (tmp_path / "keras" / "datasets" / "fashion-mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                      "train-labels-idx1-ubyte.gz"]


def test_bench_search_runs_n_distinct_trials_from_the_command(idx_dir, tmp_path, capsys):
    import csv

    out = tmp_path / "export"
    flags = ["bench", "--optimizers", "adam,sgd", "--activations", "relu,tanh", "--search", "3", "--epochs", "1",
             "--hidden", "8", "--storage", f"sqlite:///{tmp_path / 'bench.db'}", "--data-dir", str(idx_dir),
             "--no-verify-data", "--export", str(out)]
    assert main(flags) == 0
    assert "3 TPE trials over a space of 4" in capsys.readouterr().err
    with open(out / "results.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 3 and len({(r["optimizer"], r["activation"]) for r in records}) == 3


def test_a_bad_value_is_one_line_naming_the_parameter_and_its_flag(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "apparel train: error: epochs must be a number of at least 1, got 0 (--epochs)"


def test_library_errors_name_parameters_not_flags():
    from apparel.config import TrainConfig
    from apparel.errors import ParameterError

    with pytest.raises(ParameterError, match="^epochs must be") as caught:
        TrainConfig(epochs=0)
    assert caught.value.parameters == ("epochs",)


def test_an_unexpected_error_says_how_to_report_it(monkeypatch, capsys):
    from apparel import cli

    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli, "cmd_models", broken)
    assert main(["models"]) == 1
    error = capsys.readouterr().err
    assert "This is a bug: please report it" in error and "Traceback" not in error and len(error.splitlines()) == 1


def test_tensorflow_start_up_lines_are_silenced_unless_verbose(monkeypatch):
    from apparel.cli import quiet_tensorflow

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet_tensorflow(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


@pytest.fixture
def photo_copy(photo_run, tmp_path):
    """A copy of the tiny photo run (the commands write into it), with a training history."""
    import shutil

    run = shutil.copytree(photo_run, tmp_path / "run")
    (run / "history.json").write_text(json.dumps({"loss": [1.2, 0.9], "accuracy": [0.4, 0.6],
                                                  "val_loss": [1.1, 1.0], "val_accuracy": [0.5, 0.55]}))
    return run


def test_photo_model_evaluate_and_plots_on_a_folder(photo_copy, tmp_path, capsys):
    from conftest import PHOTO_CLASSES, write_photo_folders

    folder = write_photo_folders(tmp_path / "photos", per_class=3)
    assert main(["evaluate", str(photo_copy)]) == 2
    assert "holds a photo model: give images" in (err := capsys.readouterr().err) and err.endswith("(--images)\n")
    assert main(["evaluate", str(photo_copy), "--images", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"photos in {folder}" in out and "accuracy" in out and "most confused" in out
    table = [line.split()[0] for line in out.splitlines()[2:2 + len(PHOTO_CLASSES)]]
    assert table == list(PHOTO_CLASSES)  # the model's classes, not Fashion-MNIST's
    evaluation = json.loads((photo_copy / "metrics.json").read_text())["evaluations"][str(folder)]
    assert evaluation["images_images"] == 9 and np.sum(evaluation["confusion_matrix"]) == 9


def test_evaluate_shows_its_figures_when_the_run_takes_no_new_file(photo_copy, tmp_path, capsys, monkeypatch):
    """A read-only run's evaluate measured every photo, then failed on metrics.json and printed none
    of its figures."""
    import errno

    from conftest import write_photo_folders

    from apparel import artifacts

    folder = write_photo_folders(tmp_path / "photos", per_class=2)
    before = (photo_copy / "metrics.json").read_bytes()

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(artifacts, "update_json", refused)
    assert main(["evaluate", str(photo_copy), "--images", str(folder)]) == 2
    captured = capsys.readouterr()
    assert f"photos in {folder}" in captured.out and "most confused" in captured.out
    assert "read-only file system" in captured.err and "metrics.json" in captured.err
    assert (photo_copy / "metrics.json").read_bytes() == before

    assert main(["plots", str(photo_copy)]) == 2
    assert "holds a photo model: give images" in (err := capsys.readouterr().err) and err.endswith("(--images)\n")
    assert main(["plots", str(photo_copy), "--images", str(folder)]) == 0
    names = sorted(p.name for p in (photo_copy / "plots").iterdir())
    assert names == ["confusion_matrix.png", "predictions.png", "training_curves.png"]
    with Image.open(photo_copy / "plots" / "predictions.png") as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # The photos are drawn in colour (the grayscale grid would have r == g == b everywhere but the labels).
    coloured = (np.abs(pixels[..., 0] - pixels[..., 1]) > 40) | (np.abs(pixels[..., 1] - pixels[..., 2]) > 40)
    assert coloured.mean() > 0.01


def test_preprocess_draws_the_photo_models_steps(photo_run, tmp_path, capsys):
    from conftest import render_photo

    photo = tmp_path / "shirt.png"  # a JPEG would be decoded at a reduced size (draft mode), as the pipeline reads it
    render_photo(2, np.random.default_rng(0)).save(photo)
    assert main(["preprocess", str(photo), "--out", str(tmp_path / "steps.png"), "--model", str(photo_run)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "original 96×120 → on white 96×120 → square 120×120 → resized 32×32", f"wrote {tmp_path / 'steps.png'}"]
    with Image.open(tmp_path / "steps.png") as image:
        assert image.format == "PNG" and image.width > 3 * image.height
    assert main(["preprocess", str(photo), "--out", str(tmp_path / "shop.png")]) == 0  # the shipped store model's
    assert capsys.readouterr().out.splitlines()[0].endswith("resized 224×224")
    drawn = photo.read_bytes()  # the figure written over the photo it draws: refused, the photo kept
    assert main(["preprocess", str(photo), "--out", str(photo), "--model", str(photo_run)]) == 2
    assert f"out {photo} is the photo drawn; write the figure to a new file, e.g. {tmp_path / 'shirt-steps.png'} (--out)" \
        in capsys.readouterr().err
    assert photo.read_bytes() == drawn


@pytest.mark.parametrize("argv, expected", [
    (["predict", "shoes", "--jsn"], "unrecognized arguments: --jsn (did you mean --json for --jsn?)"),
    (["catalog", "products.csv", "--output", "x.csv"],
     "the following arguments are required: --out (did you mean --out for --output?)"),
])
def test_a_mistyped_flag_gets_the_closest_one_and_the_subcommands_usage(argv, expected, capsys):
    """A typo printed the top-level usage and no suggestion (#31.5)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and f"usage: apparel {argv[0]} " in error
    assert f"apparel {argv[0]}: error: {expected}" in error


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_a_port_outside_0_to_65535_is_refused_before_the_server_starts(port, capsys):
    """--port 99999 was taken, the system listened on 99999 mod 65536, and the server said 99999."""
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", port])
    assert exit_.value.code == 2
    assert f"argument --port: invalid port (0 to 65535) value: '{port}'" in capsys.readouterr().err


def test_a_flag_of_a_few_values_shows_them_in_its_usage(capsys):
    """--engine ENGINE said nothing of local and ray until a wrong value was given."""
    with pytest.raises(SystemExit):
        main(["catalog", "--help"])
    usage = capsys.readouterr().out
    assert "--engine {local,ray}" in usage and "--category-format {path,id}" in usage, usage


def test_images_and_words_after_a_flag_belong_to_the_command_s_list():
    """`apparel predict a.jpg --top-k 2 b.jpg` was "unrecognized arguments: b.jpg"."""
    from apparel.cli import build_parser

    parsed = build_parser().parse_args(["predict", "a.jpg", "--top-k", "2", "b.jpg", "c.jpg"])
    assert parsed.files == ["a.jpg", "b.jpg", "c.jpg"] and parsed.top_k == 2
    parsed = build_parser().parse_args(["taxonomy", "search", "rain", "--limit", "3", "coat"])
    assert parsed.words == ["rain", "coat"] and parsed.limit == 3
    with pytest.raises(SystemExit):  # an unknown flag among them is still one
        build_parser().parse_args(["predict", "a.jpg", "--top-k", "2", "--bogus", "b.jpg"])
    parsed = build_parser().parse_args(["predict", "a.jpg", "--top-k", "1", "--", "-x.jpg", "b.jpg"])
    assert parsed.files == ["a.jpg", "-x.jpg", "b.jpg"]  # after "--", a name starting with "-" too


def test_the_package_description_says_what_the_product_does():
    """PyPI's one line said "(Fashion-MNIST categories)": the product sorts store photos (#31.7)."""
    import tomllib

    description = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["description"]
    assert "photos" in description and "Shopify" in description and "Fashion-MNIST categories" not in description


def test_export_defaults_to_the_photo_model_and_says_so(tmp_path, monkeypatch, capsys):
    """`apparel export` without a model exported the Fashion-MNIST one, which `predict --litert`
    then ran on photos ("Coat 34.9 %"); the default is the photo model everywhere (#31.1)."""
    from apparel.inference import export
    from apparel.inference.prediction import DEFAULT_PHOTO_MODEL_DIR, MODEL_DIR_ENV

    def loaded(model_dir):
        raise ValueError(f"would export {model_dir}")

    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    monkeypatch.setattr(export, "load_model", loaded)
    with pytest.raises(ValueError, match=f"would export {DEFAULT_PHOTO_MODEL_DIR}$"):
        export.export_model(None, "litert", tmp_path / "shop.tflite")
    assert main(["export", "--format", "litert", "--out", str(tmp_path / "shop.tflite")]) == 2
    error = capsys.readouterr().err
    assert f"using {DEFAULT_PHOTO_MODEL_DIR} (the shipped store model)" in error
    assert f"would export {DEFAULT_PHOTO_MODEL_DIR}" in error


@pytest.mark.parametrize("argv, stopped, picked", [
    (["predict", "shoe.jpg"], "expand_sources", None),
    (["catalog", "products.csv", "--out", "out.csv"], "categorize_catalog", "store"),
    (["batch", "images.csv", "--out", "out"], "classify_manifest", "store"),
    (["evaluate"], "evaluate_run", "Fashion-MNIST"),
    (["evaluate", "--images", "photos"], "evaluate_run", "store"),
    (["plots"], "write_plots", "Fashion-MNIST"),
])
def test_every_command_that_picks_a_model_says_which(argv, stopped, picked, monkeypatch, capsys):
    """Each default is said on stderr, so a user knows which model answered (#31.1)."""
    from apparel import cli
    from apparel.inference.prediction import DEFAULT_MODEL_DIR, DEFAULT_PHOTO_MODEL_DIR, MODEL_DIR_ENV

    def stop(*args, **kwargs):
        raise ValueError("stopped here")

    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    if stopped == "expand_sources":  # predict: a photo, then stop before loading the model
        monkeypatch.setattr(cli, "expand_sources", lambda files: [type("Source", (), {"path": Path(files[0])})()])
        monkeypatch.setattr(cli, "load_predictor", stop)
        picked = "store"
    else:
        monkeypatch.setattr(cli, stopped, stop)
    assert main(argv) == 2
    error = capsys.readouterr().err
    path = DEFAULT_PHOTO_MODEL_DIR if picked == "store" else DEFAULT_MODEL_DIR
    assert f"using {path} (the shipped {picked} model); give a run directory to use another" in error, error
    assert "stopped here" in error


def test_serve_says_it_serves_the_shipped_models(monkeypatch, capsys):
    from apparel.inference.prediction import MODEL_DIR_ENV
    from apparel.serve import app

    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    monkeypatch.setattr(app, "run_server", lambda *args, **kwargs: None)
    assert main(["serve"]) == 0
    assert "using the shipped models store (the default, also served as apparel), photos and fashion-mnist" in \
        capsys.readouterr().err


def test_predict_takes_a_shipped_models_name_first_unless_a_folder_here_has_that_name(monkeypatch, tmp_path, capsys):
    """`apparel predict photos shirt.jpg`, as the README shows it, ran the store model and called
    "photos" a missing photo; a folder of photos named so is still photos."""
    from apparel import cli
    from apparel.artifacts import shipped_model_dir

    loaded = []

    def stop(model_dir, **kwargs):
        loaded.append(model_dir)
        raise ValueError("stopped here")

    monkeypatch.setattr(cli, "load_predictor", stop)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shirt.jpg").write_bytes(b"not read: the model is loaded first")
    assert main(["predict", "photos", "shirt.jpg"]) == 2
    assert loaded == ["photos"] and f"using {shipped_model_dir('photos')}" not in capsys.readouterr().err
    assert main(["predict", "photos"]) == 2
    assert "give at least one image" in capsys.readouterr().err
    (tmp_path / "photos").mkdir()
    assert main(["predict", "photos", "shirt.jpg"]) == 2
    assert loaded[-1] is None  # the folder here is photos to read; the default model reads them


def test_a_misspelt_model_name_is_said_before_any_photo_is_read(monkeypatch, tmp_path, capsys):
    """`apparel predict stor shirt.jpg` classified the shirt with the default model, called "stor"
    a missing photo and exited 0."""
    from apparel import cli

    monkeypatch.setattr(cli, "load_predictor", lambda *args, **kwargs: pytest.fail("a model was loaded"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shirt.jpg").write_bytes(b"not read")
    assert main(["predict", "stor", "shirt.jpg"]) == 2
    assert "'stor' is neither a file nor a model here; did you mean the shipped model 'store'?" in capsys.readouterr().err
    (tmp_path / "store").write_bytes(b"a photo without a suffix")  # a file so named is a file to read
    assert cli._split_model_dir(cli.build_parser().parse_args(["predict", "store", "shirt.jpg"])) == (None, ["store", "shirt.jpg"])


def test_a_fashion_mnist_model_gets_its_category_in_predict_as_everywhere(tmp_path, capsys):
    """predict and batch gave a Fashion-MNIST answer no category while catalog and serve gave it one
    (through taxonomy.csv): the same answer everywhere, and a --mapping for its classes is taken."""
    from apparel.kinds.fashion_mnist.data import CLASS_NAMES

    pixels = np.zeros((1, 28, 28), np.uint8)
    pixels[0, 4:24, 8:20] = 200  # a light upright shape
    np.save(tmp_path / "one.npy", pixels)
    assert main(["predict", "default", str(tmp_path / "one.npy"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert answer["category"]["reason"] in (None, "uncertain") and "color" not in answer  # no colour in a grey 28×28
    # Every class a dress: whatever the model says, the category is Dresses, sure.
    (tmp_path / "m.csv").write_text("class,category\n" + "".join(
        f"{name},aa-1-4\n" for name in CLASS_NAMES), encoding="utf-8")
    assert main(["predict", "default", str(tmp_path / "one.npy"), "--json", "--mapping", str(tmp_path / "m.csv")]) == 0
    mapped = json.loads(capsys.readouterr().out)[0]["category"]
    assert mapped["id"] == "aa-1-4" and mapped["path"] == "Apparel & Accessories > Clothing > Dresses"
    assert mapped["confidence"] == pytest.approx(1.0, abs=1e-4)


def test_a_top_k_below_one_is_refused_not_made_one():
    """`predict --top-k 0` answered with one class and exit status 0; batch refused the same value."""
    from apparel.batch.loop import predict_sources
    from apparel.errors import ParameterError

    with pytest.raises(ParameterError, match="top_k must be at least 1, got 0") as error:
        predict_sources([], predictor=None, top_k=0)
    assert error.value.render(lambda name: "--top-k").startswith("--top-k must be at least 1")


def test_a_file_that_cannot_be_written_is_named_with_where_to_look(monkeypatch, capsys):
    """`catalog --out /proc/x.csv` said "[Errno 2] No such file or directory: '/proc/x.csv.lock'"."""
    from apparel import cli

    def unwritable(args):
        open("/proc/no-such-folder/x.csv.lock", "w")

    monkeypatch.setattr(cli, "cmd_taxonomy_search", unwritable)
    assert main(["taxonomy", "search", "tee"]) == 2
    assert capsys.readouterr().err.strip() == (
        "apparel taxonomy: error: /proc/no-such-folder/x.csv.lock: no such file or directory; check that its folder "
        "exists and that you may read and write there")

    def full(args):
        raise OSError(28, "No space left on device", "/data/run/model.keras")

    monkeypatch.setattr(cli, "cmd_taxonomy_search", full)  # a full disk is no question of folders or rights
    assert main(["taxonomy", "search", "tee"]) == 2
    assert capsys.readouterr().err.strip() == "apparel taxonomy: error: /data/run/model.keras: no space left on device"


def test_a_kind_may_be_named_and_a_model_dir_that_is_no_path_is_refused(monkeypatch):
    """`load_predictor(None, "photo")` was an AttributeError, `load_predictor(123)` a TypeError."""
    from apparel.artifacts import shipped_model_dir
    from apparel.errors import ParameterError
    from apparel.inference.prediction import MODEL_DIR_ENV, resolve_model_dir

    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    assert resolve_model_dir(None, "photo") == shipped_model_dir("store")
    with pytest.raises(ValueError, match="kind must be one of fashion-mnist, photo, got 'photon'"):
        resolve_model_dir(None, "photon")
    with pytest.raises(ParameterError, match="model_dir must be a run directory's path"):
        resolve_model_dir(123)


def test_colour_asked_of_a_model_without_store_categories_says_why_none_was_read(tmp_path, capsys):
    """`--colour` with the Fashion-MNIST model wrote "0 products with their colour" and nothing why."""
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (60, 80), "white")
    ImageDraw.Draw(photo).rectangle((15, 10, 45, 70), fill=(30, 60, 150))
    photo.save(tmp_path / "shirt.png")
    (tmp_path / "products.csv").write_text("Handle,Title,Product Category,Type,Tags,Image Src\n"
                                           "shirt,Shirt,,,,shirt.png\n")
    assert main(["catalog", str(tmp_path / "products.csv"), "--out", str(tmp_path / "out.csv"), "--model-dir",
                 "default", "--colour"]) == 0
    assert "--colour: this model reads no colour (a Fashion-MNIST model's" in capsys.readouterr().err
    (tmp_path / "manifest.csv").write_text("image\nshirt.png\n")
    assert main(["batch", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "batch"), "--model-dir", "default",
                 "--colour"]) == 0
    assert "--colour: this model reads no colour (a Fashion-MNIST model's" in capsys.readouterr().err


def test_a_catalog_threshold_the_chooser_refuses_is_named_as_the_catalog_calls_it(tmp_path, capsys):
    """`--outside-confidence 0` was reported as "(--outside-threshold)", a flag catalog has not."""
    (tmp_path / "products.csv").write_text("Handle,Title,Product Category,Type,Tags,Image Src\nshirt,Shirt,,,,a.jpg\n")
    assert main(["catalog", str(tmp_path / "products.csv"), "--out", str(tmp_path / "out.csv"),
                 "--outside-confidence", "0"]) == 2
    assert "outside_confidence must be above 0, got 0.0 (--outside-confidence)" in capsys.readouterr().err


@pytest.mark.parametrize("command, argv, hint", [
    ("catalog", ["catalog", "p.csv", "--out", "o.csv"],
     "; the images it finished are in its cache: run the same command again to go on"),
    ("batch", ["batch", "m.csv", "--out", "o"],
     "; the parts it finished are in its output folder: run the same command again to go on"),
    ("train", ["train", "--out", "run"],
     "; run the same command with --resume (and without --overwrite) to go on from its last finished epoch, or "
     "with --overwrite to start again if none had finished"),
    ("predict", ["predict", "a.jpg"], ""),
])
def test_an_interrupted_command_says_how_to_go_on(command, argv, hint, monkeypatch, capsys):
    """Ctrl-C said only "interrupted", though a catalog's cache and a batch's parts keep what was done."""
    import apparel.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    assert cli.main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"apparel {command}: interrupted{hint}"


def test_verbose_may_come_before_or_after_the_command():
    """`apparel predict -v a.jpg` was "unrecognized arguments: -v": only `apparel -v predict` took it."""
    from apparel.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["predict", "a.jpg"]).verbose is False
    assert parse(["-v", "predict", "a.jpg"]).verbose is True
    assert parse(["predict", "-v", "a.jpg"]).verbose is True and parse(["predict", "a.jpg", "--verbose"]).verbose
    assert parse(["taxonomy", "search", "tee", "-v"]).verbose is True


def test_arrays_and_photos_in_one_call_without_a_model_are_told_to_go_separately(tmp_path, capsys, monkeypatch):
    """They went together to the store model, and the arrays failed as "not RGB photos"."""
    np.save(tmp_path / "stack.npy", np.zeros((2, 28, 28), np.uint8))
    Image.new("RGB", (40, 60), "navy").save(tmp_path / "shirt.png")
    assert main(["predict", str(tmp_path / "stack.npy"), str(tmp_path / "shirt.png")]) == 2
    assert "give .npy arrays and photos in separate calls" in capsys.readouterr().err
    # A model named by $APPAREL_MODEL_DIR takes both, as one named on the command line does.
    monkeypatch.setenv("APPAREL_MODEL_DIR", "default")
    assert main(["predict", str(tmp_path / "stack.npy"), str(tmp_path / "shirt.png")]) == 0


def test_a_run_with_a_broken_config_or_no_model_is_refused_not_taken_for_another(photo_run, tmp_path, capsys):
    """A config.json that no longer read made a photo model a Fashion-MNIST one, without a word (each
    command then failed its own odd way); a run whose model.keras was gone was read as a folder of
    photos, its plots classified by the store model."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(photo_run, run)
    Image.new("RGB", (40, 60), "navy").save(tmp_path / "shirt.png")
    (run / "config.json").write_text('{"model": ', encoding="utf-8")
    for argv in (["predict", str(run), str(tmp_path / "shirt.png")], ["evaluate", str(run), "--images", str(tmp_path)]):
        assert main(argv) == 2
        assert f"{run / 'config.json'}: unreadable (Expecting value" in capsys.readouterr().err
    (run / "config.json").write_text("[1]", encoding="utf-8")
    assert main(["predict", str(run), str(tmp_path / "shirt.png")]) == 2
    assert "holds a JSON list, not the run's settings" in capsys.readouterr().err
    shutil.copy(photo_run / "config.json", run / "config.json")
    (run / "model.keras").unlink()
    assert main(["predict", str(run), str(tmp_path / "shirt.png")]) == 2
    assert f"{run} holds no model.keras" in capsys.readouterr().err


def test_plots_of_a_shipped_model_go_to_the_working_directory_not_into_the_package(tmp_path, monkeypatch):
    """They were written into the installed package's own folder (models/default/plots in a checkout)."""
    from apparel import artifacts
    from apparel.training.plots import write_plots

    monkeypatch.chdir(tmp_path)
    shipped = artifacts.shipped_model_dir("default")
    before = sorted(path.name for path in shipped.iterdir())
    monkeypatch.setattr("apparel.training.plots.held_out_figures", lambda *args: {})  # the curves alone: quick
    written = write_plots("default")
    assert written and all(path.parent == Path("plots-default") and path.is_file() for path in written)
    assert sorted(path.name for path in shipped.iterdir()) == before  # the package's folder is as shipped
    assert [path.parent for path in write_plots("default", out=tmp_path / "mine")] == [tmp_path / "mine"] * len(written)


def test_an_error_of_several_lines_keeps_what_went_wrong_in_its_one_line(monkeypatch, capsys):
    """TensorFlow's errors begin "in user code:": that line alone was the whole message."""
    import apparel.cli as cli

    def failing(args):
        raise ValueError("in user code:\n\n    File \"model.py\", line 3\n\n    ValueError: Input 0 is incompatible\n")

    monkeypatch.setattr(cli, "cmd_predict", failing)
    assert cli.main(["predict", "a.jpg"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "apparel predict: error: in user code: … ValueError: Input 0 is incompatible")
