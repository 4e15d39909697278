"""Admission control: how many prediction requests the service works on at once.

Each prediction request may buffer a body of ``max_body_bytes`` and decode photos, so their number
bounds the memory. Past ``limit`` the next one is answered at once with a 503 and ``Retry-After``,
before its body is read: under overload the requests taken are answered in time and the others
know to come back, instead of everyone waiting and timing out.

    >>> app.add_middleware(AdmissionMiddleware, limit=64, retry_after=1)
"""

from __future__ import annotations

from starlette.responses import JSONResponse

# Requests that only read (the page, metadata, health, metrics) are cheap, and health and metrics
# are what an operator needs most while the service is overloaded: only these are counted.
COUNTED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def busy_response(message: str, retry_after: int) -> JSONResponse:
    """The service's 503: ``{"error": message}`` and when to try again."""
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry_after)})


class AdmissionMiddleware:
    """At most ``limit`` requests of ``COUNTED_METHODS`` in the app at once; more get a 503 (plain
    ASGI, on the one event loop: the counter needs no lock)."""

    def __init__(self, app, limit: int, retry_after: int):
        self.app = app
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in COUNTED_METHODS:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            response = busy_response(f"the server is busy with {self.active} requests, the most it takes at once; "
                                     f"try again in {self.retry_after} s", self.retry_after)
            return await response(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
