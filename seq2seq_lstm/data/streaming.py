"""Token-budget batches from a streamed corpus (``data.streaming: true``), resumable mid-epoch.

Each rank runs ``W = max(1, data.num_workers)`` streams, one per DataLoader worker; stream ``w`` of rank
``r`` reads node ``r * W + w`` of :func:`.stream_rows.node_rows` (its lines, shuffled through the bounded
buffer). A stream cuts its rows into windows of ``data.window`` rows; a window is tokenized in the
worker, length-filtered, sorted into token-budget batches (the in-memory path's
:class:`~.batching.TokenBatchSampler`, seeded by ``(data.seed, epoch, node, window)``) and handed out
batch by batch. Memory is the buffer plus a window, whatever the corpus size.

Exact resume without storing buffers: the windows are cut from the shuffled rows *before* tokenizing,
so a stream can be replayed to any window by reading and shuffling alone. A stream's position is
``(window, batches of it consumed)``; the DataLoader takes batches from its workers in turn, so the
rank's position is those of its streams plus the stream due next. A resumed loader rotates the
streams over its workers so that worker 0 plays the stream due next, and the batches continue as the
uninterrupted run would have had them. A position saved after an epoch's last batch says so
(``ended``), and the resumed loader then starts the next epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..config import DataConfig
from ..errors import UserError
from .batching import Collator, TokenBatchSampler, length_rules
from .stream_rows import StreamSource, node_rows
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)
ENCODE_ROWS = 5_000  # sentences per SentencePiece call while tokenizing a window
SNAPSHOTS = 64  # loader states kept for the batches handed out but not yet trained on (prefetch)
# settings that decide the batch sequence: a resume must have the same ones
PLAN_KEYS = ("seed", "shuffle_buffer", "window", "num_workers", "batch_tokens", "max_sentences",
             "bucket_width", "min_len", "max_len", "max_ratio")  # fmt: skip


@dataclass(frozen=True)
class StreamPlan:
    """What every worker needs to make its batches (pickled into the DataLoader workers)."""

    source: StreamSource
    data: DataConfig
    rank: int = 0
    world_size: int = 1

    @property
    def streams(self) -> int:
        """Streams per rank (one per DataLoader worker; one in the trainer's process without workers)."""
        return max(1, self.data.num_workers)

    def node(self, stream: int) -> int:
        return self.rank * self.streams + stream


@dataclass(frozen=True)
class Position:
    """Where one stream stands: windows before ``window`` are done, ``batches`` of it consumed."""

    window: int = 0
    batches: int = 0


# --------------------------------------------------------------------------------------------------
# One window of rows -> batches


@dataclass(frozen=True)
class WindowBatches:
    """The token-budget batches of one window.

    The kept pairs' piece ids stay in one Arrow array per side (8 bytes a piece, where lists of Python
    ints take about 36), and a batch's rows become lists only when it is handed out: a window of tens
    of thousands of pairs then costs tens of MB, so it can be large enough to pad little.
    """

    ids: dict[str, pa.Array]  # src_ids / tgt_ids: (N,) lists of piece ids of the kept pairs
    lines: np.ndarray  # (N,) line in the file of each kept pair
    batches: list[list[int]]  # indices into the kept pairs, in the order they are handed out

    def rows(self, k: int) -> list[dict]:
        """Batch ``k`` as rows ``{"src_ids", "tgt_ids", "index"}`` for :class:`~.batching.Collator`."""
        idx = pa.array(self.batches[k], pa.int64())
        columns = {c: v.take(idx).to_pylist() for c, v in self.ids.items()}
        lines = self.lines[self.batches[k]].tolist()
        return [{**{c: v[j] for c, v in columns.items()}, "index": lines[j]} for j in range(len(lines))]


def window_batches(
    rows: dict[str, list], tokenizer: Tokenizer, d: DataConfig, seed: int
) -> tuple[WindowBatches, int, str]:
    """``(batches, skipped lines, the first skip's reason)`` of one window of rows.

    Rows are tokenized, filtered by the length rules of the in-memory path and packed into token-budget
    batches from length buckets (``line``: each pair's line in the file).
    """
    bad = [b for b in rows["bad"] if b]
    good = [i for i, b in enumerate(rows["bad"]) if not b]
    texts = {"src_ids": ("src", "src")} if "src" in rows else {}
    texts["tgt_ids"] = ("tgt" if "tgt" in rows else "text", "tgt")
    ids = {c: _encode(tokenizer, [rows[col][i] for i in good], side) for c, (col, side) in texts.items()}
    lens = np.stack([pc.list_value_length(v).to_numpy(zero_copy_only=False) for v in ids.values()])
    short, long, ratio = length_rules(lens.astype(np.int64), d.min_len, d.max_len, d.max_ratio)
    keep = np.flatnonzero(~(short | long | ratio))
    lines = np.asarray(rows["line"], dtype=np.int64)[np.asarray(good, dtype=np.int64)][keep]
    kept = {c: v.take(pa.array(keep)) for c, v in ids.items()}
    batches: list[list[int]] = []
    if len(keep):
        sampler = TokenBatchSampler(
            lens[-1][keep], d.batch_tokens, src_lens=lens[0][keep] if "src_ids" in ids else None,
            max_sentences=d.max_sentences, bucket_width=d.bucket_width, shuffle=True, seed=seed,
        )  # fmt: skip
        batches = sampler.epoch_batches(0)
    return WindowBatches(kept, lines, batches), len(bad), bad[0] if bad else ""


def _encode(tokenizer: Tokenizer, texts: list[str], side: str) -> pa.Array:
    """One side's piece ids (N,), :data:`ENCODE_ROWS` texts per SentencePiece call, so that its lists of
    Python ints exist for one chunk at a time, not for the whole window."""
    starts = range(0, max(len(texts), 1), ENCODE_ROWS)
    return pa.concat_arrays([tokenizer.encode_array(texts[i : i + ENCODE_ROWS], side) for i in starts])


def stream_items(
    plan: StreamPlan, tokenizer: Tokenizer, epoch: int, stream: int, start: Position = Position()
) -> Iterator[tuple]:
    """One stream's items: ``("batch", batch, (stream, window, batches done, skipped, why))`` and a
    final ``("end", (stream, skipped, why))``; windows before ``start`` are replayed untokenized."""
    d = plan.data
    node = plan.node(stream)
    rows = node_rows(
        plan.source, node, plan.world_size * plan.streams, seed=d.seed, epoch=epoch, buffer=d.shuffle_buffer
    )
    collate = Collator()
    skipped, why = 0, ""
    for w, window in enumerate(rows.iter(batch_size=d.window)):
        if w < start.window:
            continue
        seed = int(np.random.SeedSequence([d.seed, epoch, node, w]).generate_state(1)[0])
        batches, bad, first = window_batches(window, tokenizer, d, seed)
        del window  # its texts: the batches hold the ids
        skipped, why = skipped + bad, why or first
        for k in range(start.batches if w == start.window else 0, len(batches.batches)):
            yield "batch", collate(batches.rows(k)), (stream, w, k + 1, skipped, why)
            skipped, why = 0, ""
    yield "end", (stream, skipped, why)


class StreamingBatches(IterableDataset):
    """The batches of one rank: in a DataLoader worker, the stream that worker plays.

    ``epoch``, ``starts`` (a :class:`Position` per stream) and ``first`` (the stream worker 0 plays) are
    set by :class:`StreamingLoader` before each epoch; the workers get a copy of them.
    """

    def __init__(self, plan: StreamPlan, tokenizer: Tokenizer) -> None:
        self.plan, self.tokenizer = plan, tokenizer
        self.epoch, self.first = 0, 0
        self.starts = [Position()] * plan.streams

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        stream = ((info.id if info is not None else 0) + self.first) % self.plan.streams
        try:
            yield from stream_items(self.plan, self.tokenizer, self.epoch, stream, self.starts[stream])
        except UserError as e:  # as data: torch would wrap it in a multi-line traceback message
            yield "error", str(e)


# --------------------------------------------------------------------------------------------------
# The loader: DataLoader worker handling, resume state, DDP agreement


@dataclass(frozen=True)
class _State:
    """A rank's place in an epoch: after ``count`` batches, each stream's position and the one due next;
    ``ended``: the epoch had no batch after these (the loader had found its end)."""

    epoch: int
    count: int
    positions: tuple[Position, ...]
    due: int
    ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "count": self.count, "due": self.due, "ended": self.ended,
                "positions": [[p.window, p.batches] for p in self.positions]}  # fmt: skip

    @classmethod
    def from_dict(cls, s: dict[str, Any]) -> _State:
        positions = tuple(Position(int(w), int(b)) for w, b in s["positions"])
        return cls(int(s["epoch"]), int(s["count"]), positions, int(s["due"]), bool(s.get("ended", False)))


