"""``s2s translate``: translate a file or stdin with one checkpoint or an ensemble (a thin layer over
:class:`seq2seq_lstm.inference.translator.Translator`).

Files are read in blocks, each sorted by length into batches, and written in input order; a terminal
is served line by line, each translation printed (and flushed) as soon as the line is typed.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from .evaluate import LazyChoice

BLOCK_LINES = 10_000  # lines read, sorted and translated at a time (bounds memory on huge files)
FORMATS = ("text", "jsonl")

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


def _dtypes() -> tuple[str, ...]:
    from ..config import DTYPES  # not quantize's import: that loads torch, and --help must start fast

    return DTYPES


def _length_penalties() -> tuple[str, ...]:
    from ..config import LENGTH_PENALTIES

    return LENGTH_PENALTIES


@click.command("translate")
@click.option(
    "--checkpoint",
    "-c",
    "checkpoints",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Run directory written by `s2s train` (or its model.safetensors / a .ckpt). Repeat for an ensemble.",
)
@click.option(
    "--input",
    "-i",
    "input_path",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Source text, one sentence a line; - reads stdin.",
)
@click.option(
    "--output",
    "-o",
    "output_path",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
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
    type=click.Path(file_okay=False),
    help="Write an attention heat map per sentence to DIR/line-NNNNNN.png.",
)
@click.option(
    "--interactive/--no-interactive",
    default=None,
    help="Translate each line as soon as it is read (default: when stdin is a terminal).",
)
@click.option(
    "--threads", type=click.IntRange(0, 1024), default=0, help="CPU threads for torch (0 = torch's default)."
)
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu, cuda, cuda:1, ...")
@click.option(
    "--dtype",
    type=LazyChoice(_dtypes),
    default="float32",
    show_default=True,
    help="Weight type: int8 is the fastest on a CPU (3-4.5x float32 on AVX-512 with VNNI), bfloat16 "
    "up to 2x at batch 1; both round scores a little (README: Decoding speed).",
)
def translate(
    checkpoints, input_path, output_path, sampling, temperature, top_k, top_p, seed, prefix, prefix_tab,
    batch_sentences, fmt, plot_attention, interactive, threads, device, dtype, **generation,
) -> None:  # fmt: skip
    """Translate text with a trained model (or an ensemble of them), line by line, in order."""
    from ..config import ALPHA_MAX
    from ..errors import UserError

    # refused before torch and the checkpoint load (seconds), like the ranges click checks
    if generation["alpha"] is not None and generation["alpha"] > ALPHA_MAX:
        raise UserError(
            f"--alpha must be at most {ALPHA_MAX:g} (the GNMT exponent); got {generation['alpha']:g}"
        )
    import torch

    from ..inference.translator import Sampling, Translator

    if threads:
        torch.set_num_threads(threads)
    if prefix is not None and prefix_tab:
        raise UserError("--prefix and --prefix-tab contradict each other; pass one of them")
    if input_path != "-" and not Path(input_path).is_file():
        raise UserError(f"input file {input_path} does not exist")
    overrides = {k: v for k, v in generation.items() if v is not None}
    if sampling:
        sampler = Sampling(temperature, top_k, top_p, seed)
    elif seed is not None or temperature != 1.0 or top_k or top_p != 1.0:
        raise UserError("--temperature, --top-k, --top-p and --seed need --sampling")
    else:
        sampler = None
    translator = Translator.from_checkpoint(
        list(checkpoints),
        sampling=sampler,
        batch_sentences=batch_sentences,
        device=device,
        dtype=dtype,
        **overrides,
    )
    n_best = translator.generation.n_best
    want_attention = fmt == "jsonl" or plot_attention is not None
    if interactive is None:
        interactive = input_path == "-" and sys.stdin.isatty()
    if interactive and sys.stdin.isatty():
        click.echo("Type a sentence and press Enter; Ctrl-D ends.", err=True)

    def work(out: IO[str]) -> None:
        blocks = _read_blocks(input_path, 1 if interactive else BLOCK_LINES)
        for start, lines in blocks:
            sources, prefixes = _split_prefixes(lines, prefix, prefix_tab, input_path, start)
            results = translator.translate_full(sources, prefixes, attention=want_attention)
            for i, (source, hyps) in enumerate(zip(sources, results, strict=True), start=start):
                out.write(_format(i, source, hyps, fmt, n_best))
                if plot_attention is not None:
                    _plot(plot_attention, i, hyps[0])
            out.flush()

    if output_path == "-":
        work(sys.stdout)
    else:
        _write_atomically(Path(output_path), work)


# --------------------------------------------------------------------------------------------------


def _read_blocks(path: str, size: int) -> Iterator[tuple[int, list[str]]]:
    """(1-based number of the first line, lines) for blocks of ``size`` lines; bad UTF-8 names its line."""
    from ..errors import UserError

    name = "stdin" if path == "-" else path
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    try:
        block: list[str] = []
        start = 1
        for number, raw in enumerate(iter(stream.readline, b""), start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(
                    f"{name} line {number}: not valid UTF-8 (byte {e.start + 1}); convert the file to UTF-8"
                ) from None
            block.append(line.rstrip("\r\n"))
            if len(block) >= size:
                yield start, block
                start, block = number + 1, []
        if block:
            yield start, block
    finally:
        if path != "-":
            stream.close()


def _split_prefixes(
    lines: list[str], prefix: str | None, prefix_tab: bool, path: str, start: int
) -> tuple[list[str], Any]:
    """Sources and forced prefixes of a block whose first line is line ``start`` of ``path``. With
    ``prefix_tab`` every non-empty line must hold a tab (an empty line stays an empty translation)."""
    if prefix_tab:
        parts = [line.split("\t", 1) for line in lines]
        missing = next((start + i for i, p in enumerate(parts) if len(p) == 1 and p[0]), None)
        if missing is not None:
            from ..errors import UserError

            name = "stdin" if path == "-" else path
            raise UserError(
                f"{name} line {missing}: no tab; --prefix-tab expects SOURCE<TAB>PREFIX "
                "(SOURCE<TAB> for no prefix)"
            )
        return [p[0] for p in parts], [p[1] if len(p) > 1 else None for p in parts]
    return lines, None if prefix is None else [prefix] * len(lines)


def _format(number: int, source: str, hyps: list, fmt: str, n_best: int) -> str:
    if fmt == "jsonl":
        best = hyps[0]
        record = {
            "line": number,
            "source": source,
            "translation": best.text,
            "score": best.score,
            "source_pieces": best.source_pieces,
            "nbest": [
                {
                    "text": h.text,
                    "score": h.score,
                    "pieces": h.pieces,
                    "ids": h.tokens,
                    "token_log_probs": [round(x, 6) for x in h.token_log_probs],
                    "alignment": h.alignment,
                    "attention": None
                    if h.attention is None
                    else [[round(x, 4) for x in row] for row in h.attention.tolist()],
                }
                for h in hyps
            ],
        }
        return json.dumps(record, ensure_ascii=False) + "\n"
    if n_best == 1:
        return hyps[0].text + "\n"
    return "".join(f"{number - 1} ||| {h.text} ||| {h.score:.4f}\n" for h in hyps)  # Moses n-best, 0-based


def _plot(directory: str, number: int, best) -> None:
    import logging

    from ..inference.attention_plot import plot_attention

    if best.attention is None:  # a chunked line, or an empty one (no model run)
        if best.chunks > 1:
            logging.getLogger("seq2seq_lstm").warning(
                "line %d was split into %d chunks: no attention plot", number, best.chunks
            )
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
