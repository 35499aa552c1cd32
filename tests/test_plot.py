"""`s2s plot` and seq2seq_lstm.runs: curves read from the metrics.csv of real tiny runs, drawn as panels.

Two runs are trained once per test session by `s2s train` itself (:func:`tiny_runs`), a validation every
5 steps: ``a`` (10 steps, then resumed to 14, so its log has two launches) and ``b`` (8 steps at half the
learning rate: its last validation comes after Lightning's loop, where its step column is not off by one).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest
from cli_results import ok, one_error_line
from click.testing import CliRunner

from seq2seq_lstm.cli import main
from seq2seq_lstm.runs.columns import DEFAULT_METRICS, METRICS
from seq2seq_lstm.runs.curves import read_curves
from seq2seq_lstm.runs.plot import BEST_MARKER, DPI, LEGEND_INCHES, PANEL_INCHES, curves_figure, plot_runs

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAIN_SETS = ("training.val_every_steps=5", "training.log_every_steps=1", "training.num_threads=1")


def s2s(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="s2s")


def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """The session's two trained runs (see the module docstring); trained by the first caller."""
    root = tmp_path_factory.getbasetemp() / "tiny_runs"
    a, b = root / "a", root / "b"
    if not (b / "model.json").is_file():
        sets = [f"--set={s}" for s in TRAIN_SETS]
        train = ("train", *sets, "--accelerator", "cpu")
        ok(s2s(*train, "--config", TINY_CONFIG, "--max-steps", 10, "--out-dir", a))
        ok(s2s(*train, "--resume", "--max-steps", 14, "--out-dir", a))
        half_lr = ("--set", "training.lr=0.005")
        ok(s2s(*train, "--config", TINY_CONFIG, *half_lr, "--max-steps", 8, "--out-dir", b))
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return tiny_runs(tmp_path_factory)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def panels_png(rows: int) -> tuple[int, int]:
    """The pixel size of a PNG of two columns of panels in ``rows`` rows."""
    return round(2 * PANEL_INCHES[0] * DPI), round((rows * PANEL_INCHES[1] + LEGEND_INCHES) * DPI)


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


# --------------------------------------------------------------------------------------------------
# Reading


def test_curves_of_a_real_run_hold_every_logged_metric_at_its_step(runs):
    curves = read_curves(runs["b"])
    assert curves.name == "b"
    assert set(DEFAULT_METRICS) | {"grad_norm"} <= set(curves.series)
    train = curves.series["train_loss"]
    assert train.step == tuple(range(1, 9))  # logged every step, counted as steps done
    bleu = curves.series["val_bleu"]
    assert bleu.step == (5, 8)  # the validations `s2s train` prints as "step 5", "step 8"
    for series in (train, bleu):
        assert list(series.time) == sorted(series.time) and series.time[0] > 0
        assert list(series.tokens) == sorted(series.tokens) and series.tokens[0] > 0
    # the validation at step 8 stands where the training row of step 8 stands
    assert bleu.tokens[-1] == train.tokens[-1]


def test_the_best_validation_is_the_exported_one(runs):
    meta = json.loads((runs["b"] / "model.json").read_text())
    curves = read_curves(runs["b"])
    loss, chrf, bleu = (curves.series[m] for m in ("val_loss", "val_chrf", "val_bleu"))
    assert loss.value[loss.best()] == min(loss.value)
    assert chrf.value[chrf.best()] == max(chrf.value)
    best = bleu.best()
    assert bleu.value[best] == pytest.approx(meta["val_bleu"], abs=1e-4)
    # ties keep the earliest validation, as the checkpoint callback does
    assert bleu.step[best] == meta["step"]


