"""The prediction service: a FastAPI app over a loaded `Predictor`, and `run_server` to serve it.

Three layers, as in Ludwig's ``serve.py``: ``create_app(predictor)`` builds the app (tests call it
in-process), ``run_server(model_dir, host, port)`` loads the model once and runs it with uvicorn,
and ``apparel serve`` parses the flags.

    >>> from apparel.inference.prediction import Predictor, resolve_model_dir
    >>> from apparel.serve.app import create_app, run_server
    >>> app = create_app(Predictor.from_dir("runs/reference"), max_batch=32)
    >>> run_server("runs/reference", host="127.0.0.1", port=8000)      # blocks; Ctrl-C stops it

The app follows the served model's input contract (``apparel.contract``): a Fashion-MNIST model
takes 28×28 arrays, a photo model S×S×3 RGB arrays, and both take image files (``{"b64": ...}``
instances and uploads), which ``photos.photo_input`` makes into the model's input. Class names,
top-k bound, store categories, previews and metadata come from the contract too.

Endpoints: TensorFlow Serving's REST API (``POST /v1/models/apparel:predict``, ``GET
/v1/models/apparel``, ``GET /v1/models/apparel/metadata``), photo uploads (``POST /predict``),
health (``/v2/health/live``, ``/v2/health/ready``), Prometheus ``/metrics``, OpenAPI ``/docs``, and
the web page at ``/``. Every client mistake is a 4xx ``{"error": "<what to do>"}``; a request the
service cannot take now (too many at once, a full queue, an answer past its deadline) is a 503
with ``Retry-After``. The limits and timeouts are ``ServiceConfig``'s; ``admission``, ``security``
and ``server`` apply them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import logging
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from apparel import artifacts
from apparel.contract import InputContract
from apparel.images import photos
from apparel.serve.admission import AdmissionMiddleware, busy_response
from apparel.serve.batching import MicroBatcher, Overloaded, inference_function, warm_up
from apparel.serve.config import ServiceConfig
from apparel.serve.security import ApiKeyMiddleware, OriginMiddleware, bind_settings, exposure_warning
from apparel.serve.server import server_options
from apparel.shop.taxonomy import load_mapping
from apparel.serve.payloads import RequestError, json_body, multipart_files, predict_request, shape_text
from apparel.inference.prediction import (DEFAULT_PHOTO_MODEL_DIR, MODEL_DIR_ENV, Predictor,
                                          resolve_model_dir)

MODEL_NAME = "apparel"
STATIC_DIR = Path(__file__).resolve().parent / "static"
LARGE_BODY = 256 * 1024  # JSON bodies from this size on are parsed on a worker thread
# The page loads only its own files; previews are data: URLs, the chosen photos blob: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # open without the API key, for probes
logger = logging.getLogger(__name__)


class Metrics:
    """The Prometheus series of one app, in its own registry (two apps in a process never clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("apparel_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("apparel_http_request_duration_seconds", "Time from request to response, by route",
                                 ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
        self.batch_size = Histogram("apparel_batch_size", "Images per model call (micro-batching)",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.inference = Histogram("apparel_inference_seconds", "Duration of one model call",
                                   registry=self.registry,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.model_info = Gauge("apparel_model_info", "The model being served (value 1)", ["version", "model"],
                                registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)


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
            route = self.route_label(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "the client went away before sending the whole body") from None
    return b"".join(chunks)


def require_content_type(request: Request, expected: str) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != expected:
        raise RequestError(415, f"Content-Type must be {expected}, got {content_type or 'none'}")
    return content_type


def model_description(predictor: Predictor, model_file: str | os.PathLike | None = None) -> dict:
    """Version (the first 12 hex digits of the SHA-256 of the model file served: ``model_file``,
    else the run directory's model.keras), held-out accuracy and the model's name, from its run
    directory; ``None`` where there is no file or directory.

    The held-out accuracy is ``test_accuracy`` for a Fashion-MNIST model (its test set) and
    ``validation_accuracy`` for a photo model (the folder its settings were chosen on);
    ``accuracy_split`` says which.
    """
    split = "validation" if predictor.contract.is_photo else "test"
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
            logger.warning("the model's accuracy is not shown: %s", error)
            metrics = {}
        if not isinstance(metrics, dict):
            # The figures are for people; a damaged file must not keep the model from serving.
            logger.warning("the model's accuracy is not shown: %s holds a JSON %s, not an object",
                           metrics_path, type(metrics).__name__)
            metrics = {}
        keys = ("test_accuracy", "validation_accuracy", "model", "parameters")
        info.update({key: metrics.get(key) for key in keys})
        info["accuracy"] = info[f"{split}_accuracy"]
    return info


def model_input_name(predictor: Predictor) -> str | None:
    """The name of the model's one input (TensorFlow Serving's named ``inputs``); ``None`` where
    the runtime does not say (an exported model)."""
    inputs = getattr(predictor.model, "inputs", None) or []
    return inputs[0].name if len(inputs) == 1 else None


def has_photos(payload, max_instances: int) -> bool:
    """Whether a :predict body holds ``{"b64": ...}`` instances (checked only within the limit)."""
    if not isinstance(payload, dict):
        return False
    instances = payload.get("instances", payload.get("inputs"))
    return isinstance(instances, list) and len(instances) <= max_instances and any(
        isinstance(instance, dict) for instance in instances)


def png_data_url(image: np.ndarray) -> str:
    """A model input as a ``data:image/png;base64,…`` URL (the page shows it): a float (28, 28)
    image in [0, 1] as grayscale, a float (S, S, 3) photo input with values 0–255 as RGB."""
    from PIL import Image

    if image.ndim == 3:
        pixels, mode = np.clip(np.rint(image), 0, 255).astype(np.uint8), "RGB"
    else:
        pixels, mode = np.rint(image * 255).astype(np.uint8), "L"
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def input_range(contract: InputContract) -> str:
    if contract.is_photo:
        return "RGB 0–255, or 0–1 for an instance with no value above 1; or {\"b64\": image file}"
    return "0–1, or 0–255 for an instance with any value above 1; or {\"b64\": image file}"


def predict_body_doc(contract: InputContract) -> dict:
    """OpenAPI documentation of the :predict body, which the handler reads itself (it parses the
    raw body, for speed and to enforce the limits before anything is decoded)."""
    if contract.is_photo:
        instance = (f"a {shape_text(contract.shape)} array of RGB pixel values, photo on white padded to a square "
                    f"({input_range(contract)}), or {{\"b64\": \"<base64 image file>\"}} (any photo: it is padded "
                    "to a white square and resized)")
        example = {"instances": [{"b64": "<base64 of a JPEG or PNG file>"}]}
    else:
        instance = ("a 28×28 array of pixels, light garment on black (0–1; an instance with any value above 1 is "
                    "read as 0–255) or {\"b64\": \"<base64 image file>\"} (any photo: the Fashion-MNIST pipeline applies)")
        example = {"instances": [[[0] * 28] * 28]}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "instances": {"type": "array", "items": {}, "description": "each " + instance},
                    "inputs": {"type": "array", "items": {}, "description": "columnar form of the same list"},
                    "signature_name": {"type": "string", "enum": ["serving_default"]}}},
                "example": example}},
        }
    }


