"""``s2s data stats``: what the corpus looks like to training, after the length filter and batching."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import PathType, config_options


@click.group()
def data() -> None:
    """Inspect the corpora named in a config."""


@data.command()
@config_options(
    "YAML config whose data section names the splits (data.train, data.valid, data.test).",
    "data.batch_tokens=2000",
)
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    type=PathType(file_okay=False, path_type=Path),
    help="Tokenizer directory from `s2s tokenizer train`. [default: <training.out_dir>/tokenizer]",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(["train", "valid", "test"]),
    help="Only these splits (repeatable). [default: every split the config sets]",
)
def stats(config_path: Path | None, overrides: tuple[str, ...], tokenizer_dir: Path | None, splits) -> None:
    """Pairs kept and dropped by the length filter, pieces per sentence, batches and padding.

    Training uses the full filter (data.min_len, data.max_len, data.max_ratio); validation and test
    only lose pairs with an empty side. Padding is the share of pad positions in the token-budget
    batches built from length buckets; "random order" is the same budget without sorting, for contrast.
    """
    from ..config import load_config

    cfg = load_config(config_path, overrides)
    tokenizer_dir = tokenizer_dir or Path(cfg.training.out_dir) / "tokenizer"

    import datasets

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    from ..data.stats import corpus_stats
    from ..data.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer_dir)
    rows = corpus_stats(cfg, tok, list(splits) or None)
    lm = cfg.task == "lm"
    click.echo(f"tokenizer: {tokenizer_dir} ({tok!r}); batch_tokens={cfg.data.batch_tokens}")
    header = ["split", "pairs" if not lm else "sentences", "kept", "short", "long", "ratio"]
    header += ([] if lm else ["src pieces"]) + ["tgt pieces" if not lm else "pieces"]
    header += ["batches", "sent/batch", "padding", "random order"]
    table = [header]
    for s in rows:
        r = s.report
        cells = [s.split, str(r.total), str(r.kept), str(r.too_short), str(r.too_long), str(r.bad_ratio)]
        if not lm:
            cells.append(f"{s.src_pieces[0]:.1f} (max {s.src_pieces[1]})")
        cells.append(f"{s.tgt_pieces[0]:.1f} (max {s.tgt_pieces[1]})")
        cells += [
            str(s.batches),
            f"{s.sentences_per_batch:.1f}",
            f"{s.padding:.1%}",
            f"{s.padding_random:.1%}",
        ]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    for s in rows:
        click.echo(f"{s.split}: {s.path}")
