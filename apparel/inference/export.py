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
import warnings
from pathlib import Path

import numpy as np

from apparel.artifacts import CATEGORIES_FILE, MODEL_FILE, atomic_directory, atomic_path, file_digest, read_json
from apparel.attributes.sleeve import ATTRIBUTE as SLEEVE_KEY
from apparel.contract import EXPORT_METADATA_FILE, INPUT_NAME, InputContract, metadata_path
from apparel.errors import ParameterError, SourceError
from apparel.inference.inputs import evenly_spaced
from apparel.inference.prediction import load_model, probability_model, resolve_model_dir
from apparel.kinds.registry import PHOTO_KIND

FORMATS = ("litert", "saved_model", "onnx")
# LiteRT's weight formats: float32 as trained; float16 weights (half the file, computed in float32:
# the same answers); int8, weights and activations, calibrated on the caller's example inputs (the
# fastest on this CPU: XNNPACK's integer kernels, 1.6× float16's photos a second for the store
# model, but 0.3 to 0.6 points off its validation accuracy when every op is int8; inference.runtime
# says which artefact a model runs).
QUANTIZATIONS = ("float16", "int8")
# An int8 export may keep some of its ops float (``float_tail``, ``float_error``: export_model). The
# store model's tail mixes its two networks' probabilities: in int8 (steps of 1/256) it loses the
# small ImageNet probabilities whose sums say "not apparel" (the catalogue benchmark's street
# corners: 0.95 left blank rightly in float, 0.37 in full int8).
POOLING_OP = "MEAN"  # LiteRT's global average pooling: where a network's features end
# Photos of the calibration set, evenly spaced, on which the int8 layers' error is measured for ``float_error``.
ERROR_EXAMPLES = 24


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
                 float_tail: bool = False, float_error: float | None = None,
                 source_digest: str | None = None) -> Path:
    """Write the model of ``model_dir`` (default: ``$APPAREL_MODEL_DIR``, else the shipped photo
    model, as for ``predict``, ``serve`` and ``catalog``) to ``out`` as ``format``:

    - ``saved_model``: a TensorFlow SavedModel directory (TF Serving, TF.js converters);
    - ``litert``: a ``.tflite`` flatbuffer (LiteRT, formerly TensorFlow Lite), converted from a
      SavedModel — ``TFLiteConverter.from_keras_model`` does not accept Keras 3 models;
    - ``onnx``: an ``.onnx`` file through Keras's own ``export(format="onnx")`` (needs tf2onnx).

    ``quantize`` (LiteRT only) stores the weights as ``float16``, or makes the model ``int8``
    with its activations' ranges measured on ``calibration``, a batch of model inputs (a hundred
    or so photos like those it will see; inputs and outputs stay float32). An int8 model may keep
    some ops float: with ``float_tail``, every op after the networks' global pooling (classifiers,
    softmaxes and whatever mixes them); with ``float_error``, the layers whose int8 output is off the
    float one by more than that many quantisation steps (root-mean-square, LiteRT's
    ``QuantizationDebugger`` on ``ERROR_EXAMPLES`` of the calibration inputs; 0.29 is rounding
    alone, its guide flags 0.7). The metadata file is written with it (see the module docstring),
    with the quantisation (and its float layers) and ``source_digest``, the SHA-256 of the
    ``model.keras`` it came from (computed when not given), which tells an inference artefact
    (``inference.runtime``) whether it is still the model's. The output appears only when complete.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    if quantize is not None and format != "litert":
        raise ParameterError(f"{{}} is for {{}} litert only (a {format} export keeps float32 weights)", "quantize",
                             "format")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ParameterError(f"{{}} {quantize!r}: LiteRT exports are quantised, as {' or '.join(QUANTIZATIONS)}",
                             "quantize")
    if (quantize == "int8") != (calibration is not None and len(calibration) > 0):
        raise ParameterError("{} int8 measures its activations on example photos: give {} (and only with int8)",
                             "quantize", "calibration")
    _check_float_layers(quantize, float_tail, float_error)
    out = Path(out)
    # A file named for another format (x.onnx holding a flatbuffer) misleads whatever opens it;
    # one named for Keras may be the run's own model.keras, which the export would replace.
    named = {".tflite": "litert", ".onnx": "onnx", ".keras": "Keras", ".h5": "Keras"}.get(out.suffix.lower())
    if named is not None and named != format:
        wanted = {"litert": "a name ending in .tflite", "onnx": "a name ending in .onnx"}.get(format, "a folder's name")
        if named not in FORMATS:
            raise ParameterError(f"{{}} {out} is named for a {named} model, not {format}: give {wanted}", "out")
        raise ParameterError(f"{{}} {out} is named for {named}, not {format}: give {wanted}, or {{}} {named}",
                             "out", "format")
    if out.is_dir() and format != "saved_model":
        raise ValueError(f"{out} is a directory; give a file path for --format {format}")
    if out.exists() and format == "saved_model" and not (out / "saved_model.pb").is_file():
        raise ValueError(f"{out} exists and is not a SavedModel; choose a new --out (it would be replaced)")
    model_dir = resolve_model_dir(model_dir, kind=PHOTO_KIND)
    contract = InputContract.for_run(model_dir)
    metadata = export_metadata(contract, format)
    metadata["quantization"] = quantize or "float32"
    if float_tail or float_error is not None:
        metadata["float_layers"] = {"tail": float_tail, "error_above": float_error}
    metadata["model_sha256"] = source_digest or file_digest(model_dir / MODEL_FILE)
    if (model_dir / CATEGORIES_FILE).is_file():
        # The run's Shopify categories travel with the export, so an export answers with them too.
        try:
            record = read_json(model_dir / CATEGORIES_FILE)
            metadata["categories"] = {key: record[key] for key in ("categories", "category_threshold",
                                                                   "outside_threshold")}
            if record.get(SLEEVE_KEY):  # which classes tell a sleeve length, as the run's chooser reads them
                metadata["categories"][SLEEVE_KEY] = record[SLEEVE_KEY]
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
            if float_tail or float_error is not None:
                built.write_bytes(_convert_partly_int8(converter, calibration, float_tail, float_error, metadata))
            else:
                built.write_bytes(converter.convert())
        else:
            _export_onnx(model, Path(scratch) / "model.onnx", built, contract, metadata)
        # The old record goes before the old file is replaced, the new one after: a crash between the
        # renames leaves a file without a record (an artefact made again), never the old file recorded
        # under the new model's digest.
        metadata_path(out).unlink(missing_ok=True)
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


def _check_float_layers(quantize: str | None, float_tail, float_error) -> None:
    """``float_tail`` (True or False) and ``float_error`` (quantisation steps, 0 or more) are for int8 only."""
    if (float_tail or float_error is not None) and quantize != "int8":
        raise ParameterError("{} and {} choose the ops an int8 model keeps float: give them with int8", "float_tail",
                             "float_error")
    if not isinstance(float_tail, bool):
        raise ParameterError(f"{{}} {float_tail!r}: True (the ops after the networks' pooling stay float) or False",
                             "float_tail")
    if float_error is not None and (isinstance(float_error, bool) or not isinstance(float_error, (int, float))
                                    or not float_error >= 0):
        raise ParameterError(f"{{}} {float_error!r}: a number of quantisation steps, 0 or more (0.7 flags the "
                             "layers int8 hurts most)", "float_error")


def _convert_partly_int8(converter, calibration: np.ndarray, float_tail: bool, float_error: float | None,
                         metadata: dict) -> bytes:
    """The int8 model of ``converter`` (calibrated on ``calibration``) with the tail after the
    pooling and the layers off by more than ``float_error`` steps kept float (named in ``metadata``)."""
    import tensorflow as tf

    examples = np.asarray(calibration, dtype=np.float32)
    chosen = examples[evenly_spaced(len(examples), ERROR_EXAMPLES)]

    def debug_dataset():
        return ([chosen[i : i + 1]] for i in range(len(chosen)))

    float_nodes = _tail_after_pooling(converter) if float_tail else []
    if float_error is not None:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_dataset)
        metadata["float_layers"]["layers"] = _layers_off_by(debugger, float_error)
        float_nodes += [name for name in metadata["float_layers"]["layers"] if name not in float_nodes]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_nodes or None)
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_dataset,
                                                             debug_options=options)
    except ValueError:  # its instrumented model found no int8 layer to check
        raise ParameterError(f"{{}} {float_error!r} keeps every layer float: give a larger number of steps, or no "
                             "int8", "float_error") from None
    return debugger.get_nondebug_quantized_model()


def _tail_after_pooling(converter) -> list[str]:
    """The output tensors of the ops fed, directly or through others, by a global pooling
    (``POOLING_OP``) in ``converter``'s float model: the classifiers and what mixes their answers."""
    from ai_edge_litert.interpreter import Interpreter

    optimizations, converter.optimizations = converter.optimizations, []
    try:
        interpreter = Interpreter(model_content=converter.convert())
    finally:
        converter.optimizations = optimizations
    names = {tensor["index"]: tensor["name"] for tensor in interpreter.get_tensor_details()}
    after_pooling, tail = set(), []
    for op in interpreter._get_ops_details():  # in the order they run; LiteRT has no public op listing
        fed = any(index in after_pooling for index in op["inputs"])
        if fed or op["op_name"] == POOLING_OP:
            after_pooling.update(op["outputs"])
        if fed:
            tail += [names[index] for index in op["outputs"] if index in names]
    return tail


