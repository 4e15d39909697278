"""What the service tells its operator: Prometheus metrics and a sampled JSON-lines request log.

Every protocol (TF Serving REST, Open Inference Protocol over HTTP and gRPC) records its
predictions through ``Metrics.record`` and ``RequestLog.record``, with the same labels: model,
version, protocol and status (the HTTP status a request got, or would have got over HTTP: a gRPC
``INVALID_ARGUMENT`` is 422 here, so one query covers every protocol).

    >>> metrics = Metrics()
    >>> metrics.record("fashion-mnist", "3", "grpc", 200, 0.004)
    >>> log = RequestLog("requests.jsonl", rate=0.01)      # one prediction in a hundred
    >>> log.record(model="photos", version="1", protocol="v2", status=200, seconds=0.02, inputs="1 photo")
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

from apparel.errors import ParameterError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """The Prometheus series of one app, in its own registry (two apps in a process never clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("apparel_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("apparel_http_request_duration_seconds", "Time from request to response, by route",
                                 ["route"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.predictions = Counter("apparel_predictions", "Prediction requests by model, version, protocol and status",
                                   ["model", "version", "protocol", "status"], registry=self.registry)
        self.prediction_latency = Histogram("apparel_prediction_duration_seconds",
                                            "Time from a prediction's input to its answer, by model and protocol",
                                            ["model", "protocol"], registry=self.registry, buckets=LATENCY_BUCKETS)
        self.batch_size = Histogram("apparel_batch_size", "Images per model call (micro-batching)",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.inference = Histogram("apparel_inference_seconds", "Duration of one model call",
                                   registry=self.registry,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.model_info = Gauge("apparel_model_info", "The model versions being served (value 1)",
                                ["version", "model"], registry=self.registry)
        # Each request's (counter, histogram) pair of labelled series, looked up once: ``labels()``
        # checks and locks every time (some 3 µs a pair). It holds what the registry holds, no more.
        self._series: dict[tuple, tuple] = {}

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def record(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        self._count(("prediction", model, version, protocol, status), seconds,
                    lambda: (self.predictions.labels(model, version, protocol, str(status)),
                             self.prediction_latency.labels(model, protocol)))

    def record_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self._count(("http", route, method, status), seconds,
                    lambda: (self.requests.labels(route, method, str(status)), self.latency.labels(route)))

    def _count(self, key: tuple, seconds: float, labelled) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = labelled()
        series[0].inc()
        series[1].observe(seconds)


class RequestLog:
    """A sampled log of predictions, one JSON object per line, appended to ``path``.

    Inputs are summarised (count, shape, bytes), never written: a photo is a customer's data, and
    a log of whole photos would grow by megabytes a second. ``rate`` is the share of predictions
    logged (0: none, 1: all); errors are sampled like the rest, as the metrics count them all.
    """

    def __init__(self, path: str | Path | None, rate: float = 0.0, *, seed: int | None = None):
        self.path = Path(path) if path is not None else None
        self.rate = rate if path is not None else 0.0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        if self.path is not None:  # a path that cannot be written is the operator's error, at start-up
            try:
                open(self.path, "a", encoding="utf-8").close()
            except OSError as error:
                raise ParameterError(f"{{}} {self.path} cannot be appended to ({error.strerror})", "request_log") from None

    def sampled(self) -> bool:
        return self.rate > 0 and (self.rate >= 1 or self._random.random() < self.rate)

    def record(self, **fields) -> None:
        if not self.sampled():
            return
        line = json.dumps({"time": round(time.time(), 3), **fields}, separators=(",", ":"), default=str)
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as error:  # the log going away (disk full, removed) must not fail the answer
            logging.getLogger(__name__).warning("request log %s: %s", self.path, error)


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: cheaper than ``BaseHTTPMiddleware``).

    The route label is the matched path template, or ``other`` for paths that match nothing, so
    random URLs cannot grow the number of series. ``routes`` are the app's own paths and mount
    prefixes, for the routes (docs, static files) that do not name themselves in the scope.
    """

    def __init__(self, app, metrics: Metrics, routes: set[str]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def route_label(self, scope) -> str:
        route = getattr(scope.get("route"), "path", None)
        if route is not None:
            return route
        path = scope.get("path", "")
        if path in self.routes:
            return path
        prefix = "/" + path.split("/", 2)[1] if path.count("/") > 1 else None
        return prefix if prefix in self.routes else "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.record_http(self.route_label(scope), scope["method"], status, time.perf_counter() - started)
