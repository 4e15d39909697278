"""The prediction service: a FastAPI app over a registry of models, and `run_server` to serve it.

Three layers, as in Ludwig's ``serve.py``: ``create_app(predictor_or_registry)`` builds the app
(tests call it in-process), ``run_server(model_dir, host, port)`` loads the models and runs it with
uvicorn, and ``apparel serve`` parses the flags.

    >>> from apparel.inference.prediction import Predictor
    >>> from apparel.serve.app import create_app, run_server
    >>> app = create_app(Predictor.from_dir("runs/reference"), max_batch=32)   # one model, "apparel"
    >>> run_server(model_repository="models", grpc_port=8001)   # blocks; Ctrl-C stops it

Several models by name, each with versions (``registry``, ``repository``, hot reload in
``reload``), each following its own input contract (``apparel.contract``). Protocols:
TensorFlow Serving's REST API (``tfserving``), the Open Inference Protocol over HTTP (``v2``) and
gRPC with TF Serving's PredictionService (``grpc_server``); here: photo uploads (``POST
/predict``, to the default model), health (``/v2/health/live|ready``), Prometheus ``/metrics``,
OpenAPI ``/docs`` and the web page at ``/``. Every client mistake is a 4xx ``{"error": "<what to
do>"}``; a request the service cannot take now (too many at once, a full queue, an answer past its
deadline) is a 503 with ``Retry-After``. The limits and timeouts are ``ServiceConfig``'s;
``admission``, ``security`` and ``server`` apply them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import logging
import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from apparel import artifacts
from apparel.attributes import product_attributes
from apparel.errors import ParameterError
from apparel.serve.admission import AdmissionMiddleware, busy_response
from apparel.serve.batching import Overloaded, warm_up
from apparel.serve.config import ServiceConfig
from apparel.serve.desk import add_desk_routes, served_desk
from apparel.serve.handling import (HeadAsGetMiddleware, error_response, read_body, require_content_type,
                                    while_client_waits)
from apparel.serve.payloads import RequestError, multipart_files
from apparel.serve.registry import ALIAS, Registry, ServedVersion, load_version, serve_version
from apparel.serve.security import ApiKeyMiddleware, HostMiddleware, OriginMiddleware, bind_settings, exposure_warning
from apparel.serve.server import check_can_listen, serve, server_options
from apparel.serve.telemetry import Metrics, MetricsMiddleware, RequestLog
from apparel.serve.tfserving import add_tfserving_routes
from apparel.serve.v2 import add_v2_routes
from apparel.shop.taxonomy import load_mapping
from apparel.inference.runtime import load_predictor
from apparel.inference.prediction import (DEFAULT_MODEL_DIR, DEFAULT_PHOTO_MODEL_DIR, MODEL_DIR_ENV, Predictor,
                                          resolve_model_dir)

# Served by these names: the shipped models', with the Fashion-MNIST one named for its data.
SHIPPED_MODELS = {"fashion-mnist": DEFAULT_MODEL_DIR, "photos": artifacts.shipped_model_dir("photos"),
                  "store": DEFAULT_PHOTO_MODEL_DIR}
DEFAULT_SERVED = "store"  # uploads and the web page are a store's photos
STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page loads only its own files; previews are data: URLs, the chosen photos blob: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # open without the API key, for probes
logger = logging.getLogger(__name__)


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
    """What the handlers of one app share: the limits, the registry of models and the metrics."""

    config: ServiceConfig
    registry: Registry
    metrics: Metrics

    def default_version(self) -> ServedVersion:
        return self.registry.resolve(ALIAS)


def create_app(models: Predictor | Registry, config: ServiceConfig | None = None, *,
               model_file: str | os.PathLike | None = None, reloader=None, grpc_address: str | None = None,
               desk=None, **settings) -> FastAPI:
    """The service app over a loaded predictor (served as the model ``apparel``) or a registry of
    models. ``settings`` override fields of ``ServiceConfig`` (for a registry, its own config);
    ``model_file`` is the file a predictor runs when it is not the run directory's model.keras (an
    exported ``.tflite``): the version shown is its digest. ``reloader`` (``reload.Reloader``)
    polls the repository while the app runs; ``grpc_address`` (``host:port``, port 0 for any free
    one, read back from ``app.state.grpc_port``) serves gRPC, by default on ``config.grpc_port``.
    ``desk`` (``apparel.desk.runner.Desk``) runs the merchant's desk at ``/desk``; by default the
    one of ``config.desk_jobs`` (``apparel.serve.desk.served_desk``), none without it.

    >>> app = create_app(Predictor.from_dir("runs/reference"), max_files=4)
    """
    if isinstance(models, Registry):
        registry = models
        config = (config or registry.config).replace(**settings)
        registry.config = config
    else:
        config = (config or ServiceConfig()).replace(**settings)
        registry = Registry(config, Metrics(), RequestLog(config.request_log, config.log_sample_rate))
        registry.add(serve_version(ALIAS, 1, models, config, registry.metrics, model_file=model_file, numbered=False))
    metrics = registry.metrics
    service = Service(config, registry, metrics)
    default = service.default_version()
    if grpc_address is None and config.grpc_port:
        grpc_address = f"127.0.0.1:{config.grpc_port}"

    if desk is None:
        desk = served_desk(registry, config)
    lifespan = serving_lifespan(registry, config, reloader, grpc_address, desk)

    # docs_url=None: FastAPI's own /docs page loads Swagger UI from a CDN; ours serves the copy
    # that the swagger-ui-bundle package ships, so the docs work without a network.
    contract = default.contract
    summary = (f"Classify clothing product photos. Models: {', '.join(sorted(registry.models))}; the default "
               f"({registry.default}, also named {ALIAS}) has {contract.num_classes} classes: "
               f"{', '.join(contract.class_names)}. Input: {contract.describe()}.")
    app = FastAPI(title="apparel", version=default.description["version"] or "unversioned", lifespan=lifespan,
                  docs_url=None, description=summary)
    app.state.config, app.state.batcher, app.state.metrics = config, default.batcher, metrics
    app.state.registry = registry
    routes: set[str] = set()  # filled in once every route is defined, below
    app.add_middleware(HeadAsGetMiddleware)  # the innermost: the guards and the metrics see the HEAD
    add_guards(app, config)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)  # the outermost: it counts refusals too
    add_error_handlers(app, config)
    add_tfserving_routes(app, registry, contract)
    add_photo_routes(app, service)
    add_health_routes(app, service)
    add_v2_routes(app, registry)
    add_page_routes(app)
    add_desk_routes(app, desk, config)
    routes.update(route.path for route in app.routes)
    return app


def stopping_at_once(registry: Registry, grpc, grace: float):
    """What a signal to stop does at once, from any thread (``server.ServingServer``): the service
    not ready, and gRPC taking no new call while its calls in flight get ``grace`` seconds. It
    waited for HTTP's connections to drain first: gRPC said ready and took new work through it."""
    loop, stopping = asyncio.get_running_loop(), []  # the task held: the loop keeps only a weak reference

    def begin() -> None:
        registry.ready = False
        if grpc is not None and not stopping:
            stopping.append(loop.create_task(grpc.stop(grace)))

    return lambda: loop.call_soon_threadsafe(begin)


