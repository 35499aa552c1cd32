"""A LightningModule that records what each training step saw, and a quiet Trainer for it: the data
tests' way to check which batches Lightning really trains on, across epochs and resumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch


class Recorder(L.LightningModule):
    """Appends ``record(self, batch)`` to ``seen`` at every training step; the loss is a dummy."""

    def __init__(self, record: Callable[[L.LightningModule, dict], Any]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.record, self.seen = record, []

    def training_step(self, batch, batch_idx):
        self.seen.append(self.record(self, batch))
        return self.w * batch["src"].float().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def quiet_trainer(root, **kwargs) -> L.Trainer:
    """Two epochs on the CPU without validation, logger, progress bar or summary. The data modules'
    samplers shard by themselves, so Lightning must not wrap them in a DistributedSampler."""
    return L.Trainer(accelerator="cpu", max_epochs=2, use_distributed_sampler=False, limit_val_batches=0,
                     logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=root, **kwargs)  # fmt: skip
