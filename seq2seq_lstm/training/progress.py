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
CAP_CHECK_STEPS = 20  # steps timed before the step budget is checked against training.max_time


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
    # Lightning's Timer goes negative once max_time has passed (a resumed run counts the time of
    # the runs before it): nothing is left then, never a negative clock
    cap = None if cap_left is None else max(cap_left, 0.0)
    if by_steps is None or cap is None:
        return by_steps if by_steps is not None else cap
    return min(by_steps, cap)


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

    def _mean_step(self, trainer: L.Trainer) -> float | None:
        if self._start is None or trainer.global_step <= self._start[1]:
            return None
        return (time.perf_counter() - self._start[0]) / (trainer.global_step - self._start[1])

    def _cap_left(self, trainer: L.Trainer) -> float | None:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        return timer.time_remaining("train") if timer is not None else None

    def status(self, trainer: L.Trainer) -> tuple[str, str | None]:
        """("300/1200", "3:05") for the bar: steps done of the budget, time left (None: no estimate yet)."""
        done, total = trainer.global_step, total_steps(trainer)
        left = None
        if total is None or done < total:
            left = seconds_left(done, total, self._mean_step(trainer), self._cap_left(trainer))
        return (f"{done}/{total}" if total else str(done)), (None if left is None else clock(left))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # once, when a few steps are timed: a machine too slow or busy for the step budget within
        # max_time would end with fewer steps and a weaker model; say so while there is time to act
        if self._start is None or trainer.global_step != self._start[1] + CAP_CHECK_STEPS:
            return
        total, mean, cap_left = total_steps(trainer), self._mean_step(trainer), self._cap_left(trainer)
        if total is None or mean is None or cap_left is None or not trainer.is_global_zero:
            return
        needed = max(total - trainer.global_step, 0) * mean
        if needed > cap_left:
            logger.warning(
                "at %.2f s a step the %d steps still to do need about %s, but training.max_time stops the "
                "run in %s: it will end with fewer steps unless training.max_time is raised",
                mean, total - trainer.global_step, clock(needed), clock(cap_left),
            )  # fmt: skip

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
