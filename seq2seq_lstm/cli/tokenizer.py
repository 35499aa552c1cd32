"""``s2s tokenizer train``, ``encode`` and ``decode``: SentencePiece models with fixed special ids.

The heavy modules (sentencepiece, datasets) are imported inside the commands so ``s2s --help`` stays
fast; ``seq2seq_lstm.config`` is light (yaml only) and supplies the option choices.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import SP_MODEL_TYPES


def _quiet_datasets() -> None:
    import datasets

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # progress bars in logs and captured output are only noise


@click.group()
def tokenizer() -> None:
    """Train SentencePiece tokenizers and look at how they split text."""


@tokenizer.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config; its tokenizer section sets the model and its data section names the corpus "
    "(data.train, data.src_lang, data.tgt_lang, data.format; task: lm reads one language).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config value, e.g. --set tokenizer.vocab_size=4000 (repeatable).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Plain-text file, one sentence per line, used instead of data.train. Once: one language or a "
    "language model (spm.model); twice: source then target (one joint spm.model, or src.model and "
    "tgt.model with --separate).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
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
    vocab_size: int | None,
    model_type: str | None,
    character_coverage: float | None,
    joint: bool | None,
    byte_fallback: bool | None,
) -> None:
    """Train a SentencePiece tokenizer (special ids: <pad>=0 <unk>=1 <s>=2 </s>=3).

    \b
    s2s tokenizer train --config configs/quickstart.yaml
    s2s tokenizer train --input corpus.en --input corpus.de --vocab-size 8000 --out tok/

    The model is trained in memory and written only when it is complete.
    """
    from ..config import load_config
    from ..errors import UserError

    direct = {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "character_coverage": character_coverage,
        "joint": joint,
        "byte_fallback": byte_fallback,
    }
    flags = {"joint": ("--joint", "--separate"), "byte_fallback": ("--byte-fallback", "--no-byte-fallback")}
    # direct options go through the config's own checks, and an error names the option as typed
    sets, labels = list(overrides), {}
    for k, v in direct.items():
        if v is None:
            continue
        sets.append(f"tokenizer.{k}={str(v).lower() if isinstance(v, bool) else v}")
        labels[sets[-1]] = flags[k][not v] if k in flags else f"--{k.replace('_', '-')} {v}"
    cfg = load_config(config_path, sets, labels)
    out = out or Path(cfg.training.out_dir) / "tokenizer"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    _quiet_datasets()

    from ..data.corpus import load_monolingual, load_parallel, read_sentences
    from ..data.tokenizer import Tokenizer

    if len(inputs) > 2:
        raise UserError(
            f"--input takes one file (one language or LM) or two (source, target); got {len(inputs)}"
        )
    if inputs:
        texts = [read_sentences(p, cfg.data.encoding_errors) for p in inputs]
        src, tgt = texts[0], (texts[1] if len(texts) == 2 else None)
    elif cfg.data.train:
        d = cfg.data
        if cfg.task == "lm":
            src, tgt = load_monolingual(d.train, d.tgt_lang, d.format, d.encoding_errors)["text"], None
        else:
            ds = load_parallel(d.train, d.src_lang, d.tgt_lang, d.format, d.encoding_errors)
            src, tgt = ds["src"], ds["tgt"]
    else:
        raise UserError("nothing to train on: pass --input FILE, or --config with data.train set")

    tok = Tokenizer.train(src, tgt, cfg.tokenizer, out_dir=out)
    kind = "joint" if tok.joint and tgt is not None else ("one language" if tgt is None else "separate")
    files = sorted(tok.model_files())
    click.echo(f"wrote {', '.join(str(out / f) for f in files)} ({cfg.tokenizer.model_type}, {kind})")
    if tok.joint:
        click.echo(f"vocabulary: {tok.src_vocab_size} pieces")
    else:
        click.echo(f"vocabulary: source {tok.src_vocab_size} pieces, target {tok.tgt_vocab_size} pieces")


_model_option = click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Tokenizer directory (spm.model, or src.model and tgt.model).",
)
_side_option = click.option(
    "--side",
    type=click.Choice(["src", "tgt"]),
    default="src",
    show_default=True,
    help="Which model to use when source and target have separate ones.",
)


@tokenizer.command()
@_model_option
@_side_option
@click.option("--pieces/--ids", default=True, show_default=True, help="Print piece strings or piece ids.")
@click.argument("input_file", type=click.File("r", encoding="utf-8"), default="-")
def encode(model_dir: Path, side: str, pieces: bool, input_file) -> None:
    """Split each line of INPUT_FILE (default: standard input) into pieces, one sentence per line."""
    from ..data.tokenizer import Tokenizer

    tok = Tokenizer.load(model_dir)
    lines = [line.rstrip("\n") for line in input_file]
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
@click.argument("input_file", type=click.File("r", encoding="utf-8"), default="-")
def decode(model_dir: Path, side: str, pieces: bool, input_file) -> None:
    """Join the space-separated pieces (or ids) of each line of INPUT_FILE back into text: encode's inverse.

    Special pieces (<pad>, <s>, </s>) are dropped; byte pieces are joined back into their characters.
    """
    from ..data.tokenizer import Tokenizer
    from ..errors import UserError

    sp = Tokenizer.load(model_dir).sp(side)
    size, name = sp.get_piece_size(), getattr(input_file, "name", "<stdin>")
    out = []
    for n, line in enumerate(input_file, 1):
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
