"""Run directories for the bad-input battery: built once per session, copied into each test's tmp_path.

The weights are random (exported as `s2s train` exports them): what is tested is how commands refuse
bad input, not what a trained model says. Each run also holds ``checkpoints/best.ckpt`` and
``checkpoints/last.ckpt`` in Lightning's layout, so a test can damage the file a command reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from seq2seq_lstm.checkpoint import (
    CKPT_KEY,
    MODEL_PREFIX,
    RunDir,
    export_weights,
    save_checkpoint_info,
)
from seq2seq_lstm.config import Config, load_config, save_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.model.seq2seq import build_model

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"


class Payload:
    """Unpickling this runs ``open(path, "w")``: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def checkpoint_dict(model: torch.nn.Module, cfg: Config, tokenizer: Tokenizer) -> dict:
    """What a Lightning checkpoint written by `s2s train` holds, as far as loading reads it."""
    return {
        "epoch": 0,
        "global_step": 2,
        "state_dict": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
        "optimizer_states": [],
        "loops": {},
        CKPT_KEY: {**save_checkpoint_info(cfg, tokenizer), "val": {"val_bleu": 1.0}},
    }


def _build_run(out: Path, cfg: Config, src: list[str], tgt: list[str] | None) -> Path:
    run = RunDir(out)
    tokenizer = Tokenizer.train(src, tgt, cfg.tokenizer, out_dir=run.tokenizer)
    save_config(cfg, run.config)
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    export_weights(model, run, {**save_checkpoint_info(cfg, tokenizer), "step": 2, "checkpoint": "best.ckpt"})
    run.checkpoints.mkdir()
    for path in (run.best_ckpt, run.last_ckpt):
        torch.save(checkpoint_dict(model, cfg, tokenizer), path)
    return out


@pytest.fixture
def payload() -> type[Payload]:
    """:class:`Payload`, for test modules (a conftest is not imported by name)."""
    return Payload


def _lines(name: str) -> list[str]:
    return (TINY / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def built_runs(tmp_path_factory) -> dict[str, Path]:
    """A translation run ("run") and a language-model run ("lm"), both on the tiny fixture corpus."""
    root = tmp_path_factory.mktemp("bad_input_runs")
    data = [f"data.{s}={TINY / s}" for s in ("train", "valid", "test")]
    translation = load_config(ROOT / "configs" / "tiny.yaml", [*data, f"training.out_dir={root / 'run'}"])
    lm = load_config(
        ROOT / "configs" / "tiny.yaml",
        ["task=lm", *(f"data.{s}={TINY / s}.en" for s in ("train", "valid", "test")),
         f"training.out_dir={root / 'lm'}"],
    )  # fmt: skip
    return {
        "run": _build_run(root / "run", translation, _lines("train.en"), _lines("train.es")),
        "lm": _build_run(root / "lm", lm, _lines("train.en"), None),
    }


@pytest.fixture
def runs(built_runs, tmp_path) -> dict[str, Path]:
    """Fresh copies of the session's run directories, free to damage."""
    return {name: Path(shutil.copytree(path, tmp_path / name)) for name, path in built_runs.items()}
