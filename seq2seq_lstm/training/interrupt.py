"""Ctrl-C (or SIGTERM) during training: finish the step, save it, stop; a second Ctrl-C stops at once.

A KeyboardInterrupt raised inside a step can land between two parameters' updates, and nothing saved
then would be a state the run ever had. So the first Ctrl-C only asks: the run stops after the step
under way, as it does at ``max_time`` (a validation if one is configured, and ``last.ckpt``), and then
says which step is saved and the command that continues it. SIGTERM (``kill``, ``docker stop``, a batch
system's time limit) is the same request: on its own, Lightning ends the run at the next step with exit
code 0 and nothing saved since the last validation.
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
    """Turns the first SIGINT or SIGTERM into ``trainer.should_stop`` at the next step boundary."""

    def __init__(self) -> None:
        self.requested: str | None = None  # what asked to stop: "Ctrl-C" or "SIGTERM"
        self._step: int | None = None  # the global step at the last batch end

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGINT and SIGTERM during the block. Only the main thread can (Python runs handlers
        there), and a signal the process was started with ignored (SIGINT in a script's background job)
        stays ignored. Lightning adds its own SIGTERM handler to this one while it fits."""

        def handle(signum: int, frame: Any) -> None:
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: Lightning's own handling stops at once
            self.requested = self.requested or ("Ctrl-C" if signum == signal.SIGINT else "SIGTERM")

        on_main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
        caught = [s for s, handler in previous.items() if handler != signal.SIG_IGN]
        for s in caught:
            signal.signal(s, handle)
        try:
            yield
        finally:
            for s in caught:
                signal.signal(s, previous[s])

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._step:
            return  # inside a gradient accumulation: no optimizer step to stop after yet
        self._step = trainer.global_step
        stop = self.requested is not None
        if trainer.world_size > 1:
            # every rank must stop after the same step, or the others wait forever in the next collective
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not trainer.should_stop:
            self.requested = self.requested or "Ctrl-C"  # another rank's signal
            trainer.should_stop = True  # runs before the checkpoint callbacks, which then save this step
            if trainer.is_global_zero:
                logger.warning(
                    "%s: stopping after step %d and saving it (Ctrl-C again stops at once, keeping the "
                    "last saved step)",
                    self.requested,
                    trainer.global_step,
                )


def resume_command(out_dir: Path) -> str:
    """The command that continues the run in ``out_dir`` (its config.yaml holds every setting)."""
    return f"s2s train --resume --out-dir {shlex.quote(str(out_dir))}"


def interrupted(
    by: str, out_dir: Path, last_ckpt: Path, saved_step: int | None, step: int
) -> TrainingInterrupted:
    """The one line for a run stopped ``by`` Ctrl-C or SIGTERM after ``step`` steps, ``saved_step``
    being the step ``last_ckpt`` holds (None: no checkpoint of the run exists)."""
    if saved_step is None:
        return TrainingInterrupted(
            f"stopped by {by} at step {step}, before any checkpoint was saved; run the same command "
            "again to start over"
        )
    command = resume_command(out_dir)
    return TrainingInterrupted(
        f"stopped by {by}: step {saved_step} is saved in {last_ckpt}; continue with: {command}"
    )
