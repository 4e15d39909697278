"""The web page behind an API key: a login form, and a session cookie that opens the page.

A browser cannot add ``X-API-Key`` to a page it navigates to, and a key in the URL would land in
histories and logs. So, with a key set, ``GET /`` without one shows a small form (to a browser:
a request that accepts ``text/html``; other clients still get the JSON 401); the form POSTs the
key to ``/login`` (same origin: ``OriginMiddleware`` applies), which, for the right key, sets a
session cookie and sends the browser back to ``/``. The cookie is an HMAC of the key under a
secret drawn when the app is built — never the key — so a restart signs everyone out; it is
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it) and opens
only what the page uses (``PageLogin.opens``). A wrong key: the form again, a 401, no cookie.

    >>> login = PageLogin.for_key("s3cret")
    >>> app.add_middleware(ApiKeyMiddleware, key="s3cret", open_paths=..., login=login)
    >>> add_login_routes(app, login)
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse

from apparel.serve.handling import read_body, require_content_type
from apparel.serve.security import key_refusal

SESSION_COOKIE = "apparel_session"
LOGIN_PATH = "/login"
MAX_FORM_BYTES = 4096  # a key of a few hundred characters, form-encoded
# What the page itself loads and sends: the cookie opens these, the API key everything.
PAGE_REQUESTS = frozenset({("GET", "/"), ("HEAD", "/"), ("POST", "/predict"), ("GET", "/v1/models/apparel/metadata")})
PAGE_FILES = "/static/"  # GET and HEAD only
DESK_PATHS = ("/desk", "/desk/")  # the desk's page and everything its page sends (uploads, decisions)
# The form has no script and no style of its own: the page's policy refuses inline ones.
FORM_POLICY = "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
FORM = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>apparel — sign in</title></head>
<body>
<h1>apparel</h1>
<p>This service requires an API key.</p>
{error}<form method="post" action="/login">
<label>API key <input id="key" name="key" type="password" autocomplete="current-password" required autofocus></label>
<button type="submit">Open</button>
</form>
</body>
</html>
"""


@dataclass(frozen=True)
class PageLogin:
    """The key a browser signs in with and the session token its cookie then carries."""

    key: bytes
    session: bytes  # HMAC-SHA256 of the key under a per-app random secret, in hex

    @classmethod
    def for_key(cls, key: str) -> "PageLogin":
        secret = secrets.token_bytes(32)
        session = hmac.new(secret, b"apparel page session\0" + key.encode(), hashlib.sha256).hexdigest()
        return cls(key.encode(), session.encode())

    def opens(self, scope, headers: Headers) -> bool:
        """Whether the request is one of the page's own and carries this server's session cookie."""
        method, path = scope["method"], scope["path"]
        if (method, path) not in PAGE_REQUESTS and not (method in ("GET", "HEAD") and path.startswith(PAGE_FILES)) \
                and not (path == DESK_PATHS[0] or path.startswith(DESK_PATHS[1])):
            return False
        given = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE, "")
        # compare_digest: how long the check takes must not tell how much of a forgery was right.
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.session)

    def form(self) -> HTMLResponse:
        """The login form, a 401: what a browser opening the page without a session sees."""
        return form_response()

    def wants_form(self, scope, headers: Headers) -> bool:
        """Whether a refused request is a browser opening the page (it gets the form, not JSON)."""
        return (scope["method"] in ("GET", "HEAD") and scope["path"] in ("/", DESK_PATHS[0])
                and "text/html" in headers.get("accept", ""))


def form_response(error: str = "", status: int = 401) -> HTMLResponse:
    """The login form, with ``error`` above it when there is one."""
    shown = f'<p id="login-error" role="alert">{html.escape(error)}</p>\n' if error else ""
    return HTMLResponse(FORM.format(error=shown), status_code=status,
                        headers={"Content-Security-Policy": FORM_POLICY, "Cache-Control": "no-store",
                                 "WWW-Authenticate": "Bearer"})


def add_login_routes(app, login: PageLogin) -> None:
    """``GET /login``, the form; ``POST /login``, the key → a session cookie and back to ``/``."""
    @app.get(LOGIN_PATH, include_in_schema=False)
    async def login_form():
        return form_response(status=200)

    @app.post(LOGIN_PATH, include_in_schema=False)
    async def sign_in(request: Request):
        require_content_type(request, "application/x-www-form-urlencoded")
        body = await read_body(request, MAX_FORM_BYTES)
        given = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("key", [""])[0]
        if not given:
            return form_response("enter the API key")
        # The same constant-time check as the X-API-Key header's.
        if key_refusal(given, None, login.key) is not None:
            return form_response("wrong API key")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, login.session.decode(), path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        response.headers["Cache-Control"] = "no-store"
        return response
