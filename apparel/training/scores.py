"""A model's figures on labelled images: loss and accuracy, per-class precision/recall/F1, the
confusion matrix and the classes most confused.

    >>> from apparel.training.scores import classification_report
    >>> classification_report(labels, logits.argmax(axis=-1), class_names)["most_confused"][0]
    {'classes': ['Shirt', 'T-shirt/top'], 'mistakes': 182}
"""

from __future__ import annotations

import numpy as np

from apparel.kinds.fashion_mnist.data import CLASS_NAMES


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
