"""Exported models answer like the Keras model (a small model, trained in the test)."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from apparel.cli import main
from apparel.config import TrainConfig
from apparel.inference.export import export_model
from apparel.inference.litert import LiteRTPredictor
from apparel.inference.prediction import Predictor
from apparel.training.trainer import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(epochs=1, hidden=16), dataset=tiny_dataset, out_dir=out, verbose=0)
    return out


def test_litert_matches_keras(run_dir, tmp_path, tiny_dataset):
    assert main(["export", str(run_dir), "--format", "litert", "--out", str(tmp_path / "model.tflite")]) == 0
    lite = LiteRTPredictor(tmp_path / "model.tflite")
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    np.testing.assert_allclose(lite.predict_proba(tiny_dataset.x_test), expected, atol=1e-5)
    np.testing.assert_allclose(lite.predict_proba(tiny_dataset.x_test[:1]), expected[:1], atol=1e-5)


def test_saved_model_matches_keras(run_dir, tmp_path, tiny_dataset):
    import tensorflow as tf

    path = export_model(run_dir, "saved_model", tmp_path / "saved")
    served = tf.saved_model.load(str(path))
    probabilities = np.asarray(served.serve(tf.constant(tiny_dataset.x_test)))
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_onnx_from_the_command_matches_keras(run_dir, tmp_path, tiny_dataset, capsys):
    import onnxruntime

    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        # Keras's tf2onnx shim set numpy off about np.object the first time it was imported.
        warnings.filterwarnings("error", message=r"In the future `np\.object`")
        assert main(["export", str(run_dir), "--format", "onnx", "--out", str(path)]) == 0
    assert capsys.readouterr().out.split() == [str(path), f"{path}.json"]  # the model, then its contract
    session = onnxruntime.InferenceSession(str(path))
    probabilities = session.run(None, {session.get_inputs()[0].name: tiny_dataset.x_test})[0]
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_unknown_format_and_missing_model_are_clear(run_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'coreml'"):
        export_model(run_dir, "coreml", tmp_path / "x")
    with pytest.raises(ValueError, match="holds no model.keras"):
        export_model(tmp_path, "litert", tmp_path / "x.tflite")
    # A flatbuffer named x.onnx, or onnx quantised, misled: said before any work.
    with pytest.raises(ValueError, match="out .*x.onnx is named for onnx, not litert: give a name ending in .tflite"):
        export_model(run_dir, "litert", tmp_path / "x.onnx")
    # The run's own model.keras is no export's name: a LiteRT export there replaced the run's model.
    with pytest.raises(ValueError, match="out .*model.keras is named for a Keras model, not litert: give a name ending in .tflite"):
        export_model(run_dir, "litert", run_dir / "model.keras")
    assert Predictor.from_dir(run_dir) is not None  # its model.keras still loads
    with pytest.raises(ValueError, match="x.tflite is named for litert, not saved_model: give a folder's name"):
        export_model(run_dir, "saved_model", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match=r"quantize is for format litert only \(a onnx export keeps float32"):
        export_model(run_dir, "onnx", tmp_path / "x.onnx", quantize="float16")
    assert not list(tmp_path.glob("x.*"))
    with pytest.raises(ValueError, match="no such LiteRT model"):
        LiteRTPredictor(tmp_path / "missing.tflite")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx, not a flatbuffer")
    with pytest.raises(ValueError, match="model.onnx is not a LiteRT model .*; give a .tflite file made by `apparel export"):
        LiteRTPredictor(tmp_path / "model.onnx")


def test_predict_and_service_run_the_litert_model(run_dir, tmp_path, tiny_dataset, capsys):
    import json

    from fastapi.testclient import TestClient

    from apparel.serve.app import create_app

    tflite = export_model(run_dir, "litert", tmp_path / "model.tflite")
    keras_probabilities = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    lite = Predictor.from_litert(tflite, run_dir)
    np.testing.assert_allclose(lite.predict_proba(tiny_dataset.x_test), keras_probabilities, atol=1e-5)
    # One row, or the wrong width: said, not an IndexError or another model's names on its columns.
    assert lite.top_k(keras_probabilities[0], k=2) == lite.top_k(keras_probabilities[:1], k=2)
    with pytest.raises(ValueError, match="must have one column per class of this model"):
        lite.top_k(keras_probabilities[:, :5])
    for k in (2.5, 0, -1):  # 0 and -1 used to give one class each, as if 1 had been asked
        with pytest.raises(ValueError, match="k must be a whole number of at least 1"):
            lite.top_k(keras_probabilities, k=k)
    with pytest.raises(ValueError, match="threads must be a whole number of at least 1, got 0"):
        Predictor.from_litert(tflite, run_dir, threads=0)

    np.save(tmp_path / "images.npy", tiny_dataset.x_test[:2])
    assert main(["predict", str(tmp_path / "images.npy"), "--litert", str(tflite), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["probability"] for r in results] == pytest.approx(keras_probabilities[:2].max(axis=1), abs=1e-5)

    with TestClient(create_app(lite)) as client:
        response = client.post("/v1/models/apparel:predict", json={"instances": tiny_dataset.x_test[:3].tolist()})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["predictions"], keras_probabilities[:3], atol=1e-5)


def test_serve_litert_starts_and_predicts(run_dir, tmp_path, tiny_dataset, monkeypatch):
    """`apparel serve DIR --litert FILE` through the CLI: serving is replaced by a test client."""
    from fastapi.testclient import TestClient

    from apparel.serve import app as service_app

    tflite = export_model(run_dir, "litert", tmp_path / "model.tflite")
    answers = {}

    def serve_in_process(app, **options):
        with TestClient(app, base_url="http://127.0.0.1") as client:
            answers["predict"] = client.post("/v1/models/apparel:predict",
                                             json={"instances": tiny_dataset.x_test[:2].tolist()})
            answers["metadata"] = client.get("/v1/models/apparel/metadata")

    monkeypatch.setattr(service_app, "serve", serve_in_process)
    assert main(["serve", str(run_dir), "--litert", str(tflite), "--port", "0"]) == 0
    assert answers["predict"].status_code == 200
    probabilities = np.array(answers["predict"].json()["predictions"])
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test[:2])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert answers["metadata"].json()["model_version"] is not None  # the run directory's metadata
    # The export alone: its model.tflite.json says what it is (it was served as the store model's
    # folder and refused: "answers 10 classes, not the 40 of …/store").
    assert main(["serve", "--litert", str(tflite), "--port", "0"]) == 0
    assert answers["predict"].status_code == 200
    np.testing.assert_allclose(np.array(answers["predict"].json()["predictions"]), expected, atol=1e-5)


def test_a_photo_model_exports_with_its_contract(photo_run, tmp_path, capsys):
    """LiteRT through the CLI: RGB 0–255 in, softmax over the run's classes out, the contract in
    model.tflite.json, so `predict --litert FILE` needs no run directory."""
    import json

    from conftest import PHOTO_CLASSES, render_photo

    tflite = tmp_path / "photos.tflite"
    assert main(["export", str(photo_run), "--format", "litert", "--out", str(tflite)]) == 0
    assert capsys.readouterr().out.split() == [str(tflite), f"{tflite}.json"]
    metadata = json.loads((tmp_path / "photos.tflite.json").read_text())
    assert (metadata["kind"], metadata["size"], metadata["class_names"]) == ("photo", 32, list(PHOTO_CLASSES))
    assert metadata["input"] == {"shape": [None, 32, 32, 3], "dtype": "float32", "range": [0.0, 255.0]}
    assert "white square" in metadata["preprocessing"] and metadata["output"]["shape"] == [None, 3]

    rng = np.random.default_rng(0)
    photos = rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    keras_predictor = Predictor.from_dir(photo_run)
    expected = keras_predictor.predict_proba(photos)
    lite = Predictor.from_litert(tflite)  # the contract from the metadata file
    assert lite.contract == keras_predictor.contract
    np.testing.assert_allclose(lite.predict_proba(photos), expected, atol=1e-5)
    np.testing.assert_allclose(lite.predict_proba(photos[:1]), expected[:1], atol=1e-5)  # the batch resized back
    with pytest.raises(ValueError):
        lite.predict_proba(np.zeros((1, 28, 28), np.float32))  # a Fashion-MNIST array is refused, not answered

    render_photo(0, rng).save(tmp_path / "dress.jpg")
    assert main(["predict", "--litert", str(tflite), str(tmp_path / "dress.jpg"), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert [item["label"] for item in result["top_k"]] and {item["label"] for item in result["top_k"]} <= set(PHOTO_CLASSES)
    assert main(["predict", "--litert", str(tflite), str(photo_run), str(tmp_path / "dress.jpg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [result]  # naming the run gives the same answer


def test_a_litert_export_stopped_at_its_file_s_rename_never_records_the_old_file_as_the_new_model(
        run_dir, tmp_path, monkeypatch):
    """The record (with the model's digest) goes last: stopped before the new file takes its place,
    the old file is left without a record, which the runtime makes again, and is never taken for the
    new model's artefact."""
    import os

    from apparel.inference.runtime import artefact_digest

    out = export_model(run_dir, "litert", tmp_path / "model.tflite", source_digest="old")
    old = out.read_bytes()
    real = os.replace

    def stopped(source, target, *args, **kwargs):
        if Path(target).name == "model.tflite":
            raise KeyboardInterrupt
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        export_model(run_dir, "litert", out, source_digest="new")
    assert out.read_bytes() == old and artefact_digest(out) is None
    monkeypatch.setattr(os, "replace", real)
    export_model(run_dir, "litert", out, source_digest="new")
    assert artefact_digest(out) == "new" and sorted(path.name for path in tmp_path.iterdir()) == [
        "model.tflite", "model.tflite.json"]


def test_a_photo_saved_model_answers_its_metadata(photo_run, tmp_path):
    import json

    import tensorflow as tf

    path = export_model(photo_run, "saved_model", tmp_path / "saved")
    served = tf.saved_model.load(str(path))
    photos = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(served.serve(tf.constant(photos))),
                               Predictor.from_dir(photo_run).predict_proba(photos), atol=1e-5)
    signature = served.signatures["serving_default"].structured_input_signature[1]
    assert signature["images"].shape.as_list() == [None, 32, 32, 3]
    answered = json.loads(served.signatures["metadata"]()["metadata"].numpy().decode())
    assert answered == json.loads((path / "apparel.json").read_text())
    assert answered["class_names"] == ["dress", "shoes", "t-shirt"] and answered["format"] == "saved_model"


