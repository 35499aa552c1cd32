"""Standard streams and machine errors, in one place: every command stops with one line, never a
traceback, when a stream is closed or opened the wrong way round, or when the machine refuses a read or
write (full disk, no permission)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator

import click

from ..errors import UserError

# errno values of an OSError that the machine, not the code, caused: reported in one line
IO_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENOENT,
     errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)  # fmt: skip


class ClosedStreamError(click.ClickException):
    """Standard input or output was closed when ``s2s`` started, and the command needed it."""


class ClosedStream(io.TextIOBase):
    """Stands in for a standard stream that was closed when the process started (``<&-``, ``>&-``).

    Python sets ``sys.stdin`` / ``sys.stdout`` to None then, and ``click.echo`` silently prints nothing:
    a score printed to a closed stdout was lost with exit code 0. In their place this object raises
    :class:`ClosedStreamError` as soon as a command reads or writes, so the command stops with one line
    and exit code 1; a command that reads and writes only files never touches it.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__()
        self._name, self._message = name, message
        self.buffer = self  # the binary side (``sys.stdin.buffer.read()``) is just as closed

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:  # click returns a stream with an encoding as it is, unwrapped
        return "utf-8"

    @property
    def errors(self) -> str:
        return "strict"

    def _closed(self, *args, **kwargs):
        raise ClosedStreamError(self._message)

    read = readline = readlines = write = writelines = _closed  # iterating calls readline

    def isatty(self) -> bool:
        return False  # not a terminal: nothing waits for a prompt

    def fileno(self) -> int:
        raise io.UnsupportedOperation(f"{self._name} is closed")  # how a stream says it has no descriptor

    def flush(self) -> None:
        pass  # Python flushes sys.stdout at exit: there is nothing to flush, and no error to add


# commands that print to stdout on every run: with stdout closed they stop before they work, not after
# (translate, suggest-eval and tokenizer can write files instead, so they stop only if they print)
ALWAYS_PRINT = frozenset({"data", "train", "shortlist", "evaluate", "bleu", "suggest"})

STDIN_CLOSED = (
    "standard input is closed, so there is nothing to read; give the input as a file (or argument) "
    "instead, or open standard input"
)
STDOUT_CLOSED = (
    "standard output is closed, so the output would be lost; redirect it to a file (> FILE), or pass "
    "-o FILE where the command has one"
)


def stdout_is_closed() -> bool:
    """Whether standard output was closed when ``s2s`` started (commands that also write -o FILE ask)."""
    return isinstance(sys.stdout, ClosedStream)


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def standard_streams() -> Iterator[None]:
    """Stand-ins for closed standard streams while a command runs (see :class:`ClosedStream`)."""
    for fd in (0, 1, 2):
        if not _fd_is_open(fd):
            # hold the closed descriptor with /dev/null: a file opened later would otherwise get it, and
            # anything writing to descriptor 1 or 2 (a C library's message) would land in that file
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    saved = sys.stdin, sys.stdout, sys.stderr
    if sys.stdin is None:
        sys.stdin = ClosedStream("<stdin>", STDIN_CLOSED)
    if sys.stdout is None:
        sys.stdout = ClosedStream("<stdout>", STDOUT_CLOSED)
    sink = None
    if sys.stderr is None:
        # messages have nowhere to go; without a stream click prints "Error: ..." to stdout, into the output
        sink = sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if sink is not None:
            sink.close()


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """User errors and the machine's refusals as one ``Error: ...`` line with exit code 1."""
    try:
        yield
    except UserError as e:
        # user mistakes get one line and exit code 1; tracebacks are for our bugs only
        raise click.ClickException(str(e)) from None
    except click.UsageError as e:
        # click's own three lines (usage, hint, error) and exit code 2 become the same one line as the
        # rest, with the command whose --help explains the options
        # named as the user types it (`python -m seq2seq_lstm` and test runners call the group otherwise)
        names, ctx = [], e.ctx
        while ctx is not None and ctx.parent is not None:
            names.insert(0, ctx.info_name)
            ctx = ctx.parent
        where = f"; see '{' '.join(['s2s', *names])} --help'"
        raise click.ClickException(e.format_message().rstrip(".") + where) from None
    except OSError as e:
        # the machine refused a read or write (full disk, no permission, read-only place): not a bug
        if e.errno not in IO_ERRORS:
            raise
        where = f" {e.filename}" if e.filename else ""
        hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the path"
        raise click.ClickException(f"cannot read or write{where}: {e.strerror}; {hint}") from None


def exit_misopened(e: OSError) -> None:
    """Stop in one line for a standard stream opened the wrong way round (``1< FILE``, ``0> FILE``);
    any other error is raised again."""
    if e.errno != errno.EBADF or e.filename is not None:
        raise e
    stream = _misopened_stream()
    _discard_stdout()
    error = click.ClickException(
        f"cannot use {stream}: {e.strerror}; open standard input for reading and standard "
        "output for writing, or pass files"
    )
    error.show()
    sys.exit(error.exit_code)


def _misopened_stream() -> str:
    """Which standard stream is open the wrong way round (stdout for reading, stdin for writing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return "standard input or output"
    for fd, name, wrong in ((1, "standard output", os.O_RDONLY), (0, "standard input", os.O_WRONLY)):
        with contextlib.suppress(OSError):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == wrong:
                return name
    return "standard input or output"


def _discard_stdout() -> None:
    # Python flushes sys.stdout at exit, and its unwritable buffer would fail again with a traceback-like
    # "Exception ignored" message: point descriptor 1 at /dev/null (the Python docs' recipe for SIGPIPE)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
