"""Checkpoints written so that no kill can destroy the previous one.

Lightning's own save writes into a temp file under ``$TMPDIR`` and moves it over the target; when
``$TMPDIR`` is on another file system the move truncates the real ``last.ckpt`` and copies into it, so a
kill in that window leaves an empty file that ``--resume`` cannot use, and every kill during a save
leaves a checkpoint-sized orphan in ``$TMPDIR``. Here the temp file sits beside the target and is synced
before a rename, which is atomic on one file system: the target is the old checkpoint or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with :func:`~seq2seq_lstm.files.atomic_write`; remembers the step
    of each file it wrote (so an interrupted run can say which step is saved)."""

    def __init__(self) -> None:
        super().__init__()
        self.saved_steps: dict[Path, int] = {}

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by AtomicCheckpointIO (local files only)")
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
        self.saved_steps[Path(path).resolve()] = int(checkpoint.get("global_step", 0))

    def saved_step(self, path: Path) -> int | None:
        """The step of the checkpoint this writer last put at ``path``; None if it wrote none there."""
        return self.saved_steps.get(Path(path).resolve())


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temp files that processes killed while saving left in ``folder``; only safe while the
    run directory is locked (a live save's temp file looks the same)."""
    orphans = sorted(folder.glob(".*.ckpt.*.tmp")) if folder.is_dir() else []
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans
