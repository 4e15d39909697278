"""Hot reload: the model repository is polled, and the registry follows it without a failed request.

Each poll compares what the repository wants (``Repository.scan``: the versions each policy
selects, the labels) with what is loaded, then:

1. **loads** every new version on the poller's thread, warms it up, and only then adds it to the
   registry — from that moment the requests that name no version go to it;
2. a version that **fails** to load (or whose number is above 2⁶³−1) is recorded in its model's status (``GET /v1/models/<name>``
   shows the error) and never replaces a working one; it is tried again once its file changes;
3. **retires** the versions no longer wanted — but only once the model has a wanted version
   available, so a model whose new version fails keeps serving its old one. A retired version
   leaves routing at once, finishes the requests that hold it (up to the request deadline), then
   its batcher stops and the model is let go.

    >>> reloader = Reloader(Repository("models"), registry)
    >>> reloader.sync()                 # the first load, before the server takes requests
    >>> reloader.start(interval=5.0)    # then every 5 s on a thread; reloader.stop() joins it
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from apparel.serve.registry import Registry, ServedVersion, VersionStatus, load_version
from apparel.serve.repository import Repository, version_fingerprint

# A request resolves its version and counts itself against it in one step of the event loop; the
# pause covers a request caught between the two when the version leaves routing.
DRAIN_GRACE_SECONDS = 0.2
logger = logging.getLogger(__name__)


class Reloader:
    """Keeps ``registry`` in step with ``repository`` (see the module's docstring)."""

    def __init__(self, repository: Repository, registry: Registry,
                 loader: Callable[..., ServedVersion] = load_version):
        self.repository = repository
        self.registry = registry
        self.loader = loader
        self.failed: dict[tuple[str, int], tuple | None] = {}  # (model, version) → fingerprint when it failed
        self.error = ""  # why the last poll could not read the repository (a broken models.json)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """One poll: load what is new, retire what is no longer wanted."""
        try:
            wanted, default = self.repository.scan()
        except (OSError, ValueError) as error:
            # A half-edited models.json must not unload anything: keep serving what is loaded.
            self.error = str(error)
            logger.error("model repository not reloaded: %s", error)
            return
        self.error = ""
        for name, model_wanted in wanted.items():
            model = self.registry.model(name)
            for number, reason in model_wanted.refused.items():
                if model.status.get(number) != VersionStatus("END", reason):
                    model.status[number] = VersionStatus("END", reason)
                    logger.error("model %s: %s", name, reason)
            for number, path in sorted(model_wanted.versions.items()):
                if number not in model.versions and not self._stop.is_set():
                    self.load(name, number, path)
            model.labels = dict(model_wanted.labels)
            if any(number in model.versions for number in model_wanted.versions):
                for served in [served for number, served in model.versions.items()
                               if number not in model_wanted.versions]:
                    self.retire(served)
        for name in [name for name in self.registry.models if name not in wanted]:
            for served in list(self.registry.models[name].versions.values()):
                self.retire(served)
            self.registry.remove_model(name)
        if default is not None and default in self.registry.models:
            self.registry.default = default
        elif self.registry.default not in self.registry.models:
            self.registry.default = min(self.registry.models, default=None)

    def load(self, name: str, number: int, path: Path) -> None:
        fingerprint = version_fingerprint(path)
        if (name, number) in self.failed and self.failed[(name, number)] == fingerprint:
            return
        model = self.registry.model(name)
        model.status[number] = VersionStatus("LOADING")
        try:
            served = self.loader(name, number, path, self.registry.config, self.registry.metrics)
        except Exception as error:  # any failure to load: a ValueError from Keras, a missing file, …
            self.failed[(name, number)] = fingerprint
            model.status[number] = VersionStatus("END", f"version {number} failed to load: {error}")
            logger.error("model %s version %s not loaded: %s", name, number, error)
            return
        self.failed.pop((name, number), None)
        self.registry.add(served)
        logger.info("model %s version %s is serving", name, number)

    def retire(self, served: ServedVersion) -> None:
        """Take ``served`` out of routing, let the requests holding it finish, then stop it."""
        self.registry.withdraw(served)
        deadline = time.monotonic() + DRAIN_GRACE_SECONDS + self.registry.config.request_deadline_s
        time.sleep(DRAIN_GRACE_SECONDS)
        while served.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        served.batcher.close()
        model = self.registry.models.get(served.name)
        if model is not None:
            model.status[served.number] = VersionStatus("END")
        logger.info("model %s version %s unloaded", served.name, served.number)

    def start(self, interval: float) -> None:
        """Poll every ``interval`` seconds on a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="apparel-reload", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync()
            except Exception:  # the poller must outlive any one bad poll
                logger.exception("model repository poll failed")

    def stop(self) -> None:
        """Stop polling and join the thread (a load in progress finishes first)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
