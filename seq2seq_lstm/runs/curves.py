"""A run's training curves, read from the CSV logs that `s2s train` writes.

    bleu = read_curves("runs/quickstart").series["val_bleu"]
    i = bleu.best()                          # the best validation: bleu.step[i], bleu.value[i]

Lightning's CSV logger writes one ``logs/version_N/metrics.csv`` per launch (a ``--resume`` opens the
next version). Training rows hold ``train_loss``, ``train_ppl``, ``lr``, ``grad_norm`` and ``tok_s``;
validation rows hold ``val_loss``, ``val_ppl`` and, for translation, ``val_bleu`` and ``val_chrf``. Both
also hold where training stood: ``steps`` (optimizer steps done), ``time`` (seconds since the launch
began training) and ``tokens`` (target tokens trained on in that launch). The versions are joined into
one run: a launch that resumed from an earlier step replaces what the previous one logged from there on,
and its time and tokens continue from where the previous one stood.

Logs written before ``steps``/``time``/``tokens`` were logged still read: their step is Lightning's
``step`` + 1 (its column counts from 0), and they have no time or token axis.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import RunDir
from ..errors import UserError
from ..files import decode_lines
from .columns import METRICS

LIGHTNING_STEP = "step"  # Lightning's own column: 0-based, so rows without "steps" add 1
POSITION = ("steps", "time", "tokens")  # where training stood, logged by the training system


@dataclass(frozen=True)
class Series:
    """One metric of one run: the rows that logged it, in step order.

    ``time`` and ``tokens`` are None when the log has no such column (written before they were logged).
    """

    metric: str
    step: tuple[int, ...]  # optimizer steps done
    time: tuple[float, ...] | None  # seconds since training began (launches of a resumed run joined)
    tokens: tuple[float, ...] | None  # target tokens trained on
    value: tuple[float, ...]

    def x(self, axis: str) -> tuple[float, ...] | None:
        """The x values on ``axis`` (one of :data:`X_AXES`)."""
        return {"step": self.step, "time": self.time, "tokens": self.tokens}[axis]

    def best(self) -> int | None:
        """Index of the best finite value (the metric's ``better`` direction; the earliest of ties), or
        None for a metric without one or a series without a finite value."""
        better = METRICS[self.metric].better if self.metric in METRICS else None
        finite = [i for i, v in enumerate(self.value) if math.isfinite(v)]
        if better is None or not finite:
            return None
        sign = 1 if better == "max" else -1
        return max(finite, key=lambda i: (sign * self.value[i], -i))


@dataclass(frozen=True)
class RunCurves:
    """Every logged metric of one run."""

    name: str  # for legends: the run directory's name
    files: tuple[Path, ...]  # the metrics.csv files read, oldest launch first
    series: Mapping[str, Series]  # metric -> its series; only metrics with at least one value


# --------------------------------------------------------------------------------------------------
# Finding the logs


def metrics_files(path: str | os.PathLike) -> tuple[Path, ...]:
    """The metrics.csv files of a run directory, oldest launch first; or ``path`` itself, a CSV file."""
    path = Path(path)
    if path.is_file():
        return (path,)
    if not path.is_dir():
        raise UserError(f"{path} does not exist")
    logs = RunDir(path).logs
    found = [(_version(p.parent.name), p) for p in logs.glob("*/metrics.csv")]
    if not found:
        hint = " (a run trained with training.logger=tensorboard or none has none)" if logs.is_dir() else ""
        raise UserError(f"{path}: no metrics.csv under {logs}{hint}; give a run directory of `s2s train`")
    return tuple(p for _, p in sorted(found))


def _version(name: str) -> tuple[int, str]:
    m = re.fullmatch(r"version_(\d+)", name)
    return (int(m[1]), name) if m else (-1, name)


# --------------------------------------------------------------------------------------------------
# Reading one CSV


@dataclass(frozen=True)
class _Row:
    step: int
    time: float | None
    tokens: float | None
    values: dict[str, float]


def read_rows(path: Path) -> list[_Row]:
    """The rows of one metrics.csv; anything malformed is one :class:`UserError` naming file and line."""
    try:
        lines = list(decode_lines(path.read_bytes().splitlines(), str(path), replace_hint="rewrite it"))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    rows = list(csv.reader(lines))
    if not rows or not any(rows[0]):
        raise UserError(f"{path}: empty; not a metrics.csv written by `s2s train`")
    header = rows[0]
    if LIGHTNING_STEP not in header:
        raise UserError(
            f"{path} line 1: no '{LIGHTNING_STEP}' column; not a metrics.csv written by `s2s train`"
        )
    out = []
    for n, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise UserError(f"{path} line {n}: {len(cells)} fields where the header has {len(header)}")
        out.append(_parse_row(dict(zip(header, cells, strict=True)), path, n))
    return out


def _parse_row(cells: dict[str, str], path: Path, n: int) -> _Row:
    values = {}
    for column, text in cells.items():
        if text.strip() == "":
            continue
        try:
            values[column] = float(text)
        except ValueError:
            raise UserError(f"{path} line {n}: {column} is {text[:40]!r}, not a number") from None
    if LIGHTNING_STEP not in values:
        raise UserError(f"{path} line {n}: no step")
    if "steps" in values:
        step = values["steps"]
    else:
        step = values[LIGHTNING_STEP] + 1
    if not (math.isfinite(step) and step == int(step) and step >= 0):
        raise UserError(f"{path} line {n}: step {step!r} is not a whole number >= 0")
    time, tokens = values.get("time"), values.get("tokens")
    metrics = {k: v for k, v in values.items() if k not in (LIGHTNING_STEP, "epoch", *POSITION)}
    return _Row(int(step), time, tokens, metrics)


# --------------------------------------------------------------------------------------------------
# Joining the launches of a run


def join_launches(launches: Sequence[list[_Row]]) -> list[_Row]:
    """One run from its launches, oldest first: a launch resumed from step s replaces the earlier rows
    from s on; its time and tokens continue from the last earlier row it keeps."""
    joined: list[_Row] = []
    for rows in launches:
        if not rows:
            continue
        first = min(r.step for r in rows)
        joined = [r for r in joined if r.step < first]
        # the resumed state's position: the latest earlier row (a validation row has both at its step)
        time0 = max((r.time for r in joined if r.time is not None), default=0.0)
        tokens0 = max((r.tokens for r in joined if r.tokens is not None), default=0.0)
        for r in rows:
            time = None if r.time is None else r.time + time0
            tokens = None if r.tokens is None else r.tokens + tokens0
            joined.append(_Row(r.step, time, tokens, r.values))
    return joined


def _series(rows: Sequence[_Row], metric: str) -> Series | None:
    picked = sorted((r for r in rows if metric in r.values), key=lambda r: r.step)
    if not picked:
        return None
    timed = all(r.time is not None for r in picked)
    counted = all(r.tokens is not None for r in picked)
    return Series(
        metric=metric,
        step=tuple(r.step for r in picked),
        time=tuple(r.time for r in picked) if timed else None,  # type: ignore[misc]
        tokens=tuple(r.tokens for r in picked) if counted else None,  # type: ignore[misc]
        value=tuple(r.values[metric] for r in picked),
    )


def read_curves(path: str | os.PathLike, name: str | None = None) -> RunCurves:
    """Every metric a run logged: ``path`` is a run directory of `s2s train` (all its launches) or one
    metrics.csv file. ``name`` (for legends) defaults to the run directory's name."""
    files = metrics_files(path)
    rows = join_launches([read_rows(f) for f in files])
    columns = dict.fromkeys(k for r in rows for k in r.values)  # in the order they first appear
    series = {m: s for m in columns if (s := _series(rows, m)) is not None}
    return RunCurves(name=name or run_name(Path(path)), files=files, series=series)


def run_name(path: Path) -> str:
    """A run's name in legends: its directory's name (for a metrics.csv, the run that holds it)."""
    path = path.resolve() if path.name in ("", ".", "..") else path
    if path.suffix == ".csv":
        parts = path.parts
        if len(parts) >= 4 and parts[-3] == "logs":  # runs/x/logs/version_0/metrics.csv
            return parts[-4]
        return path.stem
    return path.name
