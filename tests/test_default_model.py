"""The model shipped in models/default: loads in safe mode and scores what it says."""

import json

from apparel.inference.prediction import DEFAULT_MODEL_DIR, Predictor
from conftest import needs_real_data


def test_shipped_model_is_small_and_complete():
    assert (DEFAULT_MODEL_DIR / "model.keras").stat().st_size <= 5 * 1024 * 1024
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["seed"] is not None and "versions" in config

@needs_real_data
def test_shipped_model_scores_its_stated_test_accuracy():
    from apparel.data import load_dataset

    stated = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["test_accuracy"]
    dataset = load_dataset()
    accuracy = float((Predictor.from_dir().predict(dataset.x_test) == dataset.y_test).mean())
    assert accuracy >= stated - 0.003
