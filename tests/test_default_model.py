"""The shipped models (package data under apparel/shipped_models): found by name from any folder;
the Fashion-MNIST one, ``default``, loads in safe mode and scores what it says."""

import json
import shutil
from pathlib import Path

import pytest

from apparel.artifacts import shipped_model_dir, shipped_model_names
from apparel.inference.prediction import DEFAULT_MODEL_DIR, DEFAULT_PHOTO_MODEL_DIR, Predictor, resolve_model_dir
from conftest import needs_real_data


def test_the_shipped_models_live_in_the_package_and_are_found_by_name(tmp_path, monkeypatch):
    assert {"default", "photos", "store"} <= set(shipped_model_names())  # more may be added
    # Photos are answered by the store model; the ten-class photo model is still shipped, by name.
    assert (DEFAULT_MODEL_DIR, DEFAULT_PHOTO_MODEL_DIR) == (shipped_model_dir("default"), shipped_model_dir("store"))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("photos") == shipped_model_dir("photos") != shipped_model_dir("store")
    assert resolve_model_dir("store") == shipped_model_dir("store")
    monkeypatch.setenv("APPAREL_MODEL_DIR", "default")
    assert resolve_model_dir() == shipped_model_dir("default")


def test_a_run_directory_here_wins_over_a_shipped_name(tmp_path, monkeypatch):
    shutil.copytree(shipped_model_dir("default"), tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("photos") == Path("photos")


def test_an_unknown_name_is_refused_with_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"nothing does not exist; .* shipped model's name \(default, .*photos"):
        resolve_model_dir("nothing")
    (tmp_path / "empty").mkdir()  # a folder that is there but is no run
    with pytest.raises(ValueError, match=r"empty holds no model.keras; give the directory written by"):
        resolve_model_dir("empty")
    with pytest.raises(ValueError, match="not the name of a shipped model"):
        shipped_model_dir("../models")


def test_shipped_model_is_small_and_complete():
    assert (DEFAULT_MODEL_DIR / "model.keras").stat().st_size <= 5 * 1024 * 1024
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["seed"] is not None and "versions" in config

@needs_real_data
def test_shipped_model_scores_its_stated_test_accuracy():
    from apparel.kinds.fashion_mnist.data import load_dataset

    stated = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["test_accuracy"]
    dataset = load_dataset()
    accuracy = float((Predictor.from_dir().predict(dataset.x_test) == dataset.y_test).mean())
    assert accuracy >= stated - 0.003


def test_a_model_file_cut_short_is_called_damaged_not_missing(tmp_path):
    """Keras reports a .keras file it cannot open as "File not found" although it is there."""
    from apparel.artifacts import MODEL_FILE
    from apparel.inference.prediction import load_model

    whole = (shipped_model_dir("default") / MODEL_FILE).read_bytes()
    (tmp_path / MODEL_FILE).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"model.keras: not a readable .keras archive \(damaged or cut short\); retrain"):
        load_model(tmp_path)
