"""Export a trained model for fast or portable inference (``inference.litert`` runs a LiteRT export).

    >>> from apparel.inference.export import export_model
    >>> export_model("runs/reference", "litert", "runs/reference/model.tflite")

Every format takes the inputs of the run's contract (``apparel.contract``) and outputs the
probabilities over its classes (softmax over the class logits), so an exported model answers like
``Predictor.predict_proba``:

- a Fashion-MNIST model: float32 (N, 28, 28) in [0, 1], light garment on black;
- a photo model: float32 (N, S, S, 3) RGB with values 0–255, the photo on white padded to a white
  square and resized to S×S (the model normalises the pixels itself).

The preprocessing is written down with the export, for callers without this package: a metadata
file (``model.tflite.json``, ``model.onnx.json``, or ``apparel.json`` inside a SavedModel) holds
``kind``, ``size``, ``class_names``, the preprocessing in words and the input and output shapes,
and, for a run with a ``categories.json`` (the store model), its Shopify categories and thresholds.
A SavedModel also answers it from a ``metadata`` signature, and an ONNX file holds it in its
``metadata_props``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from apparel.artifacts import CATEGORIES_FILE, MODEL_FILE, atomic_directory, atomic_path, file_digest, read_json
from apparel.contract import EXPORT_METADATA_FILE, InputContract, metadata_path
from apparel.errors import ParameterError, SourceError
from apparel.inference.prediction import load_model, probability_model, resolve_model_dir
from apparel.kinds.registry import PHOTO_KIND

FORMATS = ("litert", "saved_model", "onnx")
# LiteRT's weight formats: float32 as trained; float16 weights (half the file, computed in float32:
# the same answers); int8, weights and activations, calibrated on the caller's example inputs (the
# fastest on this CPU: XNNPACK's integer kernels, 1.6× float16's photos a second for the store
# model, but 0.3 to 0.6 points off its validation accuracy; inference.runtime says why it is not
# the default).
QUANTIZATIONS = ("float16", "int8")
INPUT_NAME = "images"  # the input's name in the SavedModel signature and the ONNX graph


def export_metadata(contract: InputContract, format: str) -> dict:
    """What an export takes and answers, written beside it (see the module docstring)."""
    scale = list(contract.model_kind.pixel_scale)
    return {
        **contract.to_dict(),
        "preprocessing": contract.describe(),
        "format": format,
        "input": {"shape": [None, *contract.shape], "dtype": "float32", "range": scale},
        "output": {"shape": [None, contract.num_classes], "dtype": "float32",
                   "meaning": "softmax probabilities over class_names, in that order"},
    }


def _export_saved_model(model, path: Path, contract: InputContract, metadata: dict | None = None) -> None:
    """A SavedModel whose ``serve`` (default) signature takes the contract's batch; with
    ``metadata``, a second signature ``metadata`` returns it as a JSON string."""
    import tensorflow as tf
    from keras.export import ExportArchive

    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", model.__call__,
                         input_signature=[tf.TensorSpec([None, *contract.shape], tf.float32, name=INPUT_NAME)])
    if metadata is not None:
        text = json.dumps(metadata, ensure_ascii=False)
        archive.add_endpoint("metadata", lambda: {"metadata": tf.constant(text)}, input_signature=[])
    archive.write_out(str(path), verbose=False)


def _write_metadata(path: Path, metadata: dict) -> None:
    path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_model(model_dir: str | os.PathLike | None, format: str, out: str | os.PathLike, *,
                 quantize: str | None = None, calibration: np.ndarray | None = None,
                 source_digest: str | None = None) -> Path:
    """Write the model of ``model_dir`` (default: ``$APPAREL_MODEL_DIR``, else the shipped photo
    model, as for ``predict``, ``serve`` and ``catalog``) to ``out`` as ``format``:

    - ``saved_model``: a TensorFlow SavedModel directory (TF Serving, TF.js converters);
    - ``litert``: a ``.tflite`` flatbuffer (LiteRT, formerly TensorFlow Lite), converted from a
      SavedModel — ``TFLiteConverter.from_keras_model`` does not accept Keras 3 models;
    - ``onnx``: an ``.onnx`` file through Keras's own ``export(format="onnx")`` (needs tf2onnx).

    ``quantize`` (LiteRT only) stores the weights as ``float16``, or makes the model ``int8``
    with its activations' ranges measured on ``calibration``, a batch of model inputs (a hundred
    or so photos like those it will see; inputs and outputs stay float32). The metadata file is
    written with it (see the module docstring), with the quantisation and ``source_digest``, the
    SHA-256 of the ``model.keras`` it came from (computed when not given), which tells an inference
    artefact (``inference.runtime``) whether it is still the model's. The output appears only when
    complete.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    if quantize is not None and (format != "litert" or quantize not in QUANTIZATIONS):
        raise ParameterError(f"{{}} {quantize!r}: LiteRT exports are quantised, as {' or '.join(QUANTIZATIONS)}",
                             "quantize")
    if (quantize == "int8") != (calibration is not None and len(calibration) > 0):
        raise ParameterError("{} int8 measures its activations on example photos: give {} (and only with int8)",
                             "quantize", "calibration")
    out = Path(out)
    if out.is_dir() and format != "saved_model":
        raise ValueError(f"{out} is a directory; give a file path for --format {format}")
    if out.exists() and format == "saved_model" and not (out / "saved_model.pb").is_file():
        raise ValueError(f"{out} exists and is not a SavedModel; choose a new --out (it would be replaced)")
    model_dir = resolve_model_dir(model_dir, kind=PHOTO_KIND)
    contract = InputContract.for_run(model_dir)
    metadata = export_metadata(contract, format)
    metadata["quantization"] = quantize or "float32"
    metadata["model_sha256"] = source_digest or file_digest(model_dir / MODEL_FILE)
    if (model_dir / CATEGORIES_FILE).is_file():
        # The run's Shopify categories travel with the export, so an export answers with them too.
        try:
            record = read_json(model_dir / CATEGORIES_FILE)
            metadata["categories"] = {key: record[key] for key in ("categories", "category_threshold",
                                                                   "outside_threshold")}
        except (ValueError, KeyError, TypeError) as error:
            raise SourceError(model_dir / CATEGORIES_FILE, f"unreadable ({error}); restore it from the run or rebuild "
                              "the model") from None
    model = probability_model(load_model(model_dir), num_classes=contract.num_classes)
    if format == "saved_model":
        # Built beside the old one and swapped in whole: a crash leaves the old export or the new one.
        with atomic_directory(out) as work:
            _export_saved_model(model, work, contract, metadata)
            _write_metadata(work / EXPORT_METADATA_FILE, metadata)
        return out
    with tempfile.TemporaryDirectory(prefix="apparel-export-") as scratch, atomic_path(out) as built:
        if format == "litert":
            import tensorflow as tf

            _export_saved_model(model, Path(scratch) / "saved_model", contract)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "saved_model"))
            _quantize(converter, quantize, calibration)
            built.write_bytes(converter.convert())
        else:
            _export_onnx(model, Path(scratch) / "model.onnx", built, contract, metadata)
        with atomic_path(metadata_path(out)) as temporary:
            _write_metadata(temporary, metadata)
    return out


