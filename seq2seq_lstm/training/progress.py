"""Where a run stands: steps done of the budget and the time left, in the progress bar and the log.

A run is budgeted in optimizer steps so that a busy machine gives the same model, only later; the time
left is therefore an estimate: the steps still to do times the mean wall time of this process's steps so
far (validations included, as they recur), capped by what ``training.max_time`` leaves.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer, TQDMProgressBar

logger = logging.getLogger(__name__)


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def seconds_left(
    done: int, total: int | None, mean_step: float | None, cap_left: float | None
) -> float | None:
    """The estimate described in the module docstring; None while nothing says (no total, no steps yet)."""
    by_steps = None if total is None or mean_step is None else max(total - done, 0) * mean_step
    if by_steps is None or cap_left is None:
        return by_steps if by_steps is not None else cap_left
    return min(by_steps, max(cap_left, 0.0))


def total_steps(trainer: L.Trainer) -> int | None:
    """The step budget: ``max_steps``, or the steps in ``max_epochs`` epochs; None when only time ends it."""
    if trainer.max_steps > 0:
        return trainer.max_steps
    batches = trainer.num_training_batches
    if trainer.max_epochs is not None and trainer.max_epochs > 0 and math.isfinite(batches):
        return trainer.max_epochs * math.ceil(batches / trainer.accumulate_grad_batches)
    return None


class StepClock(Callback):
    """Times this process's steps; logs "step 300/1200: 1:02 so far, about 3:05 left" after each
    validation, for runs without a progress bar (logs, CI) as much as with one."""

    def __init__(self) -> None:
        self._start: tuple[float, int] | None = None  # (time, global step) of this process's first step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._start is None:
            self._start = (time.perf_counter(), trainer.global_step)

    def status(self, trainer: L.Trainer) -> tuple[str, str | None]:
        """("300/1200", "3:05") for the bar: steps done of the budget, time left (None: no estimate yet)."""
        done, total = trainer.global_step, total_steps(trainer)
        mean = None
        if self._start is not None and done > self._start[1]:
            mean = (time.perf_counter() - self._start[0]) / (done - self._start[1])
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        cap_left = timer.time_remaining("train") if timer is not None else None
        left = None if total is not None and done >= total else seconds_left(done, total, mean, cap_left)
        return (f"{done}/{total}" if total else str(done)), (None if left is None else clock(left))

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self._start is None:
            return
        steps, left = self.status(trainer)
        so_far = clock(time.perf_counter() - self._start[0])
        logger.info("step %s: %s so far%s", steps, so_far, f", about {left} left" if left else "")


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (it counts the batches of an epoch) plus the step budget and the time left."""

    def __init__(self, clock_: StepClock, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self._clock = clock_

    def get_metrics(self, trainer: L.Trainer, pl_module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        steps, left = self._clock.status(trainer)
        return {"step": steps, **({"left": left} if left else {}), **metrics}
