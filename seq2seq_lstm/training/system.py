"""LightningModules that train the models of ``model.py``: loss, metrics, optimizers; no model code.

``TranslationSystem`` wraps a :class:`~seq2seq_lstm.model.seq2seq.Seq2Seq` and picks checkpoints by validation
BLEU (decoded sentences scored with sacrebleu); ``LanguageModelSystem`` wraps a
:class:`~seq2seq_lstm.model.seq2seq.LanguageModel` and picks them by validation perplexity. Both share:

* loss: cross-entropy with label smoothing, padding ignored (:mod:`seq2seq_lstm.training.loss`: the sums of
  ``F.cross_entropy(label_smoothing=, ignore_index=PAD)``, faster on the CPU), divided by the batch's target
  tokens (so long and short batches weigh each token alike). Under DDP each process normalizes by its
  own tokens and DDP averages the gradients, which is exactly gradient accumulation over the same
  batches: ``devices=W`` equals ``accumulate=W`` on one process.
* logs: per-token training loss, perplexity (exp of the per-token NLL *without* smoothing), learning
  rate, gradient norm and source+target tokens per second; validation per-token NLL and perplexity;
  with both, where training stands (optimizer steps, seconds and target tokens since it began).
* divergence guard: a non-finite loss or gradient norm stops training *before* the optimizer step with
  one line naming the step and the last good checkpoint, which is therefore never overwritten by a NaN
  state.
* exact resume: the RNG states go into each checkpoint and are restored right before the first
  training step after a resume (the sampler position travels through the train loader's state).
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import CKPT_KEY, save_checkpoint_info
from ..config import Config
from ..data.tokenizer import Tokenizer
from ..decoding.options import SearchOptions
from ..decoding.search import generate
from ..errors import UserError
from ..vocab import PAD_ID
from .loss import cross_entropy_sums

logger = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss or the gradient norm became NaN or infinite."""


# --------------------------------------------------------------------------------------------------
# Optimizers and learning-rate schedules (registries; the config's choices are their keys)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def warmup_inverse_sqrt(step: int, warmup: int) -> float:
    """LR factor: linear warmup to 1 over ``warmup`` steps, then ``sqrt(warmup / n)`` (Vaswani et al. 2017).

    ``step`` is 0-based (LambdaLR's count), ``n = step + 1`` the optimizer step it applies to.
    """
    n, w = step + 1, max(warmup, 1)
    return n / w if n < w else math.sqrt(w / n)


def _constant(opt: torch.optim.Optimizer, cfg: Config, monitor: str, mode: str) -> dict | None:
    return None


def _warmup_decay(opt: torch.optim.Optimizer, cfg: Config, monitor: str, mode: str) -> dict | None:
    fn = functools.partial(warmup_inverse_sqrt, warmup=cfg.training.warmup_steps)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, fn), "interval": "step"}


def _plateau(opt: torch.optim.Optimizer, cfg: Config, monitor: str, mode: str) -> dict | None:
    t = cfg.training
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=mode, factor=t.plateau_factor, patience=t.plateau_patience
    )
    # Lightning asks after every step; lr_scheduler_step() only passes on fresh validation results
    return {"scheduler": sched, "interval": "step", "frequency": 1, "monitor": monitor, "strict": False}


SCHEDULES: dict[str, Callable[..., dict | None]] = {
    "constant": _constant,
    "warmup_decay": _warmup_decay,
    "plateau": _plateau,
}


