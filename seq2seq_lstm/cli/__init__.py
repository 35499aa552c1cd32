"""The ``s2s`` command line.

Each command lives in its own module of this package and is imported only when it is run (or when
``--help`` lists it), and those modules import torch and lightning inside the command bodies, so
``s2s --help`` starts fast. Every command is a thin layer over a library function.
"""

from __future__ import annotations

import errno
import importlib

import click

from ..errors import UserError

# errno values of an OSError that the machine, not the code, caused: reported in one line
IO_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENOENT,
     errno.ENOTDIR, errno.EISDIR}
)  # fmt: skip

# command name -> "module:attribute", in the order `s2s --help` lists them
COMMANDS = {
    "tokenizer": "seq2seq_lstm.cli.tokenizer:tokenizer",
    "data": "seq2seq_lstm.cli.data:data",
    "train": "seq2seq_lstm.cli.train:train",
    "translate": "seq2seq_lstm.cli.translate:translate",
    "shortlist": "seq2seq_lstm.cli.shortlist:shortlist",
    "evaluate": "seq2seq_lstm.cli.evaluate:evaluate",
    "bleu": "seq2seq_lstm.cli.evaluate:bleu",
    "suggest": "seq2seq_lstm.cli.suggest:suggest",
    "suggest-eval": "seq2seq_lstm.cli.suggest:suggest_eval",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise  # a missing dependency is a real error, not a missing command
            return None  # a command whose module is not written yet is simply not listed

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as e:
            # user mistakes get one line and exit code 1; tracebacks are for our bugs only
            raise click.ClickException(str(e)) from None
        except OSError as e:
            # the machine refused a read or write (full disk, no permission, read-only place): not a bug
            if e.errno not in IO_ERRORS:
                raise
            where = f" {e.filename}" if e.filename else ""
            hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the path"
            raise click.ClickException(f"cannot read or write{where}: {e.strerror}; {hint}") from None


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="seq2seq-lstm")
def main() -> None:
    """seq2seq-lstm: LSTM encoder-decoders with attention for translation, next-word suggestion and BLEU."""