@pytest.mark.parametrize("step", ["replace", "rmtree"])
def test_a_saved_model_export_stopped_midway_leaves_a_whole_one(run_dir, tmp_path, monkeypatch, step):
    """Re-exporting builds the new SavedModel beside the old one and swaps them: stopped at any
    step, the path holds a whole export, old or new, and the next export leaves nothing beside it.
    (The SavedModel writer is a stand-in here: the swap is what is tested.)"""
    import os
    import shutil

    from apparel.inference import export

    def write_out(model, path, contract, metadata=None):
        (path / "variables").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"graph")

    monkeypatch.setattr(export, "_export_saved_model", write_out)
    out = export_model(run_dir, "saved_model", tmp_path / "saved")
    (out / "old").write_text("the first export")
    owner = os if step == "replace" else shutil
    real = getattr(owner, step)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, step, stopped)
    try:
        export_model(run_dir, "saved_model", out)
    except KeyboardInterrupt:
        pass
    assert (out / "saved_model.pb").read_bytes() == b"graph" and (out / "apparel.json").is_file()
    monkeypatch.setattr(owner, step, real)
    export_model(run_dir, "saved_model", out)
    assert not (out / "old").exists() and sorted(path.name for path in tmp_path.iterdir()) == ["saved"]


def test_an_export_carries_the_run_s_categories_and_answers_with_them(photo_run, tmp_path, capsys):
    """A run with its own categories.json (as the store model has) exports them in the metadata, so
    `predict --litert FILE` without the run still answers with the run's categories and thresholds."""
    import json
    import shutil

    from conftest import PHOTO_CLASSES, render_photo

    from apparel.artifacts import CATEGORIES_FILE, write_json
    from apparel.shop.categories import run_chooser

    run = tmp_path / "run"
    shutil.copytree(photo_run, run)
    # Threshold 0: the walk always ends on a category, whatever the random model answers.
    record = {"categories": {"dress": "aa-1-4", "shoes": "aa-8", "t-shirt": "aa-1-13-8"},
              "category_threshold": 0.0, "outside_threshold": 1.0}
    write_json(run / CATEGORIES_FILE, {**record, "validation": {"small": {"exact": 1.0}}})
    tflite = export_model(run, "litert", tmp_path / "store.tflite")
    assert json.loads((tmp_path / "store.tflite.json").read_text())["categories"] == record  # no validation figures
    render_photo(2, np.random.default_rng(0)).save(tmp_path / "tee.jpg")
    assert main(["predict", "--litert", str(tflite), str(tmp_path / "tee.jpg"), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    lite = Predictor.from_litert(tflite)

    probabilities = lite.predict_proba(lite.contract.decode(str(tmp_path / "tee.jpg"))[None])
    expected = run_chooser(None, PHOTO_CLASSES, export=tflite).choose_all(probabilities)[0].to_dict()
    assert result["category"]["id"] == expected["id"] and result["category"]["id"] in record["categories"].values()


def _output_types(path) -> list[tuple[str, type]]:
    """(op type, output dtype) of each op of a .tflite, in order (the interpreter's op listing)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtypes = {tensor["index"]: tensor["dtype"] for tensor in interpreter.get_tensor_details()}
    return [(op["op_name"], dtypes[op["outputs"][0]]) for op in interpreter._get_ops_details()]


def test_an_int8_export_keeps_its_tail_and_the_layers_asked_for_float(photo_run, tmp_path, capsys):
    """--quantize int8 --float-tail: the ops after the pooling (classifier, softmax) compute in
    float32, the convolutions in int8; --float-error: the layers int8 puts off by more than that
    many steps are float too, named in the metadata."""
    import json

    photos = np.random.default_rng(2).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    path = export_model(photo_run, "litert", tmp_path / "tail.tflite", quantize="int8", calibration=photos,
                        float_tail=True)
    types = _output_types(path)
    assert {dtype for op, dtype in types if op in ("FULLY_CONNECTED", "SOFTMAX")} == {np.float32}
    assert {dtype for op, dtype in types if op in ("CONV_2D", "MEAN")} == {np.int8}
    metadata = json.loads((tmp_path / "tail.tflite.json").read_text())
    assert metadata["quantization"] == "int8" and metadata["float_layers"] == {"tail": True, "error_above": None}
    probabilities = LiteRTPredictor(path).predict_proba(photos[:2])
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    np.save(tmp_path / "photos.npy", photos)
    out = tmp_path / "error.tflite"
    assert main(["export", str(photo_run), "--format", "litert", "--out", str(out), "--quantize", "int8",
                 "--calibration", str(tmp_path / "photos.npy"), "--float-error", "0.3"]) == 0
    capsys.readouterr()
    layers = json.loads((tmp_path / "error.tflite.json").read_text())["float_layers"]["layers"]
    floats = sum(dtype == np.float32 for op, dtype in _output_types(out) if op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    assert layers and floats >= 1  # random weights: some layers are off by more than 0.3 steps


def test_float_layers_are_checked_and_named(photo_run, tmp_path):
    from apparel.errors import ParameterError

    photos = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ParameterError, match="float_tail and float_error .* with int8"):
        export_model(photo_run, "litert", tmp_path / "x.tflite", quantize="float16", float_tail=True)
    with pytest.raises(ParameterError, match="float_tail 'yes': True"):
        export_model(photo_run, "litert", tmp_path / "x.tflite", quantize="int8", calibration=photos, float_tail="yes")
    with pytest.raises(ParameterError, match="float_error -1: a number of quantisation steps"):
        export_model(photo_run, "litert", tmp_path / "x.tflite", quantize="int8", calibration=photos, float_error=-1)
    assert not (tmp_path / "x.tflite").exists()