# --------------------------------------------------------------------------------------------------
# RNG state for exact resume (tensors and plain values only: checkpoints load with weights_only=True)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, first, *rest = state["python"]
    random.setstate((version, tuple(first), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# Systems


class Seq2SeqSystem(L.LightningModule):
    """What translation and language-model training share; subclasses say how to run the model.

    Args:
        cfg: the whole config (loss, optimizer and schedule from ``training``, decoding from ``generation``).
        model: the nn.Module to train (``Seq2Seq`` or ``LanguageModel``).
        tokenizer: for decoding validation sentences and for the tokenizer hashes stored in checkpoints.
    """

    monitor: ClassVar[str]  # the metric that picks the best checkpoint, drives early stopping and plateau
    monitor_mode: ClassVar[str]  # "max" or "min"

    def __init__(self, cfg: Config, model: nn.Module, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self._last_time: float | None = None  # when the previous training step started (tokens/s)
        self._last_tokens = 0
        self._started: float | None = None  # when this launch began training (the "time" column)
        self._tokens_seen: Tensor | int = 0  # target tokens trained on in this launch, all processes
        self._pending_rng: dict[str, Any] | None = None  # restored before the first step after a resume
        self._pending_plateau: float | None = None  # a validation score the resumed scheduler has not seen
        self._fresh_monitor = False  # a validation result the plateau scheduler has not seen yet
        self.val_step = -1  # optimizer step of the latest validation in this process (-1: none yet)
        self._val: dict[str, Any] = {}
        self.val_metrics: dict[str, float] = {}  # the latest validation results (stored in checkpoints)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Teacher-forced logits (B, T, V) for a batch dict."""
        raise NotImplementedError

    def _token_losses(
        self, batch: dict[str, Tensor], smoothing: float, need_nll: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """(summed loss with smoothing, summed NLL without it (no gradient; None when not ``need_nll``
        and it would cost extra), target tokens) of a batch."""
        logits = self(batch)  # (B, T, V)
        target = batch["tgt_out"].flatten()  # (B*T,)
        loss, nll = cross_entropy_sums(logits.flatten(0, 1), target, smoothing, PAD_ID, need_nll)
        tokens = (target != PAD_ID).sum()
        return loss, nll, tokens

    # ------------------------------------------------------------------------------------ training

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self._pending_rng is not None:
            # restored here, not in on_load_checkpoint: loaders created between the two draw from the RNG
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        if self._pending_plateau is not None:
            # the plateau update Lightning makes right after a validation, which the resumed checkpoint
            # was written before: make it now, before the first step, as the uninterrupted run did
            scheduler = self.lr_schedulers()
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.lr_scheduler_step(scheduler, torch.tensor(self._pending_plateau))
            self._pending_plateau = None

    def on_train_start(self) -> None:
        self._started = time.perf_counter()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        smoothing = self.cfg.training.label_smoothing
        loss_sum, nll, tokens = self._token_losses(batch, smoothing, need_nll=self._is_log_step())
        stats = torch.stack([loss_sum.detach().float(), tokens.float()])
        world = self.trainer.world_size
        if world > 1:
            # every process must see the same verdict on divergence, or they deadlock in the next collective
            stats = self.trainer.strategy.reduce(stats.clone(), reduce_op="sum")
        if not torch.isfinite(stats[0]):
            self._diverged("loss", stats[0].item())
        self._log_training(batch, nll, stats)
        return loss_sum / tokens.clamp(min=1)

    def _log_training(self, batch: dict[str, Tensor], nll: Tensor | None, stats: Tensor) -> None:
        now = time.perf_counter()
        n_tokens = int((batch["tgt_out"] != PAD_ID).sum()) + int(batch.get("src_lens", torch.zeros(1)).sum())
        if self._last_time is not None and now > self._last_time:
            self.log("tok_s", self._last_tokens / (now - self._last_time), prog_bar=True, on_step=True)
        self._last_time, self._last_tokens = now, n_tokens
        loss = stats[0] / stats[1].clamp(min=1)
        self.log("loss", loss, prog_bar=True, on_step=True, logger=False)
        self._tokens_seen = self._tokens_seen + stats[1]
        if self._is_log_step() and nll is not None:
            # perplexity needs the NLL without smoothing (on the CPU the loss computes both in one pass)
            if self.trainer.world_size > 1:
                nll = self.trainer.strategy.reduce(nll.clone(), reduce_op="sum")
            per_token = nll / stats[1].clamp(min=1)
            self.log("train_loss", loss, on_step=True)
            self.log("train_ppl", torch.exp(per_token.clamp(max=50)), on_step=True)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True)
            self._log_position(self.trainer.global_step + 1)  # this step's loss: counted as done

    def _log_position(self, steps: int) -> None:
        """Where training stands, for curves over steps, wall time or tokens (`s2s plot`): Lightning's
        own ``step`` column is off by one at validations after ``fit``, and it logs no time."""
        if self._started is not None:  # not in a sanity check or a validation outside training
            self.log("steps", float(steps))
            self.log("time", time.perf_counter() - self._started)
            self.log("tokens", float(self._tokens_seen))

    def _is_log_step(self) -> bool:
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:  # fmt: skip
        """Clip by the global norm (Pascanu et al. 2013) and stop on a non-finite norm before the step."""
        params = [p for p in self.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        fp16 = str(self.trainer.precision).startswith("16")
        if not fp16 and not torch.isfinite(norm):
            # fp16's gradient scaler skips such steps by design; elsewhere they mean divergence
            self._diverged("gradient norm", norm.item())
        if gradient_clip_val:
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)
        if self._is_log_step():
            self.log("grad_norm", norm, on_step=True)

    def _diverged(self, what: str, value: float) -> None:
        step = self.trainer.global_step + 1
        last = self._last_checkpoint()
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
        raise TrainingDiverged(
            f"{what} became {value} at step {step}; {where}; lower training.lr or check the data"
        )

    def _last_checkpoint(self) -> str | None:
        cb = self.trainer.checkpoint_callback
        if cb is None:
            return None
        if cb.last_model_path and Path(cb.last_model_path).is_file():
            return cb.last_model_path
        path = Path(cb.dirpath or "") / "last.ckpt"
        return str(path) if cb.dirpath and path.is_file() else None

    # ---------------------------------------------------------------------------------- validation

    def on_validation_epoch_start(self) -> None:
        self._val = {"loss": {}, "rows": []}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        target = batch["tgt_out"]  # (B, T)
        logits = self(batch).float()  # (B, T, V)
        nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD_ID, reduction="none")  # (B, T)
        # kept per sentence: under DDP the shards are evened out by repeating batches, and a sentence
        # seen twice must count once (the sentence index is the key)
        sums, tokens = nll.double().sum(1).tolist(), (target != PAD_ID).sum(1).tolist()
        self._val["loss"].update(zip(batch["index"].tolist(), zip(sums, tokens, strict=True), strict=True))

    def _gather(self, part: Any) -> list[Any]:
        """Every rank's ``part`` (a list with this rank's alone when not distributed)."""
        if self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return [part]
        gathered: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, part)
        return gathered

    def on_validation_epoch_end(self) -> None:
        losses = {i: v for part in self._gather(self._val["loss"]) for i, v in part.items()}
        total, tokens = sum(v[0] for v in losses.values()), sum(v[1] for v in losses.values())
        nll = torch.tensor(total / max(tokens, 1), dtype=torch.float32)
        metrics = {"val_loss": nll, "val_ppl": torch.exp(nll.clamp(max=50))}
        metrics.update(self._score_decoded())
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name == self.monitor, sync_dist=False, rank_zero_only=False)
        self.val_metrics = {k: float(v) for k, v in metrics.items()}
        self._log_position(self.trainer.global_step)
        self._last_time = None  # validation time is not training throughput
        if not self.trainer.sanity_checking:
            self._fresh_monitor = True
            self.val_step = self.trainer.global_step

    def _score_decoded(self) -> dict[str, Tensor]:
        return {}

    # ------------------------------------------------------------------------------------- optimizers

    def configure_optimizers(self) -> Any:
        t = self.cfg.training
        # fused: one kernel per parameter for the whole update instead of ~8 elementwise passes over
        # the weights and their Adam moments, each of which reads and writes main memory
        opt = OPTIMIZERS[t.optimizer](
            self.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, fused=True
        )
        sched = SCHEDULES[t.schedule](opt, self.cfg, self.monitor, self.monitor_mode)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if self._fresh_monitor and metric is not None:
                scheduler.step(metric)
                self._fresh_monitor = False
        else:
            scheduler.step()

    # ------------------------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = save_checkpoint_info(self.cfg, self.tokenizer)
        # every rank's own RNG: their draws differ with their batches' shapes, so one rank's state
        # restored everywhere would resume the other ranks' dropout differently (called on every rank)
        info["rng_ranks"] = self._gather(rng_state())
        info["rng"] = info["rng_ranks"][0]
        info["val"] = dict(self.val_metrics)
        # a validation's checkpoint is written before Lightning hands its score to the plateau scheduler
        info["fresh_monitor"] = self._fresh_monitor
        checkpoint[CKPT_KEY] = info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get(CKPT_KEY, {})
        ranks = info.get("rng_ranks") or []
        attached = self._trainer is not None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if attached else (0, 1)
        # resumed on another number of processes: rank 0's state is the best there is
        self._pending_rng = ranks[rank] if len(ranks) == world else info.get("rng")
        self.val_metrics = dict(info.get("val", {}))
        self._fresh_monitor = bool(info.get("fresh_monitor", False))
        self._pending_plateau = self.val_metrics.get(self.monitor) if self._fresh_monitor else None


