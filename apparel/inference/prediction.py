"""Load a trained model and turn images into class probabilities.

    >>> from apparel.inference.prediction import Predictor
    >>> predictor = Predictor.from_dir("runs/reference")
    >>> probabilities = predictor.predict_proba(images)      # (N, 10), rows sum to 1
    >>> predictor.top_k(probabilities, k=3)[0]
    [('Ankle boot', 0.9712…), ('Sneaker', 0.0213…), ('Sandal', 0.0061…)]

Every run directory says what its model takes (``apparel.contract.InputContract``): 28×28
Fashion-MNIST arrays or N×N RGB photos, and the names of its classes. The predicted class is the
highest of the model's class logits: the reference model's extra logits (it has 20 outputs for ten
classes) are never a label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.contract import FASHION_MNIST, INPUT_NAME, InputContract
from apparel.errors import ParameterError, whole_number
from apparel.inference.inputs import softmax
from apparel.inference.litert import LiteRTPredictor
from apparel.kinds.base import Kind
from apparel.kinds.registry import FASHION_MNIST_KIND, kind_named

MODEL_DIR_ENV = "APPAREL_MODEL_DIR"
# The models shipped with the project, used when no model directory is given: the Fashion-MNIST
# model for arrays (and the walk-through), the store model (garments, accessories and "not
# apparel", as Shopify categories: apparel.store) for photo files, uploads, catalogs and batches.
DEFAULT_MODEL_DIR = artifacts.shipped_model_dir("default")
DEFAULT_PHOTO_MODEL_DIR = artifacts.shipped_model_dir("store")


def resolve_model_dir(model_dir: str | os.PathLike | None = None, kind: Kind | str = FASHION_MNIST_KIND) -> Path:
    """The argument, else ``$APPAREL_MODEL_DIR``, else ``kind``'s shipped model (``store`` for
    the photo kind: photo files, uploads, catalogs and batches; ``default``, the walk-through's
    Fashion-MNIST model, for arrays). A bare name that is not a run directory here names a shipped
    model, so ``apparel predict store shirt.jpg`` works from any folder. ``kind`` is a ``Kind`` or
    its name (``"photo"``, ``"fashion-mnist"``).

    >>> resolve_model_dir("photos")
    PosixPath('.../apparel/shipped_models/photos')
    """
    if not isinstance(kind, Kind):
        kind = kind_named(kind)
    if not isinstance(model_dir, (str, os.PathLike, type(None))):
        raise ParameterError(f"{{}} must be a run directory's path or a shipped model's name, got {model_dir!r}",
                             "model_dir")
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or artifacts.shipped_model_dir(kind.default_model)
    path = artifacts.run_or_shipped(model_dir)
    if not (path / artifacts.MODEL_FILE).is_file():
        shipped = artifacts.shipped_model_names()
        # Not a ParameterError: the model is a flag of some commands and an argument of others.
        found = "does not exist" if not path.exists() else f"holds no {artifacts.MODEL_FILE}"
        raise ValueError(
            f"{path} {found}; give the directory written by `apparel train --out DIR`"
            + (f" or a shipped model's name ({', '.join(shipped)})" if shipped else "")
        )
    return path


def default_model_note(kind: Kind = FASHION_MNIST_KIND) -> str:
    """The run directory ``resolve_model_dir(None, kind)`` picks and why, in words, for a
    command to say which model it uses when it is given none."""
    path = resolve_model_dir(None, kind)
    if os.environ.get(MODEL_DIR_ENV):
        return f"{path} (from ${MODEL_DIR_ENV})"
    return f"{path} (the shipped {kind.default_model_title} model)"


def load_model(model_dir: str | os.PathLike | None = None):
    """The Keras model of a run directory, loaded in safe mode (no arbitrary code runs)."""
    import keras

    # The project's own layers (a store model's Logarithm) must be registered before loading.
    import apparel.backbones.layers  # noqa: F401

    path = resolve_model_dir(model_dir) / artifacts.MODEL_FILE
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        # Keras calls a file it cannot open as a zip "not found" although it is there: say what is.
        reason = ("not a readable .keras archive (damaged or cut short)" if _damaged_archive(path) else str(error))
        raise ValueError(f"cannot load {path}: {reason}; retrain it or restore the file") from None


def _damaged_archive(path: Path) -> bool:
    """Whether ``path``, a file that exists, is not a whole zip archive (a .keras file is one)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


