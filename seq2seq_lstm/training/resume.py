"""``--resume``: what a run may change when it continues, and which checkpoint it continues from.

The checkpoint is ``last.ckpt`` when it loads. One that does not (damaged on disk, cut short by a full
disk, refused) is not the end of the run: the newest checkpoint of the run that loads and holds the
whole training state (``best.ckpt`` usually, a validation or so older) is used instead, and a line says
which and why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..checkpoint import (
    CKPT_KEY,
    RunDir,
    check_state_dict,
    check_tokenizer,
    load_checkpoint_file,
    model_state_from_checkpoint,
)
from ..config import Config, load_config
from ..errors import CheckpointError, ConfigError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

# sections that must be the same to resume: they decide the tokenizer and the parameters' shapes
RESUME_FIXED = ("task", "tokenizer", "model")
# what Lightning needs besides the weights to continue a run where it stopped
TRAINING_STATE = ("state_dict", "optimizer_states", "loops", CKPT_KEY)


def check_resume(cfg: Config, run: RunDir) -> None:
    """``run`` holds checkpoints and a config whose fixed sections ``cfg`` keeps (read-only checks)."""
    if not run.last_ckpt.is_file() and not _checkpoints(run):
        raise CheckpointError(f"cannot resume: {run.last_ckpt} does not exist; train without --resume first")
    if not run.config.is_file():
        raise CheckpointError(f"cannot resume: {run.config} is missing; it is written by `s2s train`")
    try:
        saved = load_config(run.config)
    except ConfigError as e:
        raise CheckpointError(f"cannot resume: {e}") from None
    new, old = cfg.to_dict(), saved.to_dict()
    for section in RESUME_FIXED:
        diff = _first_difference(new[section], old[section], section)
        if diff:
            key, now, before = diff
            raise CheckpointError(
                f"cannot resume {run.root}: {key} is {now!r} now but was {before!r} in {run.config}; "
                "resume with the same tokenizer and model settings, or train into another --out-dir"
            )


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            diff = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if diff:
                return diff
        return None
    return None if a == b else (where, a, b)


def _checkpoints(run: RunDir) -> list[Path]:
    """The run's checkpoints other than last.ckpt, newest first."""
    if not run.checkpoints.is_dir():
        return []
    others = [p for p in run.checkpoints.glob("*.ckpt") if p.name != run.last_ckpt.name and p.is_file()]
    return sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def resume_point(run: RunDir, verbose: bool = True) -> tuple[Path, int]:
    """(checkpoint, its step): last.ckpt, or the newest checkpoint that loads when it does not.

    Raises :class:`CheckpointError` with last.ckpt's problem when no checkpoint of the run loads, and
    at once for a checkpoint refused as unsafe.
    """
    problem: str | None = None
    for path in [run.last_ckpt, *_checkpoints(run)]:
        try:
            ckpt = load_checkpoint_file(path)
        except UnsafeCheckpointError:
            raise  # a pickle payload is tampering, not damage: stop and say so, never work around it
        except CheckpointError as e:
            problem = problem or str(e)
            continue
        missing = [key for key in TRAINING_STATE if key not in ckpt]
        if missing:
            problem = problem or f"{path} holds no {missing[0]!r}: it cannot continue a training run"
            continue
        step = int(ckpt.get("global_step", 0))
        log = logger.warning if path != run.last_ckpt else logger.info
        why = "" if path == run.last_ckpt else f", the newest checkpoint that loads: {problem}"
        if verbose:
            log("resuming from %s (step %d)%s", path, step, why)
        return path, step
    raise CheckpointError(problem or f"cannot resume: {run.last_ckpt} does not exist")


def check_resume_checkpoint(path: Path, model: Any, tokenizer: Any, run: RunDir) -> None:
    """Refuse a checkpoint whose tokenizer or weights do not match the run before Lightning touches it."""
    ckpt = load_checkpoint_file(path)
    info = ckpt.get(CKPT_KEY)
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} was not written by `s2s train` (no {CKPT_KEY!r} entry); cannot resume")
    check_tokenizer(tokenizer, info, str(run.tokenizer), str(path))
    check_state_dict(model, model_state_from_checkpoint(ckpt, str(path)), str(path), str(run.config))
