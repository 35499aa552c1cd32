"""Files written whole or not at all: a temp file beside the target, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temp file beside ``path``, then rename it over ``path``: readers see the old
    file or the whole new one, never half; a failed ``write`` leaves ``path`` untouched.

    A symbolic link is followed (its target is replaced, the link stays). Something that exists and is
    neither a file nor a folder (a FIFO, a device such as /dev/stdout, a socket) is written directly:
    renaming over it would replace it with a plain file."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file() and not path.is_dir():
        write(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file asked for, not the temp file beside it
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would give it
        # (the file's own if it exists, else 0666 minus the umask), so others can still read outputs
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else plain_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plain_mode(directory: bool = False) -> int:
    """The permissions ``open()`` (or ``mkdir()``) gives a new file (directory): 0666 (0777) minus the
    umask. Temp files and directories are private (0600, 0700); what is renamed into place gets this."""
    mask = os.umask(0o022)  # POSIX has no plain getter: set it and set it back
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
