"""Fetching an http(s) URL safely: the one place the project reaches the network for images.

URL fetching is for images named by users and by product catalogs, so it is careful: http and https
only, a deadline, a size cap, a redirect limit, and no private, loopback or link-local address (the
resolved address is checked, on every redirect, and is the one connected to) unless
``allow_private``.

    >>> from apparel.images.fetch import FetchConfig, fetch_url
    >>> jpeg = fetch_url("https://cdn.shopify.com/s/files/shirt.jpg", FetchConfig(timeout=5))
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from apparel.config import Config, option
from apparel.errors import URL_PATTERN, SourceError

FETCHED_SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_TIMEOUT = 3600.0  # an hour per photo is already no limit; far larger waits overflow the clock's type
# Only this IPv6 block is global unicast; the rest is special-purpose (IPv4-compatible ::/96,
# site-local fec0::/10, local-use NAT64 64:ff9b:1::/48 whose IPv4 position the operator picks, …).
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
NAT64_V6 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 address is the last 32 bits
# Characters left as they are in a request target: RFC 3986 reserved ones, and '%' for escapes already made.
TARGET_SAFE = "/?:@!$&'()*+,;=~%"


@dataclass(frozen=True)
class FetchConfig(Config):
    """How URLs are fetched."""

    timeout: float = option(10.0, "seconds allowed per URL: connect, redirects and body", minimum=0.001,
                            maximum=MAX_TIMEOUT)
    max_bytes: int = option(20 * 1024**2, "larger bodies are refused (20 MiB is ample for a product photo)", minimum=1)
    max_redirects: int = option(5, "redirects followed before giving up", minimum=0)
    allow_private: bool = option(False, "also fetch URLs on private, loopback and link-local addresses")
    user_agent: str = option("apparel", "the User-Agent header sent")


def is_url(text: str) -> bool:
    """True for anything of the form ``scheme://…`` (only http and https are then fetched)."""
    return bool(URL_PATTERN.match(text))


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is public unicast; an IPv6 address that carries an IPv4 one (mapped,
    6to4, Teredo's server and client, NAT64) is judged by the IPv4 addresses its packets reach."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in NAT64_V6:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        embedded = [inner for inner in embedded if inner is not None]
        if embedded:
            return all(_is_public(inner) for inner in embedded)
        if address not in GLOBAL_UNICAST_V6:
            return False
    return address.is_global and not address.is_multicast


def _getaddrinfo(host: str, port: int, timeout: float | None) -> list:
    """``socket.getaddrinfo``, given up after ``timeout`` seconds (``TimeoutError``): the lookup
    itself cannot be interrupted, so it runs in a daemon thread that is left to finish alone."""
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    outcome: list = []

    def lookup():
        try:
            outcome.append((socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), None))
        except BaseException as error:  # noqa: BLE001 — handed to the caller's thread
            outcome.append((None, error))

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if not outcome:
        raise TimeoutError(f"no answer within {timeout:g} s")
    infos, error = outcome[0]
    if error is not None:
        raise error
    return infos


