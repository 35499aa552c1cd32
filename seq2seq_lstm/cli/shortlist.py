"""``s2s shortlist``: build a translation run's vocabulary shortlist (a thin layer over
:func:`seq2seq_lstm.training.shortlist.build_shortlist`); ``s2s translate --shortlist N`` then uses it."""

from __future__ import annotations

import click

from .options import checkpoint_option


@click.command("shortlist")
@checkpoint_option(help="Run directory written by `s2s train`.")
@click.option(
    "--per-source",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="Most probable translations kept per source piece (IBM Model 1).",
)
@click.option(
    "--frequent",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Most frequent target pieces every sentence keeps.",
)
@click.option("--iterations", type=click.IntRange(1), default=5, show_default=True, help="EM iterations.")
def shortlist(checkpoint: str, per_source: int, frequent: int, iterations: int) -> None:
    """Learn which target pieces each source sentence needs (for faster decoding with --shortlist N).

    Reads the run's training split, estimates p(target piece | source piece) with IBM Model 1 and
    writes CHECKPOINT/shortlist.safetensors; prints how many validation reference pieces a shortlist of
    500, 1000 and 2000 pieces per sentence keeps.
    """
    from ..training.shortlist import build_shortlist

    click.echo(
        build_shortlist(checkpoint, per_source=per_source, num_frequent=frequent, iterations=iterations)
    )
