"""``s2s tokenizer train``, ``encode`` and ``decode``: SentencePiece models with fixed special ids.

The heavy modules (sentencepiece, datasets) are imported inside the commands so ``s2s --help`` stays
fast; ``seq2seq_lstm.config`` is light (yaml only) and supplies the option choices.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..config import SP_MODEL_TYPES
from .options import PathType, config_options, encoding_errors_option


def _quiet_datasets() -> None:
    import datasets

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # progress bars in logs and captured output are only noise


@click.group()
def tokenizer() -> None:
    """Train SentencePiece tokenizers and look at how they split text."""


@tokenizer.command()
@config_options(
    "YAML config; its tokenizer section sets the model and its data section names the corpus "
    "(data.train, data.src_lang, data.tgt_lang, data.format; task: lm reads one language).",
    "tokenizer.vocab_size=4000",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=PathType(dir_okay=False, path_type=Path),
    help="Plain-text file, one sentence per line, used instead of data.train. Once: one language or a "
    "language model (spm.model); twice: source then target (one joint spm.model, or src.model and "
    "tgt.model with --separate).",
)
@click.option(
    "--out",
    type=PathType(file_okay=False, path_type=Path),
    help="Directory for the model file(s). [default: <training.out_dir>/tokenizer]",
)
@click.option("--vocab-size", type=int, help="Pieces per model (tokenizer.vocab_size).")
@click.option(
    "--model-type", type=click.Choice(SP_MODEL_TYPES), help="SentencePiece algorithm (tokenizer.model_type)."
)
@click.option(
    "--character-coverage",
    type=float,
    help="Share of characters covered by pieces, 0.9-1.0; rarer ones are spelled in bytes "
    "(tokenizer.character_coverage).",
)
@click.option(
    "--joint/--separate",
    default=None,
    help="One model shared by source and target, or one per side (tokenizer.joint).",
)
@click.option(
    "--byte-fallback/--no-byte-fallback",
    default=None,
    help="Spell characters without a piece as UTF-8 byte pieces instead of <unk> (tokenizer.byte_fallback).",
)
def train(
    config_path: Path | None,
    overrides: tuple[str, ...],
    inputs: tuple[Path, ...],
    out: Path | None,
    **direct: Any,
) -> None:
    """Train a SentencePiece tokenizer (special ids: <pad>=0 <unk>=1 <s>=2 </s>=3).

    \b
    s2s tokenizer train --config configs/quickstart.yaml
    s2s tokenizer train --input corpus.en --input corpus.de --vocab-size 8000 --out tok/

    The model is trained in memory and written only when it is complete.
    """
    from ..config import load_config
    from ..errors import UserError
    from ..files import check_output

    cfg = load_config(config_path, *_as_overrides(overrides, direct))
    out = out or Path(cfg.training.out_dir) / "tokenizer"
    check_output(out, "--out", directory=True)
    if not inputs and not cfg.data.train:
        raise UserError("nothing to train on: pass --input FILE, or --config with data.train set")
    _quiet_datasets()

    from ..data.stream_rows import tokenizer_texts
    from ..data.tokenizer import Tokenizer

    src, tgt = tokenizer_texts(cfg, inputs)
    tok = Tokenizer.train(src, tgt, cfg.tokenizer, out_dir=out)
    kind = "joint" if tok.joint and tgt is not None else ("one language" if tgt is None else "separate")
    files = sorted(tok.model_files())
    click.echo(f"wrote {', '.join(str(out / f) for f in files)} ({cfg.tokenizer.model_type}, {kind})")
    if tok.joint:
        click.echo(f"vocabulary: {tok.src_vocab_size} pieces")
    else:
        click.echo(f"vocabulary: source {tok.src_vocab_size} pieces, target {tok.tgt_vocab_size} pieces")


def _as_overrides(overrides: tuple[str, ...], direct: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """``--set`` values plus the direct options as ``tokenizer.KEY=VALUE``, and the label each direct
    one has in an error, so that an error names the option as typed (``--vocab-size 5``)."""
    flags = {"joint": ("--joint", "--separate"), "byte_fallback": ("--byte-fallback", "--no-byte-fallback")}
    sets, labels = list(overrides), {}
    for k, v in direct.items():
        if v is None:
            continue
        sets.append(f"tokenizer.{k}={str(v).lower() if isinstance(v, bool) else v}")
        labels[sets[-1]] = flags[k][not v] if k in flags else f"--{k.replace('_', '-')} {v}"
    return sets, labels


_model_option = click.option(
    "--model",
    "model_dir",
    required=True,
    type=PathType(file_okay=False, path_type=Path),
    help="Tokenizer directory (spm.model, or src.model and tgt.model).",
)
_side_option = click.option(
    "--side",
    type=click.Choice(["src", "tgt"]),
    default="src",
    show_default=True,
    help="Which model to use when source and target have separate ones.",
)
_input_argument = click.argument(
    "input_file", type=PathType(exists=True, dir_okay=False, allow_dash=True), default="-"
)


@tokenizer.command()
@_model_option
@_side_option
@click.option("--pieces/--ids", default=True, show_default=True, help="Print piece strings or piece ids.")
@encoding_errors_option
@_input_argument
def encode(model_dir: Path, side: str, pieces: bool, encoding_errors: str, input_file: str) -> None:
    """Split each line of INPUT_FILE (default: standard input) into pieces, one sentence per line."""
    from ..data.tokenizer import Tokenizer
    from ..files import read_lines

    tok = Tokenizer.load(model_dir)
    lines = list(read_lines(input_file, encoding_errors))
    if pieces:
        out = [" ".join(p) for p in tok.encode_pieces(lines, side)]
    else:
        ids = tok.encode_src(lines) if side == "src" else tok.encode_tgt(lines)
        out = [" ".join(map(str, x)) for x in ids]
    for line in out:
        click.echo(line)


@tokenizer.command()
@_model_option
@_side_option
@click.option("--pieces/--ids", default=True, show_default=True, help="Read piece strings or piece ids.")
@encoding_errors_option
@_input_argument
def decode(model_dir: Path, side: str, pieces: bool, encoding_errors: str, input_file: str) -> None:
    """Join the space-separated pieces (or ids) of each line of INPUT_FILE back into text: encode's inverse.

    Special pieces (<pad>, <s>, </s>) are dropped; byte pieces are joined back into their characters.
    """
    from ..data.tokenizer import Tokenizer
    from ..errors import UserError
    from ..files import STDIN, read_lines

    sp = Tokenizer.load(model_dir).sp(side)
    size, name = sp.get_piece_size(), "<stdin>" if input_file == STDIN else input_file
    out = []
    for n, line in enumerate(read_lines(input_file, encoding_errors), 1):
        tokens = line.split()
        if pieces:
            out.append(sp.decode(tokens))
            continue
        for t in tokens:
            if not t.isdigit() or int(t) >= size:
                raise UserError(
                    f"{name} line {n}: {t!r} is not a piece id of this tokenizer (0 to {size - 1}); "
                    "drop --ids to read piece strings"
                )
        out.append(sp.decode([int(t) for t in tokens]))
    click.echo("\n".join(out) + ("\n" if out else ""), nl=False)  # all or nothing: no half output
