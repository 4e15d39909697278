"""Export a trained model for fast or portable inference (``inference.litert`` runs a LiteRT export).

    >>> from apparel.inference.export import export_model
    >>> export_model("runs/reference", "litert", "runs/reference/model.tflite")

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
from apparel.inference.prediction import load_model, probability_model

FORMATS = ("litert", "saved_model", "onnx")


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
    model = probability_model(load_model(model_dir))
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
