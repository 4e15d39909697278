"""Run directories and atomic writes: a killed process never leaves a half-written file.

A run directory holds ``model.keras``, ``config.json``, ``history.json``, ``metrics.json`` and
``plots/``; it is enough on its own to rebuild, reload and re-evaluate the model.

    >>> with atomic_path("runs/x/metrics.json") as temporary:
    ...     temporary.write_text("{}")
    >>> with atomic_directory("exports/saved") as temporary:   # a folder, swapped in whole
    ...     (temporary / "saved_model.pb").write_bytes(b"...")
    >>> with one_writer("runs/x/train.lock", "out_dir", "runs/x"):   # a second writer is refused
    ...     train_into("runs/x")

The run directories shipped with the project are package data, found by name:

    >>> read_json(shipped_model_dir("photos") / CONFIG_FILE)["input"]["class_names"][:2]
    ['dress', 'hat']
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

from apparel.errors import ParameterError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no telling a killed writer's temporary from a live one's
    fcntl = None

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
# A run's Shopify categories: each class's category and the thresholds (apparel.shop.categories).
CATEGORIES_FILE = "categories.json"
PLOTS_DIR = "plots"
# The LiteRT artefact predict, serve and catalog make beside a run's model (apparel.inference.runtime),
# with its metadata beside it (apparel.contract.metadata_path: the file's name and ".json").
ARTEFACT_FILE = "model.tflite"
# The run directories shipped with the project are package data, so an installed wheel has them
# too: `apparel/shipped_models`, which in a checkout is a link to the repository's `models/` (the
# wheel holds the files themselves); `shipped_model_dir` is the one place that knows where.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "shipped_models"


def run_or_shipped(model_dir: str | os.PathLike) -> Path:
    """``model_dir``, unless it is a bare name with no run directory here and a shipped model's
    name (``"store"``): then that model's folder."""
    path = Path(model_dir)
    if not (path / MODEL_FILE).is_file() and str(model_dir) in shipped_model_names():
        return shipped_model_dir(str(model_dir))
    return path


def shipped_model_dir(name: str) -> Path:
    """The run directory of the model shipped as ``name`` (``default``: the Fashion-MNIST model,
    ``photos``: the ten-class photo model, ``store``: the store model), whether the package runs from a checkout or an installed wheel.
    The folder may not exist (a model not trained yet): callers check for ``MODEL_FILE``.

    >>> shipped_model_dir("photos") / MODEL_FILE
    PosixPath('.../apparel/shipped_models/photos/model.keras')
    """
    if not name or name in (".", "..") or Path(name).name != name:
        raise ValueError(f"{name!r} is not the name of a shipped model; shipped: {', '.join(shipped_model_names())}")
    return SHIPPED_MODELS_DIR / name


