"""Ctrl-C during training: finish the step, save it, stop; a second Ctrl-C stops at once.

A KeyboardInterrupt raised inside a step can land between two parameters' updates, and nothing saved
then would be a state the run ever had. So the first Ctrl-C only asks: the run stops after the step
under way, as it does at ``max_time`` (a validation if one is configured, and ``last.ckpt``), and then
says which step is saved and the command that continues it.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ..errors import UserError

logger = logging.getLogger(__name__)


class TrainingInterrupted(UserError):
    """Training stopped at the user's Ctrl-C; the message says what is saved and how to continue."""


class GracefulStop(Callback):
    """Turns the first SIGINT into ``trainer.should_stop`` at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._step: int | None = None  # the global step at the last batch end

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGINT during the block. Only the main thread can (Python runs handlers there), and a
        process started with SIGINT ignored (a background job of a script) keeps ignoring it."""
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if on_main else signal.SIG_IGN
        if previous == signal.SIG_IGN:
            yield
            return

        def handle(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt  # the second: Lightning's own handling stops at once
            self.requested = True

        signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._step:
            return  # inside a gradient accumulation: no optimizer step to stop after yet
        self._step = trainer.global_step
        stop = self.requested
        if trainer.world_size > 1:
            # every rank must stop after the same step, or the others wait forever in the next collective
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not trainer.should_stop:
            self.requested = True
            trainer.should_stop = True  # runs before the checkpoint callbacks, which then save this step
            if trainer.is_global_zero:
                logger.warning(
                    "Ctrl-C: stopping after step %d and saving it (Ctrl-C again stops at once, keeping the "
                    "last saved step)",
                    trainer.global_step,
                )


def resume_command(out_dir: Path) -> str:
    """The command that continues the run in ``out_dir`` (its config.yaml holds every setting)."""
    return f"s2s train --resume --out-dir {shlex.quote(str(out_dir))}"


def interrupted(out_dir: Path, last_ckpt: Path, saved_step: int | None, step: int) -> TrainingInterrupted:
    """The one line for a run stopped by Ctrl-C after ``step`` steps, ``saved_step`` being the step
    ``last_ckpt`` holds (None: no checkpoint of the run exists)."""
    if saved_step is None:
        return TrainingInterrupted(
            f"stopped by Ctrl-C at step {step}, before any checkpoint was saved; run the same command "
            "again to start over"
        )
    command = resume_command(out_dir)
    return TrainingInterrupted(
        f"stopped by Ctrl-C: step {saved_step} is saved in {last_ckpt}; continue with: {command}"
    )
