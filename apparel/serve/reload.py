"""Hot reload: the model repository is polled, and the registry follows it without a failed request.

Each poll compares what the repository wants (``Repository.scan``: the versions each policy
selects, the labels) with what is loaded, then:

1. **loads** every new version on the poller's thread, warms it up, and only then adds it to the
   registry — from that moment the requests that name no version go to it;
2. a version that **fails** to load (or whose number is above 2⁶³−1) is recorded in its model's status (``GET /v1/models/<name>``
   shows why, in a line, its files named from the repository) and never replaces a working one; it
   is tried again once any file of its folder changes (a model.keras copied in full, a config.json
   fixed);
3. **retires** the versions no longer wanted — but only once the model has a wanted version
   available, so a model whose new version fails keeps serving its old one. A retired version
   leaves routing at once, finishes the requests that hold it (up to the request deadline), then
   its batcher stops and the model is let go.

A ``models.json`` that cannot be used changes nothing: what is loaded stays served, and every
model's status shows why (``repository_error``); the log says so once per change, not every poll.

    >>> reloader = Reloader(Repository("models"), registry)
    >>> reloader.sync()                 # the first load, before the server takes requests
    >>> reloader.start(interval=5.0)    # then every 5 s on a thread; reloader.stop() joins it
"""

from __future__ import annotations

import logging
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from apparel import artifacts
from apparel.serve.registry import Registry, ServedVersion, VersionStatus, load_version
from apparel.serve.repository import CONFIG_FILE, Repository, version_fingerprint

# A request resolves its version and counts itself against it in one step of the event loop; the
# pause covers a request caught between the two when the version leaves routing.
DRAIN_GRACE_SECONDS = 0.2
MAX_REASON_CHARS = 300  # a status answer says what is wrong in a line, not Keras's whole report
logger = logging.getLogger(__name__)


def load_failure(error: Exception, path: Path, root: Path) -> str:
    """Why the version in ``path`` failed to load, in one line, its files named from the
    repository's ``root`` (a status answer shows no server path): a ``model.keras`` that is not a
    whole archive is called damaged or cut short, whatever Keras said."""
    folder = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    model_file = path / artifacts.MODEL_FILE
    try:
        whole = zipfile.is_zipfile(model_file)
    except OSError:
        whole = True  # gone or unreadable: Keras's own message says which
    if not whole:
        size = model_file.stat().st_size if model_file.exists() else 0
        return (f"{folder}/{artifacts.MODEL_FILE} is damaged or cut short: it is not a whole .keras archive "
                f"({size:,} bytes); copy it again or retrain")
    message = str(error) or type(error).__name__  # a SourceError names its file: the path is made relative below
    for shown in sorted({str(path.resolve()), str(path.absolute()), str(path)}, key=len, reverse=True):
        message = message.replace(shown, folder)
    for shown in sorted({str(root.resolve()), str(root.absolute()), str(root)}, key=len, reverse=True):
        message = message.replace(shown + "/", "")
    line = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS - 1] + "…"


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
        self._first = True  # the first sync's models are the server's: its readiness waits on them

    def sync(self) -> None:
        """One poll: load what is new, retire what is no longer wanted."""
        try:
            wanted, default = self.repository.scan()
        except (OSError, ValueError) as error:
            # A half-edited models.json must not unload anything: keep serving what is loaded.
            self.set_error(str(error))
            return
        self.set_error("")
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
        if self._first:
            self.registry.require_every_model()
            self._first = False
        # A label on a version that is not served (its policy retired it, it failed) answered 404s
        # with no word in the status or the log.
        dangling = [f"version label {label!r} of {name} names version {number}, which is not served; point it "
                    "at a version that is" for name, model in self.registry.models.items()
                    for label, number in model.labels.items() if number not in model.versions]
        if dangling:
            self.set_error(f"{CONFIG_FILE}: {'; '.join(dangling)}")

    def set_error(self, error: str) -> None:
        """Record why the repository cannot be read (``""``: it can), in every model's status and,
        once per change, in the log."""
        if error and error != self.error:
            logger.error("model repository not read: %s", error)
        elif self.error and not error:
            logger.info("model repository read again: %s is usable", CONFIG_FILE)
        self.error = error
        self.registry.repository_error = (f"{error}; what was loaded is served as it was until it is fixed"
                                          if error else "")

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
            reason = load_failure(error, path, self.repository.root)
            model.status[number] = VersionStatus("END", f"version {number} failed to load: {reason}")
            logger.error("model %s version %s not loaded: %s", name, number, reason)
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
