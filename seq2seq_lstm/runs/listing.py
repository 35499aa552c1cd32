"""The run directories under a folder, newest first: what each trained, how far, how well (`s2s runs`).

    for run in list_runs("runs"):
        print(run.name, run.status, run.best, run.best_step)

A folder is a run when it holds the ``config.yaml`` that `s2s train` writes first and something
training leaves (checkpoints, logs or an exported model). Its status:

* ``finished``: the best weights were exported (``model.safetensors`` and ``model.json``);
* ``training``: another process holds the run (its lock file names a live process);
* ``interrupted``: checkpoints or logs, but no exported model (killed, crashed or still starting);
* ``damaged``: exported weights without a readable ``model.json`` (the model cannot be loaded);
* ``not a run``: anything else in the folder (data, notes, a tokenizer), listed so nothing is hidden.

Nothing here stops on a damaged run: what could not be read is said in the row's ``note``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from ..checkpoint import RunDir
from ..config import load_config
from ..errors import UserError
from .columns import METRICS
from .curves import RunCurves, read_curves

LOCK_FILE = ".train.lock"  # training.run_lock.LOCK_NAME (training sits above this package)
MONITOR = {"translation": "val_bleu", "lm": "val_ppl"}  # what picks a task's best checkpoint
SCORE_NAMES = {"val_bleu": "BLEU", "val_ppl": "perplexity"}


@dataclass(frozen=True)
class RunInfo:
    """One row of `s2s runs`. Fields that could not be known are None."""

    name: str
    path: str
    status: str  # finished, training, interrupted, damaged or "not a run"
    task: str | None
    steps: int | None  # optimizer steps done (from the logs, else the exported model's step)
    seconds: float | None  # training wall time, launches of a resumed run together
    metric: str | None  # the score that picks the best weights: val_bleu (translation) or val_ppl (lm)
    best: float | None
    best_step: int | None
    model_bytes: int | None  # model.safetensors, None when not exported
    bytes: int  # the whole directory (checkpoints are most of it)
    modified: float  # newest modification time of anything in it (seconds since the epoch)
    note: str | None = None  # what could not be read

    def as_json(self) -> dict:
        data = asdict(self)
        data["modified"] = datetime.fromtimestamp(self.modified).isoformat(timespec="seconds")
        return data


def list_runs(folder: str | os.PathLike) -> list[RunInfo]:
    """Every directory directly under ``folder``, runs newest first, then the others; or ``folder``
    alone when it is a run itself (its subfolders are its parts, not runs)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a directory; give the folder that holds run directories")
    if _is_run(folder):
        return [run_info(folder)]
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise UserError(f"cannot list {folder}: {e.strerror}") from None
    infos = [run_info(p) for p in children]
    return sorted(infos, key=lambda r: (r.status != "not a run", r.modified), reverse=True)


def _is_run(path: Path) -> bool:
    run = RunDir(path)
    return run.config.is_file() and any(p.exists() for p in (run.checkpoints, run.logs, run.meta))


def run_info(path: Path) -> RunInfo:
    """What one directory holds; never raises for what is inside it."""
    run = RunDir(path)
    size, modified = _du(path)
    base = dict(name=path.name or str(path), path=str(path), bytes=size, modified=modified)
    if not _is_run(path):
        return RunInfo(**base, status="not a run", task=None, steps=None, seconds=None, metric=None,
                       best=None, best_step=None, model_bytes=None)  # fmt: skip
    notes: list[str] = []
    task = _task(run, notes)
    meta = _meta(run, notes)
    curves = _curves(run, notes)
    metric = MONITOR.get(task or "")
    best, best_step = _best(metric, meta, curves)
    steps = max((max(s.step) for s in curves.series.values()), default=None) if curves else None
    if steps is None and meta and isinstance(meta.get("step"), int):
        steps = meta["step"]
    return RunInfo(
        **base, status=_status(run, meta), task=task, steps=steps, seconds=_seconds(curves),
        metric=metric, best=best, best_step=best_step,
        model_bytes=run.weights.stat().st_size if run.weights.is_file() else None,
        note="; ".join(notes) or None,
    )  # fmt: skip


