"""Corpus statistics for `s2s data stats`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import UserError
from .batching import FilterReport, pack_batches, padding_ratio
from .datamodule import load_split, make_sampler
from .tokenizer import Tokenizer

# --------------------------------------------------------------------------------------------------
# Statistics for `s2s data stats`


@dataclass
class SplitStats:
    """What one split looks like after loading, filtering and batching."""

    split: str
    path: str
    report: FilterReport
    src_pieces: tuple[float, int] | None  # (mean, max) pieces per source sentence
    tgt_pieces: tuple[float, int]  # (mean, max) pieces per target sentence
    batches: int
    sentences_per_batch: float
    padding: float  # share of padding positions with length buckets
    padding_random: float  # the same budget with examples in random order (no buckets), for comparison


def corpus_stats(cfg: Config, tokenizer: Tokenizer, splits: Sequence[str] | None = None) -> list[SplitStats]:
    """Counts, pieces per sentence and padding of token-budget batches for each configured split."""
    splits = splits or [s for s in ("train", "valid", "test") if getattr(cfg.data, s)]
    if not splits:
        raise UserError("no corpus configured; set data.train (and data.valid, data.test)")
    out = []
    for split in splits:
        ds, report = load_split(cfg, split, tokenizer)
        sampler = make_sampler(ds, cfg.data, shuffle=False)
        batches = sampler.epoch_batches(0)
        tgt = sampler.tgt_lens
        src = sampler.src_lens
        rng = np.random.default_rng(cfg.data.seed)
        random_batches = pack_batches(
            rng.permutation(len(tgt)), sampler.widths, cfg.data.batch_tokens, cfg.data.max_sentences
        )
        out.append(
            SplitStats(
                split=split,
                path=getattr(cfg.data, split),
                report=report,
                src_pieces=None if src is None else (float(src.mean()), int(src.max())),
                tgt_pieces=(float(tgt.mean()), int(tgt.max())),
                batches=len(batches),
                sentences_per_batch=len(tgt) / max(len(batches), 1),
                padding=padding_ratio(batches, tgt, src),
                padding_random=padding_ratio(random_batches, tgt, src),
            )
        )
    return out
