"""Run directory, exported weights and refusing bad checkpoints (unsafe, corrupt, mismatching)."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import stat
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file, load_for_inference, tokenizer_sha256
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import TokenizerConfig, load_config, save_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import CheckpointError
from seq2seq_lstm.files import atomic_write_text
from seq2seq_lstm.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
DATA = ROOT / "tests" / "fixtures" / "tiny"


def tiny_sets(out_dir: Path) -> list[str]:
    return [*(f"data.{s}={DATA / s}" for s in ("train", "valid", "test")), f"training.out_dir={out_dir}",
            "training.num_threads=1", "training.val_every_steps=2"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(load_config(TINY, [*tiny_sets(out), "training.max_steps=2"]))
    return out


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


class Payload:
    """Unpickling this runs ``open(path, "w")``: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_run_directory_layout_and_metadata(trained_run):
    run = RunDir(trained_run)
    assert run.config.is_file() and run.weights.is_file() and run.meta.is_file()
    assert run.best_ckpt.is_file() and run.last_ckpt.is_file()
    assert (run.tokenizer / "spm.model").is_file()
    assert list(run.logs.glob("version_0/metrics.csv"))
    import json

    meta = json.loads(run.meta.read_text())
    tok = Tokenizer.load(run.tokenizer)
    assert meta["tokenizer_sha256"] == tokenizer_sha256(tok)
    assert (meta["src_vocab"], meta["tgt_vocab"], meta["task"]) == (120, 120, "translation")
    assert meta["step"] == 2 and "val_bleu" in meta


def test_run_directory_files_are_readable_as_plainly_written_files(trained_run):
    # written through temp files, which are private (0600, 0700): renamed into place they were still
    # private, so a model or translation could not be read by anyone else on the machine
    mask = os.umask(0o022)
    os.umask(mask)
    run = RunDir(trained_run)
    for path in (run.config, run.weights, run.meta, run.tokenizer / "spm.model"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert run.tokenizer.stat().st_mode & 0o777 == 0o777 & ~mask


def test_atomic_write_gives_new_files_the_umask_mode_and_keeps_an_existing_files_mode(tmp_path):
    mask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "a")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
        (tmp_path / "old.txt").write_text("old")
        (tmp_path / "old.txt").chmod(0o604)
        atomic_write_text(tmp_path / "old.txt", "new")
        assert (tmp_path / "old.txt").stat().st_mode & 0o777 == 0o604
        assert (tmp_path / "old.txt").read_text() == "new"
    finally:
        os.umask(mask)


def test_atomic_write_follows_links_and_writes_into_fifos(tmp_path):
    # renaming over a link or a FIFO replaced it with a plain file (`-o /dev/full` replaced the device)
    (tmp_path / "target.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "target.txt")
    atomic_write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "target.txt").read_text() == "new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert received == ["through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.txt", "target.txt"]  # no temp left


def test_load_for_inference_returns_the_exported_best_weights(trained_run):
    model, cfg, tok = load_for_inference(trained_run)
    assert not model.training and cfg.task == "translation" and tok.tgt_vocab_size == 120
    best = load_checkpoint_file(RunDir(trained_run).best_ckpt)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, best["model." + name], rtol=0, atol=0)
    # the same weights through the .ckpt path
    model2, _, _ = load_for_inference(RunDir(trained_run).best_ckpt)
    for (n1, t1), (_, t2) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert torch.equal(t1, t2), n1


def test_pickle_payload_is_refused_and_never_executed(run, tmp_path):
    marker = tmp_path / "pwned"
    evil = RunDir(run).last_ckpt
    ckpt = load_checkpoint_file(evil)
    ckpt["hyper_parameters"] = Payload(marker)
    torch.save(ckpt, evil)  # a .ckpt that runs code when unpickled without weights_only
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects, not only tensors; refusing"):
        load_checkpoint_file(evil)
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects"):
        load_for_inference(evil)
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(run)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {evil} holds pickled Python objects, not only tensors; refusing to load it (it could run "
        "code): load only checkpoints written by `s2s train`"
    )
    assert not marker.exists()
    # the same file really does run code when unpickled the unsafe way (so the test means something)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    with pytest.raises(CheckpointError, match="refusing to load it"):
        load_checkpoint_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_checkpoint_is_a_clear_error(run, keep):
    last = RunDir(run).last_ckpt
    data = last.read_bytes()
    last.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        CheckpointError, match=rf"^{last} is corrupt or truncated \(.+\); use another checkpoint$"
    ):
        load_checkpoint_file(last)
    # with a best.ckpt that loads, --resume continues from it (tests/bad_input/test_training_faults.py)
    RunDir(run).best_ckpt.unlink()
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(run)])
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith(f"Error: {last} is corrupt or")
    assert "Traceback" not in result.output


def test_corrupt_safetensors_is_a_clear_error(run):
    weights = RunDir(run).weights
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"^{weights} is corrupt or truncated"):
        load_for_inference(run)


def test_weights_from_another_tokenizer_are_refused(run):
    d = RunDir(run)
    texts = (DATA / "train.en").read_text().splitlines()
    other = Tokenizer.train(texts, None, TokenizerConfig(vocab_size=100, byte_fallback=False), d.tokenizer)
    sha = tokenizer_sha256(other)["spm.model"]
    with pytest.raises(CheckpointError) as e:
        load_for_inference(run)
    assert str(e.value).startswith(
        f"{d.tokenizer}/spm.model does not match {d.weights}: its sha256 is {sha[:12]}"
    )
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(run)])
    assert (
        result.exit_code == 1
        and f"Error: {d.tokenizer}/spm.model does not match {d.last_ckpt}" in result.output
    )


def test_weights_with_another_config_name_the_parameter_and_shapes(run):
    d = RunDir(run)
    cfg = load_config(d.config)
    save_config(cfg.replace(model={"hidden_size": 48}), d.config)
    with pytest.raises(CheckpointError) as e:
        load_for_inference(run)
    prefix = f"{d.weights} does not match {d.config}: parameter "
    assert str(e.value).startswith(prefix)
    shapes = r"\S+ has shape \(.*32.*\) in the weights but \(.*48.*\) in the model built from the config"
    assert re.fullmatch(shapes, str(e.value)[len(prefix) :])


def test_resume_with_another_config_via_cli(run):
    result = CliRunner().invoke(
        main, ["train", "--config", str(TINY), *(f"--set={s}" for s in tiny_sets(run)), "--resume",
               "--set", "model.emb_dim=16"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: cannot resume {run}: model.emb_dim is 16 now but was 32 in {RunDir(run).config}; "
        "resume with the same tokenizer and model settings, or train into another --out-dir"
    )


def test_resume_via_cli_continues_the_step_count(run):
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(run), "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "trained 4 steps in " in result.output
    assert load_checkpoint_file(RunDir(run).last_ckpt)["global_step"] == 4


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no model: expected model.safetensors"):
        load_for_inference(tmp_path)
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint_file(tmp_path / "nope.ckpt")
    os.makedirs(tmp_path / "r")
    result = CliRunner().invoke(main, ["train", "--resume", "--out-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "does not exist" in result.output