def _quantize(converter, quantize: str | None, calibration: np.ndarray | None) -> None:
    """Set ``converter`` (a ``TFLiteConverter``) to store ``quantize``'s weights."""
    import tensorflow as tf

    if quantize is None:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return
    examples = np.asarray(calibration, dtype=np.float32)
    # One input at a time, as the converter's calibrator runs them.
    converter.representative_dataset = lambda: ([examples[i : i + 1]] for i in range(len(examples)))


def _export_onnx(model, scratch: Path, path: Path, contract: InputContract, metadata: dict) -> None:
    """Keras's ONNX export to ``scratch``, then written to ``path`` with the metadata added."""
    import tensorflow as tf

    model(np.zeros((1, *contract.shape), dtype=np.float32))  # Keras's ONNX export needs a called model
    signature = [tf.TensorSpec([None, *contract.shape], tf.float32, name=INPUT_NAME)]
    try:
        model.export(str(scratch), format="onnx", verbose=False, input_signature=signature)
        import onnx
    except ImportError as error:
        raise ValueError(f"ONNX export needs tf2onnx and onnx ({error}); `pip install tf2onnx`") from None
    exported = onnx.load(str(scratch))
    entry = exported.metadata_props.add()
    entry.key, entry.value = "apparel", json.dumps(metadata, ensure_ascii=False)
    onnx.save(exported, str(path))