def _layers_off_by(debugger, steps: float) -> list[str]:
    """The output tensors whose int8 values are off the float ones by more than ``steps``
    quantisation steps (root-mean-square) on the debugger's examples, in the model's order."""
    import csv
    import io

    debugger.run()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    layers = []
    for row in csv.DictReader(io.StringIO(table.getvalue())):
        error = np.sqrt(float(row["mean_squared_error"])) / float(row["scale"])
        if not error <= steps:  # an error that is not a number (a logarithm of 0) counts as too large
            layers.append(row["tensor_name"])
    return layers


def _export_onnx(model, scratch: Path, path: Path, contract: InputContract, metadata: dict) -> None:
    """Keras's ONNX export to ``scratch``, then written to ``path`` with the metadata added."""
    import tensorflow as tf

    model(np.zeros((1, *contract.shape), dtype=np.float32))  # Keras's ONNX export needs a called model
    signature = [tf.TensorSpec([None, *contract.shape], tf.float32, name=INPUT_NAME)]
    try:
        with warnings.catch_warnings():
            # Keras's tf2onnx shim asks numpy for ``np.object`` to patch it back in, and numpy answers
            # with a FutureWarning about its own future: nothing the user can or need act on.
            warnings.filterwarnings("ignore", message=r"In the future `np\.object`", category=FutureWarning)
            model.export(str(scratch), format="onnx", verbose=False, input_signature=signature)
        import onnx
    except ImportError as error:
        raise ValueError(f"ONNX export needs tf2onnx and onnx ({error}); `pip install tf2onnx`") from None
    exported = onnx.load(str(scratch))
    entry = exported.metadata_props.add()
    entry.key, entry.value = "apparel", json.dumps(metadata, ensure_ascii=False)
    onnx.save(exported, str(path))
