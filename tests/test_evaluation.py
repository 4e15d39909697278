"""Evaluation figures against values worked out by hand, not by the code under test."""

import math

import numpy as np
import pytest

from apparel.training.evaluation import evaluate_run
from apparel.training.scores import classification_report, evaluate_model, most_confused_pairs

NAMES = ("a", "b", "c")
# Six images: true classes and what a model said.
LABELS = np.array([0, 0, 0, 1, 1, 2])
PREDICTED = np.array([0, 0, 1, 1, 2, 1])


def test_per_class_figures_and_the_confusion_matrix_match_a_hand_count():
    report = classification_report(LABELS, PREDICTED, NAMES)
    # Rows are true classes: a → a twice and b once; b → b once and c once; c → b once.
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 1, 0]]
    # a: said 2 times, right both times (precision 1), found 2 of its 3 (recall 2/3), F1 = 0.8.
    # b: said 3 times, right once (1/3), found 1 of 2 (1/2), F1 = 2·(1/3)(1/2)/(5/6) = 0.4.
    # c: said once, wrongly (0), found 0 of 1 (0), F1 0.
    assert report["per_class"] == {
        "a": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3},
        "b": {"precision": 0.3333, "recall": 0.5, "f1": 0.4, "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }


def test_confused_pairs_count_mistakes_both_ways_most_first():
    # b ↔ c: one b taken for c and one c taken for b; a ↔ b: one a taken for b; a ↔ c: none.
    assert classification_report(LABELS, PREDICTED, NAMES)["most_confused"] == [
        {"classes": ["b", "c"], "mistakes": 2},
        {"classes": ["a", "b"], "mistakes": 1},
    ]
    matrix = np.array([[5, 0, 3], [4, 5, 0], [1, 2, 5]])  # a↔c 4, a↔b 4, b↔c 2; ties keep matrix order
    assert most_confused_pairs(matrix, NAMES, count=2) == [
        {"classes": ["a", "b"], "mistakes": 4},
        {"classes": ["a", "c"], "mistakes": 4},
    ]


class FixedLogits:
    """A stand-in model whose logits are given: loss and accuracy can be worked out by hand."""

    def __init__(self, logits):
        self.logits = np.asarray(logits, dtype=np.float32)

    def predict(self, images, batch_size=None, verbose=0):
        return self.logits[: len(images)]


def test_loss_and_accuracy_are_the_cross_entropy_and_hit_rate_of_the_logits():
    logits = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 1.0]]
    labels = np.array([0, 2, 1, 2])
    figures = evaluate_model(FixedLogits(logits), np.zeros((4, 28, 28)), labels)
    # Hits: row 0 only (row 2 ties, and argmax takes the first class, 0, not the label 1).
    assert figures["accuracy"] == 0.25
    losses = [math.log(math.exp(2) + 2) - 2, math.log(math.e + 2), math.log(3), math.log(math.exp(3) + 1 + math.e) - 1]
    assert figures["loss"] == pytest.approx(sum(losses) / 4, rel=1e-5)


def test_a_runs_test_accuracy_is_the_share_of_argmax_hits(tiny_dataset, tmp_path):
    import json

    from apparel.inference.prediction import Predictor
    from serving import train_tiny_model

    train_tiny_model(tiny_dataset, tmp_path / "run")  # the walk-through's model: 20 logits for 10 classes
    predictor = Predictor.from_dir(tmp_path / "run")
    # test_accuracy is Keras's (the walk-through's evaluate): the argmax over all the model's
    # outputs, where one of the 10 unused ones counts as a miss. Counted here from raw logits.
    logits = predictor.model.predict(tiny_dataset.x_test, verbose=0)
    assert logits.shape[1] == 20
    keras_hits = np.argmax(logits, axis=1) == tiny_dataset.y_test
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert trained["test_accuracy"] == pytest.approx(keras_hits.mean(), abs=1e-9)
    report = evaluate_run(tmp_path / "run", dataset=tiny_dataset, write=False)
    assert report["test_accuracy"] == pytest.approx(keras_hits.mean(), abs=1e-9)
    # The per-class figures are those of the class the predictor names, among the 10.
    named = predictor.predict_proba(tiny_dataset.x_test).argmax(axis=1) == tiny_dataset.y_test
    assert np.sum(report["confusion_matrix"]) == len(tiny_dataset.y_test)
    assert np.trace(report["confusion_matrix"]) == named.sum() >= keras_hits.sum()