def is_shipped(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` is one of the shipped models' folders (package data: read, never
    written; in a checkout, files under version control)."""
    return Path(model_dir).resolve().parent == SHIPPED_MODELS_DIR.resolve()


def shipped_model_names() -> list[str]:
    """The names of the shipped models that hold a model, sorted.

    >>> shipped_model_names()
    ['default', 'photos', 'store']
    """
    if not SHIPPED_MODELS_DIR.is_dir():
        return []
    return sorted(entry.name for entry in SHIPPED_MODELS_DIR.iterdir() if (entry / MODEL_FILE).is_file())


def same_file(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether two names reach one file: through links too where both exist, else by resolved path."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist (yet)
        return Path(path).resolve() == Path(other).resolve()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The temporary is ``.<name>.partial-<random><suffix>`` (the suffix kept: ``model.save`` wants
    ``.keras``). The file is synced before the rename and the folder after it, so after a crash or
    a power cut ``path`` holds the old file or the new one. A writer killed mid-write leaves its
    temporary behind; the next write of the same path removes it (``remove_stale_temporaries``).

    A symbolic link is written through (its target is what is replaced, as ``open`` would write
    it); a path that is no regular file (a pipe, a device, a folder) is refused with a
    ``ValueError``: a rename would have put a file in its place, ``/dev/full`` included.
    """
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a regular file (a pipe, a device or a folder); give the path of a file to "
                         "write, which is replaced as a whole once it is written")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=path.suffix, dir=path.parent)
    except OSError as error:  # a folder that takes no new file: said of the file asked for, not a temporary
        raise OSError(error.errno, error.strerror, str(path)) from None
    handle = _claim(handle)
    try:
        yield Path(temporary)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        # On disk before the rename, so a power cut cannot leave an empty file under the name.
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        sync_directory(path.parent)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if handle is not None:
            os.close(handle)


@contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary folder beside ``path``; if the block succeeds it takes the place of ``path``
    (a folder or nothing) in one step and the old folder is removed, so a crash at any point leaves
    the old folder or the new one under the name, never neither or a mix.

    The step is Linux's ``renameat2(RENAME_EXCHANGE)``. Where that is missing (another system, a
    file system without it) the old folder is renamed aside first: a crash between the two renames
    leaves it as ``.<name>.partial-…`` until the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), dir=path.parent))
    handle = _claim(os.open(temporary, os.O_RDONLY)) if fcntl is not None else None
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp's 0700 → a plain mkdir's
        _sync_tree(temporary)
        if not path.exists():
            os.replace(temporary, path)
        elif not _exchange(temporary, path):
            aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), dir=path.parent))
            os.replace(path, aside / path.name)
            try:
                os.replace(temporary, path)
            except BaseException:
                os.replace(aside / path.name, path)
                raise
            shutil.rmtree(aside)
        sync_directory(path.parent)
    finally:
        if temporary.exists():  # the unfinished folder, or after the swap the old one
            shutil.rmtree(temporary)
        if handle is not None:
            os.close(handle)


@contextmanager
def one_writer(lock: str | os.PathLike, parameter: str, output: str | os.PathLike):
    """The block run holding the lock file ``lock`` (made, with its folder), which it removes as it
    ends. Another process holding it refuses this one with a ``ParameterError`` naming
    ``parameter``: two runs writing one ``output`` would mix their rows.

    The lock is ``flock``'s, so a run killed at any moment frees it (the file it leaves behind
    locks nothing). Where there is no ``flock`` (Windows) the block runs unguarded.
    """
    if fcntl is None:
        yield
        return
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise ParameterError(f"{{}} {output}: another run is writing there (it holds {lock}); wait for it to "
                                 "end, or write somewhere else", parameter) from None
        except OSError:  # no locks on this file system (ENOLCK): said as it is
            os.close(descriptor)
            raise
        with suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                break
        # The run before removed the file as it ended, after this one opened it: lock the file there now.
        os.close(descriptor)
    try:
        yield
    finally:
        with suppress(FileNotFoundError):
            os.unlink(lock)  # before the lock is let go, so nobody locks a file on its way out
        os.close(descriptor)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.partial-"


def _claim(handle: int) -> int | None:
    """Lock a new temporary for as long as its writer lives (the kernel drops the lock when the
    process dies, however it dies), so that other writers leave it alone; the handle to close."""
    if fcntl is None:
        os.close(handle)
        return None
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` (see ``atomic_path``) whose writer was killed: those no
    live process holds a lock on. Returns what was removed."""
    path = Path(path)
    prefix = _temporary_prefix(path)
    return _remove_unclaimed(path.parent, lambda name: name.startswith(prefix))


def remove_stale_temporaries_of(folder: str | os.PathLike, pattern: str) -> list[Path]:
    """``remove_stale_temporaries`` for every file of ``folder`` whose name matches the glob
    ``pattern`` (``part-*.parquet``): a file whose name is new at each write (a random part)
    has temporaries that no later write of its own name removes."""
    return _remove_unclaimed(Path(folder), lambda name: fnmatch.fnmatchcase(name, f".{pattern}.partial-*"))


def _remove_unclaimed(folder: Path, temporary: Callable[[str], bool]) -> list[Path]:
    """Remove the entries of ``folder`` whose name ``temporary`` accepts and that no live process
    holds a lock on (``_claim``)."""
    if fcntl is None or not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if not temporary(entry.name):
            continue
        try:
            handle = os.open(entry, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # gone meanwhile, or not ours to open
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is still at work
            os.close(handle)
            continue
        try:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            pass
        finally:
            os.close(handle)
    return removed


def sync_directory(directory: str | os.PathLike) -> None:
    """fsync a folder, so the names just renamed in it survive a power cut (not on Windows,
    where a folder cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (a SavedModel's writer syncs none of them)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as written:
                os.fsync(written.fileno())
        sync_directory(folder)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step: Linux's renameat2(RENAME_EXCHANGE), which Python's os lacks.
    False where it is not available (another system, an old C library, a file system without it)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_current_directory, rename_exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE from <fcntl.h>, <stdio.h>
    if renameat2(at_current_directory, os.fsencode(first), at_current_directory, os.fsencode(second),
                 rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))

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


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or ``taskset``'s limit,
    which ``os.cpu_count()`` ignores) where the system has one (Linux), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
