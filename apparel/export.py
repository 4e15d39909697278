"""Export a trained model for fast or portable inference, and run the exported LiteRT model.

    >>> from apparel.export import export_model, LiteRTPredictor
    >>> export_model("runs/reference", "litert", "runs/reference/model.tflite")
    >>> LiteRTPredictor("runs/reference/model.tflite").predict_proba(images)

Every format outputs the ten class probabilities (softmax over the class logits), so an exported
model answers like ``Predictor.predict_proba``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from apparel.data import IMAGE_SHAPE
from apparel.prediction import NUM_CLASSES, as_model_input, load_model

FORMATS = ("litert", "saved_model", "onnx")


def probabilities_model(model):
    """``model`` followed by a softmax over its ten class logits (the reference model has 20)."""
    import keras

    inputs = keras.Input(shape=IMAGE_SHAPE, name="images")
    logits = model(inputs, training=False)
    if logits.shape[-1] != NUM_CLASSES:
        # A 1×1 slice as a layer (no Lambda), so the graph stays serialisable in safe mode.
        logits = keras.layers.Cropping1D((0, logits.shape[-1] - NUM_CLASSES))(keras.layers.Reshape((-1, 1))(logits))
        logits = keras.layers.Reshape((NUM_CLASSES,))(logits)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


def _export_saved_model(model, path: Path) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def export_model(model_dir: str | os.PathLike | None, format: str, out: str | os.PathLike) -> Path:
    """Write the model of ``model_dir`` (default: the shipped one) to ``out`` as ``format``:

    - ``saved_model``: a TensorFlow SavedModel directory (TF Serving, TF.js converters);
    - ``litert``: a ``.tflite`` flatbuffer (LiteRT, formerly TensorFlow Lite), converted from a
      SavedModel — ``TFLiteConverter.from_keras_model`` does not accept Keras 3 models;
    - ``onnx``: an ``.onnx`` file through Keras's own ``export(format="onnx")`` (needs tf2onnx).

    The output appears only when complete.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir() and format != "saved_model":
        raise ValueError(f"{out} is a directory; give a file path for --format {format}")
    if out.exists() and format == "saved_model" and not (out / "saved_model.pb").is_file():
        raise ValueError(f"{out} exists and is not a SavedModel; choose a new --out (it would be replaced)")
    model = probabilities_model(load_model(model_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        work = Path(work)
        if format == "saved_model":
            _export_saved_model(model, work / "saved_model")
            if out.exists():
                shutil.rmtree(out)
            os.replace(work / "saved_model", out)
        elif format == "litert":
            import tensorflow as tf

            _export_saved_model(model, work / "saved_model")
            flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model")).convert()
            (work / "model.tflite").write_bytes(flatbuffer)
            os.replace(work / "model.tflite", out)
        else:
            model(np.zeros((1,) + IMAGE_SHAPE, dtype=np.float32))  # Keras's ONNX export needs a called model
            try:
                model.export(str(work / "model.onnx"), format="onnx", verbose=False)
            except ImportError as error:
                raise ValueError(f"ONNX export needs tf2onnx ({error}); `pip install tf2onnx`") from None
            os.replace(work / "model.onnx", out)
    return out


class LiteRTPredictor:
    """Runs an exported ``.tflite`` model with the LiteRT interpreter (no TensorFlow needed).

    The interpreter is not thread-safe: use one instance per thread.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such LiteRT model; make one with `apparel export DIR --format litert`")
        if threads is None:
            # LiteRT's own default is one thread; on this project's 2-core CPU a batch of 10,000
            # images runs 1.6× faster on both (docs/performance.md).
            threads = len(os.sched_getaffinity(0))
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = None

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the ten classes, (N, 10)."""
        batch = as_model_input(images)
        if self._batch != len(batch):
            self._interpreter.resize_tensor_input(self._input, batch.shape, strict=False)
            self._interpreter.allocate_tensors()
            self._batch = len(batch)
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output))