class TranslationSystem(Seq2SeqSystem):
    """Trains a ``Seq2Seq``; validation decodes sentences (greedy or beam) and scores BLEU and chrF."""

    monitor = "val_bleu"
    monitor_mode = "max"

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(batch["src"], batch["src_lens"], batch["tgt_in"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        limit = self.cfg.data.max_valid_sentences
        keep = batch["index"] < limit if limit else torch.ones_like(batch["index"], dtype=torch.bool)
        if keep.any():
            rows = keep.nonzero().squeeze(1)
            hyps = self.decode(batch["src"][rows], batch["src_lens"][rows])
            refs = self.tokenizer.decode_tgt(batch["tgt_out"][rows].tolist())  # PAD/EOS decode to nothing
            self._val["rows"].extend(zip(batch["index"][rows].tolist(), hyps, refs, strict=True))

    @torch.no_grad()
    def decode(self, src: Tensor, src_lens: Tensor) -> list[str]:
        """Detokenized best translation of each source row (beam search when generation.beam_size > 1)."""
        options = self.search_options
        state = self.model.start(src, src_lens)
        nbest = generate(self.model, state, options, batch_size=src.size(0),
                         max_len=options.max_lengths(src_lens), src_lens=src_lens)  # fmt: skip
        return self.tokenizer.decode_tgt([hyps[0].tokens for hyps in nbest])

    @functools.cached_property
    def search_options(self) -> SearchOptions:
        """Validation decodes with the run's ``generation`` options, the 1-best only (so ``n_best``
        leaves the search as it is without a length penalty) and without attention."""
        return SearchOptions.from_generation(self.cfg.generation, n_best=1, return_attention=False)

    def _score_decoded(self) -> dict[str, Tensor]:
        import sacrebleu

        rows = [r for part in self._gather(self._val["rows"]) for r in part]
        unique = dict(sorted((i, (h, r)) for i, h, r in rows))  # DDP pads shards by repeating batches
        if not unique:
            return {"val_bleu": torch.tensor(0.0), "val_chrf": torch.tensor(0.0)}
        hyps = [h for h, _ in unique.values()]
        refs = [r for _, r in unique.values()]
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        chrf = sacrebleu.corpus_chrf(hyps, [refs])
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            logger.info("step %d: %s | chrF2 %.2f | e.g. %r -> %r", self.global_step, bleu, chrf.score,
                        hyps[0], refs[0])  # fmt: skip
        return {"val_bleu": torch.tensor(bleu.score), "val_chrf": torch.tensor(chrf.score)}


class LanguageModelSystem(Seq2SeqSystem):
    """Trains a ``LanguageModel`` (next-word suggestion); the best checkpoint has the lowest perplexity."""

    monitor = "val_ppl"
    monitor_mode = "min"

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(batch["tgt_in"])


SYSTEMS: dict[str, type[Seq2SeqSystem]] = {"translation": TranslationSystem, "lm": LanguageModelSystem}
