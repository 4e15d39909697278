"""Writing outputs that a rerun resumes: a full disk named with the file it stopped (one run at a
time per output is ``artifacts.one_writer``, which training shares).

    >>> with full_disk_named(out / "part-000000000000.parquet"):
    ...     pq.write_table(shard, temporary)
    OSError: [Errno 28] No space left on device while writing out/part-000000000000.parquet; …

``apparel batch`` and ``apparel catalog`` write each file whole (a temporary renamed into place)
and keep what they finished, so a full disk costs nothing written before: the message says which
file it stopped and that the same command, rerun, resumes.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

# A full disk, and a full quota (EDQUOT, where the platform has it).
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class FullDisk(OSError):
    """A full disk, said of the file it stopped."""


@contextmanager
def full_disk_named(path: str | os.PathLike):
    """The block, a full disk in it raised again as an ``OSError`` (same errno) that names
    ``path`` and says how to go on; every other error as it was, and one already named (a file
    written inside another's block: a catalog's review inside its output's) too."""
    try:
        yield
    except OSError as error:
        if error.errno not in NO_SPACE or isinstance(error, FullDisk):
            raise
        reason = error.strerror or os.strerror(error.errno)
        raise FullDisk(error.errno, f"{reason} while writing {Path(path)}; nothing finished before it is lost: "
                                    "free some space and rerun the same command, which resumes") from error
