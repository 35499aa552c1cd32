"""Faults during training: ``kill -9`` at random moments (during checkpoint saves too), Ctrl-C, a second
`s2s train` into the same directory, a damaged last.ckpt. A run never loses its last good checkpoint,
``--resume`` continues from the step it holds, and nothing is left outside the run directory."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config
from seq2seq_lstm.errors import CheckpointError
from seq2seq_lstm.training.run_lock import LOCK_NAME, RunDirInUse, run_lock
from seq2seq_lstm.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
DATA = ROOT / "tests" / "fixtures" / "tiny"
# validations (and with them saves of last.ckpt and best.ckpt) every 3 steps: a kill often lands in one
SETS = [*(f"data.{s}={DATA / s}" for s in ("train", "valid", "test")), "training.num_threads=1",
        "training.val_every_steps=3", "training.progress_bar=false"]  # fmt: skip
ENDLESS = "100000"  # a max_steps the test always kills or interrupts before


def s2s_train(out_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "seq2seq_lstm", "train", "--out-dir", str(out_dir), *args]


def fresh(out_dir: Path, max_steps: str = ENDLESS) -> list[str]:
    return s2s_train(out_dir, "--config", str(TINY), *(f"--set={s}" for s in SETS), "--max-steps", max_steps)


def resumed(out_dir: Path, max_steps: str = ENDLESS) -> list[str]:
    return s2s_train(out_dir, "--resume", "--max-steps", max_steps)


class Training:
    """`s2s train` in a process of its own, its output in a file (a pipe could fill up and stall it)."""

    def __init__(self, cmd: list[str], log: Path, tmpdir: Path) -> None:
        env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait_until(
        self, ready: Callable[[], bool], what: str, timeout: float = 120.0, poll: float = 0.02
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, (
                f"ended (rc {self.proc.returncode}) before {what}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.output()}"
            time.sleep(poll)

    def wait_for_line(self, line: str) -> None:
        self.wait_until(lambda: line in self.output().splitlines(), repr(line))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def temp_files(folder: Path) -> set[Path]:
    return set(folder.glob(".*.tmp"))


def files_under(folder: Path) -> list[Path]:
    # torch makes an empty torchinductor_<user> folder in $TMPDIR on import; files are what would pile up
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_kill_9_at_random_moments_and_during_saves_never_loses_the_checkpoint(tmp_path):
    """Three kills of one run (seeded moments): two the instant a checkpoint's temp file appears, i.e.
    during a save, one at a random moment after a save; then a Ctrl-C and a resume to the end. Every
    kill leaves a last.ckpt that loads, the next `--resume` starts from its step, and no temp file
    outlives a resume. Meanwhile a second `s2s train` into the directory is refused with the holder's pid."""
    rng = random.Random(26)
    tmpdir, run = tmp_path / "tmp", tmp_path / "run"
    tmpdir.mkdir()
    ckpts, last = RunDir(run).checkpoints, RunDir(run).last_ckpt
    job = Training(fresh(run), tmp_path / "log0", tmpdir)
    job.wait_until(last.exists, "a first checkpoint")
    refused = CliRunner().invoke(main, ["train", "--config", str(TINY), "--out-dir", str(run)])
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: {run} is in use by another `s2s train` (pid {job.proc.pid}); wait for it to end, or train "
        "into another --out-dir\n"
    )
    steps, during_saves = [], 0
    for kill in range(3):
        if kill % 2 == 0:
            job.wait_until(lambda: bool(temp_files(ckpts)), "a checkpoint being saved", poll=0.0005)
        else:  # somewhere in training, after it saved at least once more
            before = last.stat().st_mtime_ns
            job.wait_until(lambda: last.stat().st_mtime_ns != before, "a new save", poll=0.05)  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.6))
        job.kill()
        orphans = temp_files(ckpts)
        during_saves += bool(orphans)
        steps.append(load_checkpoint_file(last)["global_step"])  # loads: the kill did not damage it
        assert steps[-1] >= max(steps[:-1], default=1)
        job = Training(resumed(run), tmp_path / f"log{kill + 1}", tmpdir)  # a stale lock does not stop it
        job.wait_for_line(f"resuming from {last} (step {steps[-1]})")
        assert not orphans & temp_files(ckpts)  # what the kill left is cleared under the lock
    assert during_saves >= 1, during_saves  # a temp file left proves that a kill hit a save
    print(f"{len(steps)} kills survived, {during_saves} during a save, at steps {steps}")

    job.wait_until(lambda: load_checkpoint_file(last)["global_step"] > steps[-1], "a new save", poll=0.1)
    job.proc.send_signal(signal.SIGINT)
    assert job.proc.wait(timeout=60) == 1
    saved = load_checkpoint_file(last)["global_step"]
    assert job.output().splitlines()[-1] == (
        f"Error: stopped by Ctrl-C: step {saved} is saved in {last}; continue with: s2s train --resume "
        f"--out-dir {run}"
    )
    job = Training(resumed(run, str(saved + 2)), tmp_path / "log_end", tmpdir)
    assert job.proc.wait(timeout=120) == 0, job.output()
    assert f"resuming from {last} (step {saved})" in job.output()
    assert f"trained {saved + 2} steps in " in job.output()
    assert load_checkpoint_file(last)["global_step"] == saved + 2
    assert not temp_files(ckpts) and not (run / LOCK_NAME).exists()
    assert files_under(tmpdir) == []  # nothing was written outside the run directory


