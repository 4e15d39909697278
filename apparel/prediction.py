"""Load a trained model and turn images into class probabilities.

    >>> from apparel.prediction import Predictor
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
from apparel.data import CLASS_NAMES, IMAGE_SHAPE

NUM_CLASSES = len(CLASS_NAMES)
MODEL_DIR_ENV = "APPAREL_MODEL_DIR"
# The model shipped with the project: used when no model directory is given.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


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


def probability_model(model):
    """The walk-through's softmax wrapper: a model that outputs probabilities over all outputs."""
    import keras

    return keras.Sequential([model, keras.layers.Softmax()])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def as_model_input(images: np.ndarray) -> np.ndarray:
    """Images as float32 (N, 28, 28) in [0, 1]; a single (28, 28) image becomes a batch of one.

    One pixel-scale rule for every entry point (library, CLI, HTTP): ``uint8`` is 0–255; for any
    other numbers each image is read as 0–255 if one of its values is above 1, else as 0–1 (for a
    0–255 image whose brightest pixel is 1 the two readings differ by less than 1/255). Values
    outside [0, 255], NaN, infinities and non-numbers are refused with a ``ValueError``.
    """
    array = np.asarray(images)
    if array.shape == IMAGE_SHAPE:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        shape = "×".join(str(n) for n in array.shape) or "a single number"
        raise ValueError(f"images must be 28×28 arrays of pixel values, shaped (N, 28, 28) or (28, 28); got {shape}")
    if array.dtype.kind not in "iuf":  # bool, object (huge ints, mixed types), strings, complex
        raise ValueError("pixel values must be numbers (0–1, or 0–255)")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.size == 0:
        return array.astype(np.float32)
    low, high = array.min(), array.max()  # NaN, if any, comes out as both
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("pixel values must be finite numbers; found NaN or infinity")
    if low < 0 or high > 255:
        raise ValueError(f"pixel values must lie in [0, 1] or [0, 255], found {low:g} to {high:g}")
    batch = np.array(array, dtype=np.float32, copy=high > 1 or array.dtype != np.float32)
    if high > 1:
        batch[batch.reshape(len(batch), -1).max(axis=1) > 1] /= np.float32(255.0)
    return batch


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
        from apparel.export import LiteRTPredictor

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


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Images from a 28×28 PNG/JPEG (any mode, converted to grayscale) or a ``.npy`` array of
    one (28, 28) image or a stack (N, 28, 28).

    Fashion-MNIST images are light garments on a black background; give images in that form.
    Returns float32 (N, 28, 28) in [0, 1]. Raises ``ValueError`` with the reason it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: not a readable .npy array ({error or 'empty file'})") from None
        try:
            batch = as_model_input(array)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        if len(batch) == 0:
            raise ValueError(f"{path}: holds no images (shape {array.shape})")
        return batch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            grayscale = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    if grayscale.shape != IMAGE_SHAPE:
        raise ValueError(
            f"{path}: image is {grayscale.shape[1]}×{grayscale.shape[0]} pixels; the model takes 28×28 "
            "grayscale images like Fashion-MNIST's"
        )
    return as_model_input(grayscale)
