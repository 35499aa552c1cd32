"""Training curves as one PNG: a panel per metric, several runs overlaid, the best validation marked.

    plot_runs(["runs/a", "runs/b"], "curves.png", x="time")

Wall time on the x axis puts runs with different speeds on one budget (two recipes, ours against a
peer's log); steps compare what each update achieves; tokens compare data seen. Figures are drawn on
matplotlib's Agg canvas directly, without pyplot, so nothing here touches the global backend, needs a
display, or imports torch's training stack: `s2s plot` starts fast and runs anywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..files import atomic_write
from .columns import DEFAULT_METRICS, METRICS, X_AXES
from .curves import RunCurves, Series, read_curves

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CURVES_FILE = "curves.png"  # what `s2s train` leaves in the run directory
DPI = 80  # a figure of eight panels stays near 100 KB
PANEL_INCHES = (5.6, 3.0)  # width, height of one panel
LEGEND_INCHES = 0.7  # the band above the panels: the legend that names the runs, the first titles
BEST_MARKER = "*"  # the best validation point of each run
X_LABELS = {"step": "step", "time": "wall time ({unit})", "tokens": "target tokens trained on"}
LOG_SPAN = 10.0  # a perplexity spanning this factor or more gets a log axis


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` if every name is one :data:`METRICS` knows, else one line naming the stranger."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"--metrics: unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if not metrics:
        raise UserError(f"--metrics: name at least one metric of {', '.join(METRICS)}")
    return tuple(dict.fromkeys(metrics))


def panels(runs: Sequence[RunCurves], metrics: Sequence[str] | None) -> tuple[str, ...]:
    """The metrics to draw: those asked for (a panel each, logged or not), or by default those of
    :data:`DEFAULT_METRICS` that at least one run logged (a run without validation has no val panels)."""
    if metrics is not None:
        return check_metrics(metrics)
    found = tuple(m for m in DEFAULT_METRICS if any(m in r.series for r in runs))
    if not found:
        files = ", ".join(str(f) for r in runs for f in r.files)
        raise UserError(f"{files}: no metric to plot (none of {', '.join(DEFAULT_METRICS)} is logged)")
    return found


def _time_unit(runs: Sequence[RunCurves]) -> tuple[str, float]:
    """Seconds, minutes or hours, whichever reads best for the longest run."""
    longest = max((max(s.time) for r in runs for s in r.series.values() if s.time), default=0.0)
    if longest > 3 * 3600:
        return "h", 3600.0
    if longest > 180:
        return "min", 60.0
    return "s", 1.0


def _x(series: Series, run: RunCurves, axis: str, scale: float) -> list[float]:
    xs = series.x(axis)
    if xs is None:
        raise UserError(
            f"{run.files[-1]}: no {axis} column (a log written before `s2s train` recorded it); use --x step"
        )
    return [x / scale for x in xs]


def curves_figure(runs: Sequence[RunCurves], metrics: Sequence[str] | None = None, x: str = "step") -> Figure:
    """A figure with one panel per metric (titled with :data:`METRICS`' titles, in the order given) and
    one line per run, named in a legend above the panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in X_AXES:
        raise UserError(f"--x must be one of {', '.join(X_AXES)}; got {x!r}")
    if not runs:
        raise UserError("no run to plot; give at least one run directory")
    names = panels(runs, metrics)
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    width, height = PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows + LEGEND_INCHES
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # fixed margins in inches: a layout engine would cost as much as drawing the figure twice
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, bottom=0.5 / height,
                        top=1 - LEGEND_INCHES / height, wspace=0.25, hspace=0.45)  # fmt: skip
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    unit, scale = _time_unit(runs) if x == "time" else ("", 1.0)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, metric in zip(axes, names, strict=False):
        _panel(ax, metric, runs, colors, x, scale)
        ax.set_xlabel(X_LABELS[x].format(unit=unit))
        if x == "tokens":
            from matplotlib.ticker import EngFormatter

            ax.xaxis.set_major_formatter(EngFormatter())
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    _legend(fig, runs, colors, any(METRICS[m].better for m in names))
    return fig


def _panel(
    ax: Axes, metric: str, runs: Sequence[RunCurves], colors: Sequence[str], x: str, scale: float
) -> None:
    """One metric of every run that logged it; its best point marked and labelled with its value."""
    info = METRICS[metric]
    ax.set_title(info.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    bests = []
    for run, color in zip(runs, colors, strict=True):
        series = run.series.get(metric)
        if series is None:
            continue
        xs, ys = _x(series, run, x, scale), list(series.value)
        few = len(xs) <= 30  # validations: a marker on each, so a single one still shows
        ax.plot(xs, ys, color=color, linewidth=1.2, marker="o" if few else None, markersize=3)
        best = series.best()
        if best is not None:
            ax.plot([xs[best]], [ys[best]], BEST_MARKER, color=color, markersize=12, markeredgecolor="black")
            bests.append((xs[best], ys[best], color))
    if not ax.lines:
        ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center", transform=ax.transAxes)
        return
    left, right = ax.get_xlim()
    for bx, by, color in bests:  # the value beside its star, on the side with room for it
        late = bx > left + 0.75 * (right - left)
        ax.annotate(f"{by:.4g}", (bx, by), textcoords="offset points", xytext=(-6 if late else 6, 6),
                    ha="right" if late else "left", fontsize=8, color=color)  # fmt: skip
    values = [v for r in runs if metric in r.series for v in r.series[metric].value if math.isfinite(v)]
    if info.log_scale and values and min(values) > 0 and max(values) >= LOG_SPAN * min(values):
        from matplotlib.ticker import LogFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter())  # 60, not 6 x 10^1
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    if metric == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))


def _legend(fig: Figure, runs: Sequence[RunCurves], colors: Sequence[str], marks_best: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, linewidth=2) for c in colors]
    labels = [r.name for r in runs]
    if marks_best:
        handles.append(Line2D([], [], linestyle="", marker=BEST_MARKER, color="grey", markersize=10,
                              markeredgecolor="black"))  # fmt: skip
        labels.append("best validation")
    fig.legend(handles, labels, loc="upper center", ncols=min(len(labels), 4), frameon=False)


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically: a reader never sees half a picture."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return Path(path)


def run_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Legend names: each run's directory name, or, where two runs share one, the path as given."""
    from .curves import run_name

    names = [run_name(Path(p)) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def plot_runs(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    x: str = "step",
) -> Path:
    """Read each run (a run directory or a metrics.csv) and draw them overlaid into the PNG ``out``."""
    if metrics is not None:
        check_metrics(metrics)  # before reading anything
    runs = [read_curves(p, name) for p, name in zip(paths, run_names(paths), strict=True)]
    return save_png(curves_figure(runs, metrics, x), out)


def write_run_curves(run_dir: str | os.PathLike) -> Path:
    """The curves of one run into its own directory (what `s2s train` does when it finishes)."""
    return plot_runs([run_dir], Path(run_dir) / CURVES_FILE)
