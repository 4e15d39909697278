"""Run directories and atomic writes: a killed process never leaves a half-written file.

A run directory holds ``model.keras``, ``config.json``, ``history.json``, ``metrics.json`` and
``plots/``; it is enough on its own to rebuild, reload and re-evaluate the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        # On disk before the rename, so a power cut cannot leave an empty file under the name.
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only set it, briefly
    exposing other threads to a different one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_json(path: str | os.PathLike, payload) -> None:
    """Write indented JSON atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} not found; is {path.parent} a run directory made by `apparel train`?") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); retrain or restore the file") from None


def update_json(path: str | os.PathLike, changes: dict) -> dict:
    """Merge ``changes`` into a JSON object file (created if missing) and return the result."""
    path = Path(path)
    current = read_json(path) if path.exists() else {}
    current.update(changes)
    write_json(path, current)
    return current


def save_model(model, path: str | os.PathLike) -> None:
    """``model.save`` through a temporary file, so an interrupted save keeps the previous model."""
    with atomic_path(path) as temporary:
        model.save(temporary)


def library_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("apparel", "keras", "tensorflow-cpu", "tensorflow", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
