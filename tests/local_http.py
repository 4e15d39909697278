"""A local HTTP server on 127.0.0.1 for the URL tests: files from a folder, plus a few special paths."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; ``/slow/…`` waits a minute first (less if the server stops meanwhile:
    far longer than any client's deadline in the tests, so a passing test proves its deadline),
    ``/redirect/N/…`` redirects N times, ``/loop`` redirects to itself, ``/to/URL`` redirects to URL."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        self.server.hosts.append(self.headers.get("Host"))
        if self.path.startswith("/slow/"):
            if self.server.stopping.wait(60):
                return  # the test is over: no answer, and no thread left sleeping
            self.path = self.path[len("/slow"):]
        elif self.path.startswith("/redirect/"):
            _, _, count, rest = self.path.split("/", 3)
            target = f"/redirect/{int(count) - 1}/{rest}" if int(count) > 1 else f"/{rest}"
            return self._redirect(target)
        elif self.path == "/loop":
            return self._redirect("/loop")
        elif self.path.startswith("/to/"):
            return self._redirect(self.path[len("/to/"):])
        return super().do_GET()

    def _redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL, e.g. ``http://127.0.0.1:41234``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    # Handler threads are joined on close (block_on_close); a sleeping /slow/ one wakes at `stopping`.
    server.daemon_threads = False
    server.stopping = threading.Event()
    server.requests, server.hosts = [], []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-http")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.stopping.set()
        server.shutdown()
        thread.join()
        server.server_close()
