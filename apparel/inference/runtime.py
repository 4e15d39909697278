"""Which runtime predicts: the model's LiteRT artefact (the default: no TensorFlow, no Keras) or Keras.

    >>> from apparel.inference.runtime import inference_artefact, load_predictor
    >>> inference_artefact("models/store")              # made once, beside model.keras
    PosixPath('models/store/model.tflite')
    >>> load_predictor("models/store", runtime="keras")  # training's own graph, through TensorFlow

Every run directory's model has an inference artefact beside it: ``model.tflite``, the LiteRT
export of ``model.keras`` with its weights stored as float16 (half the file; LiteRT's XNNPACK
computes in float32 all the same, so the answers are Keras's within float rounding). It is made on
first use, the one time TensorFlow is loaded for it, and recorded with the SHA-256 of the
``model.keras`` it came from: a retrained model gets a new one. A run directory that cannot be
written to (an installed package, a read-only share) keeps its artefact in the user's cache
(``$XDG_CACHE_HOME/apparel``), under the same digest. The shipped models carry theirs; the store
model's is partly int8 (``apparel.store.artefact``): any ``model.tflite`` that records the model's
digest is the one run.

Why float16 LiteRT for a run (clothing-dataset-small's validation split, 341 photos, the store
model, this project's 2-core CPU, batches of 32, docs/benchmarks.md): it answered as Keras did
(top-1 0.8328 both) at about twice Keras's photos a second; float32 LiteRT the same speed at twice
the file; ONNX Runtime two-thirds of its speed; dynamic-range int8 half of it (its kernels are not
XNNPACK's); full int8 1.6× its speed but 0.3 to 0.6 points below Keras, depending on the photos it
was calibrated on, with one photo in 25 answered differently. Int8 needs photos like those the
model will see to measure its activations on, and a check on validation photos that it still
answers as the float model does: the store model has both (its partly int8 artefact keeps its
mixing and the layers int8 moves most float and answers at Keras's accuracy about 1.5× as fast as
float16); a run of a user's own photos gets it by ``apparel export --quantize int8 --float-tail
--float-error … --calibration …`` into its folder (docs/benchmarks.md, "Partly int8").
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from apparel import artifacts
from apparel.contract import metadata_path

RUNTIMES = ("litert", "keras")
DEFAULT_RUNTIME = "litert"
ARTEFACT_FILE = artifacts.ARTEFACT_FILE
# The metadata key that ties an artefact to the model file it was made from.
SOURCE_DIGEST_KEY = "model_sha256"
CACHE_ENV = "XDG_CACHE_HOME"


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return runtime


def inference_artefact(model_dir: str | os.PathLike, digest: str | None = None) -> Path:
    """The LiteRT artefact of ``model_dir``'s ``model.keras``: the one beside it, else the one in
    the user's cache, when its record names this model file's digest; otherwise made now (through
    TensorFlow, once) beside the model, or in the cache where the folder is not writable.
    ``digest`` is the model file's SHA-256 when the caller has it already."""
    model_dir = Path(model_dir)
    digest = digest or artifacts.file_digest(model_dir / artifacts.MODEL_FILE)
    beside, cached = model_dir / ARTEFACT_FILE, cache_dir() / digest[:32] / ARTEFACT_FILE
    for candidate in (beside, cached):
        if artefact_digest(candidate) == digest:
            return candidate
    try:
        return _make(model_dir, beside, digest)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        return _make(model_dir, cached, digest)


def artefact_digest(path: Path) -> str | None:
    """The model digest an artefact's metadata records, or None (no artefact, no record)."""
    if not path.is_file():
        return None
    try:
        return json.loads(metadata_path(path).read_text(encoding="utf-8")).get(SOURCE_DIGEST_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache") / "apparel"


def _make(model_dir: Path, path: Path, digest: str) -> Path:
    from apparel.inference.export import export_model

    return export_model(model_dir, "litert", path, quantize="float16", source_digest=digest)


def load_predictor(model_dir: str | os.PathLike | None = None, kind=None, runtime: str = DEFAULT_RUNTIME,
                   threads: int | None = None):
    """The ``Predictor`` of a run directory (``resolve_model_dir``'s rules for ``None`` and
    ``kind``, Fashion-MNIST when ``kind`` is None) on ``runtime``: its LiteRT artefact with ``threads`` (default: every usable core),
    or Keras (``threads`` is then TensorFlow's, which it takes only before it starts)."""
    from apparel.inference.prediction import Predictor, resolve_model_dir

    path = resolve_model_dir(model_dir) if kind is None else resolve_model_dir(model_dir, kind)
    if check_runtime(runtime) == "keras":
        if threads is not None:
            set_tensorflow_threads(threads)
        return Predictor.from_dir(path)
    return Predictor.from_litert(inference_artefact(path), path, threads)


def set_tensorflow_threads(threads: int, parameter: str = "threads") -> None:
    """TensorFlow's thread pools, which it fixes when it runs its first operation. The number of
    threads decides how sums are split, so the same model gives results apart in the seventh
    digit under another count: replicas that must match the local engine use its count."""
    import tensorflow as tf

    from apparel.errors import ParameterError

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        raise ParameterError("{} cannot change once TensorFlow has started in this process; "
                             "give it to a fresh process (the command line)", parameter) from None