def checked_addresses(host: str, port: int, allow_private: bool = False, timeout: float | None = None) -> list[str]:
    """The addresses ``host`` resolves to; ``ValueError`` if any is private, loopback, link-local
    or otherwise not public (unless ``allow_private``), or if it does not resolve (within
    ``timeout`` seconds, when given)."""
    try:
        infos = _getaddrinfo(host, port, timeout)
    except TimeoutError:
        raise ValueError(f"cannot resolve host {host!r}: timed out") from None
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"cannot resolve host {host!r} ({error})") from None
    addresses = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not allow_private and not _is_public(address):
            raise ValueError(
                f"{host} resolves to {address}, a private, loopback or link-local address; refused: images are "
                "fetched from the internet only, unless your own network is allowed (--allow-private with predict, "
                "preprocess, catalog and batch; allow_private=True in Python)"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise ValueError(f"cannot resolve host {host!r}")
    return addresses


def _pinned_pool(scheme: str, address: str, port: int, host: str, seconds: float):
    """A one-connection pool to the checked ``address`` that still verifies ``host``'s certificate."""
    import urllib3

    timeout = urllib3.Timeout(connect=seconds, read=seconds)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           cert_reqs="CERT_REQUIRED", server_hostname=host, assert_hostname=host)
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def fetch_url(url: str, config: FetchConfig = FetchConfig()) -> bytes:
    """The body of an http(s) URL, within ``config``'s deadline, size cap and redirect limit.

    The host is resolved and checked first, and the connection goes to that checked address (so a
    second DNS answer cannot swap in a private one). The deadline covers the whole fetch: the DNS
    lookups, connections, redirects and body. Raises ``ValueError`` with the reason.

    >>> jpeg = fetch_url("https://cdn.shopify.com/s/files/shirt.jpg")
    """
    import http.client

    import urllib3

    deadline = time.monotonic() + config.timeout
    timed_out = SourceError(url, f"timed out after {config.timeout:g} s")
    current = url
    for _ in range(config.max_redirects + 1):
        scheme, host, port, host_header, target = _request_parts(current)
        if deadline <= time.monotonic():
            raise timed_out
        address = checked_addresses(host, port, config.allow_private, timeout=deadline - time.monotonic())[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out
        pool, watchdog = _pinned_pool(scheme, address, port, host, remaining), _Watchdog(remaining)
        pool.ConnectionCls = watchdog.watching(pool.ConnectionCls)
        headers = {"Host": host_header, "User-Agent": config.user_agent, "Accept": "image/*",
                   "Accept-Encoding": "identity"}
        try:
            with watchdog, pool:
                response = pool.urlopen("GET", target, headers=headers, redirect=False, retries=False,
                                        preload_content=False, assert_same_host=False)
                try:
                    if response.status in REDIRECT_STATUSES and response.headers.get("Location"):
                        current = urljoin(current, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise SourceError(url, f"HTTP {response.status} {response.reason or ''}".rstrip())
                    body = _read_body(response, url, config, deadline)
                finally:
                    response.release_conn()
                if watchdog.expired:  # the body ended because the watchdog cut the connection
                    raise timed_out
                return body
        except urllib3.exceptions.NewConnectionError as error:  # before TimeoutError: a subclass of it
            if watchdog.expired:
                raise timed_out from None
            raise SourceError(url, f"cannot connect to {host}:{port} ({error.__cause__ or error})") from None
        except urllib3.exceptions.TimeoutError:
            raise timed_out from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, UnicodeError) as error:
            if watchdog.expired:
                raise timed_out from None
            raise SourceError(url, f"cannot fetch ({type(error).__name__}: {error})") from None
    raise SourceError(url, f"more than {config.max_redirects} redirects")


def _request_parts(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, Host header, request target) of an http(s) URL, as sent: the host
    IDNA-encoded, the path and query percent-encoded, credentials left out. ``ValueError`` names
    the URL and what is wrong with it.

    >>> _request_parts("https://bücher.example/a shirt.jpg?q=ü")
    ('https', 'xn--bcher-kva.example', 443, 'xn--bcher-kva.example', '/a%20shirt.jpg?q=%C3%BC')
    """
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise SourceError(url, f"not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in FETCHED_SCHEMES:
        raise SourceError(url, "only http and https URLs are fetched")
    if not parts.hostname:
        raise SourceError(url, "no host in the URL")
    try:
        port = parts.port
    except ValueError:
        raise SourceError(url, "bad port in the URL") from None
    if port == 0:  # falsy, it would otherwise read as "no port" and go to the scheme's default
        raise SourceError(url, "port 0 in the URL; a port is 1 to 65535")
    if port is None:
        port = 443 if scheme == "https" else 80
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # the codec getaddrinfo itself uses
        except UnicodeError as error:
            raise SourceError(url, f"{parts.hostname!r} is not a valid host name ({error})") from None
    host_header = f"[{host}]" if ":" in host else host  # never send credentials embedded in a URL
    if parts.port is not None:
        host_header += f":{parts.port}"
    target = quote(parts.path or "/", safe=TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=TARGET_SAFE)
    return scheme, host, port, host_header, target


class _Watchdog:
    """Shuts the connection down when the deadline passes, so no step of a fetch can outlast it: a
    socket timeout bounds each ``recv`` only, and a server trickling a byte at a time resets it.

    ``pool.ConnectionCls = watchdog.watching(pool.ConnectionCls)``, then ``with watchdog: …``.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def watching(self, connection_class: type) -> type:
        """``connection_class`` whose new sockets this watchdog watches."""
        watchdog = self

        class Watched(connection_class):
            def _new_conn(self):
                sock = super()._new_conn()
                watchdog.watch(sock)
                return sock

        return Watched

    def watch(self, sock: socket.socket) -> None:
        # A descriptor of our own for the socket: it stays valid when TLS wraps (and detaches) the
        # socket or urllib3 closes it, so a late shutdown never hits a reused descriptor.
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            if self._timer is not None:
                self.expired = True
                self._shutdown()

    def _shutdown(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once
            except OSError:
                pass  # already closed by the other end

    def __enter__(self) -> _Watchdog:
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._timer.cancel()
            self._timer = None
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def length_header(value: str | None) -> int | None:
    """A length header's number (Content-Length, V2's Inference-Header-Content-Length); None when it
    is no run of ASCII digits ("²" is a digit to ``str.isdigit``). Past 18 digits, longer than any
    body, it reads as ``sys.maxsize``: Python refuses to read an int of thousands of digits."""
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else sys.maxsize


def _read_body(response, url: str, config: FetchConfig, deadline: float) -> bytes:
    declared = length_header(response.headers.get("Content-Length"))
    if declared is not None and declared > config.max_bytes:
        raise SourceError(url, f"{declared:,} bytes, over the limit of {config.max_bytes:,}")
    chunks, size = [], 0
    for chunk in response.stream(64 * 1024, decode_content=False):
        size += len(chunk)
        if size > config.max_bytes:
            raise SourceError(url, f"more than {config.max_bytes:,} bytes; refused")
        if time.monotonic() > deadline:
            raise SourceError(url, f"timed out after {config.timeout:g} s")
        chunks.append(chunk)
    return b"".join(chunks)
