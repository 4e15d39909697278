"""A photo model's figures on labelled photos, streamed through the photo pipeline.

    >>> from apparel.kinds.photo.measure import evaluate_photo_model
    >>> evaluate_photo_model(model, photos, 224, class_names)["accuracy"]
"""

from __future__ import annotations

import numpy as np

from apparel.kinds.photo.data import PhotoSet, photo_outputs
from apparel.training.scores import classification_report


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
