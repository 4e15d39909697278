"""Where images come from: files, folders, glob patterns and http(s) URLs, read safely and in batches.

    >>> from apparel.sources import expand_sources, predict_sources
    >>> sources = expand_sources(["photos/", "*.jpg", "https://example.com/shirt.jpg"])
    >>> results = predict_sources(sources, Predictor.from_dir("runs/reference"), top_k=3)
    >>> results[0]
    {'file': 'photos/a.jpg', 'label': 'Shirt', 'probability': 0.91, 'top_k': [...]}

URL fetching is for images named by users and by product catalogs, so it is careful: http and https
only, a deadline, a size cap, a redirect limit, and no private, loopback or link-local address (the
resolved address is checked, on every redirect, and is the one connected to) unless
``allow_private``. Paths read from a catalog must stay inside its images directory.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urljoin, urlsplit

import numpy as np

# What a folder is searched for; a file named explicitly is tried whatever its suffix.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".npy"})
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
GLOB_CHARACTERS = re.compile(r"[*?\[]")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Only this IPv6 block is global unicast; the rest is special-purpose (IPv4-compatible ::/96,
# site-local fec0::/10, local-use NAT64 64:ff9b:1::/48 whose IPv4 position the operator picks, …).
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
NAT64_V6 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 address is the last 32 bits
# Characters left as they are in a request target: RFC 3986 reserved ones, and '%' for escapes already made.
TARGET_SAFE = "/?:@!$&'()*+,;=~%"


@dataclass(frozen=True)
class FetchConfig:
    """How URLs are fetched."""

    timeout: float = 10.0            # seconds for the whole fetch: connect, redirects and body
    max_bytes: int = 20 * 1024**2    # larger bodies are refused (20 MiB is ample for a product photo)
    max_redirects: int = 5           # redirects followed before giving up
    allow_private: bool = False      # also fetch from private, loopback and link-local addresses
    user_agent: str = "apparel"       # the User-Agent header sent


@dataclass(frozen=True)
class ImageSource:
    """One image to read: a local path or a URL, or the reason it cannot be read."""

    name: str                        # as shown to the user: the path or URL
    path: Path | None = None
    url: str | None = None
    error: str | None = None         # set when the source was refused before reading


def is_url(text: str) -> bool:
    """True for anything of the form ``scheme://…`` (only http and https are then fetched)."""
    return bool(URL_PATTERN.match(text))


