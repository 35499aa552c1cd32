"""Checkpoint averaging: training.keep_checkpoints keeps the last N validations, `s2s average` writes
the mean of their parameters as a run that loads like any other, and refuses what cannot be averaged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_results import ok, one_error_line
from click.testing import CliRunner
from safetensors.torch import load_file

from seq2seq_lstm.checkpoint import CKPT_KEY, MODEL_PREFIX, RunDir, load_checkpoint_file, load_for_inference
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config
from seq2seq_lstm.errors import CheckpointError, ConfigError, UserError
from seq2seq_lstm.inference.translator import Translator
from seq2seq_lstm.training.average import average_run, average_states, default_out
from seq2seq_lstm.training.keep import prune
from seq2seq_lstm.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
DATA = ROOT / "tests" / "fixtures" / "tiny"


def tiny_config(out_dir: Path, *sets: str):
    data = [f"data.{s}={DATA / s}" for s in ("train", "valid", "test")]
    return load_config(TINY, [*data, f"training.out_dir={out_dir}", "training.num_threads=1", *sets])


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> Path:
    """A tiny run validated at steps 2, 4, 6, 8 and 10 that keeps the last 3 validation checkpoints."""
    out = tmp_path_factory.mktemp("average") / "run"
    train(
        tiny_config(out, "training.max_steps=10", "training.val_every_steps=2", "training.keep_checkpoints=3")
    )
    return out


@pytest.fixture
def run(kept_run, tmp_path) -> Path:
    return Path(shutil.copytree(kept_run, tmp_path / "run"))


def _edit(path: Path, weights: float | None = None, **info) -> None:
    """Set every parameter of a checkpoint to ``weights`` and/or change fields of its "s2s" entry."""
    ckpt = torch.load(path, weights_only=True)
    if weights is not None:
        ckpt["state_dict"] = {k: torch.full_like(v, weights) for k, v in ckpt["state_dict"].items()}
    ckpt[CKPT_KEY].update(info)
    torch.save(ckpt, path)


# --------------------------------------------------------------------------------------------------
# Keeping checkpoints


def test_keep_checkpoints_leaves_the_last_three_validations_with_their_scores(kept_run):
    kept = RunDir(kept_run).step_ckpts()
    assert [p.name for p in kept.values()] == ["step-000006.ckpt", "step-000008.ckpt", "step-000010.ckpt"]
    for step, path in kept.items():
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["global_step"] == step
        assert set(ckpt[CKPT_KEY]["val"]) >= {"val_bleu", "val_chrf", "val_ppl"}
        assert "optimizer_states" in ckpt  # a whole training state: resume may fall back to it
    assert (RunDir(kept_run).best_ckpt).is_file() and (RunDir(kept_run).last_ckpt).is_file()


def test_resume_keeps_pruning(run):
    sets = ("training.max_steps=14", "training.val_every_steps=2", "training.keep_checkpoints=3")
    train(tiny_config(run, *sets), resume=True)
    assert list(RunDir(run).step_ckpts()) == [10, 12, 14]


def test_resume_falls_back_to_the_newest_step_checkpoint(run, caplog):
    last = RunDir(run).last_ckpt
    last.write_bytes(last.read_bytes()[:1000])  # damaged: a crash while it was written
    sets = ("training.max_steps=12", "training.val_every_steps=2", "training.keep_checkpoints=3")
    with caplog.at_level("WARNING"):
        summary = train(tiny_config(run, *sets), resume=True)
    assert f"resuming from {RunDir(run).step_ckpt(10)} (step 10)" in caplog.text
    assert summary.steps == 12 and list(RunDir(run).step_ckpts()) == [8, 10, 12]


def test_prune_drops_the_oldest_and_those_after_the_current_step(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoints.mkdir()
    for step in (2, 4, 6, 8, 30):  # 30: left by a run later resumed from step 8's checkpoint
        run.step_ckpt(step).write_bytes(b"")
    (run.checkpoints / "step-notes.ckpt").write_bytes(b"")  # not a step checkpoint: left alone
    gone = prune(run, step=8, keep=2)
    assert sorted(p.name for p in gone) == ["step-000002.ckpt", "step-000004.ckpt", "step-000030.ckpt"]
    assert list(run.step_ckpts()) == [6, 8]
    assert (run.checkpoints / "step-notes.ckpt").is_file()


def test_keep_checkpoints_needs_a_validation_set(tmp_path):
    cfg = tiny_config(tmp_path / "run", "training.keep_checkpoints=2", "data.valid=")
    with pytest.raises(ConfigError, match="training.keep_checkpoints keeps validation checkpoints"):
        train(cfg)
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        tiny_config(tmp_path / "run", "training.keep_checkpoints=-1")


# --------------------------------------------------------------------------------------------------
# The mean


def test_average_states_is_the_mean_in_the_original_dtype():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "h": torch.tensor([0.5], dtype=torch.float16),
         "n": torch.tensor([7])}  # fmt: skip
    b = {"w": torch.tensor([[3.0, 2.0], [1.0, 0.0]]), "h": torch.tensor([1.5], dtype=torch.float16),
         "n": torch.tensor([9])}  # fmt: skip
    c = {"w": torch.tensor([[2.0, 5.0], [2.0, 2.0]]), "h": torch.tensor([1.0], dtype=torch.float16),
         "n": torch.tensor([11])}  # fmt: skip
    mean = average_states([("a", a), ("b", b), ("c", c)])
    assert torch.equal(mean["w"], torch.tensor([[2.0, 3.0], [2.0, 2.0]]))
    assert mean["h"].dtype == torch.float16 and mean["h"].item() == 1.0
    assert torch.equal(mean["n"], torch.tensor([11]))  # not a float: the last one's
    assert a["w"][0, 0] == 1.0  # the inputs are untouched
    d = {"w": torch.tensor([1.0, 3.0], dtype=torch.float64)}
    e = {"w": torch.tensor([3.0, 5.0], dtype=torch.float64)}
    assert torch.equal(
        average_states([("d", d), ("e", e)])["w"], torch.tensor([2.0, 4.0], dtype=torch.float64)
    )
    assert d["w"].tolist() == [1.0, 3.0]  # float64 too: the sum is a copy, not the first state itself


def test_average_states_accumulates_in_float64():
    # 1 + 2^-24 + ... is 1 in float32: a float32 running sum would lose the small terms
    big, small = torch.tensor([1.0]), torch.tensor([2.0**-24])
    states = [("x", {"p": big})] + [(f"s{i}", {"p": small}) for i in range(3)]
    assert average_states(states)["p"].item() == pytest.approx((1.0 + 3 * 2.0**-24) / 4, rel=1e-7)
    assert average_states(states)["p"].item() != 0.25  # 0.25 would be the float32 sum's answer


def test_average_of_two_checkpoints_equals_the_hand_computed_mean(run, tmp_path):
    kept = RunDir(run).step_ckpts()
    _edit(kept[8], weights=1.0)
    _edit(kept[10], weights=4.0)
    summary = average_run(run, last=2, out=tmp_path / "avg")
    assert [m.step for m in summary.members] == [8, 10]
    weights = load_file(RunDir(summary.out).weights)
    assert weights and all(torch.all(t == 2.5) for t in weights.values())
    meta = json.loads(RunDir(summary.out).meta.read_text())
    assert meta["step"] == 10 and meta["averaged_from"]["run"] == str(run)
    assert [c["checkpoint"] for c in meta["averaged_from"]["checkpoints"]] == [
        "step-000008.ckpt",
        "step-000010.ckpt",
    ]
    assert not any(k.startswith("val_") for k in meta)  # the average itself was never validated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg", "run"]  # no temp folder left


def test_averaged_run_translates_and_evaluates(run, tmp_path):
    out = tmp_path / "avg"
    ok(CliRunner().invoke(main, ["average", str(run), "--last", "3", "--out", str(out)]))
    model, cfg, tokenizer = load_for_inference(out)
    expected = average_states(
        (
            str(p),
            {k[len(MODEL_PREFIX) :]: v for k, v in torch.load(p, weights_only=True)["state_dict"].items()},
        )
        for p in RunDir(run).step_ckpts().values()
    )
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    source = (DATA / "test.en").read_text(encoding="utf-8").splitlines()[:5]
    translator = Translator([model], tokenizer, cfg.generation)
    assert len(translator.translate(source)) == 5
    cli = ok(CliRunner().invoke(main, ["translate", "-m", str(out)], input="\n".join(source) + "\n"))
    assert cli.splitlines() == translator.translate(source)
    report = ok(CliRunner().invoke(main, ["evaluate", "--checkpoint", str(out), "--source",
                                          str(DATA / "test.en"), str(DATA / "test.es")]))  # fmt: skip
    assert "BLEU" in report


def test_best_picks_by_validation_score(run, tmp_path):
    kept = RunDir(run).step_ckpts()
    for step, bleu in zip(kept, (9.0, 3.0, 5.0), strict=True):
        _edit(kept[step], val={"val_bleu": bleu, "val_ppl": 10.0})
    summary = average_run(run, best=2, out=tmp_path / "best")
    assert [m.step for m in summary.members] == [6, 10]  # BLEU 9 and 5, oldest first
    assert [m.val["val_bleu"] for m in summary.members] == [9.0, 5.0]
    assert default_out(run, best=2) == run.with_name("run-best2")
    assert default_out(run, last=5) == run.with_name("run-avg5")


def test_default_out_is_beside_the_run(run):
    summary = average_run(run, last=1)
    assert summary.out == run.with_name("run-avg1") and RunDir(summary.out).weights.is_file()


# --------------------------------------------------------------------------------------------------
# Refusals


def test_fewer_checkpoints_than_asked_is_refused(run, tmp_path):
    with pytest.raises(UserError, match="keeps 3 validation checkpoint.*fewer than the 4 asked for"):
        average_run(run, last=4, out=tmp_path / "avg")
    assert not (tmp_path / "avg").exists()


def test_different_shapes_are_refused(run, tmp_path):
    path = RunDir(run).step_ckpts()[8]
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][name] = torch.zeros(3, 3)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"{path}: parameter {name[len(MODEL_PREFIX) :]} is \\(3, 3\\)"):
        average_run(run, last=3, out=tmp_path / "avg")
    assert not (tmp_path / "avg").exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_different_parameter_names_are_refused():
    with pytest.raises(CheckpointError, match="b has parameter extra but a does not"):
        average_states([("a", {"w": torch.zeros(2)}), ("b", {"w": torch.zeros(2), "extra": torch.zeros(1)})])


def test_different_tokenizers_are_refused(run, tmp_path):
    path = RunDir(run).step_ckpts()[10]
    _edit(path, tokenizer_sha256={"spm.model": "0" * 64})
    with pytest.raises(CheckpointError, match=f"{path} was trained with another tokenizer"):
        average_run(run, last=3, out=tmp_path / "avg")


def test_cli_refusals_are_one_line(run, tmp_path):
    (tmp_path / "taken").mkdir()
    cases = {
        ("--last", "2", "--out", str(tmp_path / "taken")): f"--out {tmp_path / 'taken'} already exists",
        ("--last", "0"): "Invalid value for '--last': 0 is not in the range x>=1",
        ("--best", "0"): "Invalid value for '--best': 0 is not in the range x>=1",
        ("--last", "9"): "fewer than the 9 asked for",
        (): "pass one of --last N or --best N",
        ("--last", "2", "--best", "2"): "pass one of --last N or --best N",
    }
    for args, fragment in cases.items():
        line = one_error_line(CliRunner().invoke(main, ["average", str(run), *args]))
        assert line.startswith("Error: ") and fragment in line, (args, line)


@pytest.mark.slow
def test_a_kill_during_a_step_checkpoint_save_leaves_a_run_that_resumes_and_prunes(tmp_path):
    """kill -9 the instant a step checkpoint's temp file appears (again, resumed, until one kill lands
    inside a save); the resume clears the temp file, continues from last.ckpt and ends with exactly the
    newest 2 validation checkpoints."""
    run = RunDir(tmp_path / "run")
    sets = [*(f"--set=data.{s}={DATA / s}" for s in ("train", "valid", "test")),
            "--set=training.num_threads=1", "--set=training.val_every_steps=2",
            "--set=training.keep_checkpoints=2", "--set=training.progress_bar=false"]  # fmt: skip
    cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--out-dir", str(run.root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launch = [*cmd, "--config", str(TINY), *sets, "--max-steps", "100000"]
    for _ in range(5):
        with open(tmp_path / "log", "w") as log:
            job = subprocess.Popen(launch, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not list(run.checkpoints.glob(".step-*.ckpt.*.tmp")):
            assert job.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.0005)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        launch = [*cmd, "--resume", "--max-steps", "100000"]
        if list(run.checkpoints.glob(".step-*.ckpt.*.tmp")):
            break
    assert list(run.checkpoints.glob(".step-*.ckpt.*.tmp"))  # a kill hit a save of a step checkpoint
    end = load_checkpoint_file(run.last_ckpt)["global_step"] + 6
    done = subprocess.run([*cmd, "--resume", "--max-steps", str(end)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(run.step_ckpts()) == [end - 2, end]
    assert not list(run.checkpoints.glob(".*.tmp"))
