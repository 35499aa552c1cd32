"""Lightning DataModules: the splits of a config, tokenized, filtered and batched."""

from __future__ import annotations

import logging

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from ..config import Config, DataConfig
from ..errors import UserError
from .batching import (
    Collator,
    FilterReport,
    ResumableDataLoader,
    TokenBatchSampler,
    TokenDataset,
    column_lengths,
    filter_by_length,
    tokenize,
)
from .corpus import load_monolingual, load_parallel
from .stream_rows import stream_source
from .streaming import StreamingBatches, StreamingLoader, StreamPlan
from .subword_sampling import SampledBatchSampler, SampledTokenDataset, SubwordSampling, stretch_factor
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# DataModules


def load_split(
    cfg: Config, split: str, tokenizer: Tokenizer, train_filter: bool | None = None
) -> tuple[Dataset, FilterReport]:
    """Load, tokenize and filter one split of the config (``"train"``, ``"valid"`` or ``"test"``).

    The training split gets the full length filter. Evaluation splits only lose pairs with an empty
    side (nothing to encode or score), so their scores stay comparable with `s2s evaluate`.
    """
    d: DataConfig = cfg.data
    path = getattr(d, split)
    if not path:
        raise UserError(f"data.{split} is not set; set it to a corpus path (see `s2s data stats --help`)")
    if cfg.task == "lm":
        ds = load_monolingual(path, d.tgt_lang, d.format, d.encoding_errors)
    else:
        ds = load_parallel(path, d.src_lang, d.tgt_lang, d.format, d.encoding_errors)
    ds = tokenize(ds, tokenizer, d.num_proc)
    full = split == "train" if train_filter is None else train_filter
    if full:
        ds, report = filter_by_length(ds, d.min_len, d.max_len, d.max_ratio)
    else:
        ds, report = filter_by_length(ds, 1, None, None)
    logger.info("%s (%s): %s", split, path, report)
    if len(ds) == 0:
        raise UserError(
            f"data.{split} ({path}): no sentences left after the length filter ({report}); "
            "check data.min_len, data.max_len and data.max_ratio"
        )
    return ds, report


def make_sampler(
    ds: Dataset,
    d: DataConfig,
    *,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    kind: type[TokenBatchSampler] = TokenBatchSampler,
    stretch: float = 1.0,
) -> TokenBatchSampler:
    """The :class:`TokenBatchSampler` (or ``kind``) of a tokenized split with the config's budget and seed."""
    src = column_lengths(ds, "src_ids") if "src_ids" in ds.column_names else None
    return kind(
        column_lengths(ds, "tgt_ids"),
        d.batch_tokens,
        src_lens=src,
        max_sentences=d.max_sentences,
        bucket_width=d.bucket_width,
        shuffle=shuffle,
        seed=d.seed,
        rank=rank,
        world_size=world_size,
        stretch=stretch,
    )


def sampled_train_rows(
    ds: Dataset, cfg: Config, tokenizer: Tokenizer, rank: int, world: int
) -> tuple[SampledTokenDataset, SampledBatchSampler]:
    """The training rows and batches with subword sampling (``data.sample_alpha`` > 0)."""
    sampling = SubwordSampling(tokenizer, cfg.data.sample_alpha, cfg.data.seed)
    stretch = stretch_factor(ds, sampling)
    logger.info("subword sampling (alpha %g): batches packed for %.2fx the pieces", sampling.alpha, stretch)
    sampler = make_sampler(
        ds, cfg.data, shuffle=True, rank=rank, world_size=world, kind=SampledBatchSampler, stretch=stretch
    )
    return SampledTokenDataset(ds, sampling, sampler.widths), sampler


class TranslationDataModule(L.LightningDataModule):
    """Parallel corpora from ``cfg.data`` as token-budget batches for Seq2Seq training.

    Train batches are shuffled by ``data.seed`` + epoch and sharded across DDP ranks by the sampler
    itself, so the Trainer needs ``use_distributed_sampler=False``. Validation/test batches are sorted
    by length, not shuffled. ``num_workers`` stays 0: tokenization is done once up front, and the
    collate step is cheap next to an LSTM step.
    """

    def __init__(self, cfg: Config, tokenizer: Tokenizer, num_workers: int = 0) -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.num_workers = cfg, tokenizer, num_workers
        self.datasets: dict[str, Dataset] = {}
        self.reports: dict[str, FilterReport] = {}
        self.train_sampler: TokenBatchSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "valid", "test")):
            if split in self.datasets or (split != "train" and not getattr(self.cfg.data, split)):
                continue
            if split == "train" and self.cfg.data.streaming:
                continue  # read as it is consumed, by train_dataloader's workers
            self.datasets[split], self.reports[split] = load_split(self.cfg, split, self.tokenizer)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return trainer.global_rank, trainer.world_size
        return 0, 1

    def _consumed(self) -> int | None:
        # batches whose training step has run in this epoch (at on_train_batch_end, or after validation)
        trainer = self.trainer
        if trainer is None:
            return None
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> ResumableDataLoader | StreamingLoader:
        rank, world = self._rank_world()
        if self.cfg.data.streaming:
            return self._streaming_loader(rank, world)
        ds = self.datasets["train"]
        if self.cfg.data.sample_alpha > 0:
            rows, self.train_sampler = sampled_train_rows(ds, self.cfg, self.tokenizer, rank, world)
        else:
            rows = TokenDataset(ds)
            self.train_sampler = make_sampler(ds, self.cfg.data, shuffle=True, rank=rank, world_size=world)
        return ResumableDataLoader(
            rows,
            self.train_sampler,
            consumed=self._consumed,
            collate_fn=Collator(),
            num_workers=self.num_workers,
            # its own generator for the workers' seed drawn at each epoch, not dropout's global RNG: a
            # run resumed at an epoch's end restores that RNG after the draw, and would lose one draw
            generator=torch.Generator().manual_seed(self.cfg.data.seed),
        )

    def _streaming_loader(self, rank: int, world: int) -> StreamingLoader:
        source = stream_source(self.cfg, "train")
        plan = StreamPlan(source, self.cfg.data, rank=rank, world_size=world)

        def epoch() -> int:
            return self.trainer.current_epoch if self.trainer is not None else 0

        return StreamingLoader(StreamingBatches(plan, self.tokenizer), consumed=self._consumed, epoch=epoch)

    def _eval_loader(self, split: str) -> DataLoader | list:
        if split not in self.datasets:
            return []
        rank, world = self._rank_world()
        sampler = make_sampler(
            self.datasets[split], self.cfg.data, shuffle=False, rank=rank, world_size=world
        )
        return DataLoader(
            TokenDataset(self.datasets[split]),
            batch_sampler=sampler,
            collate_fn=Collator(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")


class LMDataModule(TranslationDataModule):
    """Monolingual text (``task: lm``; the ``data.tgt_lang`` side) as batches of ``tgt_in``/``tgt_out``."""

    def __init__(self, cfg: Config, tokenizer: Tokenizer, num_workers: int = 0) -> None:
        if cfg.task != "lm":
            cfg = cfg.replace(task="lm")
        super().__init__(cfg, tokenizer, num_workers)