def probability_model(model, all_outputs: bool = False, num_classes: int | None = None):
    """``model`` followed by a softmax: over its class logits (the reference model has 20 outputs
    for ten classes), or, with ``all_outputs``, over every output as the walk-through's
    ``Sequential([model, Softmax()])`` does. Exports use the first form: it stays serialisable in
    safe mode. ``num_classes`` defaults to the model's outputs, capped at Fashion-MNIST's ten for
    28×28 models.

    >>> probability_model(load_model("runs/reference")).predict(images)   # (N, 10)
    """
    import keras

    if all_outputs:
        return keras.Sequential([model, keras.layers.Softmax()])
    inputs = keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    logits = model(inputs, training=False)
    if num_classes is None:
        num_classes = logits.shape[-1] if len(model.input_shape) == 4 else FASHION_MNIST.num_classes
    if logits.shape[-1] != num_classes:
        # A 1×1 slice as a layer (no Lambda), so the graph stays serialisable in safe mode.
        logits = keras.layers.Cropping1D((0, logits.shape[-1] - num_classes))(keras.layers.Reshape((-1, 1))(logits))
        logits = keras.layers.Reshape((num_classes,))(logits)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


def compile_forward(model, contract: InputContract = FASHION_MNIST):
    """A function from a float32 batch of the contract's inputs to the class logits, compiled once.

    Keras's ``predict`` builds a data pipeline and callbacks on every call (tens of milliseconds,
    more than a small model's arithmetic; its docs say it is meant for large inputs), so the model
    is called inside a TensorFlow graph instead, traced once with an open batch dimension. XLA is
    not used here: on this project's CPU it was slower for both a dense and a convolutional model,
    for single images and for batches (docs/performance.md). On other Keras backends this falls
    back to ``predict_on_batch``.
    """
    import keras

    classes = contract.num_classes
    if keras.backend.backend() != "tensorflow":
        return lambda batch: np.asarray(model.predict_on_batch(batch))[:, :classes]
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, *contract.shape], tf.float32)])
    def logits(batch):
        return model(batch, training=False)[:, :classes]

    # Calling the traced graph itself skips tf.function's dispatch: less Python per call.
    graph = logits.get_concrete_function()
    return lambda batch: graph(tf.constant(batch, dtype=tf.float32)).numpy()


def _check_model_fits(model, contract: InputContract) -> None:
    """A Keras model's input and output against ``contract`` (the default one is Fashion-MNIST's)."""
    taken, answered = getattr(model, "input_shape", None), getattr(model, "output_shape", None)
    if not (isinstance(taken, tuple) and isinstance(answered, tuple)):
        return  # a model of several inputs or outputs, or none (LiteRT): the calls themselves say
    if len(taken) != len(contract.shape) + 1 or any(have not in (None, want) for have, want in
                                                     zip(taken[1:], contract.shape)):
        raise ParameterError(f"{{}} takes inputs of shape {taken[1:]}, but the contract says "
                             f"{contract.shape}; give {{}}=InputContract.for_run(run), or use Predictor.from_dir(run)",
                             "model", "contract")
    if answered[-1] is not None and answered[-1] < contract.num_classes:
        raise ParameterError(f"{{}} answers {answered[-1]} classes, but the contract names {contract.num_classes}; "
                             "give {}=InputContract.for_run(run), or use Predictor.from_dir(run)", "model", "contract")


