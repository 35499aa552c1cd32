"""``s2s translate``: translate a file or stdin with one checkpoint or an ensemble (a thin layer over
:class:`seq2seq_lstm.inference.translator.Translator`).

Files are read in blocks, each sorted by length into batches, and written in input order; a terminal
is served line by line, each translation printed (and flushed) as soon as the line is typed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import IO, Any

import click

from ..files import check_text
from .options import (
    LazyChoice,
    PathType,
    check_engine,
    checkpoint_option,
    device_option,
    dtype_option,
    encoding_errors_option,
    engine_option,
    set_threads,
    threads_option,
)

BLOCK_LINES = 10_000  # lines read, sorted and translated at a time (bounds memory on huge files)
FORMATS = ("text", "jsonl")  # inference.formats.FORMATS, repeated so that --help need not import torch

# command-line option -> generation.* field it overrides (None: keep the checkpoint's value)
GENERATION_OPTIONS = (
    "beam_size", "n_best", "length_penalty", "alpha", "min_len", "max_len_a", "max_len_b", "no_repeat_ngram",
    "ban_unk", "batch_tokens", "max_input_len", "shortlist",
)  # fmt: skip


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and +-inf: NaN passes every range comparison, and
    no decoding option means anything at infinity (they ended in tracebacks or NaN scores)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _length_penalties() -> tuple[str, ...]:
    from ..config import LENGTH_PENALTIES

    return LENGTH_PENALTIES


@click.command("translate")
@checkpoint_option(multiple=True)
@click.option(
    "--input",
    "-i",
    "input_path",
    default="-",
    show_default=True,
    type=PathType(dir_okay=False, allow_dash=True),
    help="Source text, one sentence a line; - reads stdin.",
)
@click.option(
    "--output",
    "-o",
    "output_path",
    default="-",
    show_default=True,
    type=PathType(dir_okay=False, allow_dash=True),
    help="Where translations go; a file is written atomically (whole or not at all). - is stdout.",
)
@click.option(
    "--beam-size",
    "-b",
    type=click.IntRange(1),
    help="Beam width; 1 = greedy search (no beam with --sampling).",
)
@click.option(
    "--n-best",
    type=click.IntRange(1),
    help="Hypotheses per sentence (<= beam size; samples with --sampling).",
)
@click.option(
    "--length-penalty", type=LazyChoice(_length_penalties), help="none, gnmt ((5+|Y|)/6)^alpha or average."
)
@click.option("--alpha", type=FiniteFloatRange(0.0), help="GNMT length-penalty exponent (at most 10).")
@click.option(
    "--min-len",
    type=click.IntRange(0),
    help="Minimum target pieces before EOS; the maximum length wins (a warning says when).",
)
@click.option(
    "--max-len-a", type=FiniteFloatRange(0.0), help="Maximum target pieces = a * source pieces + b: a."
)
@click.option("--max-len-b", type=click.IntRange(0), help="Maximum target pieces = a * source pieces + b: b.")
@click.option(
    "--no-repeat-ngram", type=click.IntRange(0), help="Never repeat an n-gram of this size (0 = off)."
)
@click.option("--ban-unk/--allow-unk", default=None, help="Never produce the unknown piece (or allow it).")
@click.option(
    "--sampling", is_flag=True, help="Sample translations instead of searching (see --temperature)."
)
@click.option(
    "--temperature",
    type=FiniteFloatRange(0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Sampling temperature, 1e-6 to 1e6.",
)
@click.option(
    "--top-k",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Sample among the k best pieces (0, or k >= the vocabulary size: all).",
)
@click.option(
    "--top-p",
    type=FiniteFloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Nucleus sampling: keep this much probability.",
)
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), help="Seed for --sampling (reproducible samples).")
@click.option("--prefix", help="Forced start of every translation (continue what a translator typed).")
@click.option(
    "--prefix-tab",
    is_flag=True,
    help="Each input line is SOURCE<TAB>PREFIX: a forced target prefix per line (a line without a tab "
    "is an error; SOURCE<TAB> has no prefix).",
)
@click.option("--batch-tokens", type=click.IntRange(1), help="Source pieces per batch, padding included.")
@click.option(
    "--batch-sentences", type=click.IntRange(0), default=0, help="Cap on sentences per batch (0 = none)."
)
@click.option(
    "--max-input-len", type=click.IntRange(1), help="Longer inputs are split into chunks of this many pieces."
)
@click.option(
    "--split-sentences/--no-split-sentences",
    default=True,
    show_default=True,
    help="Translate a line of several sentences sentence by sentence (rules of the run's source "
    "language) and join them: one output line per input line; a one-sentence line is unaffected.",
)
@click.option(
    "--shortlist",
    type=click.IntRange(0),
    help="Score only N target pieces per sentence, from the run's `s2s shortlist` (faster); 0 = all.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: one translation a line (n-best: 'N ||| text ||| score'); jsonl: hypotheses, scores, "
    "pieces, log-probs, alignments and attention.",
)
@click.option(
    "--plot-attention",
    type=PathType(file_okay=False),
    help="Write an attention heat map per sentence to DIR/line-NNNNNN.png.",
)
@click.option(
    "--interactive/--no-interactive",
    default=None,
    help="Translate each line as soon as it is read (default: when stdin is a terminal).",
)
@threads_option
@device_option
@engine_option
@dtype_option(
    "Weight type: int8 is the fastest on a CPU (3-4.5x float32 on AVX-512 with VNNI), bfloat16 "
    "up to 2x at batch 1; both round scores a little (docs/decoding.md)."
)
@encoding_errors_option
def translate(
    checkpoints, input_path, output_path, sampling, temperature, top_k, top_p, seed, prefix, prefix_tab,
    batch_sentences, split_sentences, fmt, plot_attention, interactive, threads, device, engine, dtype,
    encoding_errors, **generation,
) -> None:  # fmt: skip
    """Translate text with a trained model (or an ensemble of them), line by line, in order."""
    # refused before torch and the checkpoint load (seconds), like the ranges click checks
    _check_options(input_path, output_path, plot_attention, prefix, prefix_tab, generation["alpha"])
    _check_sampling(sampling, temperature, top_k, top_p, seed)
    check_engine(engine, device, dtype, len(checkpoints))
    set_threads(threads)
    translator = _translator(checkpoints, sampling, temperature, top_k, top_p, seed, batch_sentences,
                             split_sentences, device, engine, dtype, generation)  # fmt: skip
    if interactive is None:
        interactive = input_path == "-" and sys.stdin.isatty()
    if interactive and sys.stdin.isatty():
        click.echo("Type a sentence and press Enter; Ctrl-D ends.", err=True)

    def work(out: IO[str]) -> None:
        from ..inference.formats import format_translation, input_name, read_blocks, split_prefixes

        n_best, name = translator.options.n_best, input_name(input_path)
        want_attention = fmt == "jsonl" or plot_attention is not None
        for start, lines in read_blocks(input_path, 1 if interactive else BLOCK_LINES, encoding_errors):
            sources, prefixes = split_prefixes(lines, prefix, prefix_tab, name, start)
            results = translator.translate_full(sources, prefixes, attention=want_attention)
            for i, (source, hyps) in enumerate(zip(sources, results, strict=True), start=start):
                out.write(format_translation(i, source, hyps, fmt, n_best))
                if plot_attention is not None:
                    _plot(plot_attention, i, hyps[0])
            out.flush()

    if output_path == "-":
        work(sys.stdout)
    else:
        _write_atomically(Path(output_path), work)


# --------------------------------------------------------------------------------------------------


def _check_options(input_path, output_path, plot_attention, prefix, prefix_tab, alpha) -> None:
    from ..config import ALPHA_MAX
    from ..errors import UserError
    from ..files import check_output

    if alpha is not None and alpha > ALPHA_MAX:
        raise UserError(f"--alpha must be at most {ALPHA_MAX:g} (the GNMT exponent); got {alpha:g}")
    if prefix is not None and prefix_tab:
        raise UserError("--prefix and --prefix-tab contradict each other; pass one of them")
    if input_path != "-" and not Path(input_path).is_file():
        raise UserError(f"input file {input_path} does not exist")
    if output_path != "-":
        check_output(output_path, "-o")
    if plot_attention is not None:
        check_output(plot_attention, "--plot-attention", directory=True)
    if prefix is not None:
        check_text(prefix, "--prefix")


def _check_sampling(sampling, temperature, top_k, top_p, seed) -> None:
    from ..errors import UserError

    if not sampling and (seed is not None or temperature != 1.0 or top_k or top_p != 1.0):
        raise UserError("--temperature, --top-k, --top-p and --seed need --sampling")


def _translator(checkpoints, sampling, temperature, top_k, top_p, seed, batch_sentences, split_sentences,
                device, engine, dtype, generation):  # fmt: skip
    from ..inference.translator import Sampling, Translator

    sampling = Sampling(temperature, top_k, top_p, seed) if sampling else None
    overrides = {k: v for k, v in generation.items() if v is not None}
    if engine == "onnx":
        return Translator.from_export(checkpoints[0], sampling=sampling, batch_sentences=batch_sentences,
                                      split_sentences=split_sentences, **overrides)  # fmt: skip
    return Translator.from_checkpoint(list(checkpoints), sampling=sampling, batch_sentences=batch_sentences,
                                      device=device, dtype=dtype, split_sentences=split_sentences,
                                      **overrides)  # fmt: skip


def _plot(directory: str, number: int, best) -> None:
    import logging

    from ..inference.attention_plot import plot_attention

    if best.attention is None:  # a chunked line (sentences count), or an empty one (no model run)
        if best.chunks > 1:
            logging.getLogger("seq2seq_lstm").warning(
                "line %d was split into %d chunks (sentences, or pieces of a long one): no attention plot; "
                "--no-split-sentences plots a line of several sentences whole",
                number, best.chunks,
            )  # fmt: skip
        return
    plot_attention(
        best.attention,
        best.source_pieces,
        [*best.pieces, "</s>"],
        Path(directory) / f"line-{number:06d}.png",
        title=f"line {number}: {best.text[:80]}",
    )


def _write_atomically(path: Path, work) -> None:
    """Run ``work(file)`` on a temporary file next to ``path`` and rename it into place when it succeeds."""
    from ..files import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            work(f)

    atomic_write(path, write)