UPLOAD_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "product photos (JPEG, PNG, WebP, GIF, …)"}}}}},
    }
}


@dataclass
class Service:
    """What every handler of one app shares: the predictor (its contract and class names) and the
    batcher in front of its model, the limits, the metrics, the model's description and the
    class → store category mapping (``None`` for a class the mapping does not name)."""

    config: ServiceConfig
    predictor: Predictor
    batcher: MicroBatcher
    metrics: Metrics
    description: dict
    categories: dict[str, str | None]
    ready: bool = True
    # Photos decode on worker threads; a few at a time, as a 40-megapixel one takes ~160 MB.
    decode_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self):
        self.decode_slots = threading.BoundedSemaphore(self.config.max_decoding)

    @property
    def contract(self) -> InputContract:
        return self.predictor.contract

    def decode_photo(self, data: bytes) -> np.ndarray:
        """One uploaded photo as the model's input (``SourceError`` when it cannot be one)."""
        with self.decode_slots:
            return photos.photo_input(data, self.contract, max_pixels=self.config.max_pixels)


def store_categories(class_names: tuple[str, ...], taxonomy: str | None) -> dict[str, str | None]:
    """Class → store category for the served model's classes. A class the mapping does not name (a
    store's own photo classes, say) gets none rather than stopping the service; so does a class
    whose category is empty."""
    mapping = load_mapping(taxonomy)
    return {name: mapping.get(name) or None for name in class_names}


