"""Learning a run's vocabulary shortlist from its training split (`s2s shortlist`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TASK_NAMES
from ..decoding.shortlist import Shortlist
from ..errors import UserError
from ..files import check_output


@dataclass(frozen=True)
class ShortlistReport:
    """What `s2s shortlist` did: the file, the corpus size, and coverage of the validation references."""

    path: Path
    sentences: int  # training pairs the lexicon was estimated on
    coverage: dict[int, float]  # shortlist size -> share of validation reference pieces inside it

    def __str__(self) -> str:
        cover = ", ".join(f"{size}: {100 * c:.1f}%" for size, c in self.coverage.items())
        text = f"wrote {self.path} (IBM Model 1 on {self.sentences:,} training pairs)"
        return text + (f"; validation reference pieces inside the shortlist of size {cover}" if cover else "")


def build_shortlist(
    checkpoint: str | os.PathLike,
    *,
    per_source: int = 30,
    num_frequent: int = 100,
    iterations: int = 5,
    max_pairs: int = 100_000,
    sizes: Sequence[int] = (500, 1000, 2000),
) -> ShortlistReport:
    """Train the shortlist of a translation run on its config's training split (tokenized and length-
    filtered as for training; a corpus of more than ``max_pairs`` pairs is sampled down to that many,
    which bounds IBM Model 1's memory to a few GB) and write it into the run directory; report its
    coverage of the validation references (a piece outside the shortlist cannot be produced) at each
    of ``sizes``."""
    from ..checkpoint import load_run_config, locate_run
    from ..data.datamodule import load_split
    from ..data.tokenizer import Tokenizer

    run = locate_run(checkpoint)
    cfg = load_run_config(run)
    if cfg.task != "translation":
        raise UserError(f"{run.root} holds a {TASK_NAMES[cfg.task]}; a shortlist is for translation models")
    check_output(run.shortlist, "the shortlist file")  # before IBM Model 1's minutes, not after them
    tokenizer = Tokenizer.load(run.tokenizer)
    train, _ = load_split(cfg, "train", tokenizer)
    if len(train) > max_pairs:  # a fixed sample: the same shortlist every time
        sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:max_pairs]
        train = train.select(sorted(sample.tolist()))
    lexicon = Shortlist.train(
        train["src_ids"], train["tgt_ids"], tokenizer.src_vocab_size, tokenizer.tgt_vocab_size,
        per_source=per_source, num_frequent=num_frequent, copy_source=tokenizer.joint, iterations=iterations,
    )  # fmt: skip
    path = lexicon.save(run.shortlist)
    coverage = {}
    if cfg.data.valid:
        valid, _ = load_split(cfg, "valid", tokenizer)
        refs = valid["tgt_ids"]
        for size in sizes:
            chosen = lexicon.pieces(valid["src_ids"], size)
            inside = sum(torch.isin(torch.tensor(r, dtype=torch.long), row).sum().item()
                         for r, row in zip(refs, chosen, strict=True))  # fmt: skip
            coverage[size] = inside / max(1, sum(len(r) for r in refs))
    return ShortlistReport(path, len(train), coverage)
