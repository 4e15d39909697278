"""Test-set figures: loss and accuracy, per-class precision/recall/F1, the confusion matrix.

    >>> from apparel.evaluation import evaluate_run
    >>> report = evaluate_run("runs/reference")
    >>> report["test_accuracy"], report["most_confused"][0]
"""

from __future__ import annotations

import os

import numpy as np

from apparel import artifacts
from apparel.data import CLASS_NAMES, Dataset, load_dataset
from apparel.inference.prediction import NUM_CLASSES, Predictor, resolve_model_dir


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1024) -> dict:
    """Loss and accuracy of a model's logits, as Keras's ``evaluate`` computes them."""
    import keras

    logits = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    return {
        "loss": float(loss),
        "accuracy": float(np.mean(logits.argmax(axis=-1) == labels)),
        "logits": logits,
    }


def classification_report(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Per-class precision, recall, F1 and support; the confusion matrix (rows: true class);
    and the most confused pairs of classes, most frequent first."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=classes)
    per_class = {
        CLASS_NAMES[i]: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i in classes
    }
    return {
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused_pairs(matrix),
    }


def most_confused_pairs(matrix: np.ndarray, count: int = 5) -> list[dict]:
    """Unordered class pairs by the number of test images mistaken either way."""
    matrix = np.asarray(matrix)
    pairs = []
    for i in range(len(matrix)):
        for j in range(i + 1, len(matrix)):
            mistakes = int(matrix[i, j] + matrix[j, i])
            if mistakes:
                pairs.append({"classes": [CLASS_NAMES[i], CLASS_NAMES[j]], "mistakes": mistakes})
    pairs.sort(key=lambda pair: -pair["mistakes"])
    return pairs[:count]


def evaluate_run(
    model_dir: str | os.PathLike | None = None,
    dataset: Dataset | None = None,
    data_dir: str | os.PathLike | None = None,
    write: bool = True,
) -> dict:
    """Reload a run's model, recompute its test figures and (``write``) merge them into its
    metrics.json. Returns the figures."""
    path = resolve_model_dir(model_dir)
    if dataset is None:
        dataset = load_dataset(data_dir)
    predictor = Predictor.from_dir(path)
    figures = evaluate_model(predictor.model, dataset.x_test, dataset.y_test, batch_size=predictor.batch_size)
    predicted = figures["logits"][:, :NUM_CLASSES].argmax(axis=-1)
    report = {
        "test_accuracy": figures["accuracy"],
        "test_loss": figures["loss"],
        "test_images": int(len(dataset.y_test)),
        **classification_report(dataset.y_test, predicted),
    }
    if write:
        artifacts.update_json(path / artifacts.METRICS_FILE, report)
    return report
