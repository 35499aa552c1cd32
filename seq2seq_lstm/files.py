"""Files: written whole or not at all (a temp file beside the target, then a rename), outputs checked
before any work, UTF-8 lines read under one rule, and byte counts for messages."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import UserError

STDIN = "-"  # the path that means standard input
ENCODING_ERRORS = ("strict", "replace")  # what invalid UTF-8 in an input does: stop, or read as U+FFFD
REPLACE_OPTION = "pass --encoding-errors replace"  # how a command-line user asks for "replace"


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
        fsync(tmp)  # the data reaches the disk before the name does: a crash leaves the old file, not 0 bytes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        fsync(path.parent)  # and the rename itself survives a crash of the machine
    except OSError:
        pass  # best effort: a folder we may write but not read, or a file system that cannot sync one


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's data (or a folder's entries) to the disk; a full disk or an I/O error that the
    writes left pending is raised here, before a rename could put an incomplete file in place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plain_mode(directory: bool = False) -> int:
    """The permissions ``open()`` (or ``mkdir()``) gives a new file (directory): 0666 (0777) minus the
    umask. Temp files and directories are private (0600, 0700); what is renamed into place gets this."""
    mask = os.umask(0o022)  # POSIX has no plain getter: set it and set it back
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# Outputs, checked before the work that fills them


def check_output(path: str | os.PathLike, option: str, directory: bool = False) -> None:
    """Refuse an output path that cannot be written, in one line, before any work is done.

    A translation or an evaluation that ran for minutes and then could not be saved is lost, so every
    command checks its outputs first: the path must not be a folder (a file for ``directory``
    outputs), and the nearest existing folder above it must be a writable folder, not a file.
    ``option`` names the path as the user gave it ("-o", "--out").
    """
    p = Path(path)
    if p.exists():
        if directory and not p.is_dir():
            raise UserError(f"{option} {p} is a file; give a directory")
        if not directory and p.is_dir():
            raise UserError(f"{option} {p} is a directory; give a file")
        if not p.is_file() and not p.is_dir():
            return  # a FIFO or a device (/dev/stdout) is written directly, not replaced
        p = p.resolve()  # a link's target is replaced, in the target's folder (see atomic_write)
    above = next((a for a in p.absolute().parents if a.exists()), Path(p.absolute().anchor))
    if not above.is_dir():
        raise UserError(f"{option} {p}: {above} is a file, not a directory; choose another path")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UserError(f"{option} {p}: cannot write in {above} (permission denied or read-only)")


# --------------------------------------------------------------------------------------------------
# Reading UTF-8 text


def decode_lines(
    raw_lines: Iterable[bytes],
    name: str,
    errors: str = "strict",
    replace_hint: str = REPLACE_OPTION,
    strip_bom: bool = True,
) -> Iterator[str]:
    """Decode byte lines (split on ``\\n``) into text lines without their line ending (``\\r\\n`` too).

    Invalid UTF-8 is one :class:`UserError` naming ``name``, the line and the byte column, and how
    to read it anyway (``replace_hint``); with ``errors="replace"`` the bad bytes become U+FFFD. A
    byte-order mark opening the first line is not text and is dropped (``strip_bom``).
    """
    if errors not in ENCODING_ERRORS:
        raise ValueError(f"errors must be one of {', '.join(ENCODING_ERRORS)}; got {errors!r}")
    for n, raw in enumerate(raw_lines, start=1):
        yield decode_line(raw, name, n, errors, replace_hint, strip_bom=strip_bom and n == 1)


def decode_line(
    raw: bytes, name: str, n: int, errors: str, replace_hint: str = REPLACE_OPTION, strip_bom: bool = False
) -> str:
    """Line ``n`` (1-based) of ``name`` as :func:`decode_lines` reads it, for readers that meet their
    lines one at a time (a streamed corpus); ``strip_bom`` for the first line."""
    raw = raw.rstrip(b"\r\n")
    if strip_bom and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "replace":
            return raw.decode("utf-8", errors="replace")
        raise UserError(
            f"{name} line {n}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            f"fix the file or {replace_hint}"
        ) from None


def decode_chunk(
    raw: list[bytes], name: str, first: int, errors: str, replace_hint: str = REPLACE_OPTION
) -> list[str]:
    """Byte lines ``first + 1 ..`` (1-based) of ``name`` as :func:`decode_lines` reads them, decoded in
    one call: for bulk readers (a corpus), where a call per line costs more than the decoding. Only a
    chunk holding invalid UTF-8 goes line by line, to name the line or replace as :func:`decode_line`
    does; a byte-order mark is dropped when the chunk opens the file (``first`` 0)."""
    blob = b"".join(raw)
    if first == 0 and blob.startswith(b"\xef\xbb\xbf"):
        blob = blob[3:]
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return [
            decode_line(line, name, first + k + 1, errors, replace_hint, strip_bom=first + k == 0)
            for k, line in enumerate(raw)
        ]
    # every line but perhaps the last ends in "\n", so the split gives len(raw) parts (and maybe a last "")
    return [line.rstrip("\r") for line in text.split("\n")[: len(raw)]]


def read_lines(
    path: str | os.PathLike,
    errors: str = "strict",
    replace_hint: str = REPLACE_OPTION,
    name: str | None = None,
    strip_bom: bool = True,
) -> Iterator[str]:
    """The lines of a UTF-8 text file, or of standard input for ``-``, as :func:`decode_lines` reads
    them; lazily, so a huge file or a terminal is read as it is consumed."""
    if str(path) == STDIN:
        yield from decode_lines(sys.stdin.buffer, name or "<stdin>", errors, replace_hint, strip_bom)
        return
    with open(path, "rb") as f:
        yield from decode_lines(f, name or str(path), errors, replace_hint, strip_bom)


def check_text(text: str, name: str) -> str:
    """``text`` from the command line, refused if it held invalid UTF-8: Python decodes such
    arguments to lone surrogates, which would reach the model as U+FFFD or break an encoder."""
    bad = next((i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise UserError(f"{name}: invalid UTF-8 (at character {bad + 1}); give UTF-8 text")
    return text


# --------------------------------------------------------------------------------------------------
# Sizes


def size_text(n_bytes: int | float) -> str:
    """A byte count for a message: "37.3 GiB", "512 MiB", "12 KiB", "100 bytes"."""
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.1f} GiB"
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.0f} MiB"
    if n_bytes >= 2**10:
        return f"{n_bytes / 2**10:.0f} KiB"
    return f"{n_bytes:.0f} bytes"
