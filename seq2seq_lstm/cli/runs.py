"""``s2s runs``: the run directories under a folder, newest first (a thin layer over
:func:`seq2seq_lstm.runs.listing.list_runs`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import PathType


@click.command("runs")
@click.argument(
    "dir", required=False, default="runs", type=PathType(exists=True, file_okay=False, path_type=Path)
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="A table, or a JSON list with one object per directory.")  # fmt: skip
def runs(dir: Path, fmt: str) -> None:
    """List the run directories under DIR (default: runs), newest first.

    For each: status (finished: the best weights exported; interrupted: checkpoints or logs but no
    exported model; training: in use by `s2s train`; damaged: weights without a readable model.json),
    task, steps and training time, the best validation score (BLEU for translation, perplexity for a
    language model) and its step, the size of the exported model and of the whole directory. Other
    folders under DIR are listed as "not a run".
    """
    from ..runs.listing import list_runs, runs_table

    found = list_runs(dir)
    if fmt == "json":
        click.echo(json.dumps([r.as_json() for r in found], indent=2))
    elif found:
        click.echo(runs_table(found))
    else:
        click.echo(f"no run directories under {dir}")