def tiny_config(out_dir: Path, *sets: str):
    return load_config(TINY, [*SETS, f"training.out_dir={out_dir}", *sets])


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, caplog):
    run = RunDir(tmp_path / "run")
    train(tiny_config(run.root, "training.max_steps=4", "training.val_every_steps=2"))
    best_step = load_checkpoint_file(run.best_ckpt)["global_step"]
    run.last_ckpt.write_bytes(b"\x80\x02q\x00garbage")  # a last.ckpt damaged on disk
    with caplog.at_level("INFO"):
        summary = train(
            tiny_config(run.root, "training.max_steps=6", "training.val_every_steps=2"), resume=True
        )
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming from "))
    assert line.startswith(
        f"resuming from {run.best_ckpt} (step {best_step}), the newest checkpoint that loads: "
    )
    assert f"{run.last_ckpt} is corrupt or truncated" in line and "\n" not in line
    assert summary.steps == 6 and load_checkpoint_file(run.last_ckpt)["global_step"] == 6
    # with nothing that loads, the resume stops with last.ckpt's problem in one line
    run.last_ckpt.write_bytes(b"")
    run.best_ckpt.write_bytes(b"PK\x03\x04 cut short")
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(run.root)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith(f"Error: {run.last_ckpt} is corrupt or truncated (")


def test_the_run_lock_names_its_holder_and_outlives_no_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from seq2seq_lstm.training.run_lock import run_lock\n"
         "with run_lock(Path(sys.argv[1])): print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(
            RunDirInUse, match=rf"^{tmp_path} is in use by another `s2s train` \(pid {holder.pid}\)"
        ):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()  # kill -9: the lock goes with the process, its file stays behind
        holder.wait(timeout=30)
    assert (tmp_path / LOCK_NAME).read_text() == f"{holder.pid}\n"
    with run_lock(tmp_path) as path:
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()  # a run that ends removes it


def test_a_second_training_into_a_locked_directory_is_refused_before_anything_is_written(tmp_path):
    with run_lock(tmp_path / "other"):
        result = CliRunner().invoke(
            main, ["train", "--config", str(TINY), "--out-dir", str(tmp_path / "other")]
        )
    assert result.exit_code == 1
    # the same process holds the lock here, through another open file: flock refuses that too
    assert result.output == (
        f"Error: {tmp_path / 'other'} is in use by another `s2s train` (pid {os.getpid()}); wait for it to "
        "end, or train into another --out-dir\n"
    )
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == []


def test_a_corpus_error_is_one_line_without_the_datasets_progress_bar(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "train.en").write_text("a\nb\n")
    (corpus / "train.es").write_text("a\n")
    cmd = s2s_train(tmp_path / "run", "--config", str(TINY), "--set", f"data.train={corpus / 'train'}")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert out.stdout == "" and out.stderr.count("\n") == 1, out.stderr  # no "Generating train split"
    assert out.stderr.startswith("Error: ") and "train.en" in out.stderr, out.stderr


def test_resume_without_a_checkpoint_still_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="does not exist; train without --resume first"):
        train(tiny_config(tmp_path / "run", "training.max_steps=2"), resume=True)