def test_a_resumed_run_joins_its_launches(runs):
    logs = sorted(p.parent.name for p in (runs["a"] / "logs").glob("*/metrics.csv"))
    assert logs == ["version_0", "version_1"]
    curves = read_curves(runs["a"])
    train = curves.series["train_loss"]
    assert train.step == tuple(range(1, 15))  # no step twice, none missing
    # the second launch's clock and token count continue from where the first stood
    assert list(train.time) == sorted(train.time)
    assert list(train.tokens) == sorted(train.tokens) and len(set(train.tokens)) == 14
    assert curves.series["val_bleu"].step == (5, 10, 14)


# --------------------------------------------------------------------------------------------------
# Drawing


def test_the_figure_has_the_panels_asked_for_in_order(runs):
    asked = ["val_bleu", "train_loss", "lr"]
    fig = curves_figure([read_curves(runs["a"])], asked)
    assert titles(fig) == [METRICS[m].title for m in asked]


def test_by_default_every_logged_metric_gets_a_panel(runs):
    fig = curves_figure([read_curves(runs["a"])])
    assert titles(fig) == [METRICS[m].title for m in DEFAULT_METRICS]


def test_overlaid_runs_are_named_in_the_legend_and_drawn_in_each_panel(runs):
    fig = curves_figure([read_curves(runs["a"]), read_curves(runs["b"])], ["train_loss", "val_bleu"])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "best validation"]
    train, bleu = (ax for ax in fig.axes if ax.get_visible())
    assert len({line.get_color() for line in train.lines}) == 2
    assert [list(line.get_xdata()) for line in train.lines] == [list(range(1, 15)), list(range(1, 9))]
    # each run's best validation carries a star at its step and score
    stars = [line for line in bleu.lines if line.get_marker() == BEST_MARKER]
    want = []
    for name in ("a", "b"):
        s = read_curves(runs[name]).series["val_bleu"]
        want.append(([s.step[s.best()]], [s.value[s.best()]]))
    assert [(list(s.get_xdata()), list(s.get_ydata())) for s in stars] == want


@pytest.mark.parametrize(
    ("axis", "label"), [("time", "wall time (s)"), ("tokens", "target tokens trained on")]
)
def test_time_and_tokens_on_the_x_axis(runs, axis, label):
    curves = read_curves(runs["b"])
    fig = curves_figure([curves], ["train_loss"], x=axis)
    (ax,) = fig.axes
    assert ax.get_xlabel() == label
    assert list(ax.lines[0].get_xdata()) == list(curves.series["train_loss"].x(axis))


def test_a_run_without_validation_rows_still_plots(runs, tmp_path):
    source = (runs["a"] / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = source[0].split(",").index("val_loss")
    training_rows = [line for line in source[1:] if line.split(",")[column] == ""]
    assert 0 < len(training_rows) < len(source) - 1
    csv = tmp_path / "metrics.csv"
    csv.write_text("\n".join([source[0], *training_rows]) + "\n")
    fig = curves_figure([read_curves(csv)])
    assert titles(fig) == [METRICS[m].title for m in ("train_loss", "train_ppl", "lr", "tok_s")]
    assert fig.legends[0].get_texts()[-1].get_text() != "best validation"
    # asked for by name, a metric no run logged is an empty panel that says so
    (ax,) = curves_figure([read_curves(csv)], ["val_bleu"]).axes
    assert [t.get_text() for t in ax.texts] == ["not logged by these runs"]
    plot_runs([csv], tmp_path / "curves.png")
    assert png_size(tmp_path / "curves.png") == panels_png(rows=2)


# --------------------------------------------------------------------------------------------------
# The command and the end of training


def test_train_leaves_the_curves_in_the_run_directory(runs):
    for name in ("a", "b"):
        assert png_size(runs[name] / "curves.png") == panels_png(rows=4)  # the eight default panels


def test_s2s_plot_writes_one_png_of_the_panels_asked_for(runs, tmp_path):
    out = tmp_path / "two.png"
    output = ok(
        s2s("plot", runs["a"], runs["b"], "--metrics", "train_loss,val_bleu,lr", "--x", "time", "-o", out)
    )
    assert output == f"wrote {out}\n"
    # three panels in two columns: two rows
    assert png_size(out) == panels_png(rows=2)
    assert 10_000 < out.stat().st_size < 200_000


def test_a_failed_plot_is_one_warning_line_never_a_failed_training(tmp_path, caplog):
    from seq2seq_lstm.checkpoint import RunDir
    from seq2seq_lstm.training.trainer import _plot_curves

    with caplog.at_level(logging.INFO):
        _plot_curves(RunDir(tmp_path))  # no logs: nothing to plot
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"the curves of {tmp_path} were not plotted: {tmp_path}: no metrics.csv under {tmp_path / 'logs'}; "
        "give a run directory of `s2s train`"
    )
    assert not (tmp_path / "curves.png").exists()