def create_app(predictor: Predictor, config: ServiceConfig | None = None, *,
               model_file: str | os.PathLike | None = None, **settings) -> FastAPI:
    """The service app over a loaded predictor. ``settings`` override fields of ``ServiceConfig``;
    ``model_file`` is the file the predictor runs when it is not the run directory's model.keras
    (an exported ``.tflite``): the version shown is its digest.

    >>> app = create_app(Predictor.from_dir("runs/reference"), max_files=4)
    """
    config = (config or ServiceConfig()).replace(**settings)
    metrics = Metrics()
    description = model_description(predictor, model_file)
    metrics.model_info.labels(str(description["version"]), str(description["model"])).set(1)
    batcher = MicroBatcher(inference_function(predictor), max_batch=config.max_batch,
                           max_wait_ms=config.max_wait_ms, on_batch=metrics.observe_batch,
                           max_queued=config.max_queued_images)
    categories = store_categories(predictor.class_names, config.taxonomy)
    service = Service(config, predictor, batcher, metrics, description, categories)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        service.ready = True
        yield
        service.ready = False
        batcher.close()

    # docs_url=None: FastAPI's own /docs page loads Swagger UI from a CDN; ours serves the copy
    # that the swagger-ui-bundle package ships, so the docs work without a network.
    contract = predictor.contract
    summary = (f"Classify clothing product photos into {contract.num_classes} classes: "
               f"{', '.join(contract.class_names)}. Input: {contract.describe()}.")
    app = FastAPI(title="apparel", version=description["version"] or "unversioned", lifespan=lifespan,
                  docs_url=None, description=summary)
    app.state.config, app.state.batcher, app.state.metrics = config, batcher, metrics
    routes: set[str] = set()  # filled in once every route is defined, below
    add_guards(app, config)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)  # the outermost: it counts refusals too
    add_error_handlers(app, config)
    add_serving_routes(app, service)
    add_photo_routes(app, service)
    add_health_routes(app, service)
    add_page_routes(app)
    routes.update(route.path for route in app.routes)
    return app


def add_guards(app: FastAPI, config: ServiceConfig) -> None:
    """The checks every request passes before a handler, outermost first: its Host, its API key,
    its Origin, then whether the service has room for it."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(AdmissionMiddleware, limit=config.max_concurrent_requests, retry_after=config.retry_after_s)
    app.add_middleware(OriginMiddleware, allowed_origins=config.allowed_origins)
    if config.api_key:
        app.add_middleware(ApiKeyMiddleware, key=config.api_key, open_paths=HEALTH_PATHS)
    if config.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts), www_redirect=False)


async def answered_in_time(config: ServiceConfig, work):
    """Await ``work`` (a coroutine), which must finish within the request deadline, or raise
    ``Overloaded`` (a 503): past it the client is better told to come back than kept waiting.
    A step on a worker thread (parsing, decoding) runs to its end before the deadline can cut in;
    the wait for the model, which grows with the queue, is cut short (and leaves the queue)."""
    try:
        async with asyncio.timeout(config.request_deadline_s):
            return await work
    except TimeoutError:
        raise Overloaded(f"the server is too busy to answer within {config.request_deadline_s:g} s; "
                         "try again shortly") from None


def add_error_handlers(app: FastAPI, config: ServiceConfig) -> None:
    """Every error a JSON ``{"error": message}``: client mistakes 4xx, the rest a 500 that says so."""

    @app.exception_handler(RequestError)
    async def client_mistake(request, error: RequestError):
        return error_response(error.status, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, error: StarletteHTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Overloaded)
    async def overloaded(request, error: Overloaded):
        return busy_response(str(error), config.retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request, error: RequestValidationError):
        messages = [f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()]
        return error_response(422, "; ".join(messages) or "invalid request")

    @app.exception_handler(Exception)
    async def server_fault(request, error: Exception):
        return error_response(500, f"internal error ({type(error).__name__}); the server is still up, please report it")


def add_serving_routes(app: FastAPI, service: Service) -> None:
    """TensorFlow Serving's REST API: predict, model status, metadata."""
    config, description, contract = service.config, service.description, service.contract
    input_name = model_input_name(service.predictor)

    def decode_instance(data: bytes) -> np.ndarray:
        try:
            return service.decode_photo(data)
        except ValueError as error:  # a SourceError names "<N bytes>"; the payload names the instance
            raise ValueError(getattr(error, "reason", str(error))) from None

    @app.post(f"/v1/models/{MODEL_NAME}:predict", openapi_extra=predict_body_doc(contract), tags=["TensorFlow Serving"],
              summary=f"Class probabilities for {shape_text(contract.shape)} arrays or base64 images "
                      "(TensorFlow Serving REST)")
    async def predict_instances(request: Request):
        require_content_type(request, "application/json")
        body = await read_body(request, config.max_body_bytes)
        return await answered_in_time(config, answer(body))

    async def answer(body: bytes) -> Response:
        arguments = dict(contract=contract, max_instances=config.max_instances, decode_photo=decode_instance,
                         input_name=input_name)
        if len(body) >= LARGE_BODY:  # parsing takes a while: keep the event loop free for others
            key, images = await run_in_threadpool(lambda: predict_request(json_body(body), **arguments))
        else:
            payload = json_body(body)
            if has_photos(payload, config.max_instances):  # decoding photos takes milliseconds
                key, images = await run_in_threadpool(predict_request, payload, **arguments)
            else:
                key, images = predict_request(payload, **arguments)
        probabilities = await service.batcher.predict(images)
        return Response(json.dumps({key: probabilities.tolist()}), media_type="application/json")

    @app.get(f"/v1/models/{MODEL_NAME}", tags=["TensorFlow Serving"], summary="Model status")
    async def model_status():
        return {"model_version_status": [{
            "version": description["version"] or "unversioned",
            "state": "AVAILABLE" if service.ready else "END",
            "status": {"error_code": "OK", "error_message": ""}}]}

    @app.get(f"/v1/models/{MODEL_NAME}/metadata", tags=["TensorFlow Serving"], summary="Classes, input, version, accuracy")
    async def model_metadata():
        return {
            "model_spec": {"name": MODEL_NAME, "signature_name": "serving_default", "version": description["version"]},
            "input_name": input_name,  # the name of TensorFlow Serving's {"inputs": {name: [...]}}
            "kind": contract.kind,  # "fashion-mnist" (28×28 grayscale) or "photo" (S×S RGB)
            "class_names": list(contract.class_names),
            "input_shape": list(contract.shape),
            "input_range": input_range(contract),
            "preprocessing": contract.describe(),
            "model_version": description["version"],
            "accuracy": description["accuracy"],  # held out: on the split below
            "accuracy_split": description["accuracy_split"],
            "test_accuracy": description["test_accuracy"],
            "validation_accuracy": description["validation_accuracy"],
            "model": description["model"],
            "parameters": description["parameters"],
            "limits": config.limits(),
        }


