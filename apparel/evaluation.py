"""Test-set figures: loss and accuracy, per-class precision/recall/F1, the confusion matrix.

    >>> from apparel.evaluation import evaluate_run
    >>> report = evaluate_run("runs/reference")
    >>> report["test_accuracy"], report["most_confused"][0]
"""

from __future__ import annotations

import os

import numpy as np

from apparel import artifacts
from apparel.data import CLASS_NAMES, NUM_CLASSES, Dataset, load_dataset
from apparel.errors import ParameterError
from apparel.inference.prediction import Predictor, resolve_model_dir
from apparel.photo_data import PhotoSet, photo_outputs, read_labelled_photos


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


def classification_report(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES) -> dict:
    """Per-class precision, recall, F1 and support; the confusion matrix (rows: true class);
    and the most confused pairs of classes, most frequent first."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=classes)
    per_class = {
        class_names[i]: {
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
        "most_confused": most_confused_pairs(matrix, class_names),
    }


def most_confused_pairs(matrix: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES, count: int = 5) -> list[dict]:
    """Unordered class pairs by the number of test images mistaken either way."""
    matrix = np.asarray(matrix)
    pairs = []
    for i in range(len(matrix)):
        for j in range(i + 1, len(matrix)):
            mistakes = int(matrix[i, j] + matrix[j, i])
            if mistakes:
                pairs.append({"classes": [class_names[i], class_names[j]], "mistakes": mistakes})
    pairs.sort(key=lambda pair: -pair["mistakes"])
    return pairs[:count]


def evaluate_photo_model(model, photos: PhotoSet, size: int, class_names: tuple[str, ...], batch_size: int = 32) -> dict:
    """Loss, accuracy and the classification report of a photo model on labelled photos
    (unreadable photos are left out and counted in ``skipped``)."""
    import keras

    skipped: dict = {}
    logits, labels = photo_outputs(model, photos, size, batch_size, skipped)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    predicted = logits.argmax(axis=-1)
    return {
        "loss": round(float(loss), 4),
        "accuracy": round(float(np.mean(predicted == labels)), 4),
        "images": int(len(labels)),
        "skipped": len(skipped),
        **classification_report(labels, predicted, class_names),
    }


def evaluate_run(
    model_dir: str | os.PathLike | None = None,
    dataset: Dataset | None = None,
    data_dir: str | os.PathLike | None = None,
    write: bool = True,
    images: str | os.PathLike | None = None,
) -> dict:
    """Reload a run's model, recompute its held-out figures and (``write``) merge them into its
    metrics.json. Returns the figures.

    A Fashion-MNIST model is measured on the test set (``test_*``); a photo model on ``images``,
    a folder of class folders or a ``path,label`` CSV whose classes are the model's
    (``images_*``, with the folder's name in ``images``).
    """
    path = resolve_model_dir(model_dir, photos=images is not None)
    predictor = Predictor.from_dir(path)
    if predictor.contract.is_photo or images is not None:
        return _evaluate_photo_run(path, predictor, images, write)
    if dataset is None:
        dataset = load_dataset(data_dir)
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


def _evaluate_photo_run(path, predictor: Predictor, images, write: bool) -> dict:
    contract = predictor.contract
    if not contract.is_photo:
        raise ParameterError(f"{path} holds a Fashion-MNIST model, measured on the test set; leave {{}} out", "images")
    if images is None:
        raise ParameterError(f"{path} holds a photo model: give {{}}, a folder of class folders to measure it on", "images")
    photos = read_labelled_photos(images, contract.class_names)
    figures = evaluate_photo_model(predictor.model, photos, contract.size, contract.class_names)
    report = {"images": str(images), **{f"images_{key}": figures.pop(key) for key in ("accuracy", "loss", "images", "skipped")},
              **figures}
    if write:  # one entry per folder measured, kept beside the others
        metrics_file = path / artifacts.METRICS_FILE
        earlier = artifacts.read_json(metrics_file).get("evaluations", {}) if metrics_file.exists() else {}
        artifacts.update_json(metrics_file, {"evaluations": {**earlier, str(images): report}})
    return report