def serving_lifespan(registry: Registry, config: ServiceConfig, reloader, grpc_address: str | None, desk=None):
    """The app's start and stop: batchers, gRPC and the reloader started, then ``ready``; on the
    way out, not ready first (load balancers stop sending), then each stopped within its bound."""

    @asynccontextmanager
    async def lifespan(app):
        grpc = None
        try:  # a start that fails half-way (gRPC's port taken) still stops what had started
            for served in registry.all_versions():
                served.batcher.start()
            if grpc_address is not None:
                from apparel.serve.grpc_server import start_grpc_server

                grpc, app.state.grpc_port = await start_grpc_server(registry, grpc_address)
            app.state.begin_stopping = stopping_at_once(registry, grpc, config.shutdown_timeout_s)
            if reloader is not None:
                reloader.start(config.poll_interval_s)
            if desk is not None:  # resumes the jobs a restart interrupted
                desk.start()
            registry.ready = True
            yield
        finally:
            registry.ready = False
            if grpc is not None:
                await grpc.stop(config.shutdown_timeout_s)
            if reloader is not None:
                await asyncio.to_thread(reloader.stop)
            if desk is not None:
                await asyncio.to_thread(desk.stop)
            for served in registry.all_versions():
                served.batcher.close()

    return lifespan


def add_guards(app: FastAPI, config: ServiceConfig) -> None:
    """The checks every request passes before a handler, outermost first: its Host, its Origin,
    its API key (or, for the web page, its session cookie: ``login``), then whether the service
    has room for it."""
    app.add_middleware(AdmissionMiddleware, limit=config.max_concurrent_requests, retry_after=config.retry_after_s)
    if config.api_key:
        from apparel.serve.login import LOGIN_PATH, PageLogin, add_login_routes

        login = PageLogin.for_key(config.api_key)
        add_login_routes(app, login)
        app.add_middleware(ApiKeyMiddleware, key=config.api_key, open_paths=HEALTH_PATHS | {LOGIN_PATH}, login=login)
    app.add_middleware(OriginMiddleware, allowed_origins=config.allowed_origins)
    app.add_middleware(HostMiddleware, allowed_hosts=tuple(config.allowed_hosts or ()))


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