# --------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the line


HEADER = "epoch,lr,step,steps,time,tokens,train_loss"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{HEADER}\n0,0.01,0,1.0,0.5,100.0,4.2\n0,0.01,1,2.0,0.9,abc,4.1\n",
         "{csv} line 3: tokens is 'abc', not a number"),
        (f"{HEADER}\n0,0.01,0,1.0,0.5,100.0\n", "{csv} line 2: 6 fields where the header has 7"),
        ("epoch,lr,train_loss\n0,0.01,4.2\n",
         "{csv} line 1: no 'step' column; not a metrics.csv written by `s2s train`"),
        ("", "{csv}: empty; not a metrics.csv written by `s2s train`"),
        (f"{HEADER}\n0,0.01,0,1.0,0.5,100.0,4.2\n0,0.01,1,2.0,0.9,1\xe9,4.1\n".encode("latin-1"),
         "{csv} line 3: invalid UTF-8 (byte 0xe9 at column 19); fix the file or rewrite it"),
        (f"{HEADER}\n0,0.01,0,1.5,0.5,100.0,4.2\n", "{csv} line 2: step 1.5 is not a whole number >= 0"),
    ],
    ids=["not-a-number", "short-row", "no-step-column", "empty", "invalid-utf8", "fractional-step"],
)  # fmt: skip
def test_a_malformed_csv_is_one_line_naming_file_and_line(tmp_path, text, message):
    csv = tmp_path / "metrics.csv"
    csv.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert one_error_line(s2s("plot", csv, "-o", tmp_path / "c.png")) == "Error: " + message.format(csv=csv)
    assert not (tmp_path / "c.png").exists()


def test_a_run_without_logs_and_a_missing_run_are_one_line(tmp_path):
    assert one_error_line(s2s("plot", tmp_path / "none")) == f"Error: RUN {tmp_path / 'none'} does not exist"
    assert one_error_line(s2s("plot", tmp_path, "-o", tmp_path / "c.png")) == (
        f"Error: {tmp_path}: no metrics.csv under {tmp_path / 'logs'}; give a run directory of `s2s train`"
    )
    (tmp_path / "logs").mkdir()
    assert "(a run trained with training.logger=tensorboard or none has none)" in one_error_line(
        s2s("plot", tmp_path, "-o", tmp_path / "c.png")
    )


def test_unknown_metrics_and_a_log_without_time_are_refused(runs, tmp_path):
    result = s2s("plot", runs["a"], "--metrics", "train_loss,bleu", "-o", tmp_path / "c.png")
    assert one_error_line(result) == (
        f"Error: --metrics: unknown metric 'bleu'; choose from {', '.join(METRICS)}"
    )
    old = tmp_path / "metrics.csv"  # as Lightning wrote it before `s2s train` logged time and tokens
    old.write_text("epoch,step,train_loss\n0,0,4.2\n0,1,4.1\n")
    assert read_curves(old).series["train_loss"].step == (1, 2)
    assert one_error_line(s2s("plot", old, "--x", "time", "-o", tmp_path / "c.png")) == (
        f"Error: {old}: no time column (a log written before `s2s train` recorded it); use --x step"
    )