@dataclass
class Predictor:
    """A loaded model with the calls a user needs: class logits, probabilities, top-k labels."""

    model: object
    model_dir: Path | None = None
    batch_size: int = 1024
    contract: InputContract = FASHION_MNIST  # what the model takes and the names of its classes
    export_path: Path | None = None  # the LiteRT export it runs, if any (its metadata may carry categories)
    # The LiteRT interpreter that answers in place of ``model`` (``from_litert``): a field, so that
    # ``dataclasses.replace`` (another batch size) keeps it.
    litert: LiteRTPredictor | None = field(default=None, repr=False)
    _forward: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        # Checked when built: a batch size of -1 gave no answers at all, and a contract that is not
        # the model's answered with another model's class names, or refused the model's own input.
        whole_number(self.batch_size, "batch_size", "a whole number of images, 1 or more")
        if not isinstance(self.contract, InputContract):
            raise ParameterError(f"{{}} must be an InputContract (InputContract.for_run(run)), got "
                                 f"{type(self.contract).__name__}", "contract")
        _check_model_fits(self.model, self.contract)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike | None = None, kind: Kind = FASHION_MNIST_KIND) -> "Predictor":
        """The model of a run directory (see ``resolve_model_dir`` for ``None`` and ``kind``)."""
        path = resolve_model_dir(model_dir, kind)
        contract = InputContract.for_run(path)
        return cls(load_model(path), path, contract.model_kind.batch_size, contract)

    @classmethod
    def from_litert(cls, path: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                    threads: int | None = None) -> "Predictor":
        """A predictor that runs an exported LiteRT model (``apparel export --format litert``)
        instead of Keras: the fastest path for single images on this CPU. ``model_dir`` names the
        run it was exported from, for its metadata; without it the contract is read from the
        export's metadata file (``model.tflite.json``), else Fashion-MNIST is assumed. ``threads``
        is the interpreter's (default: the cores this process may use). Calls from several threads
        take turns (``LiteRTPredictor``).

        >>> Predictor.from_litert("runs/reference.tflite", "runs/reference", threads=1)
        """
        if model_dir is not None:
            model_dir = artifacts.run_or_shipped(model_dir)
            contract = InputContract.for_run(model_dir)
        else:
            contract = InputContract.for_export(path) or FASHION_MNIST
        runtime = LiteRTPredictor(path, threads, contract)
        if tuple(runtime.input_shape[1:]) != contract.shape:
            raise ValueError(f"{path} takes inputs of shape {tuple(runtime.input_shape[1:])}, not {contract.shape}; "
                             "give model_dir, the run directory it was exported from")
        if runtime.outputs != len(contract.class_names):  # another model's export: its answers would be misnamed
            raise ValueError(f"{path} answers {runtime.outputs} classes, not the {len(contract.class_names)} of "
                             f"{model_dir or 'its contract'}; give model_dir, the run directory it was exported from")
        return cls(model=None, model_dir=Path(model_dir) if model_dir is not None else None,
                   batch_size=contract.model_kind.batch_size, contract=contract, export_path=Path(path), litert=runtime)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.contract.class_names

    def forward(self):
        """The compiled function float32 inputs → class logits that every call uses."""
        if self._forward is None and self.litert is not None:
            # The exported model outputs probabilities; their logarithms are logits up to a constant,
            # which softmax and argmax ignore. ``logits`` has prepared the batch already.
            runtime = self.litert
            self._forward = lambda batch: np.log(np.maximum(runtime.run(batch), np.finfo(np.float32).tiny))
        elif self._forward is None:
            self._forward = compile_forward(self.model, self.contract)
        return self._forward

    def model_input(self, images: np.ndarray) -> np.ndarray:
        """``images`` checked and scaled as the model takes them (see ``inputs``); ``ValueError``
        for the wrong kind (a 28×28 array to a photo model, a photo array to a 28×28 model)."""
        return self.contract.prepare(images)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The class logits for each image, (N, classes)."""
        batch = self.model_input(images)
        forward = self.forward()
        chunks = [forward(batch[start : start + self.batch_size]) for start in range(0, len(batch), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.contract.num_classes), dtype=np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the classes, (N, classes); each row sums to 1."""
        return softmax(self.logits(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The predicted class index for each image, (N,)."""
        return self.logits(images).argmax(axis=-1)

    def top_k(self, probabilities: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """For each row (one row, or N×classes), the ``k`` most likely (class name, probability)
        pairs, best first."""
        names = self.contract.class_names
        probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        if probabilities.ndim != 2 or probabilities.shape[1] != len(names):
            raise ParameterError(f"{{}} must have one column per class of this model ({len(names)}), got shape "
                                 f"{probabilities.shape}: give this predictor's predict_proba output", "probabilities")
        k = min(whole_number(k, "k"), len(names))  # more than there are classes: all of them
        order = np.argsort(-probabilities, axis=-1)[:, :k]
        return [[(names[i], float(row[i])) for i in indices] for row, indices in zip(probabilities, order)]
