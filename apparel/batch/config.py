"""The settings of a batch run (``apparel batch`` flags) and what its workers need to know.

    >>> from apparel.batch.config import BatchConfig
    >>> BatchConfig(engine="ray", predictors=4).engine
    'ray'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apparel.config import Config, option
from apparel.contract import InputContract
from apparel.errors import ParameterError
from apparel.images.fetch import MAX_TIMEOUT, FetchConfig
from apparel.inference.runtime import DEFAULT_RUNTIME, RUNTIMES

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ReadConfig(Config):
    """How images are read and predicted: the settings ``apparel catalog`` and ``apparel batch``
    share (their flags), for the one read-and-predict loop (``batch.loop``)."""

    model_dir: str | None = option(None, "run directory (default: $APPAREL_MODEL_DIR, else the shipped store model)")
    runtime: str = option(DEFAULT_RUNTIME, "litert: the model's LiteRT artefact, made once beside it (no TensorFlow); "
                                           "keras: the Keras model", choices=RUNTIMES)
    image_column: str | None = option(None, "the column of image paths or URLs (default: a batch manifest's first of "
                                            "image, image_url, url, path; a catalog's Image Src or Product image URL)")
    images_dir: str | None = option(None, "folder that local image paths resolve inside (default: the CSV's or "
                                          "manifest's folder)")
    engine: str = option("local", "local: this process; ray: Ray Data, on a local Ray or --ray-address (same output)",
                         choices=ENGINES)
    ray_address: str | None = option(None, "with --engine ray: join this Ray cluster (host:port or ray://…) instead "
                                           "of starting one")
    # Upper bounds that stop a typo, not a workload: 1,024 photos of 224×224 are 0.6 GB of float input
    # before the model's activations; an unbounded thread count can crash the process.
    batch_size: int = option(32, "images per model call (and per read task)", minimum=1, maximum=1024)
    read_threads: int = option(4, "images read and fetched at once (URLs wait on the network)", minimum=1,
                               maximum=256)
    allow_private: bool = option(False, "also fetch URLs on private, loopback and link-local addresses")
    timeout: float = option(10.0, "seconds allowed per image URL", minimum=0.001, maximum=MAX_TIMEOUT)

    def check(self) -> None:
        if self.ray_address is not None and self.engine != "ray":
            raise ParameterError("{} joins a Ray cluster; give {} ray with it", "ray_address", "engine")

    def fetch(self) -> FetchConfig:
        return FetchConfig(timeout=self.timeout, allow_private=self.allow_private)


@dataclass(frozen=True)
class BatchConfig(ReadConfig):
    """How a manifest is classified."""

    litert: str | None = option(None, "run this exported .tflite of the model (apparel export --format litert)")
    top_k: int = option(3, "classes written per image, most likely first", minimum=1)
    predictors: int | None = option(None, "Ray: model replicas, each an actor that loads the model once "
                                          "(default: the cluster's CPUs / --predictor-threads)", minimum=1)
    predictor_threads: int | None = option(None, "threads per model replica, TensorFlow's or LiteRT's (default: "
                                                 "the cores this process may use, as the local engine does; then "
                                                 "both engines give the same numbers)", minimum=1, maximum=256)
    shard_rows: int = option(5000, "rows per Parquet file; a rerun resumes after the last whole file", minimum=1)
    retry_failed: bool = option(False, "on a rerun, read again the rows an earlier run of the folder could not read "
                                       "(a site that was down, a file since mended): their error rows are replaced")
    colour: bool = option(False, "also write each product's colour read from its photo (Shopify's color value, "
                                 "where the category takes one): the color_* columns")


@dataclass(frozen=True)
class ReadSettings:
    """What a reader needs to turn an image reference into the model's input; sent to Ray workers."""

    images_dir: str | None           # where references resolve (None: they are ImageSources already)
    contract: InputContract
    fetch: FetchConfig = FetchConfig()
    threads: int = 4

    def transport_dtype(self):
        """Photo inputs are whole numbers 0–255: sent as bytes (a quarter of float32), exactly."""
        import numpy as np

        return self.contract.model_kind.transport_dtype


@dataclass(frozen=True)
class ModelSettings:
    """Which model a predictor loads; sent to Ray workers, which load it once each."""

    model_dir: str | None            # the run directory; None with a LiteRT export that records its contract
    litert: str | None = None
    threads: int | None = None       # TensorFlow's threads, or the LiteRT interpreter's; None: every core
    colour: bool = False             # also name each readable photo's colour (apparel.attributes), from its input

    @property
    def version(self) -> str:
        """The first 12 hex digits of the run's ``model.keras`` SHA-256, as the service reports the
        version (whichever runtime answers: a batch row joins a served answer on it); of the
        ``.tflite`` file for an export given without its run."""
        from apparel.artifacts import MODEL_FILE, file_digest

        keras = Path(self.model_dir) / MODEL_FILE if self.model_dir is not None else None
        return file_digest(keras if keras is not None and keras.is_file() else self.litert)[:12]

    @property
    def artefact(self) -> str | None:
        """The first 12 hex digits of the LiteRT file that answers (None: Keras does): a resumed
        output is refused if another one (float16, int8, Keras) would answer its other rows."""
        from apparel.artifacts import file_digest

        return file_digest(self.litert)[:12] if self.litert is not None else None
