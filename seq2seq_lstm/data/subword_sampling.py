"""Subword regularization: a new segmentation of each training pair in every epoch (Kudo 2018).

With ``data.sample_alpha > 0`` the training pairs are re-encoded from their text each time a batch is
built, with SentencePiece sampling (:meth:`.tokenizer.Tokenizer.sample`), so the model sees "▁un" "der"
"stand" one epoch and "▁under" "stand" the next and learns to compose pieces instead of memorizing one
segmentation. Validation, test and translation keep the deterministic (best) segmentation.

* **Reproducible and resumable.** The draw of example ``i`` on side ``s`` in epoch ``e`` is seeded by
  ``(data.seed, e, s, i)`` alone, so it does not depend on the batch, the worker process or the order:
  the batch sampler tags each index with its epoch (:class:`SampledBatchSampler`), and a resumed run
  (same batches, same positions) draws the same pieces.
* **The token budget holds.** Sampled segmentations are longer than the best one (on Ding with 4,000
  pieces: 1.8 times as many pieces on average at alpha 0.1, 1.07 at 0.5). Batches are packed for widths
  stretched by the 95th percentile of that ratio, measured on up to 1,000 training pairs at setup
  (:func:`stretch_factor`); an example whose sample is still wider than its batch's reserved width keeps
  its deterministic pieces, so ``max(width) * sentences <= data.batch_tokens`` in every batch.

    sampling = SubwordSampling(tokenizer, alpha=0.1, seed=1234)
    sampler = SampledBatchSampler(tgt_lens, 4096, src_lens=src_lens, stretch=stretch_factor(ds, sampling))
    rows = SampledTokenDataset(ds, sampling, sampler.widths)
    DataLoader(rows, batch_sampler=sampler, collate_fn=Collator())
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from .batching import TokenBatchSampler, TokenDataset, pair_widths
from .tokenizer import SIDES, Tokenizer

STRETCH_EXAMPLES = 1000  # training pairs sampled at setup to measure how much longer samples are
STRETCH_QUANTILE = 95  # percentile of the length ratio the batches are packed for
# (ids column, text column of a translation pair, text column of a language model's corpus, side)
_SIDES = (("src_ids", "src", None, "src"), ("tgt_ids", "tgt", "text", "tgt"))
_MASK64 = np.uint64(2**64 - 1)


def example_seeds(seed: int, epoch: int, side: int, indices: Sequence[int]) -> np.ndarray:
    """One 31-bit seed per example (N,) from ``(seed, epoch, side, index)``: splitmix64 of the index
    offset by a per-(seed, epoch, side) base, cheap enough for every example of every batch."""
    base = np.random.SeedSequence([seed, epoch, side]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):  # the mixing is arithmetic modulo 2**64 on purpose
        z = np.asarray(indices, dtype=np.uint64) + base + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _MASK64
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _MASK64
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(33)).astype(np.int64)


@dataclass(frozen=True)
class SubwordSampling:
    """Sampled piece ids of training examples, the same for the same ``(seed, epoch, index)``."""

    tokenizer: Tokenizer
    alpha: float
    seed: int

    def encode(self, texts: Sequence[str], side: str, epoch: int, indices: Sequence[int]) -> list[list[int]]:
        seeds = example_seeds(self.seed, epoch, SIDES.index(side), indices)
        return self.tokenizer.sample(texts, side, self.alpha, seeds.tolist())


def _text_column(ds_columns: Sequence[str], ids_column: str) -> tuple[str, str]:
    """``(text column, tokenizer side)`` that the ids column ``src_ids``/``tgt_ids`` was encoded from."""
    _, pair, mono, side = next(s for s in _SIDES if s[0] == ids_column)
    return (pair if pair in ds_columns else mono), side


def widths_of(ids: dict[str, list[list[int]]]) -> np.ndarray:
    """The padded width (N,) each example of ``ids`` forces on its batch (:func:`.batching.pair_widths`)."""
    src, tgt = (
        np.array([len(x) for x in ids[c]], dtype=np.int64) if c in ids else None
        for c in ("src_ids", "tgt_ids")
    )
    return pair_widths(tgt, src)


def stretch_factor(ds: Dataset, sampling: SubwordSampling, n: int = STRETCH_EXAMPLES) -> float:
    """How much wider sampled examples are than deterministic ones: the :data:`STRETCH_QUANTILE`
    percentile of the ratio over up to ``n`` examples chosen with the seed (at least 1)."""
    rng = np.random.default_rng([sampling.seed, 1])
    rows = np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False)).tolist()
    cols = ds[rows]
    ids = [c for c, *_ in _SIDES if c in ds.column_names]
    sampled = {}
    for c in ids:
        text, side = _text_column(ds.column_names, c)
        sampled[c] = sampling.encode(cols[text], side, 0, rows)
    ratio = widths_of(sampled) / widths_of({c: cols[c] for c in ids})
    return max(1.0, float(np.percentile(ratio, STRETCH_QUANTILE)))


class SampledBatchSampler(TokenBatchSampler):
    """:class:`.batching.TokenBatchSampler` whose batches are ``(epoch, index)`` pairs, so that the
    dataset draws that epoch's segmentations in whatever process fetches the batch."""

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:  # type: ignore[override]
        for batch in super().__iter__():
            yield [(self.epoch, i) for i in batch]


class SampledTokenDataset(TokenDataset):
    """Training rows with freshly sampled ``src_ids``/``tgt_ids``, fetched by ``(epoch, index)`` batches.

    ``reserved`` (N,) are the widths the batches were packed for (``SampledBatchSampler.widths``): an
    example whose sample is wider than the widest reserved width of its batch keeps its deterministic
    ids, so the batch stays within the budget it was packed for.
    """

    def __init__(self, ds: Dataset, sampling: SubwordSampling, reserved: np.ndarray) -> None:
        super().__init__(ds)
        self.texts = {c: _text_column(ds.column_names, c) for c in self.columns}
        self.ds = ds.select_columns([*self.columns, *(t for t, _ in self.texts.values())])
        self.sampling, self.reserved = sampling, np.asarray(reserved)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:  # type: ignore[override]
        return self.__getitems__([item])[0]

    def __getitems__(self, items: list[tuple[int, int]]) -> list[dict[str, Any]]:  # type: ignore[override]
        epoch, indices = items[0][0], [int(i) for _, i in items]
        cols = self.ds[indices]
        sampled = {}
        for c, (text, side) in self.texts.items():
            sampled[c] = self.sampling.encode(cols[text], side, epoch, indices)
        fits = widths_of(sampled) <= self.reserved[indices].max()  # (B,): else the deterministic ids
        return [
            {**{c: sampled[c][k] if fits[k] else cols[c][k] for c in self.columns}, "index": i}
            for k, i in enumerate(indices)
        ]
