"""What keeps other people's web pages and other machines' users out of the service.

A page on any site can make the visitor's browser send requests to a server on their own machine:
a multipart form POST needs no permission (``OriginMiddleware`` refuses one that names another
site as its ``Origin``), and a site whose name is re-pointed at 127.0.0.1 (DNS rebinding) can even
read the answers — unless the server refuses a ``Host`` that is not its own (Starlette's
``TrustedHostMiddleware``, with the loopback names on a loopback bind: ``bind_settings``). Beyond
loopback an API key keeps out whoever can reach the port (``ApiKeyMiddleware``), and
``exposure_warning`` says so when there is none.

    >>> config = bind_settings(ServiceConfig(), "127.0.0.1")
    >>> config.allowed_hosts
    ('127.0.0.1', 'localhost', '[::1]')
    >>> exposure_warning(ServiceConfig(), "0.0.0.0")
    'warning: serving on 0.0.0.0 without an API key: ...'
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from apparel.serve.config import API_KEY_ENV, ServiceConfig

# The names a browser on this machine uses for a loopback server, as Host headers spell them.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Methods a browser lets any page send across sites without asking the server first.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_settings(config: ServiceConfig, host: str, environ: Mapping[str, str] = os.environ) -> ServiceConfig:
    """``config`` completed for serving on ``host``: the API key from ``$APPAREL_API_KEY`` unless
    one is given, and on a loopback address only loopback Host names unless some are given."""
    changes = {}
    if config.api_key is None and environ.get(API_KEY_ENV, "").strip():
        changes["api_key"] = environ[API_KEY_ENV].strip()
    if not config.allowed_hosts and is_loopback(host):
        bound = f"[{host}]" if ":" in host else host.lower()
        changes["allowed_hosts"] = LOOPBACK_NAMES + ((bound,) if bound not in LOOPBACK_NAMES else ())
    return config.replace(**changes)


def exposure_warning(config: ServiceConfig, host: str) -> str | None:
    """A warning when ``host`` reaches beyond this machine and no API key is required."""
    if is_loopback(host) or config.api_key:
        return None
    return (f"warning: serving on {host} without an API key: anyone who can reach this port can use the model; "
            f"set ${API_KEY_ENV} (or the api_key setting) to require one, or serve on 127.0.0.1")


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ApiKeyMiddleware:
    """Every request but those to ``open_paths`` (health) must bring ``key``, as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; others get a 401. With ``login``
    (``apparel.serve.login.PageLogin``), the page's own requests may bring its session cookie
    instead, and a browser opening the page without either gets the login form."""

    def __init__(self, app, key: str, open_paths: frozenset[str], login=None):
        self.app = app
        self.key = key.encode()
        self.open_paths = open_paths
        self.login = login

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = key_refusal(headers.get("x-api-key"), headers.get("authorization"), self.key)
        if refusal and self.login is not None:
            if self.login.opens(scope, headers):
                return await self.app(scope, receive, send)
            if self.login.wants_form(scope, headers):
                return await self.login.form()(scope, receive, send)
        if refusal:
            return await error(401, refusal, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        await self.app(scope, receive, send)


def key_refusal(x_api_key: str | None, authorization: str | None, key: bytes) -> str | None:
    """Why a request that brings these headers (or gRPC metadata) is refused, or None when it
    brings ``key``: as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``."""
    given = x_api_key
    if given is None:
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if given is None:
        return "this server requires an API key: send Authorization: Bearer KEY or X-API-Key: KEY"
    # compare_digest: the time taken must not tell how much of a guess was right.
    return None if hmac.compare_digest(given.encode(), key) else "wrong API key"


class HostMiddleware:
    """Starlette's ``TrustedHostMiddleware`` when ``allowed_hosts`` are given, its refusal answered
    as every other client mistake: a JSON 400 that says which names are answered and how to add one
    (its own is the plain text "Invalid host header"). With or without them, a request with two
    Host headers is a 400 (RFC 9112 §3.2): every check reads the first, and the second could name
    anything."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] = ()):
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        async def passed(scope, receive, send):
            scope["apparel.host_passed"] = True
            await app(scope, receive, send)

        self.check = TrustedHostMiddleware(passed, allowed_hosts=list(allowed_hosts) or ["*"], www_redirect=False)
        self.message = (f"the Host header must name this server as {', '.join(allowed_hosts)}; to answer another "
                        "name, start the server with --allowed-hosts NAME,…")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.check(scope, receive, send)
        hosts = Headers(scope=scope).getlist("host")
        if len(hosts) > 1:
            return await error(400, "the request has more than one Host header; send one")(scope, receive, send)
        if not hosts and scope.get("http_version") == "1.0" and scope.get("server"):
            # HTTP/1.0 needs no Host, and simple probes send none: the address it reached is the
            # name (a browser, whose page a rebound name could serve, always sends one).
            host, port = scope["server"][0], scope["server"][1]
            named = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            scope = {**scope, "headers": [*scope["headers"], (b"host", named.encode("latin-1"))]}
        refused = False

        async def sending(message):
            nonlocal refused
            if message["type"] == "http.response.start" and not scope.get("apparel.host_passed"):
                refused = True  # the check's own answer: ours goes instead
                return await error(400, self.message)(scope, receive, send)
            if not refused:
                await send(message)

        await self.check(scope, receive, sending)


class OriginMiddleware:
    """Refuses requests that change something (POST, …) sent by a browser from a page of another
    origin than the server's own or ``allowed_origins``. Clients that are not browsers send no
    ``Origin`` and pass."""

    def __init__(self, app, allowed_origins: tuple[str, ...] = ()):
        self.app = app
        self.allowed_origins = {origin.lower().rstrip("/") for origin in allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origins = headers.getlist("origin")
        if len(origins) > 1:  # no browser sends two, and only the first would be judged
            return await error(400, "the request has more than one Origin header; send one")(scope, receive, send)
        origin = origins[0] if origins else None
        if origin is not None and not self.allowed(origin, headers.get("host", "")):
            message = (f"requests from pages of another site (Origin: {origin}) are refused; open the service's own "
                       "page, or ask its operator to allow this origin (allowed_origins)")
            return await error(403, message)(scope, receive, send)
        await self.app(scope, receive, send)

    def allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.allowed_origins:
            return True
        # The service's own page: the Origin names the host and port the request went to. (An
        # opaque origin, "null", names none.) The scheme is not compared: a TLS proxy in front
        # changes it, and the Host check already decides which names are this server.
        return origin != "null" and bool(host) and urlsplit(origin).netloc == host.strip().lower()