class StreamingLoader(DataLoader):
    """A DataLoader over :class:`StreamingBatches` that Lightning checkpoints mid-epoch.

    ``consumed()`` gives the batches of this epoch actually trained on (the loader runs ahead);
    ``epoch()`` the epoch to stream (else the loader counts its passes). A worker that dies or sends
    nothing for ``data.worker_timeout`` seconds ends the epoch with one :class:`UserError`. Under DDP
    the ranks agree before each batch, so an epoch ends for all when the first rank runs out of data
    (the others' last few batches wait for the next epoch) instead of leaving them in a collective.
    """

    def __init__(
        self,
        batches: StreamingBatches,
        consumed: Callable[[], int | None] | None = None,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        d = batches.plan.data
        workers = d.num_workers
        # its own generator for the workers' seed drawn at each epoch (the batches never use it), not
        # dropout's global RNG: a run resumed at an epoch's end restores that RNG after the draw, and
        # would lose one draw the uninterrupted run made
        super().__init__(
            batches, batch_size=None, num_workers=workers, timeout=d.worker_timeout if workers else 0,
            prefetch_factor=2 if workers else None, generator=torch.Generator().manual_seed(d.seed),
        )  # fmt: skip
        self._consumed, self._epoch, self._passes = consumed, epoch, 0
        self._resume: _State | None = None
        self._snapshots: dict[int, _State] = {}
        self.skipped = 0  # malformed lines skipped in the last epoch (data.skip_bad_lines)

    @property
    def plan(self) -> StreamPlan:
        return self.dataset.plan

    def _start(self) -> _State:
        epoch = self._epoch() if self._epoch is not None else self._passes
        resume, self._resume = self._resume, None
        if resume is not None and resume.epoch == epoch and resume.ended:
            # saved at the last batch of an epoch: Lightning, resuming, counts that epoch as done but
            # trains the next one on the iterator it made before (while current_epoch was still the
            # old one), so that iterator must hold the next epoch
            epoch += 1
        elif resume is not None and resume.epoch == epoch:
            return resume
        return _State(epoch, 0, (Position(),) * self.plan.streams, 0)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        state = self._start()
        ds = self.dataset
        ds.epoch, ds.starts, ds.first = state.epoch, list(state.positions), state.due
        self._snapshots = {state.count: state}
        self.skipped, why, agreed = 0, "", True
        for kind, *payload in self._items():
            if kind == "error":
                raise UserError(payload[0])
            info = payload[-1]
            self.skipped, why = self.skipped + info[-2], why or info[-1]
            if kind != "batch":
                continue
            if not (agreed := self._agree(True)):
                break
            state = _advance(state, info[0], info[1], info[2])
            self._remember(state)
            yield payload[0]
        if agreed:
            self._agree(False)
        self._snapshots[state.count] = replace(state, ended=True)
        self._passes += 1
        if self.skipped:
            logger.warning(
                "data.train: skipped %d malformed lines this epoch; the first: %s", self.skipped, why
            )

    def _items(self) -> Iterator[tuple]:
        """The DataLoader's items, a dead or silent worker turned into one clear line."""
        it = super().__iter__()
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if "DataLoader" not in first:
                    raise
                raise self._worker_lost(first) from None
            except (EOFError, ConnectionError) as e:  # killed while its batch's shared memory was in transit
                raise self._worker_lost(
                    f"DataLoader worker died handing over a batch ({type(e).__name__})"
                ) from None
            yield item

    def _worker_lost(self, what: str) -> UserError:
        return UserError(
            f"streaming data.train: {what}; a worker was killed or stalled (memory? lower "
            f"data.num_workers, data.window or data.shuffle_buffer; data.worker_timeout="
            f"{self.plan.data.worker_timeout:g} s)"
        )

    def _remember(self, state: _State) -> None:
        self._snapshots[state.count] = state
        self._snapshots.pop(state.count - SNAPSHOTS, None)

    def _agree(self, have: bool) -> bool:
        """Whether every rank has a batch (always ``have`` alone outside DDP)."""
        if self.plan.world_size == 1 or not torch.distributed.is_initialized():
            return have
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([int(have)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    # ------------------------------------------------------------------------------- resume state

    def _plan_dict(self) -> dict[str, Any]:
        d = asdict(self.plan.data)
        return {**{k: d[k] for k in PLAN_KEYS}, "world_size": self.plan.world_size,
                "files": self.plan.source.stamp()}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        consumed = self._consumed() if self._consumed is not None else None
        counts = sorted(self._snapshots)
        if consumed is None or consumed not in self._snapshots:
            consumed = counts[-1] if counts else None
        state = self._snapshots.get(consumed) if consumed is not None else self._resume
        mine = state.to_dict() if state is not None else None
        ranks = [mine]
        if self.plan.world_size > 1 and torch.distributed.is_initialized():
            ranks = [None] * self.plan.world_size
            torch.distributed.all_gather_object(ranks, mine)  # the checkpoint is written by rank 0 alone
        return {"streaming": self._plan_dict(), "ranks": ranks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("streaming")
        if saved is None:
            raise UserError(
                "cannot resume a streaming run from a checkpoint of an in-memory run (data.streaming)"
            )
        now = self._plan_dict()
        for key in now:
            if saved.get(key) != now[key]:
                name = {"files": "the training files", "world_size": "the number of ranks"}.get(
                    key, f"data.{key}"
                )
                what = f"{name} changed ({saved.get(key)!r} then, {now[key]!r} now)"
                raise UserError(
                    f"cannot resume the training stream: {what}; "
                    "resume with the same data, settings and devices"
                )
        mine = state["ranks"][self.plan.rank]
        self._resume = _State.from_dict(mine) if mine is not None else None


def _advance(state: _State, stream: int, window: int, done: int) -> _State:
    positions = list(state.positions)
    positions[stream] = Position(window, done)
    return _State(state.epoch, state.count + 1, tuple(positions), (stream + 1) % len(positions))
