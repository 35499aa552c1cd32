"""`s2s runs`: the run directories of a folder, newest first, whatever else the folder holds.

The folder is built from the session's real tiny runs (test_plot.tiny_runs): a finished run, the same
run as a crash leaves it (checkpoints and logs, no exported model), one whose log and model.json are
damaged, one that `s2s train` holds right now, and folders that are not runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_plot import tiny_runs

from seq2seq_lstm.cli import main
from seq2seq_lstm.runs.listing import LOCK_FILE, list_runs
from seq2seq_lstm.training.run_lock import LOCK_NAME

DAY = 86_400.0


def s2s(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="s2s")


def touch_all(path: Path, when: float) -> None:
    """Give everything under ``path`` one modification time (the listing's order)."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.utime(os.path.join(root, name), (when, when))
    os.utime(path, (when, when))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    trained = tiny_runs(tmp_path_factory)
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(trained["a"], root / "finished")
    crashed = Path(shutil.copytree(trained["b"], root / "crashed"))
    (crashed / "model.safetensors").unlink()
    (crashed / "model.json").unlink()
    damaged = Path(shutil.copytree(trained["b"], root / "damaged"))
    (damaged / "model.json").write_text("{not json", encoding="utf-8")
    with open(damaged / "logs" / "version_0" / "metrics.csv", "a", encoding="utf-8") as f:
        f.write("oops\n")
    busy = Path(shutil.copytree(trained["b"], root / "busy"))
    (busy / LOCK_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")  # a live process holds it
    (root / "data").mkdir()
    (root / "data" / "train.en").write_text("Hello.\n", encoding="utf-8")
    (root / "tokenizer-only" / "tokenizer").mkdir(parents=True)
    (root / "notes.txt").write_text("not a folder\n", encoding="utf-8")
    now = 1_700_000_000.0
    ages = {"finished": 1, "crashed": 3, "damaged": 2, "busy": 0, "data": 5, "tokenizer-only": 4}
    for name, days in ages.items():
        touch_all(root / name, now - days * DAY)
    return root


def test_the_lock_file_is_the_one_training_takes():
    assert LOCK_FILE == LOCK_NAME


def test_runs_newest_first_with_their_status_then_the_other_folders(folder):
    rows = list_runs(folder)
    assert [(r.name, r.status) for r in rows] == [
        ("busy", "training"),
        ("finished", "finished"),
        ("damaged", "damaged"),  # weights without a readable model.json
        ("crashed", "interrupted"),
        ("tokenizer-only", "not a run"),
        ("data", "not a run"),
    ]


def test_a_finished_run_reports_what_its_model_json_and_logs_say(folder):
    meta = json.loads((folder / "finished" / "model.json").read_text())
    (row,) = [r for r in list_runs(folder) if r.name == "finished"]
    assert (row.task, row.steps, row.metric) == ("translation", 14, "val_bleu")
    assert (row.best, row.best_step) == (meta["val_bleu"], meta["step"])
    assert row.model_bytes == (folder / "finished" / "model.safetensors").stat().st_size
    assert row.bytes > row.model_bytes and 0 < row.seconds < 600
    assert row.note is None


def test_an_interrupted_run_takes_its_best_from_the_logs(folder):
    (row,) = [r for r in list_runs(folder) if r.name == "crashed"]
    assert (row.steps, row.model_bytes, row.note) == (8, None, None)
    assert row.best_step in (5, 8) and row.best is not None


def test_a_damaged_run_is_listed_with_what_could_not_be_read(folder):
    (row,) = [r for r in list_runs(folder) if r.name == "damaged"]
    csv = folder / "damaged" / "logs" / "version_0" / "metrics.csv"
    lines = csv.read_text().splitlines()
    fields = len(lines[0].split(","))
    assert row.note.startswith(f"{folder / 'damaged' / 'model.json'} is not readable JSON (")
    assert row.note.endswith(f"; {csv} line {len(lines)}: 1 fields where the header has {fields}")
    assert (row.task, row.steps, row.best) == ("translation", None, None)


def test_s2s_runs_prints_a_table(folder):
    result = s2s("runs", folder)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "status", "task", "steps", "time", "best", "at", "step", "model",
                                "size", "modified"]  # fmt: skip
    assert [line.split()[0] for line in lines[1:7]] == ["busy", "finished", "damaged", "crashed",
                                                        "tokenizer-only", "data"]  # fmt: skip
    finished = lines[2].split()
    assert finished[:4] == ["finished", "finished", "translation", "14"]
    assert "BLEU" in finished
    assert lines[5].split()[1:3] == ["not", "a"]
    assert lines[7].startswith("damaged: ") and len(lines) == 8


def test_s2s_runs_json_has_one_object_per_folder(folder):
    result = s2s("runs", folder, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["busy", "finished", "damaged", "crashed", "tokenizer-only", "data"]
    assert {tuple(r) for r in rows} == {tuple(rows[0])}  # the same keys everywhere
    finished = rows[1]
    assert finished["status"] == "finished" and finished["steps"] == 14 and finished["metric"] == "val_bleu"
    assert finished["path"] == str(folder / "finished")
    assert finished["modified"].startswith("2023-11-1")  # ISO 8601, local time
    foreign = rows[-1]
    assert (foreign["status"], foreign["task"], foreign["steps"], foreign["best"]) == (
        "not a run",
        None,
        None,
        None,
    )


def test_a_run_directory_itself_is_listed(folder):
    assert [r.name for r in list_runs(folder / "finished")] == ["finished"]


def test_an_empty_folder_and_a_missing_one(tmp_path):
    assert s2s("runs", tmp_path).output == f"no run directories under {tmp_path}\n"
    result = s2s("runs", tmp_path / "none")
    assert (result.exit_code, result.output) == (1, f"Error: DIR {tmp_path / 'none'} does not exist\n")


def test_the_tensorboard_logger_names_the_extra_that_installs_it(tmp_path, monkeypatch):
    import sys

    from seq2seq_lstm.checkpoint import RunDir
    from seq2seq_lstm.config import load_config
    from seq2seq_lstm.errors import ConfigError
    from seq2seq_lstm.training.trainer import _logger

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: importing it fails
    cfg = load_config(Path(__file__).parents[1] / "configs" / "tiny.yaml", ["training.logger=tensorboard"])
    with pytest.raises(ConfigError) as e:
        _logger(cfg, RunDir(tmp_path))
    assert str(e.value) == (
        'training.logger=tensorboard needs TensorBoard: pip install "seq2seq-lstm[tensorboard]"; or use csv'
    )
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["optional-dependencies"]["tensorboard"][0].startswith("tensorboard")