def add_photo_routes(app: FastAPI, service: Service) -> None:
    """``POST /predict``: uploaded photos → top classes, store category, colour and sleeve length each,
    by the default model."""
    config, registry, contract = service.config, service.registry, service.default_version().contract
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
        served = registry.resolve(ALIAS)
        with registry.holding(served, "upload", bytes=len(body)):
            return await registry.within_deadline(
                while_client_waits(request, answer(served, body, content_type, top_k or config.top_k, preview)))

    async def answer(served: ServedVersion, body: bytes, content_type: str, top_k: int, preview: bool) -> dict:
        files = await run_in_threadpool(multipart_files, body, content_type, max_files=config.max_files)
        if not files:
            raise RequestError(400, "no file in the upload; send one or more images as multipart/form-data files")
        for name, content in files:
            if not content:
                raise RequestError(400, f"{name!r} is empty; choose an image file")
        images = await run_in_threadpool(decode_uploads, served.photo_decoder(config), files)
        probabilities = await served.batcher.predict(images)
        ranked = served.predictor.top_k(probabilities, top_k)
        categories = ([decision.to_dict() for decision in served.categories.choose_all(probabilities)]
                      if served.categories is not None else [None] * len(files))
        # "color" and "sleeve_length_type" where the category takes them, the colour read from the same
        # model inputs (a few ms each).
        extras = (await run_in_threadpool(product_attributes, images, categories, probabilities, served.categories)
                  if served.contract.model_kind.reads_colour_photos else [{}] * len(files))
        return {"predictions": [photo_result(name, image, top, category, preview) | extra for (name, _), image, top,
                                category, extra in zip(files, images, ranked, categories, extras)]}


def decode_uploads(decode_one, files: list[tuple[str, bytes]]) -> np.ndarray:
    """Every uploaded file as a model input (``decode_one``: the request's photo decoder); an
    unreadable one is a 422 naming it."""
    images = []
    for name, content in files:
        try:
            images.append(decode_one(content))
        except RequestError:
            raise
        except ValueError as error:  # a SourceError names "<N bytes>"; the upload's name is better
            raise RequestError(422, f"{name!r}: {getattr(error, 'reason', error)}") from None
    return np.stack(images)


def photo_result(name: str, image: np.ndarray, top: list[tuple[str, float]], category: dict | None,
                 preview: bool) -> dict:
    """One photo's answer; ``category`` is its store category (``CategoryDecision.to_dict``), None
    for a model without categories."""
    result = {"file": name, "label": top[0][0], "probability": top[0][1],
              "top_k": [{"label": label, "probability": p} for label, p in top], "category": category}
    if preview:
        result["input_png"] = png_data_url(image)
    return result