def add_photo_routes(app: FastAPI, service: Service) -> None:
    """``POST /predict``: uploaded photos → top classes and store category each."""
    config, contract = service.config, service.contract
    input_size = "×".join(str(n) for n in contract.shape[:2])

    @app.post("/predict", openapi_extra=UPLOAD_BODY_DOC, tags=["photos"],
              summary="Top classes and store category for each uploaded photo")
    async def predict_photos(
        request: Request,
        top_k: int | None = Query(None, ge=1, le=contract.num_classes,
                                  description=f"classes per photo (default {min(config.top_k, contract.num_classes)})"),
        preview: bool = Query(False, description=f"include each photo's {input_size} model input as a PNG data URL"),
    ):
        content_type = require_content_type(request, "multipart/form-data")
        body = await read_body(request, config.max_body_bytes)
        return await answered_in_time(config, answer(body, content_type, top_k or config.top_k, preview))

    async def answer(body: bytes, content_type: str, top_k: int, preview: bool) -> dict:
        files = await run_in_threadpool(multipart_files, body, content_type, max_files=config.max_files)
        if not files:
            raise RequestError(400, "no file in the upload; send one or more images as multipart/form-data files")
        for name, content in files:
            if not content:
                raise RequestError(400, f"{name!r} is empty; choose an image file")
        images = await run_in_threadpool(decode_uploads, service, files)
        probabilities = await service.batcher.predict(images)
        ranked = service.predictor.top_k(probabilities, top_k)
        return {"predictions": [photo_result(name, image, top, service.categories, preview)
                                for (name, _), image, top in zip(files, images, ranked)]}


def decode_uploads(service: Service, files: list[tuple[str, bytes]]) -> np.ndarray:
    """Every uploaded file as a model input; an unreadable one is a 422 naming it."""
    images = []
    for name, content in files:
        try:
            images.append(service.decode_photo(content))
        except ValueError as error:  # a SourceError names "<N bytes>"; the upload's name is better
            raise RequestError(422, f"{name!r}: {getattr(error, 'reason', error)}") from None
    return np.stack(images)


