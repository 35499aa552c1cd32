"""``s2s plot``: training curves of one or more runs as one PNG (a thin layer over
:func:`seq2seq_lstm.runs.plot.plot_runs`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..runs.columns import DEFAULT_METRICS, METRICS, X_AXES
from .options import PathType


def _metric_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """``train_loss,val_bleu`` -> the names (checked by the library, which says what it knows)."""
    return None if value is None else tuple(m.strip() for m in value.split(",") if m.strip())


@click.command("plot")
@click.argument("run", nargs=-1, required=True, type=PathType(exists=True, path_type=Path))
@click.option("--output", "-o", default="curves.png", show_default=True,
              type=PathType(dir_okay=False, path_type=Path), help="The PNG to write.")  # fmt: skip
@click.option(
    "--metrics",
    callback=_metric_list,
    metavar="NAME,...",
    help=f"Panels, in this order, from: {', '.join(METRICS)}. "
    f"[default: those of {','.join(DEFAULT_METRICS)} that a run logged]",
)
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(X_AXES),
    default="step",
    show_default=True,
    help="The x axis: optimizer steps, wall time since training began, or target tokens trained on.",
)
def plot(run: tuple[Path, ...], output: Path, metrics: tuple[str, ...] | None, x_axis: str) -> None:
    """Draw the training curves of RUN (a run directory of `s2s train`, or a metrics.csv) as one PNG.

    A panel per metric; several runs are overlaid, each named by its directory, and each run's best
    validation score is marked with a star. `--x time` compares runs of different speed on one budget.
    `s2s train` leaves the same picture of its own run in RUN/curves.png.
    """
    from ..files import check_output
    from ..runs.plot import plot_runs

    check_output(output, "--output")
    click.echo(f"wrote {plot_runs(run, output, metrics, x_axis)}")
