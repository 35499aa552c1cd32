"""benchmarks/recipe_search.py's pure parts: the levers file, the commands, the figures read from a run.

The training runs themselves (minutes each) are not run here."""

import json
import shlex
from pathlib import Path

import pytest
from benchmark_module import load_benchmark, unload_benchmark

from seq2seq_lstm.config import load_config

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def search():
    yield load_benchmark("recipe_search")
    unload_benchmark("recipe_search")


def test_every_ding_lever_is_a_valid_config(search):
    """A typo in a lever's key or value would only show after minutes of the search: every lever must
    build a config (the strict loader names unknown keys), and change something from the base."""
    config, levers = search.load_levers(ROOT / "benchmarks/levers/ding_en_de.yaml")
    base = load_config(config)
    assert len(levers) >= 8
    for lever in levers:
        assert lever.sets[:2] == ("training.val_every_steps=250", "training.keep_checkpoints=5")
        cfg = load_config(config, lever.sets)
        assert cfg.training.keep_checkpoints == 5
        if lever.name != "reference":
            assert cfg != load_config(config, lever.sets[:2]) or lever.data, lever.name
        if lever.data:
            assert (ROOT / lever.data).name != Path(base.data.train).parent.name


def _levers(tmp_path, text):
    path = tmp_path / "levers.yaml"
    path.write_text(text)
    return path


def test_levers_file_errors_name_the_problem(search, tmp_path):
    with pytest.raises(SystemExit, match="needs 'config"):
        search.load_levers(_levers(tmp_path, "levers: []\n"))
    with pytest.raises(SystemExit, match="names repeat: \\['a'\\]"):
        search.load_levers(_levers(tmp_path, "config: c.yaml\nlevers: [{name: a}, {name: a}]\n"))
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        search.load_levers(_levers(tmp_path, "config: c.yaml\nlevers: [{name: a, set: [model.dropout]}]\n"))
    with pytest.raises(SystemExit, match="unknown keys \\['sett'\\]"):
        search.load_levers(_levers(tmp_path, "config: c.yaml\nlevers: [{name: a, sett: []}]\n"))
    with pytest.raises(SystemExit, match="no 'name'"):
        search.load_levers(_levers(tmp_path, "config: c.yaml\nlevers: [{set: []}]\n"))
    with pytest.raises(SystemExit, match="is a mapping"):
        search.load_levers(_levers(tmp_path, "config: c.yaml\nlevers: [a]\n"))


def test_commands_pin_one_core_and_translate_validation(search, tmp_path):
    _, levers = search.load_levers(
        _levers(tmp_path, "config: configs/tiny.yaml\ncommon: [a.b=1]\nlevers: [{name: x, set: [c.d=2]}]\n")
    )
    data = ROOT / "tests/fixtures/tiny"
    job = search.Job(levers[0], ROOT / "configs/tiny.yaml", data, "en", "es", 0.5, 7, tmp_path / "w")
    train, translate = job.commands(core=1)
    assert train.argv[:3] == ["taskset", "-c", "1"] and translate.argv[:3] == ["taskset", "-c", "1"]
    sets = [train.argv[i + 1] for i, a in enumerate(train.argv) if a == "--set"]
    assert sets.index("a.b=1") < sets.index("c.d=2")  # a lever's own overrides win over the common ones
    assert {"training.max_time=0.5", "training.seed=7", "data.seed=7", f"data.valid={data / 'valid'}"} <= set(
        sets
    )
    assert train.env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    line = shlex.split(translate.shell())
    assert line[line.index("--input") + 1] == str(data / "valid.en")  # never the test set
    assert line[line.index("--checkpoint") + 1] == str(tmp_path / "w/x/run")


def test_figures_and_table_from_a_run(search, tmp_path):
    logs = tmp_path / "x/run/logs/version_0"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,step,tok_s,val_bleu,val_chrf\n0,9,1000.0,,\n0,19,2000.0,,\n0,19,,1.234,10.5\n1,29,3000.0,,\n"
        "1,29,,2.5,12.25\n"
    )
    facts = search.training_facts(tmp_path / "x/run")
    assert facts == {
        "steps": 30,
        "tok_s": 2000.0,
        "valid_curve": [{"step": 20, "bleu": 1.23, "chrf": 10.5}, {"step": 30, "bleu": 2.5, "chrf": 12.25}],
    }
    result = {"lever": "x", **facts, "valid": {"bleu": 3.14159, "chrf": 20.0}}
    (tmp_path / "x/result.json").write_text(json.dumps(result))
    (tmp_path / "y").mkdir()
    (tmp_path / "y/result.json").write_text(json.dumps({"lever": "y", "error": "train exited 1"}))
    levers = [search.Lever("x"), search.Lever("y"), search.Lever("not-run")]
    rows = search.table(tmp_path, levers).splitlines()
    assert rows[2] == "| x | 30 | 2000 | 2.50 | 3.14 | 20.00 |"
    assert rows[3].startswith("| y | error: train exited 1") and len(rows) == 4
