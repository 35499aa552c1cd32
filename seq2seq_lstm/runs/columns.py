"""What the columns of a run's metrics.csv mean, and which of them `s2s plot` draws.

Kept apart from the reader so the command line can build its help and checks from this registry
without importing anything heavy (``s2s --help`` imports every command module).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A column of metrics.csv that can be drawn."""

    title: str  # the panel's title
    better: str | None = None  # "max" or "min" for validation scores (the best point is marked)
    log_scale: bool = False  # perplexities fall over orders of magnitude


# metric name (the CSV column, and the word --metrics takes) -> how to show it; in panel order
METRICS: dict[str, Metric] = {
    "train_loss": Metric("training loss (label-smoothed)"),
    "train_ppl": Metric("training perplexity", log_scale=True),
    "val_loss": Metric("validation loss", better="min"),
    "val_ppl": Metric("validation perplexity", better="min", log_scale=True),
    "val_bleu": Metric("validation BLEU", better="max"),
    "val_chrf": Metric("validation chrF", better="max"),
    "lr": Metric("learning rate"),
    "tok_s": Metric("tokens/s (source + target)"),
    "grad_norm": Metric("gradient norm (before clipping)", log_scale=True),
}
# what `s2s plot` draws unless told otherwise (those a run logged): grad_norm only on request
DEFAULT_METRICS = ("train_loss", "train_ppl", "val_loss", "val_bleu", "val_chrf", "val_ppl", "lr", "tok_s")
X_AXES = ("step", "time", "tokens")  # what --x takes: optimizer steps, wall time, target tokens
