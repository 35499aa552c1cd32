"""The ``s2s`` command line.

Each command lives in its own module of this package and is imported only when it is run (or when
``--help`` lists it), and those modules import torch and lightning inside the command bodies, so
``s2s --help`` starts fast. Every command is a thin layer over a library function: shared options are
declared in :mod:`.options`, and standard streams and error lines are handled in :mod:`.streams`.
"""

from __future__ import annotations

import importlib

import click

from .streams import (
    ALWAYS_PRINT,
    STDOUT_CLOSED,
    ClosedStreamError,
    exit_misopened,
    one_line_errors,
    standard_streams,
    stdout_is_closed,
)

# command name -> "module:attribute", in the order `s2s --help` lists them
COMMANDS = {
    "tokenizer": "seq2seq_lstm.cli.tokenizer:tokenizer",
    "data": "seq2seq_lstm.cli.data:data",
    "train": "seq2seq_lstm.cli.train:train",
    "translate": "seq2seq_lstm.cli.translate:translate",
    "shortlist": "seq2seq_lstm.cli.shortlist:shortlist",
    "average": "seq2seq_lstm.cli.average:average",
    "evaluate": "seq2seq_lstm.cli.evaluate:evaluate",
    "bleu": "seq2seq_lstm.cli.evaluate:bleu",
    "suggest": "seq2seq_lstm.cli.suggest:suggest",
    "suggest-eval": "seq2seq_lstm.cli.suggest:suggest_eval",
    "serve": "seq2seq_lstm.cli.serve:serve",
    "export": "seq2seq_lstm.cli.export:export",
    "plot": "seq2seq_lstm.cli.plot:plot",
    "runs": "seq2seq_lstm.cli.runs:runs",
}

__all__ = ["COMMANDS", "main", "stdout_is_closed"]


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

    def main(self, *args, **kwargs):
        with standard_streams():  # around parsing too: --help and --version print
            try:
                return super().main(*args, **kwargs)
            except OSError as e:
                exit_misopened(e)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        with one_line_errors():  # the group's own options too (`s2s --bogus`)
            return super().make_context(info_name, args, parent, **extra)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if name in ALWAYS_PRINT and stdout_is_closed():
            raise ClosedStreamError(STDOUT_CLOSED)
        return name, command, rest

    def invoke(self, ctx: click.Context):
        with one_line_errors():
            return super().invoke(ctx)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="seq2seq-lstm")
def main() -> None:
    """seq2seq-lstm: LSTM encoder-decoders with attention for translation, next-word suggestion and BLEU."""