def photo_result(name: str, image: np.ndarray, top: list[tuple[str, float]], categories: dict[str, str | None],
                 preview: bool) -> dict:
    result = {"file": name, "label": top[0][0], "probability": top[0][1],
              "top_k": [{"label": label, "probability": p} for label, p in top],
              "category": categories.get(top[0][0])}
    if preview:
        result["input_png"] = png_data_url(image)
    return result


def add_health_routes(app: FastAPI, service: Service) -> None:
    """Liveness, readiness and Prometheus metrics."""

    @app.get("/v2/health/live", tags=["health"], summary="The process answers")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"], summary="The model is loaded and serving")
    async def ready():
        if not service.ready:
            return error_response(503, "shutting down")
        return {"ready": True}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def add_page_routes(app: FastAPI) -> None:
    """The web page, its files, and the OpenAPI docs served from the local Swagger UI copy."""
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/docs", include_in_schema=False)
    async def docs():
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url=app.openapi_url, title="apparel API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def served_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The run directory ``apparel serve`` serves: ``model_dir`` when given, else
    ``$APPAREL_MODEL_DIR``, else the shipped photo model ``models/photos`` (uploads and the web page
    are for photos) — or, until that model exists, ``models/default``, with a one-line note.

    >>> served_model_dir("runs/reference")
    PosixPath('runs/reference')
    """
    if model_dir is not None or os.environ.get(MODEL_DIR_ENV):
        return resolve_model_dir(model_dir)
    if (DEFAULT_PHOTO_MODEL_DIR / artifacts.MODEL_FILE).is_file():
        return resolve_model_dir(DEFAULT_PHOTO_MODEL_DIR)
    fallback = resolve_model_dir(None)
    print(f"note: no shipped photo model in {DEFAULT_PHOTO_MODEL_DIR} yet; serving the Fashion-MNIST model "
          f"{fallback}", file=sys.stderr, flush=True)
    return fallback


def run_server(
    model_dir: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    access_log: bool = False,
    log_level: str = "info",
    inference_threads: int | None = None,
    litert: str | os.PathLike | None = None,
    **settings,
) -> None:
    """Load the model once, then serve it until interrupted. ``None`` serves the shipped photo model
    (uploads and the page are for photos; see ``served_model_dir``).

    ``settings`` are ``ServiceConfig`` fields (``max_batch=32``, …). The access log is off by
    default: at hundreds of requests a second it costs more than the requests.
    ``inference_threads`` sets TensorFlow's threads per operation (``None``: one per core).
    ``litert`` runs an exported ``.tflite`` of the model (``apparel export``) instead of Keras; the
    run directory it was exported from gives its input contract and metadata, the ``.tflite`` its
    version.

    On a loopback ``host`` only loopback Host names are answered (DNS rebinding); the API key is
    ``api_key`` or ``$APPAREL_API_KEY``, and serving beyond loopback without one prints a warning.
    The timeouts and caps of ``ServiceConfig`` apply; Ctrl-C (or SIGTERM) lets the requests in
    flight finish for up to ``shutdown_timeout_s``, then closes their connections.
    """
    import uvicorn

    # Reject a bad setting before the slow model load.
    config = bind_settings(ServiceConfig().replace(**settings), host)
    load_mapping(config.taxonomy)
    model_dir = served_model_dir(model_dir)
    if inference_threads is not None:
        if inference_threads < 1:
            raise ValueError(f"inference_threads must be at least 1, got {inference_threads}")
        import tensorflow as tf

        # Only possible before TensorFlow starts its runtime, i.e. before the model is loaded.
        tf.config.threading.set_intra_op_parallelism_threads(inference_threads)
    if litert is not None:
        predictor = Predictor.from_litert(litert, model_dir)
    else:
        predictor = Predictor.from_dir(model_dir)
    app = create_app(predictor, config, model_file=litert)
    # Each malformed upload would log a parser warning: the client already gets the reason.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    warm_up(app.state.batcher.infer, config.max_batch, predictor.contract.shape)
    # TensorFlow and Keras leave ~400,000 objects that live as long as the process; a full garbage
    # collection walking them pauses every request for ~200 ms. Frozen, they are never walked.
    gc.collect()
    gc.freeze()
    warning = exposure_warning(config, host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(app, **server_options(config, host, port), access_log=access_log, log_level=log_level)
