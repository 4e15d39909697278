"""Load a trained model and turn images into class probabilities.

    >>> from apparel.inference.prediction import Predictor
    >>> predictor = Predictor.from_dir("runs/reference")
    >>> probabilities = predictor.predict_proba(images)      # (N, 10), rows sum to 1
    >>> predictor.top_k(probabilities, k=3)[0]
    [('Ankle boot', 0.97), ('Sneaker', 0.02), ('Sandal', 0.01)]

The predicted class is the highest of the ten class logits: the reference model's extra logits
(it has 20 outputs) are never a label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.data import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from apparel.inference.inputs import as_model_input, softmax
from apparel.inference.litert import LiteRTPredictor

MODEL_DIR_ENV = "APPAREL_MODEL_DIR"
# The model shipped with the project: used when no model directory is given.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"


def resolve_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The argument, else ``$APPAREL_MODEL_DIR``, else the shipped ``models/default``."""
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR
    path = Path(model_dir)
    if not (path / artifacts.MODEL_FILE).is_file():
        raise ValueError(
            f"{path} holds no {artifacts.MODEL_FILE}; give the directory written by `apparel train --out DIR`"
        )
    return path


def load_model(model_dir: str | os.PathLike | None = None):
    """The Keras model of a run directory, loaded in safe mode (no arbitrary code runs)."""
    import keras

    path = resolve_model_dir(model_dir) / artifacts.MODEL_FILE
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ValueError(f"cannot load {path}: {error}; retrain it or restore the file") from None


def probability_model(model, all_outputs: bool = False):
    """``model`` followed by a softmax: over its ten class logits (the reference model has 20),
    or, with ``all_outputs``, over every output as the walk-through's ``Sequential([model,
    Softmax()])`` does. Exports use the first form: it stays serialisable in safe mode.

    >>> probability_model(load_model("runs/reference")).predict(images)   # (N, 10)
    """
    import keras

    if all_outputs:
        return keras.Sequential([model, keras.layers.Softmax()])
    inputs = keras.Input(shape=IMAGE_SHAPE, name="images")
    logits = model(inputs, training=False)
    if logits.shape[-1] != NUM_CLASSES:
        # A 1×1 slice as a layer (no Lambda), so the graph stays serialisable in safe mode.
        logits = keras.layers.Cropping1D((0, logits.shape[-1] - NUM_CLASSES))(keras.layers.Reshape((-1, 1))(logits))
        logits = keras.layers.Reshape((NUM_CLASSES,))(logits)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


def compile_forward(model):
    """A function from a float32 batch (N, 28, 28) to its ten class logits (N, 10), compiled once.

    Keras's ``predict`` builds a data pipeline and callbacks on every call (tens of milliseconds,
    more than a small model's arithmetic; its docs say it is meant for large inputs), so the model
    is called inside a TensorFlow graph instead, traced once with an open batch dimension. XLA is
    not used here: on this project's CPU it was slower for both a dense and a convolutional model,
    for single images and for batches (docs/performance.md). On other Keras backends this falls
    back to ``predict_on_batch``.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda batch: np.asarray(model.predict_on_batch(batch))[:, :NUM_CLASSES]
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)])
    def logits(batch):
        return model(batch, training=False)[:, :NUM_CLASSES]

    # Calling the traced graph itself skips tf.function's dispatch: less Python per call.
    graph = logits.get_concrete_function()
    return lambda batch: graph(tf.constant(batch, dtype=tf.float32)).numpy()


@dataclass
class Predictor:
    """A loaded model with the calls a user needs: class logits, probabilities, top-k labels."""

    model: object
    model_dir: Path | None = None
    batch_size: int = 1024
    _forward: object = field(default=None, init=False, repr=False)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike | None = None) -> "Predictor":
        path = resolve_model_dir(model_dir)
        return cls(load_model(path), path)

    @classmethod
    def from_litert(cls, path: str | os.PathLike, model_dir: str | os.PathLike | None = None) -> "Predictor":
        """A predictor that runs an exported LiteRT model (``apparel export --format litert``)
        instead of Keras: the fastest path for single images on this CPU. ``model_dir`` names the
        run it was exported from, for its metadata. The interpreter is not thread-safe: call this
        predictor from one thread at a time.
        """
        runtime = LiteRTPredictor(path)
        predictor = cls(model=None, model_dir=Path(model_dir) if model_dir is not None else None)
        # The exported model outputs probabilities; their logarithms are logits up to a constant,
        # which softmax and argmax ignore.
        predictor._forward = lambda batch: np.log(np.maximum(runtime.predict_proba(batch), np.finfo(np.float32).tiny))
        return predictor

    def forward(self):
        """The compiled function float32 (N, 28, 28) → ten class logits that every call uses."""
        if self._forward is None:
            self._forward = compile_forward(self.model)
        return self._forward

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The ten class logits for each image, (N, 10)."""
        batch = as_model_input(images)
        forward = self.forward()
        chunks = [forward(batch[start : start + self.batch_size]) for start in range(0, len(batch), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, NUM_CLASSES), dtype=np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the ten classes, (N, 10); each row sums to 1."""
        return softmax(self.logits(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The predicted class index for each image, (N,)."""
        return self.logits(images).argmax(axis=-1)

    @staticmethod
    def top_k(probabilities: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """For each row, the ``k`` most likely (class name, probability) pairs, best first."""
        k = max(1, min(k, NUM_CLASSES))
        order = np.argsort(-probabilities, axis=-1)[:, :k]
        return [[(CLASS_NAMES[i], float(row[i])) for i in indices] for row, indices in zip(probabilities, order)]
