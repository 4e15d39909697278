"""What every HTTP handler shares, whichever protocol it speaks: a bounded body, a checked
Content-Type, and the ``{"error": message}`` answer.

    >>> body = await read_body(request, limit=16 * 1024 * 1024)   # a 413 as soon as it is too big
    >>> require_content_type(request, "application/json")         # a 415 otherwise
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from apparel.images.fetch import length_header
from apparel.serve.payloads import RequestError

LARGE_BODY = 256 * 1024  # bodies from this size on are parsed on a worker thread, keeping the event loop free


def path_parameters(*names: str) -> dict:
    """OpenAPI's entries (for ``openapi_extra``) of the path parameters of a prediction route whose
    handler takes only the request and reads ``request.path_params`` itself: FastAPI's check of
    declared parameters costs each request some 12 µs of the app's ~200 (the model's time aside)."""
    return {"parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in names]}


class HeadAsGetMiddleware:
    """A HEAD request answered as its GET would be, without the body: HTTP asks every server for
    HEAD wherever it has GET, monitors and caches probe with it, and FastAPI's routes (unlike
    Starlette's own) answer it with a 405. A 405's ``Allow`` that names GET names HEAD too."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        head = scope["method"] == "HEAD"

        async def answer(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                message = {**message, "headers": [(name, with_head(value) if name.lower() == b"allow" else value)
                                                  for name, value in message.get("headers", [])]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # the GET's Content-Length stays, as HEAD's should
            await send(message)

        await self.app({**scope, "method": "GET"} if head else scope, receive, answer)


def with_head(allow: bytes) -> bytes:
    """An ``Allow`` header's value with HEAD beside GET."""
    methods = [method.strip() for method in allow.split(b",")]
    return allow + b", HEAD" if b"GET" in methods and b"HEAD" not in methods else allow


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed ``limit`` bytes, and with
    a 415 when it comes compressed (gzip from tritonclient was misread as a JSON header's length,
    and a plain body labelled gzip answered as if unlabelled)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(415, f"Content-Encoding {encoding} is not accepted; send the body uncompressed")
    declared = length_header(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise RequestError(413, f"the body is {declared:,} bytes; the limit is {limit:,}")
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


CLIENT_GONE = 499  # nginx's "client closed request": no one reads the answer; the metrics and the log do


async def while_client_waits(request: Request, work):
    """Await ``work`` (a coroutine) while the client is still there; if it goes away first (its own
    timeout, a closed tab), ``work`` is cancelled (its wait for the model leaves the queue) and the
    request ends as a ``CLIENT_GONE``. Else a client that gave up was still computed for and counted
    a 200: under load, the work of the clients that gave up and came back delays everyone's."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((job, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:  # the answer, the client gone, or this request cancelled (its deadline): neither is left running
        gone.cancel()
        job.cancel()
        # Their ends awaited, so that a wait for the model has left the queue when the request ends.
        await asyncio.gather(job, gone, return_exceptions=True)
    if not job.cancelled():
        return job.result()  # its answer, or its error
    raise RequestError(CLIENT_GONE, "the client went away before the answer")


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone. Called once the body is read: the server's next message is
    then the disconnect, sent when the client closes its connection (or once the answer is sent)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def require_content_type(request: Request, *expected: str) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in expected:
        raise RequestError(415, f"Content-Type must be {' or '.join(expected)}, got {content_type or 'none'}")
    return content_type
