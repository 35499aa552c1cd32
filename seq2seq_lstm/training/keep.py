"""``training.keep_checkpoints``: the last N validation checkpoints, for `s2s average`.

Each validation during ``fit`` saves ``checkpoints/step-NNNNNN.ckpt`` (the whole training state, and in
its ``s2s`` entry that validation's scores), then deletes the kept checkpoints beyond the newest N.

Not Lightning's ``ModelCheckpoint(monitor="step", save_top_k=N)``: that one remembers what it kept in
the checkpoint a resume restores, so a kill between a step checkpoint and last.ckpt, or a resume from an
older checkpoint (when last.ckpt does not load), leaves files it never deletes. Here the folder itself is
the record, read at each validation, and so a kill at any moment leaves at most one checkpoint too many
until the next validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from ..checkpoint import RunDir


class KeepCheckpoints(Checkpoint):
    """Saves a step checkpoint at every validation of ``fit`` and keeps the newest ``keep`` of them.

    The validation of the final state after ``fit`` (``trainer.validate``) saves none: like last.ckpt,
    a checkpoint written after Lightning closed the epoch would resume wrongly, and resume falls back to
    the newest step checkpoint when last.ckpt does not load.
    """

    def __init__(self, run: RunDir, keep: int) -> None:
        assert keep >= 1, keep
        self.run = run
        self.keep = keep

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        step = trainer.global_step
        trainer.save_checkpoint(self.run.step_ckpt(step), weights_only=False)
        if trainer.is_global_zero:
            prune(self.run, step, self.keep)


def prune(run: RunDir, step: int, keep: int) -> list[Path]:
    """Delete the step checkpoints beyond the newest ``keep`` up to ``step``, and those after ``step``
    (left by a run that was resumed from an older checkpoint: not this run's history); returns them."""
    kept = run.step_ckpts()
    later = [path for s, path in kept.items() if s > step]
    older = [path for s, path in kept.items() if s <= step][:-keep]
    for path in later + older:
        path.unlink(missing_ok=True)
    return later + older
