"""Tokenization, the length filter, token-budget batches and their tensors."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler

from ..errors import UserError
from ..vocab import BOS_ID, EOS_ID, PAD_ID
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Tokenization and length filter


class _Encode:
    """``datasets.map`` function: a batch of text columns -> the same table with piece-id columns added
    (picklable for ``num_proc`` workers).

    It takes and returns Arrow tables: the text columns pass through to the cache file untouched, and
    each side's ids become one Arrow array in one conversion, with no per-row work in ``datasets``.
    """

    def __init__(self, tokenizer: Tokenizer, num_threads: int) -> None:
        self.tokenizer, self.num_threads = tokenizer, num_threads

    def __call__(self, batch: pa.Table) -> pa.Table:
        sides = {"tgt_ids": ("text", "tgt")} if "text" in batch.column_names else _PAIR_SIDES
        for out, (column, side) in sides.items():
            ids = self.tokenizer.encode_array(batch[column].to_pylist(), side, self.num_threads)
            batch = batch.append_column(out, ids)
        return batch


_PAIR_SIDES = {"src_ids": ("src", "src"), "tgt_ids": ("tgt", "tgt")}  # new column: (text column, side)
_ENCODE_ROWS = 10_000  # sentences per SentencePiece call and per Arrow record batch of the cache


def tokenize(ds: Dataset, tokenizer: Tokenizer, num_proc: int = 1) -> Dataset:
    """Add ``src_ids``/``tgt_ids`` (monolingual ``text`` -> ``tgt_ids``); no BOS/EOS.

    The result is cached under a fingerprint of the corpus and the tokenizer model, so a second run
    with the same files and model reads the ids from disk instead of encoding again. One process
    encodes on all cores (SentencePiece's threads); ``num_proc`` worker processes one thread each.
    """
    fingerprint = hashlib.sha256(f"{ds._fingerprint}:{tokenizer.fingerprint()}:tok1".encode()).hexdigest()[
        :16
    ]
    procs = num_proc if num_proc > 1 and len(ds) >= 2 * num_proc else None
    return (
        ds.with_format("arrow")
        .map(
            _Encode(tokenizer, num_threads=1 if procs else -1),
            batched=True,
            batch_size=_ENCODE_ROWS,
            writer_batch_size=_ENCODE_ROWS,
            num_proc=procs,
            new_fingerprint=fingerprint,
            desc="Tokenizing",
        )
        .with_format(None)
    )


def column_lengths(ds: Dataset, column: str) -> np.ndarray:
    """Length of each list in ``column`` (pieces per sentence), via Arrow without Python loops.

    Measured on the whole table, then taken through the dataset's row selection (the length filter's
    ``select``): ``datasets`` itself would gather a selected column one row at a time, seconds a
    million rows before the first batch.
    """
    import pyarrow.compute as pc

    lens = pc.list_value_length(ds.data.column(column)).to_numpy(zero_copy_only=False).astype(np.int64)
    if ds._indices is not None:
        lens = lens[ds._indices.column(0).to_numpy()]
    return lens


def pair_widths(tgt_lens: np.ndarray, src_lens: np.ndarray | None = None) -> np.ndarray:
    """The padded width (N,) each example forces on its batch: source pieces S, or target pieces + 1
    (BOS or EOS), whichever is wider (the target alone for a language model)."""
    return tgt_lens + 1 if src_lens is None else np.maximum(src_lens, tgt_lens + 1)


@dataclass
class FilterReport:
    """How many pairs the length filter saw and dropped, by the first rule each pair broke."""

    total: int
    too_short: int = 0
    too_long: int = 0
    bad_ratio: int = 0

    @property
    def kept(self) -> int:
        return self.total - self.too_short - self.too_long - self.bad_ratio

    def __str__(self) -> str:
        return (
            f"kept {self.kept} of {self.total} (dropped {self.too_short} too short, "
            f"{self.too_long} too long, {self.bad_ratio} over the length ratio)"
        )


def length_rules(
    lens: np.ndarray, min_len: int, max_len: int | None, max_ratio: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(too short, too long, over the ratio)`` masks (N,) for pieces per side ``lens`` (sides, N); each
    pair is blamed on the first rule it breaks (the in-memory filter and the streaming windows share it)."""
    short = (lens < min_len).any(axis=0)
    long = ~short & ((lens > max_len).any(axis=0) if max_len is not None else False)
    ratio = np.zeros_like(short)
    if max_ratio is not None and len(lens) == 2:
        r = lens.max(axis=0) / np.maximum(lens.min(axis=0), 1)
        ratio = ~short & ~long & (r > max_ratio)
    return short, long, ratio


