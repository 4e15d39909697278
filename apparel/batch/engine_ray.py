"""The Ray engine: Ray Data fetches and decodes in CPU tasks and predicts in a pool of actors,
each of which loads the model once; the driver writes the results as they stream back.

    >>> for result in classify_ray(rows, references, read_settings, model_settings, address="10.0.0.5:6379"):
    ...     result["row"], result["probabilities"], result["error"]

Without an address a local Ray is started, with as many CPUs as this process may use, and stopped
at the end; with one, the cluster is joined (every node needs ``apparel`` installed, and the
images' paths must mean the same on each). Ray is imported only here.

A worker that dies costs time only: Ray Data retries a reading task, and restarts a predicting
actor and resends its batch (its defaults for map tasks and actor pools, kept as they are).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np

from apparel.artifacts import usable_cores
from apparel.batch.config import ModelSettings, ReadSettings
from apparel.batch.predicting import Predict, aligned_batches
from apparel.batch.reading import read_batch
from apparel.errors import ParameterError

# Ray's CPU slots: each slot takes one reader and one replica of the model, so one-thread replicas
# can fill every CPU and readers still find room beside them (actors holding every slot would
# starve them).
# The two differ on purpose: equal resources would let Ray Data fuse reading into the actors, and
# decoding would no longer scale apart from the model (CPU readers feeding GPU replicas, say).
READ_CPUS = 0.4
PREDICT_CPUS = 0.6
# A local Ray's processes get fixed times to come up (30 s for the node to register, 30 s for the
# GCS to write its port: ray._private.node), which a busy machine can miss; one more start is tried.
LOCAL_START_TRIES = 2
# How long a cluster's address may take to accept a connection before it is called unreachable.
CONNECT_SECONDS = 5.0
# The ports Ray takes when an address names none: Ray Client's (ray://host) and the cluster's GCS.
RAY_CLIENT_PORT, RAY_GCS_PORT = 10001, 6379

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(address: str | None = None):
    """Ray for the block: the cluster at ``address`` joined, or a local Ray started, and left or
    stopped afterwards; a Ray already running in this process is used as it is.

    >>> with ray_session():                 # several pipelines, one start of Ray
    ...     results = list(classify_ray(rows, references, read_settings, model_settings))
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address is not None:
        check_reachable(address)
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        start_local_ray(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def check_reachable(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """Refuse a cluster ``address`` (host:port, or ray://host:port) that answers no connection
    within ``seconds``: Ray itself retries such a one for many minutes, saying only its own warnings
    (measured: still waiting after 10 minutes). Other forms ("auto") are left to Ray."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number, or out of range: Ray words that itself
        return
    if not host or parts.scheme not in ("ray", "ray-gcs"):
        return
    port = port or (RAY_CLIENT_PORT if parts.scheme == "ray" else RAY_GCS_PORT)  # Ray's own defaults
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except OSError as error:
        reason = (f"no answer within {seconds:g} s" if isinstance(error, TimeoutError)
                  else (error.strerror or type(error).__name__).lower())
        raise ParameterError(f"{{}} {address}: no Ray cluster answers there ({reason}); start "
                             "one with `ray start --head` and give the address it prints, or leave the flag out for "
                             "a local Ray", "ray_address") from None


def start_local_ray(**options) -> None:
    """``ray.init`` of a Ray of this process's own ("local": even where `ray start` has left a
    cluster that ``ray.init()`` would join), started again once when the first start fails: its
    processes get fixed times to come up, which a busy machine can miss (Ray says so in a bare
    ``Exception`` or a ``RuntimeError``, in words that change between its versions). A failure of
    the second start is raised."""
    import ray

    for attempt in range(LOCAL_START_TRIES):
        try:
            ray.init(address="local", **options)
            return
        except Exception as error:  # noqa: BLE001 — Ray's startup timeouts are bare Exceptions
            if attempt == LOCAL_START_TRIES - 1:
                raise
            logger.warning("a local Ray did not start (%s); starting it again", error)
            ray.shutdown()


def classify_ray(rows: np.ndarray, references: list[str], read: ReadSettings, model: ModelSettings,
                 batch_size: int = 32, predictors: int | None = None, address: str | None = None,
                 packed: bool = False) -> Iterator[dict]:
    """``{"row", "probabilities", "error"}`` for every row (ascending), a batch at a time, in
    order. ``predictors`` replicas of the model (default: the cluster's CPUs
    divided by ``model.threads``; threads default to the cores this process may use).

    Each block is one batch (``predicting.aligned_batches``), read and predicted whole
    (``batch_size=None``: Ray Data's batches are the blocks), each row at its fixed place, or
    ``packed`` as the catalog packs them: the same numbers as the local engine's.
    """
    if len(rows) == 0:  # a finished run resumed: no Ray, no model
        return
    import pyarrow as pa
    import ray

    if model.threads is None:
        model = dataclasses.replace(model, threads=usable_cores())
    with ray_session(address):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # The blocks in manifest order, as the local engine gives them: each part file then holds a
        # run of rows (finished out of order, part 25 held rows 25–47 and 80–81), and a folder reads
        # in manifest order. A slow block holds back the writing of later ones, not their work.
        context.execution_options.preserve_order = True
        if predictors is None:
            predictors = max(1, int(ray.cluster_resources().get("CPU", 1)) // model.threads)
        blocks = [pa.table({"row": pa.array(batch["row"], type=pa.int64()), "image": pa.array(batch["image"], type=pa.string())})
                  for batch in aligned_batches(rows, references, batch_size)]
        dataset = ray.data.from_arrow(blocks)
        dataset = dataset.map_batches(read_batch, fn_kwargs={"settings": read}, batch_size=None, num_cpus=READ_CPUS)
        dataset = dataset.map_batches(Predict, fn_constructor_kwargs={"settings": model, "slots": None if packed else batch_size},
                                      batch_size=None,
                                      num_cpus=PREDICT_CPUS, compute=ray.data.ActorPoolStrategy(size=predictors))
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy")