def _status(run: RunDir, meta: dict | None) -> str:
    if _training(run.root / LOCK_FILE):
        return "training"
    if run.weights.is_file():
        return "finished" if meta is not None else "damaged"
    return "interrupted"


def _training(lock: Path) -> bool:
    """The lock file names a live process (a run killed with -9 leaves the file, naming a dead one)."""
    try:
        pid = int(lock.read_text(encoding="utf-8").split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _task(run: RunDir, notes: list[str]) -> str | None:
    try:
        return load_config(run.config).task
    except (UserError, OSError) as e:
        notes.append(str(e))
        return None


def _meta(run: RunDir, notes: list[str]) -> dict | None:
    if not run.meta.is_file():
        return None
    try:
        meta = json.loads(run.meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{run.meta} is not readable JSON ({e})")
        return None
    if not isinstance(meta, dict):
        notes.append(f"{run.meta} is not a JSON object")
        return None
    return meta


def _curves(run: RunDir, notes: list[str]) -> RunCurves | None:
    if not run.logs.is_dir():
        return None
    try:
        return read_curves(run.root)
    except UserError as e:
        notes.append(str(e))
        return None


def _best(metric: str | None, meta: dict | None, curves: RunCurves | None) -> tuple[float | None, int | None]:
    """The exported model's score and step (model.json), else the best validation the logs hold."""
    if metric is None:
        return None, None
    if meta is not None and _number(meta.get(metric)) and isinstance(meta.get("step"), int):
        return float(meta[metric]), meta["step"]
    series = curves.series.get(metric) if curves else None
    best = series.best() if series else None
    if series is None or best is None:
        return None, None
    return series.value[best], series.step[best]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(curves: RunCurves | None) -> float | None:
    times = [max(s.time) for s in curves.series.values() if s.time] if curves else []
    return max(times) if times else None


def _du(path: Path) -> tuple[int, float]:
    """Bytes under ``path`` and the newest modification time (links not followed; unreadable parts
    are left out rather than stopping the listing)."""
    total, newest = 0, 0.0
    for root, dirs, files in os.walk(path, onerror=lambda e: None):
        for names, counted in ((files, True), (dirs, False)):
            for name in names:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                total += st.st_size if counted else 0
                newest = max(newest, st.st_mtime)
    if newest == 0.0:
        try:
            newest = path.stat().st_mtime
        except OSError:
            pass
    return total, newest


# --------------------------------------------------------------------------------------------------
# The table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def _bytes(n: int | None) -> str:
    from ..files import size_text

    return "-" if n is None else size_text(n)


def _score(run: RunInfo) -> str:
    if run.best is None or run.metric is None:
        return "-"
    return f"{SCORE_NAMES.get(run.metric, METRICS[run.metric].title)} {run.best:.2f}"


def runs_table(runs: list[RunInfo]) -> str:
    """The rows as aligned text columns (notes on their own lines below the table)."""
    header = ["run", "status", "task", "steps", "time", "best", "at step", "model", "size", "modified"]
    rows = [header]
    for r in runs:
        rows.append([
            r.name, r.status, r.task or "-", "-" if r.steps is None else str(r.steps), _duration(r.seconds),
            _score(r), "-" if r.best_step is None else str(r.best_step), _bytes(r.model_bytes),
            _bytes(r.bytes), datetime.fromtimestamp(r.modified).strftime("%Y-%m-%d %H:%M"),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {"steps", "time", "at step", "model", "size"}
    lines = [
        "  ".join(
            c.rjust(w) if h in right else c.ljust(w) for h, c, w in zip(header, row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]
    lines += [f"{r.name}: {r.note}" for r in runs if r.note]
    return "\n".join(lines)
