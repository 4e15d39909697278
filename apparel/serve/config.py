"""The service's limits and batching: ``ServiceConfig``, one frozen dataclass.

Kept apart from the app so that the CLI builds ``apparel serve``'s flags without importing FastAPI.

    >>> from apparel.serve.config import ServiceConfig
    >>> ServiceConfig(max_batch=32).max_wait_ms
    2.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from apparel.config import Config, option
from apparel.errors import ParameterError
from apparel.images.decode import MAX_DECODE_BYTES, MAX_PIXELS
from apparel.inference.runtime import DEFAULT_RUNTIME, RUNTIMES

# Where `apparel serve` reads the API key when --api-key is not given: a flag's value is visible
# to every user of the machine (`ps`), an environment variable only to the server's own user.
API_KEY_ENV = "APPAREL_API_KEY"


@dataclass(frozen=True)
class ServiceConfig(Config):
    """Limits and batching of the service; every field is also a keyword of ``create_app``.

    Fields marked ``private`` are not shown by the metadata endpoint: a key, a file path on the
    server, the names it answers to are nobody's business but the operator's.
    """

    KEY_NAME: ClassVar[str] = "service setting"

    runtime: str = option(DEFAULT_RUNTIME, "litert: each model's LiteRT artefact, made once beside it (no TensorFlow "
                                           "for the models); keras: the Keras models", choices=RUNTIMES)
    max_body_bytes: int = option(16 * 1024 * 1024, "largest request body accepted, bytes; more is a 413", minimum=1)
    max_instances: int = option(256, "images in one :predict request; more is a 413", minimum=1)
    max_response_bytes: int = option(64 * 1024 * 1024, "largest answer of a V2 or gRPC inference, bytes, reckoned "
                                                       "before the model runs; a request whose answer would be "
                                                       "larger is a 413", minimum=1)
    max_files: int = option(16, "files in one /predict upload; more is a 413", minimum=1)
    max_pixels: int = option(MAX_PIXELS, "a photo's width × height above this is refused (decompression bombs)",
                             minimum=1)
    max_decoding: int = option(4, "photos decoded at once (each within max_decode_bytes)", minimum=1)
    max_decode_bytes: int = option(MAX_DECODE_BYTES, "memory one photo may take to decode (pixels × bytes per pixel, "
                                                     "from its header); more is a 422", minimum=1)
    max_request_decode_bytes: int = option(512 * 1024**2, "memory all the photos of one request may take to decode, "
                                                          "together; more is a 413", minimum=1)
    max_batch: int = option(64, "images per model call", minimum=1)
    max_wait_ms: float = option(2.0, "how long a request that finds the model idle waits for others to join it",
                                minimum=0.0)
    top_k: int = option(3, "classes listed per photo by /predict unless ?top_k= says otherwise", minimum=1)
    taxonomy: str | None = option(None, "class → store category CSV (default: the shipped apparel/shop/taxonomy.csv)",
                                  private=True)

    # Admission control: each prediction request may hold a body of max_body_bytes, so their
    # number bounds the memory; a full queue answers at once rather than late.
    max_concurrent_requests: int = option(64, "prediction requests (POST) handled at once; more are answered 503 "
                                              "with Retry-After", minimum=1)
    max_queued_images: int = option(2048, "images waiting for the model; a request that would go past it is "
                                          "answered 503 with Retry-After", minimum=1)
    max_connections: int = option(1024, "open connections; a new one past it is answered 503 and closed", minimum=1)
    retry_after_s: int = option(1, "the Retry-After of a 503: seconds a client should wait before trying again",
                                minimum=0)
    request_deadline_s: float = option(30.0, "seconds from a request's body to its answer; a request not answered "
                                             "by then (the queue was long) gets a 503", minimum=0.001)

    # Timeouts: a client that sends slowly must not hold a connection (and its memory) forever.
    header_timeout_s: float = option(10.0, "seconds a client has to send a request's headers; slower is a 408 and "
                                           "the connection closed", minimum=0.001)
    body_timeout_s: float = option(60.0, "seconds a client has to send a request's body once its headers are in; "
                                         "slower is a 408 and the connection closed", minimum=0.001)
    max_header_bytes: int = option(32 * 1024, "largest request line plus headers, bytes; a longer URL is a 414 and "
                                              "longer headers a 431, as soon as they are seen (before the key is "
                                              "checked)", minimum=1024)
    keep_alive_s: float = option(5.0, "seconds an idle keep-alive connection stays open", minimum=0.001)
    shutdown_timeout_s: float = option(10.0, "on Ctrl-C / SIGTERM, seconds to finish requests in flight before "
                                             "closing their connections", minimum=0.0)

    # Browsers: a page on another site may send requests to a local server (DNS rebinding, forms).
    allowed_hosts: tuple[str, ...] = option((), "Host header names answered (e.g. apparel.example.com,localhost); "
                                                "default: only loopback names on a loopback address, any elsewhere",
                                            private=True)
    allowed_origins: tuple[str, ...] = option((), "web origins besides the service's own whose pages may POST to "
                                                  "it (e.g. https://shop.example.com)", private=True)
    api_key: str | None = option(None, f"key every request but health must bring (Authorization: Bearer KEY or "
                                       f"X-API-Key: KEY); default ${API_KEY_ENV}, which other users cannot see "
                                       "as they can a flag", private=True)

    # Models: several by name, versions hot-reloaded from a TF Serving-layout repository.
    model_repository: str | None = option(None, "folder of <model>/<version>/ run directories (TF Serving's layout; "
                                                "models.json for version policies and labels), polled for new "
                                                "versions; default: the shipped models store (the default), photos and fashion-mnist",
                                          private=True)
    poll_interval_s: float = option(5.0, "seconds between two looks at the model repository for new or removed "
                                         "versions", minimum=0.05)
    warm_up_s: float = option(10.0, "seconds a version spends running every batch size once before it takes "
                                    "traffic", minimum=0.0)

    # Protocols and operations.
    grpc_port: int = option(0, "port of the gRPC services (Open Inference Protocol and TF Serving's "
                               "PredictionService); 0: no gRPC", minimum=0, maximum=65535)
    log_sample_rate: float = option(0.0, "share of predictions written to --request-log (0 to 1)",
                                    minimum=0.0, maximum=1.0)
    request_log: str | None = option(None, "JSON-lines file the sampled predictions are appended to (inputs "
                                           "summarised, never stored)", private=True)

    # The merchant's desk (/desk): catalogs uploaded as jobs that outlive a restart.
    desk_jobs: str | None = option(None, "folder of the desk's jobs (each uploaded catalog, its progress and the "
                                         "merchant's decisions); apparel serve's default: "
                                         "$XDG_STATE_HOME/apparel/desk, else ~/.local/state/apparel/desk",
                                   private=True)
    desk_max_jobs: int = option(100, "jobs the desk keeps at most; an upload beyond is refused until finished "
                                     "ones are deleted", minimum=1)
    images_dir: str | None = option(None, "folder that local image paths in the desk's uploaded CSVs resolve "
                                          "inside (default: none; only image URLs are read)", private=True)

    def check(self) -> None:
        largest = max(self.max_instances, self.max_files)
        if self.max_queued_images < largest:
            raise ParameterError(f"{{}} must be at least {{}} and {{}} ({largest}): one full request must fit, "
                                 f"got {self.max_queued_images}", "max_queued_images", "max_instances", "max_files")
        if self.api_key is not None and not self.api_key.strip():
            raise ParameterError("{} is empty; give a key, or none to serve without one", "api_key")
        # A key clients cannot send locks everyone out: HTTP headers and gRPC metadata carry
        # printable ASCII only, and their parsers drop the spaces around a value.
        if self.api_key is not None and (not all(" " <= character <= "~" for character in self.api_key)
                                         or self.api_key != self.api_key.strip()):
            raise ParameterError(f"{{}} must be printable ASCII (letters, digits, punctuation) with no space or tab "
                                 f"around it: clients could not send this key, as HTTP headers and gRPC metadata "
                                 f"carry nothing else; choose another (the flag, or ${API_KEY_ENV})", "api_key")

    def limits(self) -> dict:
        """The settings a client may see (the metadata endpoint): all but the private ones."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if not field.metadata.get("private")}
