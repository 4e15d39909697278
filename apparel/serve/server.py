"""The HTTP server's side of the limits: read timeouts, the connection cap and graceful shutdown.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and the shutdown
(``timeout_graceful_shutdown``), but not the time a client takes to send a request: one that sends
half its headers, or half its body, holds the connection as long as it likes. ``GuardedHttpProtocol``
is uvicorn's own httptools protocol with two timers added — the headers must arrive within
``header_timeout_s``, the body within ``body_timeout_s`` of the headers — and a cap on open
connections. ``server_options`` gives the keywords of ``uvicorn.run`` / ``uvicorn.Config`` that
apply a ``ServiceConfig``:

    >>> uvicorn.run(app, **server_options(ServiceConfig(header_timeout_s=5), "127.0.0.1", 8000))
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apparel.errors import ParameterError
from apparel.serve.config import ServiceConfig


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (one instance per connection) with read timeouts and a
    connection cap; ``settings`` is set by ``protocol_class``."""

    settings: ServiceConfig = ServiceConfig()
    read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            self.refuse(503, b"retry-after: %d\r\n" % self.settings.retry_after_s)
            return
        # Armed now, not at the first byte: a client that connects and sends nothing is slow too.
        self.arm_read_timer(self.settings.header_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_read_timer(self.settings.header_timeout_s)  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self.arm_read_timer(self.settings.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.cancel_read_timer()
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
        """The client was too slow: a 408 where no answer is being written, then the connection
        closed. A handler waiting for the rest of the body is told the client went away."""
        self.read_timer = None
        if self.transport.is_closing():
            return
        answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        if answering:
            self.transport.close()
        else:
            self.refuse(408)

    def refuse(self, status: int, extra_headers: bytes = b"") -> None:
        """Answer ``status`` with no body and close, outside any request (so not through the app)."""
        reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
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