def filter_by_length(
    ds: Dataset, min_len: int, max_len: int | None, max_ratio: float | None = None
) -> tuple[Dataset, FilterReport]:
    """Keep pairs with ``min_len <= pieces <= max_len`` on both sides and ``longer / shorter <= max_ratio``.

    Monolingual datasets (only ``tgt_ids``) are filtered on their one side. The ratio uses the shorter
    side's length floored at 1.
    """
    sides = [column_lengths(ds, c) for c in ("src_ids", "tgt_ids") if c in ds.column_names]
    short, long, ratio = length_rules(np.stack(sides), min_len, max_len, max_ratio)
    keep = ~(short | long | ratio)
    report = FilterReport(len(ds), int(short.sum()), int(long.sum()), int(ratio.sum()))
    if not keep.all():
        ds = ds.select(np.flatnonzero(keep))
    return ds, report


# --------------------------------------------------------------------------------------------------
# Token-budget batches


def pack_batches(
    order: Sequence[int], widths: np.ndarray, batch_tokens: int, max_sentences: int = 0
) -> list[list[int]]:
    """Cut ``order`` greedily into batches with ``max(width) * len(batch) <= batch_tokens``.

    ``widths[i]`` is the padded length example ``i`` forces on its batch. An example wider than the
    budget on its own gets a batch by itself (the budget cannot be met; the length filter prevents it).
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        w = int(widths[i])
        new_width = max(width, w)
        if cur and (
            new_width * (len(cur) + 1) > batch_tokens or (max_sentences and len(cur) >= max_sentences)
        ):
            batches.append(cur)
            cur, new_width = [], w
        cur.append(int(i))
        width = new_width
    if cur:
        batches.append(cur)
    return batches


def padding_ratio(
    batches: Sequence[Sequence[int]], tgt_lens: np.ndarray, src_lens: np.ndarray | None = None
) -> float:
    """Share of padding among all positions of the padded batches (source and target sides together).

    Target positions are ``len + 1`` (``tgt_in`` = BOS + ids, ``tgt_out`` = ids + EOS).
    """
    pad = real = 0
    for b in batches:
        idx = np.asarray(b)
        for lens in [tgt_lens[idx] + 1] + ([src_lens[idx]] if src_lens is not None else []):
            pad += int(lens.max()) * len(idx) - int(lens.sum())
            real += int(lens.sum())
    return pad / (pad + real) if pad + real else 0.0


class TokenBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices under a token budget, from length buckets (fairseq-style).

    * Cost of a batch = ``max(padded source length, padded target length + 1) * sentences`` and stays
      ``<= batch_tokens`` (and ``<= max_sentences`` sentences when that is > 0).
    * Examples are sorted by that width; with ``bucket_width`` w > 1 examples whose widths fall in the
      same bucket of w pieces are shuffled among themselves (more variety, a little more padding).
      Ties are broken at random per epoch, then the batch order is shuffled by ``(seed, epoch)``;
      every rank computes the same list, so nothing needs to be communicated.
    * DDP: rank r takes batches ``r, r + world, ...``. Every rank gets the same number of batches, so
      collective ops never wait on a rank that ran out: by default the list is padded by repeating
      its first batches (those examples are seen twice in that epoch); ``drop_last=True`` drops the
      remainder instead (those examples are skipped in that epoch). The ``index`` of each example
      lets evaluation remove the repeats.
    * ``stretch`` > 1 packs each example as if it were that many times wider (at most the budget): room
      for the longer segmentations that subword sampling draws (:mod:`.subword_sampling`).
    * ``state_dict()`` / ``load_state_dict()`` hold the epoch and the number of batches already
      consumed, so a resumed run continues with exactly the remaining batches of that epoch.

    Lightning calls ``set_epoch`` on ``batch_sampler.sampler``; ``sampler`` is this object for that.
    """

    def __init__(
        self,
        tgt_lens: Sequence[int] | np.ndarray,
        batch_tokens: int,
        *,
        src_lens: Sequence[int] | np.ndarray | None = None,
        max_sentences: int = 0,
        bucket_width: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        stretch: float = 1.0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}); got {rank}")
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int64)
        self.src_lens = None if src_lens is None else np.asarray(src_lens, dtype=np.int64)
        if self.src_lens is not None and len(self.src_lens) != len(self.tgt_lens):
            raise ValueError("src_lens and tgt_lens must have the same length")
        self.widths = pair_widths(self.tgt_lens, self.src_lens)
        if stretch != 1.0:  # room for longer sampled segmentations (subword_sampling), within the budget
            room = np.minimum(np.ceil(self.widths * stretch).astype(np.int64), batch_tokens)
            self.widths = np.maximum(self.widths, room)
        self.batch_tokens, self.max_sentences, self.bucket_width = batch_tokens, max_sentences, bucket_width
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.position = 0  # batches of this rank's epoch already consumed
        self._cache: tuple[int, list[list[int]]] | None = None
        oversize = int((self.widths > batch_tokens).sum())
        if oversize:
            logger.warning(
                "%d examples are wider than batch_tokens=%d; each goes alone in a batch",
                oversize,
                batch_tokens,
            )

    @property
    def sampler(self) -> TokenBatchSampler:
        return self

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of an epoch, in order, before sharding (the same on every rank)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.widths)
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket_width == 1:
            keys = (
                [tie] + ([self.src_lens] if self.src_lens is not None else []) + [self.tgt_lens, self.widths]
            )
        else:
            keys = [tie, self.widths // self.bucket_width]
        order = np.lexsort(keys)  # last key is the primary one
        batches = pack_batches(order, self.widths, self.batch_tokens, self.max_sentences)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of an epoch (see the class docstring for how uneven counts are handled)."""
        batches = self.epoch_batches(epoch)
        if self.world_size == 1:
            return batches
        n = len(batches)
        if self.drop_last:
            total = n // self.world_size * self.world_size
        else:
            total = math.ceil(n / self.world_size) * self.world_size
        padded = [batches[i % n] for i in range(total)] if n else []
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        if self.position >= len(batches):
            self.position = 0  # iterating a finished epoch again (no set_epoch in between) replays it
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch

    def __len__(self) -> int:
        return len(self.rank_batches())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``; the same epoch again keeps the resume position (Lightning calls it on resume)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def padding_ratio(self, epoch: int | None = None) -> float:
        """Share of padding positions in this epoch's batches (all ranks)."""
        return padding_ratio(self.epoch_batches(epoch), self.tgt_lens, self.src_lens)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Resume state; ``consumed`` overrides the batches counted as used (when a loader prefetches)."""
        return {
            "epoch": self.epoch,
            "position": self.position if consumed is None else consumed,
            "seed": self.seed,
            "num_examples": len(self.widths),
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "num_examples", "world_size"):
            if state[key] != mine[key]:
                raise UserError(
                    f"cannot resume the batch order: the checkpoint has {key}={state[key]} but this run has "
                    f"{mine[key]}; resume with the same data, data.seed and number of devices"
                )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


# --------------------------------------------------------------------------------------------------
# Batches as tensors


class TokenDataset(torch.utils.data.Dataset):
    """A tokenized Dataset seen by a DataLoader: rows ``{"src_ids", "tgt_ids", "index"}``.

    ``__getitems__`` fetches a whole batch with one Arrow read instead of one per row.
    """

    def __init__(self, ds: Dataset) -> None:
        self.columns = [c for c in ("src_ids", "tgt_ids") if c in ds.column_names]
        self.ds = ds.select_columns(self.columns)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.ds[int(i)], "index": int(i)}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        cols = self.ds[list(indices)]
        return [{**{c: cols[c][k] for c in self.columns}, "index": int(i)} for k, i in enumerate(indices)]


class Collator:
    """Rows -> the batch dict of the contract.

    ``src`` (B, S) and ``src_lens`` (B,) when rows have ``src_ids`` (the source carries no BOS/EOS);
    ``tgt_in`` (B, T) = BOS + ids, ``tgt_out`` (B, T) = ids + EOS, ``tgt_lens`` (B,) = len + 1;
    ``index`` (B,) the row of each example in its dataset. Padding is ``PAD_ID``.
    """

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "src_ids" in rows[0]:
            src = [torch.tensor(r["src_ids"], dtype=torch.long) for r in rows]
            batch["src"] = pad_sequence(src, batch_first=True, padding_value=PAD_ID)  # (B, S)
            batch["src_lens"] = torch.tensor([len(s) for s in src], dtype=torch.long)
        tgt_in = [torch.tensor([BOS_ID, *r["tgt_ids"]], dtype=torch.long) for r in rows]
        tgt_out = [torch.tensor([*r["tgt_ids"], EOS_ID], dtype=torch.long) for r in rows]
        batch["tgt_in"] = pad_sequence(tgt_in, batch_first=True, padding_value=PAD_ID)  # (B, T)
        batch["tgt_out"] = pad_sequence(tgt_out, batch_first=True, padding_value=PAD_ID)  # (B, T)
        batch["tgt_lens"] = torch.tensor([len(t) for t in tgt_in], dtype=torch.long)
        batch["index"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
        return batch


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`TokenBatchSampler` that Lightning can checkpoint mid-epoch.

    Lightning saves ``state_dict()`` of stateful train loaders in each checkpoint and restores it
    on resume. The loader prefetches, so the sampler has usually handed out one batch more than was
    trained on; ``consumed`` (when given) returns the number of batches actually trained on.
    """

    def __init__(
        self,
        dataset,
        batch_sampler: TokenBatchSampler,
        consumed: Callable[[], int | None] | None = None,
        **kw,
    ):
        super().__init__(dataset, batch_sampler=batch_sampler, **kw)
        self._consumed = consumed

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict(consumed=self._consumed() if self._consumed else None)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
