"""``s2s average``: average the parameters of a run's last or best validation checkpoints into a new run
directory (a thin layer over :func:`seq2seq_lstm.training.average.average_run`)."""

from __future__ import annotations

import click

from .options import PathType


@click.command("average")
@click.argument("run", type=PathType(exists=True, file_okay=False))
@click.option("--last", type=click.IntRange(1), help="Average the last N validation checkpoints.")
@click.option("--best", type=click.IntRange(1), help="Average the N best by validation score.")
@click.option(
    "--out",
    type=PathType(),
    help="The new run directory (must not exist); default RUN-avgN (--last) or RUN-bestN (--best).",
)
def average(run: str, last: int | None, best: int | None, out: str | None) -> None:
    """Average the parameters of N checkpoints of RUN into a run directory of its own.

    The checkpoints are the ones training.keep_checkpoints keeps (RUN/checkpoints/step-*.ckpt). The new
    run holds RUN's config and tokenizer and the mean weights; translate, evaluate and suggest load it
    like any other run.
    """
    from ..training.average import average_run

    summary = average_run(run, last=last, best=best, out=out)
    for member in summary.members:
        scores = " ".join(f"{k}={v:.2f}" for k, v in sorted(member.val.items()) if k != "val_loss")
        click.echo(f"{member.path.name}\tstep {member.step}\t{scores}", err=True)
    click.echo(summary.out)
