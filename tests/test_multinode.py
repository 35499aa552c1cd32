"""Multi-node DDP, tested on one machine: two "nodes" of one CPU process each on loopback (gloo).

Each launch the docs give (by hand with ``NODE_RANK``, torchrun, SLURM tasks) trains 4 steps of a
tiny model into one shared run directory, and must end with exactly the weights of two processes on
one node (``--devices 2``), and, to float rounding, those of one process accumulating two batches.

Why these can be compared: the token-batch sampler shuffles the same epoch order on every rank and
gives rank r the batches r, r + 2, ...; accumulation on one process takes them in that order, so step
k sees batches 2k and 2k + 1 in all runs. The corpus is 64 sentences of 5 symbols, batches of 8
sentences: 8 batches an epoch, an even number, so no step ever holds a partial accumulation.

* DDP against DDP is exact (``torch.equal``): whichever way the two processes were launched, they
  compute the same per-rank gradients in the same order and gloo adds two numbers, which rounds the
  same either way round (a + b == b + a in IEEE arithmetic); nothing else differs.
* DDP against accumulation is close, not exact: DDP averages (g0 + g1) / 2 after the all-reduce, while
  Lightning scales each micro-batch loss by 1/2 before backward and adds the gradients, a different
  rounding of the same sum (relative 1e-7). Adam divides by sqrt(v), which turns a rounding
  difference in a tiny gradient into a visible update; 4 steps at lr 0.01 stay within 1e-4, the
  bound the single-node DDP test uses too.

Every launch runs under a deadline; when one process fails or time runs out, every process the
launch started (found by a marker in their environment: torchrun's workers and Lightning's children
run in sessions of their own) is killed, so a rank stuck in the rendezvous cannot hang the suite.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file
from seq2seq_lstm.config import load_config
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.training.run_lock import LOCK_NAME
from seq2seq_lstm.training.trainer import check_trainer_options, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
BIN = Path(sys.executable).parent  # s2s and torchrun are installed beside the interpreter
DEADLINE_S = 300.0  # per launch; a tiny run takes 10-60 s, most of it importing torch and Lightning
STEPS = 4
# the variables a launch sets: inherited ones (a CI job under SLURM or torchrun) would join the wrong job
LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "GROUP_RANK", "RANK", "LOCAL_RANK",
               "WORLD_SIZE", "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")  # fmt: skip
MARKER = "S2S_TEST_LAUNCH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_corpus(root: Path) -> Path:
    """64 training pairs of 5 symbols (target: the source reversed), 24 validation pairs."""
    rng = random.Random(0)
    lines: list[str] = []
    while len(lines) < 88:
        line = " ".join(rng.choice("abcdefgh") for _ in range(5))
        if line not in lines:
            lines.append(line)
    for split, part in (("train", lines[:64]), ("valid", lines[64:])):
        (root / f"{split}.src").write_text("".join(f"{s}\n" for s in part))
        (root / f"{split}.tgt").write_text("".join(f"{' '.join(reversed(s.split()))}\n" for s in part))
    return root


def train_args(data: Path, out_dir: Path) -> list[str]:
    """``s2s train`` arguments shared by every launch (the device options come with each)."""
    sets = [
        f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", "data.test=",
        "data.src_lang=src", "data.tgt_lang=tgt", "data.max_sentences=8", "data.batch_tokens=500",
        "tokenizer.vocab_size=20", "training.num_threads=1", "training.label_smoothing=0.0",
        "training.val_every_steps=2", "training.log_every_steps=1", "training.logger=csv",
        "generation.beam_size=1",
    ]  # fmt: skip
    args = ["train", "--config", str(TINY), "--out-dir", str(out_dir), "--max-steps", str(STEPS)]
    return args + [f"--set={s}" for s in sets]


@dataclass(frozen=True)
class Launch:
    """One process of a launch: its command line and the variables it adds to the environment."""

    argv: list[str]
    env: dict[str, str]


def s2s(*args: str) -> list[str]:
    return [str(BIN / "s2s"), *args]


def base_env(home: Path, marker: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in LAUNCH_VARS and not k.startswith(("SLURM_", "TORCHELASTIC_"))
    }
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", HF_HOME=str(home), HF_DATASETS_OFFLINE="1",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg")  # fmt: skip
    env[MARKER] = marker
    return env


def run_together(launches: list[Launch], logs: Path) -> list[str]:
    """Start every process at once and wait for all; returns their stdout. Any failure, or the
    deadline, kills all of them (and what they started) and fails the test with their stderr."""
    marker = uuid.uuid4().hex
    env = base_env(logs / "hf_home", marker)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, launch in enumerate(launches):
        with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
            procs.append(subprocess.Popen(launch.argv, env={**env, **launch.env}, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
    deadline = time.monotonic() + DEADLINE_S
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        left = [p for p in procs if p.poll() is None]
        kill_marked(marker, procs)
    errors = [(logs / f"{i}.err").read_text() for i in range(len(procs))]
    if left or any(p.returncode != 0 for p in procs):
        why = (
            f"{len(left)} process(es) still running after {DEADLINE_S:.0f} s" if left else "a process failed"
        )
        tails = "\n".join(
            f"--- process {i} (exit {p.returncode}):\n{errors[i][-2500:]}" for i, p in enumerate(procs)
        )
        pytest.fail(f"{why}; all killed\n{tails}")
    return [(logs / f"{i}.out").read_text() for i in range(len(procs))]


def kill_marked(marker: str, procs: list[subprocess.Popen]) -> None:
    """SIGKILL every process whose environment carries ``marker`` (only this launch's), then reap."""
    pids = {p.pid for p in procs if p.poll() is None}
    proc_dir = Path("/proc")
    if proc_dir.is_dir():
        needle = f"{MARKER}={marker}".encode()
        for entry in proc_dir.iterdir():
            try:
                if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.add(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait()


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(RunDir(run).last_ckpt)["state_dict"]


def val_losses(run: Path) -> list[float]:
    with open(run / "logs" / "version_0" / "metrics.csv") as f:
        return [float(r["val_loss"]) for r in csv.DictReader(f) if r.get("val_loss")]


def assert_same_run(run: Path, reference: Path) -> None:
    """``run`` ended with exactly ``reference``'s weights and validation losses, in one clean directory."""
    ckpt = load_checkpoint_file(RunDir(run).last_ckpt)
    assert ckpt["global_step"] == STEPS
    ref = weights(reference)
    assert ckpt["state_dict"].keys() == ref.keys()
    for name, tensor in ref.items():
        assert torch.equal(ckpt["state_dict"][name], tensor), name
    assert val_losses(run) == val_losses(reference) and len(val_losses(run)) == STEPS // 2
    # rank 0 wrote the directory alone: one log version, the export, no lock left behind
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0"]
    assert (run / "model.safetensors").is_file() and not (run / LOCK_NAME).exists()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, Path]:
    """Two processes on one node (``--devices 2``) and one process with ``training.accumulate=2``."""
    root = tmp_path_factory.mktemp("reference")
    runs = {"one_node": root / "one_node", "accumulate": root / "accumulate"}
    one_node = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    accumulate = ["--accelerator", "cpu", "--devices", "1", "--set", "training.accumulate=2"]
    launches = [
        Launch(s2s(*train_args(corpus, runs["one_node"]), *one_node), {}),
        Launch(s2s(*train_args(corpus, runs["accumulate"]), *accumulate), {}),
    ]
    run_together(launches, root / "logs")
    return runs


@pytest.mark.slow
def test_two_processes_on_one_node_match_accumulation_on_one(reference):
    ddp, single = weights(reference["one_node"]), weights(reference["accumulate"])
    assert ddp.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], atol=1e-4, rtol=1e-4)
    assert val_losses(reference["one_node"]) == pytest.approx(val_losses(reference["accumulate"]), abs=1e-4)


