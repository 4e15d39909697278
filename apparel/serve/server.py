"""The HTTP server's side of the limits: read timeouts, the connection cap and graceful shutdown.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and the shutdown
(``timeout_graceful_shutdown``), but not the time a client takes to send a request: one that sends
half its headers, or half its body, holds the connection as long as it likes. ``GuardedHttpProtocol``
is uvicorn's own httptools protocol with two timers added — the headers must arrive within
``header_timeout_s``, the body within ``body_timeout_s`` of the headers — a cap on open
connections, and a bound on a request's line and headers (``max_header_bytes``: a 414 or 431 as
soon as it is passed; neither httptools nor uvicorn bound them). ``server_options`` gives the keywords of ``uvicorn.run`` / ``uvicorn.Config`` that
apply a ``ServiceConfig``:

    >>> uvicorn.run(app, **server_options(ServiceConfig(header_timeout_s=5), "127.0.0.1", 8000))
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apparel.errors import ParameterError
from apparel.serve.config import ServiceConfig


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose head is over the limit."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (one instance per connection) with read timeouts, a connection
    cap and a bounded request head; ``settings`` is set by ``protocol_class``."""

    settings: ServiceConfig = ServiceConfig()
    read_timer: asyncio.TimerHandle | None = None
    # The head (request line and headers) being read: from the connection's start, and from each
    # request's end, until the next request's headers are complete.
    in_head: bool = True
    head_bytes: int = 0  # bytes of reads that fell inside the head, whole headers or not
    header_bytes: int = 0  # bytes of the whole headers handed over
    messages_completed: int = 0
    refusal: int | None = None  # the status a too-large head is answered with

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            self.refuse(503, b"retry-after: %d\r\n" % self.settings.retry_after_s)
            return
        # Armed now, not at the first byte: a client that connects and sends nothing is slow too.
        self.arm_read_timer(self.settings.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        head_before, completed_before = self.in_head, self.messages_completed
        super().data_received(data)
        # httptools hands a header over only once it is whole, so its bytes are counted as they
        # come: all of a chunk that starts and ends inside one request's head is head. A chunk
        # that also ends a request is left out; the bound is then off by at most one read.
        if head_before and self.in_head and self.messages_completed == completed_before:
            self.head_bytes += len(data)
            if self.head_bytes > self.settings.max_header_bytes and not self.transport.is_closing():
                self.refuse(431)
        # uvicorn stops its keep-alive timer on any bytes, expecting a request to start; bytes that
        # start none (the rest of a body already answered with a 413 or 415, blank lines) leave the
        # connection idle with no timer at all, open for good. Idle again: the keep-alive limit again.
        idle = self.cycle is None or self.cycle.response_complete
        if (idle and self.read_timer is None and self.timeout_keep_alive_task is None
                and not self.transport.is_closing()):
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.settings.max_header_bytes:
            self.refusal = 414
            raise HeadTooLarge  # stops the parser; uvicorn's answer to a parser error is replaced below

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if len(self.url) + self.header_bytes > self.settings.max_header_bytes:
            self.refusal = 431
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self.refusal is None:
            super().send_400_response(msg)
        else:
            self.refuse(self.refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_read_timer(self.settings.header_timeout_s)  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.arm_read_timer(self.settings.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.cancel_read_timer()
        self.in_head, self.head_bytes, self.header_bytes = True, 0, 0
        self.messages_completed += 1
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_read_timer()
        super().connection_lost(exc)

    def arm_read_timer(self, seconds: float) -> None:
        self.cancel_read_timer()
        self.read_timer = self.loop.call_later(seconds, self.read_timed_out)

    def cancel_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def read_timed_out(self) -> None:
        """The client was too slow: a 408 where no answer is being written or was given to the
        request being read, then the connection closed. A handler waiting for the rest of the body
        is told the client went away."""
        self.read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        # Its body still coming after an early answer (a 413, a 415): a 408 would be a second
        # answer to one request. (In a head, ``cycle`` is the last request's, answered.)
        answered = cycle is not None and cycle.response_complete and not self.in_head
        if answering or answered:
            self.transport.close()
        else:
            self.refuse(408)

    def refuse(self, status: int, extra_headers: bytes = b"") -> None:
        """Answer ``status`` with no body and close, outside any request (so not through the app)."""
        reason = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
                  503: b"Service Unavailable"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n%s\r\n"
                             % (status, reason, extra_headers))
        self.transport.close()


def protocol_class(settings: ServiceConfig) -> type[GuardedHttpProtocol]:
    """A ``GuardedHttpProtocol`` that applies ``settings`` (uvicorn makes one per connection)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"settings": settings})


def server_options(settings: ServiceConfig, host: str, port: int) -> dict:
    """Keywords of ``uvicorn.run`` and ``uvicorn.Config`` that serve on ``host:port`` with the
    timeouts and the connection cap of ``settings``. After ``shutdown_timeout_s`` uvicorn cancels
    the requests still running and closes their connections."""
    return {"host": host, "port": port, "http": protocol_class(settings),
            "timeout_keep_alive": settings.keep_alive_s, "timeout_graceful_shutdown": settings.shutdown_timeout_s}


def serving_server(app, **options):
    """A uvicorn server of ``app`` (``uvicorn.Config``'s ``options``) whose signal to stop (Ctrl-C,
    SIGTERM) also begins the service's own stop at once (``app.state.begin_stopping``): uvicorn only
    closes its listener then, and the lifespan's end, which marks the service not ready and stops
    gRPC, comes after every HTTP connection has drained."""
    import uvicorn

    class ServingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            begin = getattr(app.state, "begin_stopping", None)
            if begin is not None and not self.should_exit:
                begin()
            super().handle_exit(sig, frame)

    return ServingServer(uvicorn.Config(app, **options))


def serve(app, **options) -> None:
    """Serve ``app`` until stopped, as ``uvicorn.run`` (its ``options``), by ``serving_server``."""
    serving_server(app, **options).run()


def check_can_listen(host: str, port: int) -> None:
    """A ``ParameterError`` naming ``port`` and ``host`` when ``host:port`` cannot be listened on
    (taken, privileged, not this machine's address): said before the models load, not after."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
            probe.listen()
    except OSError as error:
        raise ParameterError(f"cannot listen on {host}:{port}: {error.strerror or error}; choose another {{}} (or "
                             "{})", "port", "host") from None
