"""Writing outputs that a rerun resumes: one run at a time per output, and a full disk named
with the file it stopped.

    >>> with one_writer(out / "_batch.lock", "out", out):    # a second run here is refused
    ...     write_the_output()

    >>> with full_disk_named(out / "part-000000000000.parquet"):
    ...     pq.write_table(shard, temporary)
    OSError: [Errno 28] No space left on device while writing out/part-000000000000.parquet; …

``apparel batch`` and ``apparel catalog`` write each file whole (a temporary renamed into place)
and keep what they finished, so a full disk costs nothing written before: the message says which
file it stopped and that the same command, rerun, resumes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from contextlib import contextmanager
from pathlib import Path

from apparel.errors import ParameterError

# A full disk, and a full quota (EDQUOT, where the platform has it).
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


@contextmanager
def one_writer(lock: str | os.PathLike, parameter: str, output: str | os.PathLike):
    """The block run holding the lock file ``lock`` (made, with its folder), which it removes as it
    ends. Another process holding it refuses this one with a ``ParameterError`` naming
    ``parameter``: two runs writing one ``output`` would mix their rows.

    The lock is ``flock``'s, so a run killed at any moment frees it (the file it leaves behind
    locks nothing). Where there is no ``flock`` (Windows) the block runs unguarded.
    """
    try:
        import fcntl
    except ImportError:
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
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                break
        # The run before removed the file as it ended, after this one opened it: lock the file there now.
        os.close(descriptor)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # before the lock is let go, so nobody locks a file on its way out
        os.close(descriptor)


@contextmanager
def full_disk_named(path: str | os.PathLike):
    """The block, a full disk in it raised again as an ``OSError`` (same errno) that names
    ``path`` and says how to go on; every other error as it was."""
    try:
        yield
    except OSError as error:
        if error.errno not in NO_SPACE:
            raise
        reason = error.strerror or os.strerror(error.errno)
        raise OSError(error.errno, f"{reason} while writing {Path(path)}; nothing finished before it is lost: "
                                   "free some space and rerun the same command, which resumes") from error