@pytest.mark.slow
def test_two_nodes_launched_by_hand(corpus, reference, tmp_path):
    """docs/training.md: on each node, NODE_RANK=R MASTER_ADDR=... MASTER_PORT=... WORLD_SIZE=2 s2s train."""
    run, port = tmp_path / "run", str(free_port())
    args = [*train_args(corpus, run), "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2"]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2"}
    launches = [Launch(s2s(*args), {**env, "NODE_RANK": str(r)}) for r in (0, 1)]
    outputs = run_together(launches, tmp_path / "logs")
    assert_same_run(run, reference["one_node"])
    assert f"trained {STEPS} steps" in outputs[0] and outputs[1] == ""  # only rank 0 reports


@pytest.mark.slow
def test_two_nodes_resume_where_they_stopped(corpus, reference, tmp_path):
    """2 steps on two nodes, then ``--resume`` to 4 on both: the weights of 4 steps in one go."""
    run = tmp_path / "run"
    args = [*train_args(corpus, run), "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2"]
    for extra, logs in ((["--max-steps", "2"], "first"), (["--resume"], "resumed")):
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
        launches = [Launch(s2s(*args, *extra), {**env, "NODE_RANK": str(r)}) for r in (0, 1)]
        run_together(launches, tmp_path / logs)
    ckpt = load_checkpoint_file(RunDir(run).last_ckpt)
    assert ckpt["global_step"] == STEPS
    for name, tensor in weights(reference["one_node"]).items():
        assert torch.equal(ckpt["state_dict"][name], tensor), name
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0", "version_1"]


