"""Exported models answer like the Keras model (a small model, trained in the test)."""

import numpy as np
import pytest

from apparel.cli import main
from apparel.config import TrainConfig
from apparel.inference.export import export_model
from apparel.inference.litert import LiteRTPredictor
from apparel.inference.prediction import Predictor
from apparel.training import train


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


def test_onnx_matches_keras(run_dir, tmp_path, tiny_dataset):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_model(run_dir, "onnx", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path))
    probabilities = session.run(None, {session.get_inputs()[0].name: tiny_dataset.x_test})[0]
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_unknown_format_and_missing_model_are_clear(run_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'coreml'"):
        export_model(run_dir, "coreml", tmp_path / "x")
    with pytest.raises(ValueError, match="holds no model.keras"):
        export_model(tmp_path, "litert", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="no such LiteRT model"):
        LiteRTPredictor(tmp_path / "missing.tflite")


def test_predict_and_service_run_the_litert_model(run_dir, tmp_path, tiny_dataset, capsys):
    import json

    from fastapi.testclient import TestClient

    from apparel.serve.app import create_app

    tflite = export_model(run_dir, "litert", tmp_path / "model.tflite")
    keras_probabilities = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test)
    lite = Predictor.from_litert(tflite, run_dir)
    np.testing.assert_allclose(lite.predict_proba(tiny_dataset.x_test), keras_probabilities, atol=1e-5)

    np.save(tmp_path / "images.npy", tiny_dataset.x_test[:2])
    assert main(["predict", str(tmp_path / "images.npy"), "--litert", str(tflite), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["probability"] for r in results] == pytest.approx(keras_probabilities[:2].max(axis=1), abs=1e-5)

    with TestClient(create_app(lite)) as client:
        response = client.post("/v1/models/apparel:predict", json={"instances": tiny_dataset.x_test[:3].tolist()})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["predictions"], keras_probabilities[:3], atol=1e-5)


def test_serve_litert_starts_and_predicts(run_dir, tmp_path, tiny_dataset, monkeypatch):
    """`apparel serve DIR --litert FILE` through the CLI: uvicorn.run is replaced by a test client."""
    import uvicorn
    from fastapi.testclient import TestClient

    tflite = export_model(run_dir, "litert", tmp_path / "model.tflite")
    answers = {}

    def serve_in_process(app, **options):
        with TestClient(app) as client:
            answers["predict"] = client.post("/v1/models/apparel:predict",
                                             json={"instances": tiny_dataset.x_test[:2].tolist()})
            answers["metadata"] = client.get("/v1/models/apparel/metadata")

    monkeypatch.setattr(uvicorn, "run", serve_in_process)
    assert main(["serve", str(run_dir), "--litert", str(tflite), "--port", "0"]) == 0
    assert answers["predict"].status_code == 200
    probabilities = np.array(answers["predict"].json()["predictions"])
    expected = Predictor.from_dir(run_dir).predict_proba(tiny_dataset.x_test[:2])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert answers["metadata"].json()["model_version"] is not None  # the run directory's metadata
