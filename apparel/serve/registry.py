"""The models a service holds: each by name, each version with its own predictor and batcher.

Every protocol resolves a request the same way — a model name (or the alias ``apparel``), then a
version number, a version label, or the latest available version — and runs it through
``Registry.predict``, which counts it against that version (so an old version drains before it
is unloaded), applies the request deadline and records metrics and the request log.

    >>> registry = Registry(config, metrics)
    >>> registry.add(load_version("fashion-mnist", 1, "runs/reference", config, metrics))
    >>> served = registry.resolve("fashion-mnist")
    >>> probabilities = await registry.predict(served, images, protocol="rest")
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.attributes import prepare_colour_naming
from apparel.contract import INPUT_NAME, InputContract
from apparel.images import decode
from apparel.inference.prediction import Predictor
from apparel.inference.runtime import load_predictor
from apparel.serve.batching import MicroBatcher, Overloaded, inference_function, warm_up
from apparel.serve.config import ServiceConfig
from apparel.serve.payloads import RequestError
from apparel.serve.telemetry import Metrics, RequestLog
from apparel.shop.categories import optional_run_chooser
from apparel.taxonomy.decide import CategoryChooser

ALIAS = "apparel"  # the name every earlier client used: the default model
OUTPUT_NAME = "probabilities"  # the one output of every model, as the protocols name tensors


def model_description(predictor: Predictor, model_file: str | os.PathLike | None = None) -> dict:
    """Version (the first 12 hex digits of the SHA-256 of the model file served: ``model_file``,
    else the run directory's model.keras), held-out accuracy and the model's name, from its run
    directory; ``None`` where there is no file or directory.

    The held-out accuracy is ``test_accuracy`` for a Fashion-MNIST model (its test set) and
    ``validation_accuracy`` for a photo model (the folder its settings were chosen on);
    ``accuracy_split`` says which.
    """
    import logging

    split = predictor.contract.model_kind.held_out_split
    info = {"version": None, "test_accuracy": None, "validation_accuracy": None, "accuracy": None,
            "accuracy_split": split, "model": None, "parameters": None}
    if model_file is not None:
        info["version"] = artifacts.file_digest(model_file)[:12]
    if predictor.model_dir is None:
        return info
    model_dir = Path(predictor.model_dir)
    if model_file is None:
        info["version"] = artifacts.file_digest(model_dir / artifacts.MODEL_FILE)[:12]
    metrics_path = model_dir / artifacts.METRICS_FILE
    if metrics_path.is_file():
        try:
            metrics = artifacts.read_json(metrics_path)
        except ValueError as error:
            logging.getLogger(__name__).warning("the model's accuracy is not shown: %s", error)
            metrics = {}
        if not isinstance(metrics, dict):
            # The figures are for people; a damaged file must not keep the model from serving.
            logging.getLogger(__name__).warning("the model's accuracy is not shown: %s holds a JSON %s, not an "
                                                "object", metrics_path, type(metrics).__name__)
            metrics = {}
        keys = ("test_accuracy", "validation_accuracy", "model", "parameters")
        info.update({key: metrics.get(key) for key in keys})
        info["accuracy"] = info[f"{split}_accuracy"]
    return info


@dataclass(eq=False)
class ServedVersion:
    """One loaded version: its predictor, the batcher in front of it, what the metadata shows."""

    name: str
    number: int
    predictor: Predictor
    batcher: MicroBatcher
    description: dict
    categories: CategoryChooser | None  # what turns its probabilities into a store category
    numbered: bool = True  # a repository version; False: a single run directory, shown by its digest
    in_flight: int = 0  # requests holding this version (the reloader waits for 0 before unloading)
    decode_slots: threading.BoundedSemaphore | None = None

    @property
    def contract(self) -> InputContract:
        return self.predictor.contract

    @property
    def label(self) -> str:
        """The version as protocols show it: the number, or the digest of an unnumbered model."""
        return str(self.number) if self.numbered else (self.description["version"] or "1")

    @property
    def input_name(self) -> str:
        """The one input's name (``contract.INPUT_NAME``): Keras's own ("input_layer", "input_layer_3")
        changed with the runtime and the way the model was built, so the docs' examples broke."""
        return INPUT_NAME

    def photo_decoder(self, config: ServiceConfig):
        """The photo decoder of one request: each photo file as this model's input
        (``SourceError`` when it cannot be one), within ``max_pixels`` and ``max_decode_bytes``
        each, and all of the request's photos within ``max_request_decode_bytes`` together (a
        413): a 16 MiB body can carry a hundred small files that each decode to hundreds of MB."""
        spent, lock = 0, threading.Lock()
        draft = self.contract.model_kind.draft_size(self.contract.size)

        def decode_one(data: bytes) -> np.ndarray:
            nonlocal spent
            cost = decode.decode_cost(data, draft_size=draft)  # from the header alone
            with lock:
                # A photo over the per-photo limit is that photo's error (below), not the request's.
                spent += cost if cost <= config.max_decode_bytes else 0
                if spent > config.max_request_decode_bytes:
                    raise RequestError(413, f"decoding this request's photos takes over {config.max_request_decode_bytes:,} "
                                            "bytes, the most one request may take; send fewer or smaller photos per request")
            with self.decode_slots:
                return self.contract.decode(data, max_pixels=config.max_pixels, max_bytes=config.max_decode_bytes)

        return decode_one


@dataclass
class VersionStatus:
    """TF Serving's state of a version (LOADING, AVAILABLE, UNLOADING, END) and its error, if any."""

    state: str
    error: str = ""


@dataclass
class ServedModel:
    """A model by name: its available versions, labels and the status of every version tried.

    ``versions`` is replaced, never changed in place, so a request reading it on the event loop
    sees either the old or the new set, while the reloader's thread swaps it."""

    name: str
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    status: dict[int, VersionStatus] = field(default_factory=dict)
    # Whether the server's readiness waits on it: a model it started with, or one that has served
    # since. A model that appears later and is still loading, or fails to, is not ready itself,
    # but does not take the whole server out of its load balancer.
    required: bool = False

    def latest(self) -> ServedVersion | None:
        return self.versions[max(self.versions)] if self.versions else None


class Registry:
    """The models of one service by name, and the one way every protocol runs a prediction."""

    def __init__(self, config: ServiceConfig, metrics: Metrics, request_log: RequestLog | None = None):
        self.config = config
        self.metrics = metrics
        self.request_log = request_log or RequestLog(None)
        self.models: dict[str, ServedModel] = {}
        self.default: str | None = None  # the model the alias `apparel`, uploads and the page use
        self.ready = True  # False while shutting down
        self.repository_error = ""  # why the model repository's models.json cannot be used now, if it cannot
        # Photos decode on worker threads; a few at a time, as a 40-megapixel one takes ~160 MB.
        self.decode_slots = threading.BoundedSemaphore(config.max_decoding)

    # ---------------------------------------------------------------- changes (reloader, start-up)

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            self.models = {**self.models, name: ServedModel(name)}
        return self.models[name]

    def add(self, served: ServedVersion) -> None:
        """Make a loaded (and warmed-up) version available: it takes traffic from now on."""
        served.decode_slots = self.decode_slots
        model = self.model(served.name)
        model.versions = {**model.versions, served.number: served}
        model.required = True
        model.status[served.number] = VersionStatus("AVAILABLE")
        self.metrics.model_info.labels(served.label, served.name).set(1)
        if self.default is None:
            self.default = served.name

    def withdraw(self, served: ServedVersion) -> None:
        """Take a version out of routing; requests holding it finish (see ``drain``)."""
        model = self.models[served.name]
        model.versions = {number: other for number, other in model.versions.items() if number != served.number}
        model.status[served.number] = VersionStatus("UNLOADING")
        try:
            self.metrics.model_info.remove(served.label, served.name)
        except KeyError:
            pass

    def require_every_model(self) -> None:
        """The models of the first load are the server's: it is not ready while one has no version."""
        for model in self.models.values():
            model.required = True

    def unavailable(self) -> list[str]:
        """The models the server's readiness waits on that have no version to answer with."""
        return [name for name, model in self.models.items() if model.required and not model.versions]

    def remove_model(self, name: str) -> None:
        self.models = {key: value for key, value in self.models.items() if key != name}

    def all_versions(self) -> list[ServedVersion]:
        return [served for model in self.models.values() for served in model.versions.values()]

    # ---------------------------------------------------------------- resolving a request

    def find(self, name: str) -> ServedModel:
        model = self.models.get(self.default if name == ALIAS and ALIAS not in self.models else name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise RequestError(404, f"no model named {name!r}; the models served are {known}")
        return model

    def resolve(self, name: str, version: str | int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request names: ``version`` (a number, or an unnumbered model's digest),
        else ``label``, else the latest available. An unknown one is a 404 that lists the others."""
        model = self.find(name)
        if label is not None:
            if label not in model.labels:
                raise RequestError(404, f"model {model.name!r} has no version label {label!r}; its labels are "
                                        f"{', '.join(sorted(model.labels)) or 'none'}")
            version = model.labels[label]
        if version is None:
            served = model.latest()
            if served is None:
                raise RequestError(404, f"model {model.name!r} has no version available; see GET /v1/models/{model.name}")
            return served
        for served in model.versions.values():
            if str(version) in (str(served.number), served.label):
                return served
        available = ", ".join(served.label for served in model.versions.values()) or "none"
        raise RequestError(404, f"model {model.name!r} has no available version {version}; available: {available}")

    # ---------------------------------------------------------------- running a request

    @contextmanager
    def holding(self, served: ServedVersion, protocol: str, **summary):
        """Count a request against ``served`` while it runs, then record its metrics and log line
        with the status it ended with (the HTTP status; gRPC maps the same errors)."""
        served.in_flight += 1
        started, status = time.perf_counter(), 200
        try:
            yield
        except RequestError as error:
            status = error.status
            raise
        except Overloaded:
            status = 503
            raise
        except asyncio.CancelledError:  # the client went away
            status = 499
            raise
        except BaseException:
            status = 500
            raise
        finally:
            served.in_flight -= 1
            seconds = time.perf_counter() - started
            self.metrics.record(served.name, served.label, protocol, status, seconds)
            self.request_log.record(model=served.name, version=served.label, protocol=protocol, status=status,
                                    ms=round(seconds * 1000, 3), **summary)

    async def within_deadline(self, work):
        """Await ``work`` (a coroutine), which must finish within the request deadline, or raise
        ``Overloaded`` (a 503): past it the client is better told to come back than kept waiting.
        A step on a worker thread (parsing, decoding) runs to its end before the deadline can cut
        in; the wait for the model, which grows with the queue, is cut short (and leaves the queue)."""
        try:
            async with asyncio.timeout(self.config.request_deadline_s):
                return await work
        except TimeoutError:
            raise Overloaded(f"the server is too busy to answer within {self.config.request_deadline_s:g} s; "
                             "try again shortly") from None


def store_categories(predictor: Predictor, taxonomy: str | None) -> CategoryChooser | None:
    """How a model's answers get a store category (``apparel.shop.categories``): its own
    categories, else the mapping. A model whose classes the mapping does not all name (a store's
    own photo classes, say) answers without one rather than stopping the service."""
    return optional_run_chooser(predictor.model_dir, predictor.class_names, taxonomy, predictor.export_path)


def serve_version(name: str, number: int, predictor: Predictor, config: ServiceConfig, metrics: Metrics, *,
                  model_file: str | os.PathLike | None = None, numbered: bool = True,
                  warm_up_seconds: float = 0.0) -> ServedVersion:
    """A loaded predictor made ready to serve: its batcher, its first model call made (and, with
    ``warm_up_seconds``, every batch size up to ``max_batch`` run once, within that time), and for a
    model whose answers carry a colour, the colour naming table made."""
    if predictor.contract.model_kind.reads_colour_photos:
        prepare_colour_naming()  # else the first photos' answers wait a second for it
    batcher = MicroBatcher(inference_function(predictor), max_batch=config.max_batch,
                           max_wait_ms=config.max_wait_ms, on_batch=metrics.observe_batch,
                           max_queued=config.max_queued_images)
    if warm_up_seconds > 0:
        warm_up(batcher.infer, config.max_batch, predictor.contract.shape, seconds=warm_up_seconds)
    return ServedVersion(name, number, predictor, batcher, model_description(predictor, model_file),
                         store_categories(predictor, config.taxonomy), numbered=numbered)


def load_version(name: str, number: int, model_dir: str | os.PathLike, config: ServiceConfig, metrics: Metrics,
                 *, numbered: bool = True) -> ServedVersion:
    """Load a run directory as version ``number`` of model ``name``, warmed up (``config.warm_up_s``)."""
    return serve_version(name, number, load_predictor(model_dir, runtime=config.runtime), config, metrics, numbered=numbered,
                         warm_up_seconds=config.warm_up_s)