def add_health_routes(app: FastAPI, service: Service) -> None:
    """Liveness, readiness and Prometheus metrics."""

    @app.get("/v2/health/live", tags=["health"], summary="The process answers")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"], summary="Every model has a version loaded and serving")
    async def ready():
        if not service.registry.ready:
            return error_response(503, "starting or shutting down")
        missing = service.registry.unavailable()
        if missing:
            return error_response(503, f"no version of {', '.join(missing)} is available; see GET /v1/models/<name>")
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
    ``$APPAREL_MODEL_DIR``, else the shipped store model ``store`` (uploads and the web page are
    for photos) — or, until that model exists, ``default``, with a one-line note.

    >>> served_model_dir("runs/reference")
    PosixPath('runs/reference')
    """
    if model_dir is not None or os.environ.get(MODEL_DIR_ENV):
        return resolve_model_dir(model_dir)
    if (DEFAULT_PHOTO_MODEL_DIR / artifacts.MODEL_FILE).is_file():
        return resolve_model_dir(DEFAULT_PHOTO_MODEL_DIR)
    fallback = resolve_model_dir(None)
    print(f"note: no shipped store model in {DEFAULT_PHOTO_MODEL_DIR} yet; serving the Fashion-MNIST model "
          f"{fallback}", file=sys.stderr, flush=True)
    return fallback


def shipped_registry(config: ServiceConfig) -> Registry:
    """The shipped models by name, ``fashion-mnist``, ``photos`` and ``store`` (those that exist),
    warmed up; the store model is the default (uploads and the page are a store's photos)."""
    registry = Registry(config, Metrics(), RequestLog(config.request_log, config.log_sample_rate))
    for name, model_dir in SHIPPED_MODELS.items():
        if (Path(model_dir) / artifacts.MODEL_FILE).is_file():
            registry.add(load_version(name, 1, model_dir, config, registry.metrics))
    if not registry.models:
        raise ParameterError(f"no shipped model in {DEFAULT_MODEL_DIR.parent}; give {{}} or {{}}", "model_dir",
                             "model_repository")
    registry.default = next((name for name in (DEFAULT_SERVED, "photos") if name in registry.models), "fashion-mnist")
    return registry


def repository_registry(config: ServiceConfig):
    """The registry of ``config.model_repository`` after its first load, and its reloader."""
    from apparel.serve.reload import Reloader
    from apparel.serve.repository import Repository

    registry = Registry(config, Metrics(), RequestLog(config.request_log, config.log_sample_rate))
    reloader = Reloader(Repository(config.model_repository), registry)
    reloader.sync()
    if not registry.all_versions():  # a label on no served version is a status, not a failed start
        problems = [f"{name} {number}: {status.error}" for name, model in registry.models.items()
                    for number, status in model.status.items() if status.error]
        raise ValueError(f"nothing to serve in the model repository {config.model_repository}: "
                         + ("; ".join([reloader.error, *problems]).strip("; ")
                            or "it holds no <model>/<version>/model.keras"))
    return registry, reloader


def served_models(config: ServiceConfig, model_dir, litert) -> tuple[Predictor | Registry, object | None]:
    """What ``run_server`` serves, and the repository's reloader if it polls one: the repository's
    models, one run directory's (or ``.tflite``'s) model, or the shipped models by name."""
    if config.model_repository is not None:
        return repository_registry(config)
    if litert is not None:
        # Given alone, the export's own metadata (model.tflite.json) says what it is, as for
        # `apparel predict --litert`: the store model's folder would describe another model.
        named = model_dir is not None or os.environ.get(MODEL_DIR_ENV)
        return Predictor.from_litert(litert, served_model_dir(model_dir) if named else None), None
    if model_dir is not None or os.environ.get(MODEL_DIR_ENV):
        return load_predictor(served_model_dir(model_dir), runtime=config.runtime), None
    return shipped_registry(config), None


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
    """Load the models, then serve them until interrupted. With ``model_repository`` (a setting),
    the repository's models, polled for new versions; with ``model_dir`` (or ``litert``), that one
    model as ``apparel``; with neither, the shipped models by name (``store``, ``photos``,
    ``fashion-mnist``; the store model is also ``apparel``, as uploads and the page are a store's photos).

    ``settings`` are ``ServiceConfig`` fields (``max_batch=32``, ``grpc_port=8001``, …). The access
    log is off by default: at hundreds of requests a second it costs more than the requests.
    ``inference_threads`` sets TensorFlow's threads per operation (``None``: one per core).
    ``litert`` runs an exported ``.tflite`` of the model (``apparel export``) instead of Keras; the
    run directory it was exported from gives its input contract and metadata, the ``.tflite`` its
    version. Every version runs every batch size once (``warm_up_s``) before it takes traffic.

    On a loopback ``host`` only loopback Host names are answered (DNS rebinding); the API key is
    ``api_key`` or ``$APPAREL_API_KEY``, and serving beyond loopback without one prints a warning.
    The timeouts and caps of ``ServiceConfig`` apply; Ctrl-C (or SIGTERM) lets the requests in
    flight finish for up to ``shutdown_timeout_s``, then closes their connections.
    """
    # Reject a bad setting before the slow model load.
    config = bind_settings(ServiceConfig().replace(**settings), host)
    if config.desk_jobs is None:
        from apparel.desk.jobs import default_jobs_dir

        config = config.replace(desk_jobs=str(default_jobs_dir()))
    load_mapping(config.taxonomy)
    if config.model_repository is not None and (model_dir is not None or litert is not None):
        raise ParameterError("give {} (or {}) or {}, not both", "model_dir", "litert", "model_repository")
    check_can_listen(host, port)
    if inference_threads is not None and inference_threads < 1:
        raise ValueError(f"inference_threads must be at least 1, got {inference_threads}")
    if inference_threads is not None and config.runtime == "keras":  # LiteRT takes every usable core
        import tensorflow as tf

        # Only possible before TensorFlow starts its runtime, i.e. before the model is loaded.
        tf.config.threading.set_intra_op_parallelism_threads(inference_threads)
    models, reloader = served_models(config, model_dir, litert)
    grpc_address = None
    if config.grpc_port:
        grpc_address = f"[{host}]:{config.grpc_port}" if ":" in host else f"{host}:{config.grpc_port}"
    app = create_app(models, config, model_file=litert, reloader=reloader, grpc_address=grpc_address)
    # Each malformed upload would log a parser warning: the client already gets the reason.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    if isinstance(models, Predictor):
        warm_up(app.state.batcher.infer, config.max_batch, models.contract.shape, seconds=config.warm_up_s)
    # TensorFlow and Keras leave ~400,000 objects that live as long as the process; a full garbage
    # collection walking them pauses every request for ~200 ms. Frozen, they are never walked.
    gc.collect()
    gc.freeze()
    warning = exposure_warning(config, host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    serve(app, **server_options(config, host, port), access_log=access_log, log_level=log_level)
