"""The inference runtimes: the LiteRT artefact beside each model (made once, tied to the model
file's digest), the default prediction path free of TensorFlow and Keras, and both runtimes agreeing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apparel import artifacts
from apparel.contract import metadata_path
from apparel.inference import runtime
from apparel.inference.runtime import ARTEFACT_FILE, inference_artefact, load_predictor

from conftest import PHOTO_CLASSES, render_photo

ROOT = Path(__file__).resolve().parents[1]


def photos(folder: Path, count: int = 3) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for index in range(count):
        path = folder / f"photo-{index}.jpg"
        render_photo(index % 3, rng, size=(300, 400)).save(path, quality=90)
        paths.append(path)
    return paths


def test_default_predict_imports_neither_tensorflow_nor_keras(tmp_path):
    photo, = photos(tmp_path, 1)
    code = ("import json, sys; from apparel.cli import main; code = main(['predict', sys.argv[1], '--json']); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf_keras'}); "
            "print(json.dumps({'code': code, 'heavy': heavy}))")
    finished = subprocess.run([sys.executable, "-c", code, str(photo)], capture_output=True, text=True, cwd=ROOT,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert finished.returncode == 0, finished.stderr[-2000:]
    *answer, last = finished.stdout.strip().splitlines()
    assert json.loads(last) == {"code": 0, "heavy": []}
    assert json.loads("\n".join(answer))[0]["file"] == str(photo)


@pytest.mark.parametrize("name, quantization, tolerance", [
    # Partly int8 (apparel.store.artefact): its networks' int8 steps move a probability by a little,
    # up to 0.015 on these photos (up to 0.1 on real ones: docs/benchmarks.md counts what that moves).
    ("store", "int8", 0.03),
    ("photos", "float16", 2e-3),  # float16 weights, float32 arithmetic: Keras's answers within rounding
])
def test_both_runtimes_agree_on_the_shipped_models(name, quantization, tolerance, tmp_path, monkeypatch):
    from apparel.kinds.photo.pipeline import photo_to_rgb

    shipped = artifacts.shipped_model_dir(name)
    # The committed artefact is the model's as it is: a stale one would be made again here, silently.
    monkeypatch.setattr(runtime, "_make", lambda *args: pytest.fail(f"the shipped {name} artefact is stale"))
    lite = load_predictor(name, runtime="litert")
    keras = load_predictor(name, runtime="keras")
    assert lite.export_path == shipped / ARTEFACT_FILE
    assert runtime.artefact_digest(lite.export_path) == artifacts.file_digest(shipped / artifacts.MODEL_FILE)
    assert json.loads(metadata_path(lite.export_path).read_text())["quantization"] == quantization
    batch = np.stack([photo_to_rgb(path, lite.contract.size) for path in photos(tmp_path, 4)])
    expected, answered = keras.predict_proba(batch), lite.predict_proba(batch)
    np.testing.assert_allclose(answered, expected, atol=tolerance)
    # The same top class wherever Keras's is clear of the runner-up by more than the tolerance allows.
    top_two = np.sort(expected, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * tolerance
    assert clear.any() and (answered.argmax(axis=1) == expected.argmax(axis=1))[clear].all()


def test_the_artefact_is_made_once_and_again_for_a_new_model(photo_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(photo_run, run)
    path = inference_artefact(run)
    assert path == run / ARTEFACT_FILE
    recorded = json.loads(metadata_path(path).read_text())
    assert recorded["model_sha256"] == artifacts.file_digest(run / artifacts.MODEL_FILE)
    assert recorded["quantization"] == "float16"
    made = []
    monkeypatch.setattr(runtime, "_make", lambda *args: made.append(args) or args[1])
    assert inference_artefact(run) == path and made == []  # the digest matches: kept
    # A retrained model (another file) is not answered by the old artefact.
    with open(run / artifacts.MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    inference_artefact(run)
    assert [arguments[1] for arguments in made] == [path]


def test_a_read_only_run_keeps_its_artefact_in_the_cache(photo_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(photo_run, run)
    # The shared run may hold an artefact already, made by another test's first use of it.
    for made in (run / ARTEFACT_FILE, metadata_path(run / ARTEFACT_FILE)):
        made.unlink(missing_ok=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = runtime._make

    def refused_beside(model_dir, path, digest):
        if path.parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        return real(model_dir, path, digest)

    monkeypatch.setattr(runtime, "_make", refused_beside)
    path = inference_artefact(run)
    assert path.is_relative_to(tmp_path / "cache") and not (run / ARTEFACT_FILE).exists()
    predictor = load_predictor(run)
    assert predictor.export_path == path and predictor.contract.class_names == PHOTO_CLASSES
    keras = load_predictor(run, runtime="keras")
    batch = np.random.default_rng(0).integers(0, 256, (2, *keras.contract.shape)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_proba(batch), keras.predict_proba(batch), atol=2e-3)


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="unknown runtime 'onnx'; choose one of: litert, keras"):
        load_predictor("store", runtime="onnx")


def test_a_predictor_is_checked_when_built_and_keeps_its_runtime_through_replace():
    """A batch size of -1 answered no rows without a word, a Fashion-MNIST contract assumed for
    another model answered with names that were not its classes, a replaced LiteRT predictor
    lost its interpreter, and LiteRT could not answer an empty batch."""
    import dataclasses

    import keras

    from apparel.errors import ParameterError
    from apparel.inference.litert import LiteRTPredictor
    from apparel.inference.prediction import Predictor

    def dense(shape, classes):
        return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes)])

    with pytest.raises(ParameterError, match=r"^model answers 4 classes, but the contract names 10; give contract="):
        Predictor(dense((28, 28), 4))
    with pytest.raises(ParameterError, match=r"takes inputs of shape \(32, 32, 3\), but the contract says \(28, 28\)"):
        Predictor(dense((32, 32, 3), 10))
    for size in (-1, 0, 2.5, None, True):
        with pytest.raises(ParameterError, match="batch_size must be a whole number of images, 1 or more"):
            Predictor(dense((28, 28), 10), batch_size=size)
    predictor = load_predictor("default")
    images = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    smaller = dataclasses.replace(predictor, batch_size=2)
    np.testing.assert_allclose(smaller.predict_proba(images), predictor.predict_proba(images), atol=1e-6)
    with pytest.raises(ParameterError, match="batch_size"):
        dataclasses.replace(predictor, batch_size=-1)
    assert predictor.predict_proba(images[:0]).shape == (0, 10)
    runtime = LiteRTPredictor(predictor.export_path, contract=predictor.contract)
    assert repr(runtime) == f"LiteRTPredictor({str(predictor.export_path)!r}, fashion-mnist model of 10 classes, inputs 28×28)"
    assert runtime.predict_proba(images[:0]).shape == (0, 10)
    assert runtime.predict_proba(images[:1]).shape == (1, 10)  # and resized back to rows after none
