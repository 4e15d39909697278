"""The service's limits and batching: ``ServiceConfig``, one frozen dataclass.

Kept apart from the app so that the CLI builds ``apparel serve``'s flags without importing FastAPI.

    >>> from apparel.serve.config import ServiceConfig
    >>> ServiceConfig(max_batch=32).max_wait_ms
    2.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from apparel.config import Config, option
from apparel.images.decode import MAX_PIXELS


@dataclass(frozen=True)
class ServiceConfig(Config):
    """Limits and batching of the service; every field is also a keyword of ``create_app``."""

    KEY_NAME: ClassVar[str] = "service setting"

    max_body_bytes: int = option(16 * 1024 * 1024, "largest request body accepted, bytes; more is a 413", minimum=1)
    max_instances: int = option(256, "images in one :predict request; more is a 413", minimum=1)
    max_files: int = option(16, "files in one /predict upload; more is a 413", minimum=1)
    max_pixels: int = option(MAX_PIXELS, "a photo's width × height above this is refused (decompression bombs)",
                             minimum=1)
    max_decoding: int = option(4, "photos decoded at once (a 40-megapixel photo takes ~160 MB to decode)", minimum=1)
    max_batch: int = option(64, "images per model call", minimum=1)
    max_wait_ms: float = option(2.0, "how long a request that finds the model idle waits for others to join it",
                                minimum=0.0)
    top_k: int = option(3, "classes listed per photo by /predict unless ?top_k= says otherwise", minimum=1)
    taxonomy: str | None = option(None, "class → store category CSV (default: the shipped apparel/shop/taxonomy.csv)")