@pytest.mark.slow
def test_two_nodes_launched_by_torchrun(corpus, reference, tmp_path):
    """The README's torchrun command for N=2 nodes of G=1 process, one torchrun per node."""
    run, port = tmp_path / "run", str(free_port())
    args = [*train_args(corpus, run), "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2",
            "--strategy", "ddp"]  # fmt: skip
    launches = [
        Launch([str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(r),
                "--master-addr", "127.0.0.1", "--master-port", port, str(BIN / "s2s"), *args], {})
        for r in (0, 1)
    ]  # fmt: skip
    outputs = run_together(launches, tmp_path / "logs")
    assert_same_run(run, reference["one_node"])
    assert f"trained {STEPS} steps" in outputs[0] and f"trained {STEPS} steps" not in outputs[1]


@pytest.mark.slow
def test_two_slurm_tasks_on_two_nodes(corpus, reference, tmp_path):
    """What ``srun`` gives each task of ``sbatch --nodes=2 --ntasks-per-node=1`` (docs/training.md);
    Lightning's SLURMEnvironment takes ranks and the main address from these variables."""
    run = tmp_path / "run"
    args = [*train_args(corpus, run), "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2",
            "--strategy", "ddp"]  # fmt: skip
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "s2s-train", "SLURM_NTASKS": "2",
             "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_NODELIST": "127.0.0.1",
             "SLURM_LOCALID": "0", "MASTER_PORT": str(free_port())}  # fmt: skip
    launches = [Launch(s2s(*args), {**slurm, "SLURM_PROCID": str(r), "SLURM_NODEID": str(r)}) for r in (0, 1)]
    outputs = run_together(launches, tmp_path / "logs")
    assert_same_run(run, reference["one_node"])
    assert f"trained {STEPS} steps" in outputs[0] and outputs[1] == ""


# --------------------------------------------------------------------------------------------------
# Which process writes the run directory (no launch: the rank Lightning will give this process)


@pytest.fixture
def launch_env(monkeypatch):
    """A clean launch environment; Lightning's rank_zero_only rank, which a Trainer built under a
    launch sets for the whole process, is put back afterwards."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    for key in [k for k in os.environ if k in LAUNCH_VARS or k.startswith(("SLURM_", "TORCHELASTIC_"))]:
        monkeypatch.delenv(key)
    ranks = rank_zero_only.rank, utils_rank_zero_only.rank
    yield monkeypatch
    rank_zero_only.rank, utils_rank_zero_only.rank = ranks


# what torchrun gives the process of node 1 (--nnodes 2 --nproc-per-node 1), and srun task 1 of 2 nodes
TORCHRUN_RANK_1 = {"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "1",
                   "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": "29500"}  # fmt: skip
SLURM_TASK_1 = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2",
                "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
                "SLURM_JOB_NAME": "s2s-train"}  # fmt: skip


@pytest.mark.parametrize(
    ("env", "nodes", "devices", "rank", "together"),
    [
        ({}, 1, "1", 0, False),
        ({}, 1, "2", 0, False),  # Lightning's launcher starts rank 1 once rank 0 has built its Trainer
        ({"NODE_RANK": "0", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}, 1, "2", 1, False),  # ... that rank 1
        ({}, 2, "1", 0, True),
        ({"NODE_RANK": "0"}, 2, "1", 0, True),
        ({"NODE_RANK": "1"}, 2, "1", 1, True),  # the main process of node 1: no RANK, no LOCAL_RANK
        ({"NODE_RANK": "1"}, 2, "2", 2, True),  # ... before it starts its local rank 1 (global rank 3)
        ({"NODE_RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, 2, "2", 3, True),
        (TORCHRUN_RANK_1, 2, "1", 1, True),
        ({**TORCHRUN_RANK_1, "GROUP_RANK": "0", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 1, "2", 1, True),
        (SLURM_TASK_1, 2, "1", 1, True),
    ],
)  # fmt: skip
def test_the_rank_that_writes_is_lightnings(launch_env, tmp_path, env, nodes, devices, rank, together):
    for key, value in env.items():
        launch_env.setenv(key, value)
    cfg = load_config(TINY, [f"training.out_dir={tmp_path}", "training.accelerator=cpu",
                             f"training.devices={devices}", f"training.num_nodes={nodes}"])  # fmt: skip
    launch = check_trainer_options(cfg)
    assert (launch.rank, launch.world_size, launch.started_together) == (rank, nodes * int(devices), together)


def test_overwrite_is_refused_when_ranks_start_together(launch_env, tmp_path):
    """Node 1 would load the old run's tokenizer while rank 0 deletes it: refused on every rank, before
    any of them touches the directory (so none waits for the others)."""
    for key, value in SLURM_TASK_1.items():
        launch_env.setenv(key, value)
    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    cfg = load_config(TINY, [f"training.out_dir={run}", "training.accelerator=cpu", "training.num_nodes=2"])
    with pytest.raises(UserError) as e:
        train(cfg, overwrite=True)
    assert str(e.value) == (
        "--overwrite cannot start over a run whose processes start together (several nodes, torchrun, "
        f"SLURM): the other ranks could read the old run while rank 0 deletes it; delete {run} first, or "
        "train into another --out-dir"
    )
    assert sorted(p.name for p in run.iterdir()) == ["tokenizer"]