def expand_sources(items: Iterable[str]) -> list[ImageSource]:
    """Files, folders (searched recursively for image files), glob patterns and URLs, in order.

    An item that names nothing becomes a source with an ``error``, so a run reports it and goes on.

    >>> [s.name for s in expand_sources(["shop/"])]
    ['shop/bags/tote.jpg', 'shop/dress.png']
    """
    sources: list[ImageSource] = []
    for item in items:
        item = str(item)
        if is_url(item):
            scheme = item.split("://", 1)[0].lower()
            if scheme in ("http", "https"):
                sources.append(ImageSource(item, url=item))
            else:
                sources.append(ImageSource(item, error=f"only http and https URLs are fetched, not {scheme}://"))
            continue
        path = Path(item)
        if path.is_dir():
            found = _images_in(path)
            sources.extend(ImageSource(str(p), path=p) for p in found)
            if not found:
                sources.append(ImageSource(item, error=f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"))
        elif path.is_file():
            sources.append(ImageSource(item, path=path))
        elif GLOB_CHARACTERS.search(item):
            matches = sorted(glob.glob(item, recursive=True))
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    sources.extend(ImageSource(str(p), path=p) for p in _images_in(match_path))
                elif match_path.is_file():
                    sources.append(ImageSource(match, path=match_path))
            if not matches:
                sources.append(ImageSource(item, error="no files match this pattern"))
        else:
            sources.append(ImageSource(item, error="file not found"))
    return sources


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def resolve_inside(value: str, images_dir: str | os.PathLike) -> Path:
    """A path read from a catalog, resolved inside ``images_dir``: absolute paths, ``..`` and
    symbolic links leading out are refused.

    >>> resolve_inside("shirts/blue.jpg", "images")
    PosixPath('/home/me/shop/images/shirts/blue.jpg')
    """
    text = value.strip()
    if not text:
        raise ValueError("empty image path")
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"{value}: absolute paths are refused; give a path relative to --images-dir")
    if ".." in posix.parts:
        raise ValueError(f"{value}: '..' is refused; image paths must stay inside --images-dir")
    root = Path(images_dir).resolve()
    resolved = (root / Path(*posix.parts)).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{value}: leads outside --images-dir {root} (through a symbolic link); refused")
    return resolved


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
                f"{host} resolves to {address}, a private, loopback or link-local address; refused "
                "(pass --allow-private to fetch from your own network)"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise ValueError(f"cannot resolve host {host!r}")
    return addresses


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
    timed_out = f"{url}: timed out after {config.timeout:g} s"
    current = url
    for _ in range(config.max_redirects + 1):
        scheme, host, port, host_header, target = _request_parts(current)
        if deadline <= time.monotonic():
            raise ValueError(timed_out)
        address = checked_addresses(host, port, config.allow_private, timeout=deadline - time.monotonic())[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ValueError(timed_out)
        timeout = urllib3.Timeout(connect=remaining, read=remaining)
        if scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address, port, timeout=timeout, retries=False, maxsize=1,
                cert_reqs="CERT_REQUIRED", server_hostname=host, assert_hostname=host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
        watchdog = _Watchdog(remaining)
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
                        raise ValueError(f"{url}: HTTP {response.status} {response.reason or ''}".rstrip())
                    body = _read_body(response, url, config, deadline)
                finally:
                    response.release_conn()
                if watchdog.expired:  # the body ended because the watchdog cut the connection
                    raise ValueError(timed_out)
                return body
        except urllib3.exceptions.NewConnectionError as error:  # before TimeoutError: a subclass of it
            if watchdog.expired:
                raise ValueError(timed_out) from None
            raise ValueError(f"{url}: cannot connect to {host}:{port} ({error.__cause__ or error})") from None
        except urllib3.exceptions.TimeoutError:
            raise ValueError(timed_out) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, UnicodeError) as error:
            if watchdog.expired:
                raise ValueError(timed_out) from None
            raise ValueError(f"{url}: cannot fetch ({type(error).__name__}: {error})") from None
    raise ValueError(f"{url}: more than {config.max_redirects} redirects")


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
        raise ValueError(f"{url}: not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{url}: only http and https URLs are fetched")
    if not parts.hostname:
        raise ValueError(f"{url}: no host in the URL")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{url}: bad port in the URL") from None
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # the codec getaddrinfo itself uses
        except UnicodeError as error:
            raise ValueError(f"{url}: {parts.hostname!r} is not a valid host name ({error})") from None
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


def _read_body(response, url: str, config: FetchConfig, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > config.max_bytes:
        raise ValueError(f"{url}: {int(declared):,} bytes, over the limit of {config.max_bytes:,}")
    chunks, size = [], 0
    for chunk in response.stream(64 * 1024, decode_content=False):
        size += len(chunk)
        if size > config.max_bytes:
            raise ValueError(f"{url}: more than {config.max_bytes:,} bytes; refused")
        if time.monotonic() > deadline:
            raise ValueError(f"{url}: timed out after {config.timeout:g} s")
        chunks.append(chunk)
    return b"".join(chunks)


def read_source(source: ImageSource, fetch: FetchConfig = FetchConfig(), max_pixels: int | None = None) -> np.ndarray:
    """The model inputs of one source, float32 (N, 28, 28): one image for a photo, N ≥ 1 for a
    ``.npy`` stack. Raises ``ValueError`` with the reason it cannot be read."""
    from apparel import photos
    from apparel.prediction import read_image_file

    limit = photos.MAX_PIXELS if max_pixels is None else max_pixels
    if source.error is not None:
        raise ValueError(f"{source.name}: {source.error}")
    if source.url is not None:
        data = fetch_url(source.url, fetch)
        return _named(source.name, photos.photo_to_input, data, limit)[None]
    if source.path is not None and source.path.suffix.lower() == ".npy":
        return _named(source.name, read_image_file, source.path)
    return _named(source.name, photos.photo_to_input, source.path, limit)[None]


def _named(name: str, read: Callable, data, *args):
    """``read(data, *args)``, its error messages naming the source as the user gave it."""
    from apparel.photos import describe

    try:
        return read(data, *args)
    except ValueError as error:
        message = str(error).removeprefix(f"{describe(data)}: ")
        raise ValueError(f"{name}: {message}") from None


def read_sources(
    sources: list[ImageSource], fetch: FetchConfig = FetchConfig(), workers: int = 4
) -> Iterator[tuple[ImageSource, np.ndarray | None, str | None]]:
    """``(source, inputs, error)`` for each source, in order; reading and fetching overlap in
    ``workers`` threads (Pillow and sockets release the GIL)."""

    def attempt(source: ImageSource):
        try:
            return source, read_source(source, fetch), None
        except ValueError as error:
            message = str(error)
            return source, None, message.removeprefix(f"{source.name}: ")

    if workers <= 1 or len(sources) <= 1:
        yield from map(attempt, sources)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(attempt, sources)


def _result(name: str, top: list[tuple[str, float]]) -> dict:
    return {"file": name, "label": top[0][0], "probability": round(top[0][1], 6),
            "top_k": [{"label": label, "probability": round(p, 6)} for label, p in top]}


def predict_sources(
    sources: list[ImageSource],
    predictor,
    top_k: int = 3,
    fetch: FetchConfig = FetchConfig(),
    batch_size: int = 256,
    workers: int = 4,
    progress: Callable[[int], object] | None = None,
) -> list[dict]:
    """Classify every source; images are read in parallel and predicted ``batch_size`` at a time.

    Returns one dict per image, in order: ``{"file", "label", "probability", "top_k"}``, or
    ``{"file", "error"}`` for a source that could not be read (the run goes on).
    """
    results: list[dict] = []
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        slots: list[dict | tuple[str, int]] = []   # an error dict, or (name, row in the batch)
        arrays, rows = [], 0
        for source, inputs, error in read_sources(chunk, fetch, workers):
            if error is not None:
                slots.append({"file": source.name, "error": error})
            else:
                names = [source.name] if len(inputs) == 1 else [f"{source.name}[{i}]" for i in range(len(inputs))]
                slots.extend((name, rows + i) for i, name in enumerate(names))
                arrays.append(inputs)
                rows += len(inputs)
            if progress is not None:
                progress(1)
        tops = predictor.top_k(predictor.predict_proba(np.concatenate(arrays)), top_k) if arrays else []
        results.extend(slot if isinstance(slot, dict) else _result(slot[0], tops[slot[1]]) for slot in slots)
    return results