def test_evaluate_run_writes_its_figures_beside_the_model_by_default(tiny_dataset, tmp_path):
    import json

    from apparel.errors import ParameterError
    from conftest import write_photo_folders
    from serving import train_tiny_model

    run = train_tiny_model(tiny_dataset, tmp_path / "run")
    report = evaluate_run(run, dataset=tiny_dataset)
    written = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "test_images", "per_class", "confusion_matrix", "most_confused"):
        assert written[key] == report[key], key
    assert report["test_images"] == len(tiny_dataset.y_test)
    # The loss is the mean cross-entropy of the logits, worked out here with numpy.
    from apparel.inference.prediction import Predictor

    logits = Predictor.from_dir(run).model.predict(tiny_dataset.x_test, verbose=0).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(logits)), tiny_dataset.y_test]
    assert report["test_loss"] == pytest.approx(losses.mean(), rel=1e-4)
    # A Fashion-MNIST model is measured on the test set: a folder of photos is a mistake to name.
    with pytest.raises(ParameterError, match="holds a Fashion-MNIST model, measured on the test set; leave images out"):
        evaluate_run(run, images=write_photo_folders(tmp_path / "photos", per_class=1))
    # Wrong types are named, not "'str' object has no attribute 'x_test'" from deep inside.
    with pytest.raises(ParameterError, match="dataset must be a Dataset .*got str"):
        evaluate_run(run, dataset="fashion-mnist")
    with pytest.raises(ParameterError, match="images must be a path .*got int"):
        evaluate_run(run, images=5)


def test_without_a_run_the_shipped_model_of_the_right_kind_is_measured(tiny_dataset, tmp_path):
    from conftest import write_photo_folders

    from apparel import artifacts

    shipped = artifacts.shipped_model_dir("default") / artifacts.METRICS_FILE
    before = shipped.read_bytes()
    report = evaluate_run(None, dataset=tiny_dataset)  # no images: the Fashion-MNIST model
    assert report["test_images"] == len(tiny_dataset.y_test)
    assert shipped.read_bytes() == before, "a shipped model's figures are left as it shipped with them"
    folder = write_photo_folders(tmp_path / "photos", per_class=1)  # dress, shoes, t-shirt: its classes too
    report = evaluate_run(None, images=folder, write=False)  # images: the shipped store model, 40 classes
    assert report["images_images"] == 3 and len(report["confusion_matrix"]) == 40


def test_a_class_never_predicted_or_never_present_scores_zero_not_one():
    # a: 3 said, 2 right (precision 2/3), 2 of 2 found; b: never said (precision 0 of 0: counted 0),
    # 1 present, none found; c: never said and never present: every figure 0 of 0, counted 0.
    report = classification_report(np.array([0, 0, 1]), np.array([0, 0, 0]), NAMES)
    assert report["per_class"] == {
        "a": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2},
        "b": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    }
    assert report["confusion_matrix"] == [[2, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert report["most_confused"] == [{"classes": ["a", "b"], "mistakes": 1}]


class RecordingLogits(FixedLogits):
    """FixedLogits that notes how it was asked: in batches of what size, and whether to print."""

    def __init__(self, logits):
        super().__init__(logits)
        self.calls = []

    def predict(self, images, batch_size=None, verbose="auto"):
        self.calls.append((batch_size, verbose))
        return super().predict(images)


def test_evaluate_model_predicts_quietly_in_batches_of_the_size_asked():
    model = RecordingLogits([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert evaluate_model(model, np.zeros((3, 28, 28)), np.array([0, 1, 1]))["accuracy"] == pytest.approx(2 / 3)
    evaluate_model(model, np.zeros((3, 28, 28)), np.array([0, 1, 1]), batch_size=2)
    assert model.calls == [(1024, 0), (2, 0)]  # a bounded batch, and no progress bar on stdout


def test_the_report_rounds_to_4_places_and_warns_about_nothing():
    import warnings

    # a: said 3 times, 2 right (2/3); 4 present, 2 found (1/2): F1 = 2·(1/3)/(7/6) = 4/7 = 0.571428…
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # precision of a class never said is 0, quietly (no UndefinedMetricWarning)
        report = classification_report(np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 0]), NAMES)
    assert report["per_class"]["a"] == {"precision": 0.6667, "recall": 0.5, "f1": 0.5714, "support": 4}
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_at_most_five_confused_pairs_by_default():
    matrix = np.ones((4, 4), dtype=int)  # every one of the 6 pairs mistaken twice
    pairs = most_confused_pairs(matrix, ("a", "b", "c", "d"))
    assert len(pairs) == 5 and all(pair["mistakes"] == 2 for pair in pairs)
    assert pairs[0]["classes"] == ["a", "b"] and pairs[-1]["classes"] == ["b", "d"]
