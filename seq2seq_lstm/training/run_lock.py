"""One training at a time in a run directory: an exclusive ``flock`` on a lock file inside it.

Two `s2s train` processes writing one directory interleave their checkpoints and the later export
fails on shapes it did not train. The lock is taken by one process per launch (rank 0 under DDP: the
other ranks are its own helpers) and belongs to its open file: the kernel drops it when the process
exits in any way, ``kill -9`` included, so a lock left by a crash is never mistaken for a live one. The
holder's pid is written into the file only to name it in the refusal; the file is gone after a run
that ends in any way but a kill.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".train.lock"


class RunDirInUse(UserError):
    """Another `s2s train` holds the run directory."""


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[Path]:
    """Hold ``root/.train.lock`` (creating ``root``) for the ``with`` block; yields the lock file's path.

    Raises :class:`RunDirInUse`, naming the holder's pid, when another process holds it. The file is
    removed on the way out while still locked; a process that locked it just then finds the path gone
    or new, and locks the path afresh instead of an orphaned file.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the processes training starts
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(
                f"{root} is in use by another `s2s train` (pid {_holder(path)}); wait for it to end, "
                "or train into another --out-dir"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    """The pid in the lock file; a holder that has just taken the lock may not have written it yet."""
    for _ in range(20):
        text = path.read_text(errors="replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.05)
    return "unknown"
