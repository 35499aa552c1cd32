"""End-to-end training: a toy task learned, exact resume, DDP parity, divergence stops, the CLI."""

from __future__ import annotations

import csv
import logging
import os
import random
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from click.testing import CliRunner

from seq2seq_lstm.checkpoint import CKPT_KEY, RunDir, load_checkpoint_file, load_for_inference
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config
from seq2seq_lstm.decoding.options import SearchOptions
from seq2seq_lstm.decoding.search import greedy_search
from seq2seq_lstm.errors import CheckpointError, ConfigError, UserError
from seq2seq_lstm.training.interrupt import TrainingInterrupted
from seq2seq_lstm.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
SYMBOLS = "abcdefgh"


def tiny_config(out_dir: Path, *sets: str):
    # the fixture paths in tiny.yaml are relative to the repository root
    data = [f"data.{s}={ROOT / 'tests/fixtures/tiny' / s}" for s in ("train", "valid", "test")]
    return load_config(TINY, [*data, f"training.out_dir={out_dir}", "training.num_threads=1", *sets])


def write_reverse_task(
    root: Path, n_train: int, n_test: int, lengths: tuple[int, int], seed: int = 0
) -> Path:
    """Source: letters separated by spaces; target: the same letters reversed. Files PREFIX.src/.tgt."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits = {"train": n_train, "valid": n_test, "test": n_test}
    for split, n in splits.items():
        src, tgt = [], []
        while len(src) < n:
            words = [rng.choice(SYMBOLS) for _ in range(rng.randint(*lengths))]
            line = " ".join(words)
            if line in seen:
                continue  # held-out sentences are never seen in training
            seen.add(line)
            src.append(line)
            tgt.append(" ".join(reversed(words)))
        (root / f"{split}.src").write_text("\n".join(src) + "\n")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
    return root


def reverse_config(data: Path, out_dir: Path, *sets: str):
    base = [*_reverse_sets(data), "data.max_valid_sentences=50", f"training.out_dir={out_dir}",
            "training.log_every_steps=1"]  # fmt: skip
    return load_config(TINY, [*base, *sets])


def read_metrics(run: Path) -> list[dict[str, str]]:
    rows = []
    for version in sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        with open(version / "metrics.csv") as f:
            rows.extend(csv.DictReader(f))
    return rows


def train_losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["train_loss"]) for r in read_metrics(run) if r.get("train_loss")}


# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reverse_task_is_learned_to_95_percent_exact_match(tmp_path):
    data = write_reverse_task(tmp_path, n_train=2000, n_test=100, lengths=(3, 7))
    cfg = reverse_config(
        data, tmp_path / "run", "model.emb_dim=32", "model.hidden_size=64", "model.bidirectional=true",
        "data.batch_tokens=400", "training.lr=0.01", "training.max_steps=1200",
        "training.val_every_steps=600",
    )  # fmt: skip
    summary = train(cfg)
    assert summary.steps == 1200
    model, cfg2, tok = load_for_inference(summary.out_dir)
    src_text = (data / "test.src").read_text().splitlines()
    ref_text = (data / "test.tgt").read_text().splitlines()
    ids = [torch.tensor(x) for x in tok.encode_src(src_text)]
    src = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    lens = torch.tensor([len(x) for x in ids])
    with torch.no_grad():
        hyps = greedy_search(
            model, model.start(src, lens), SearchOptions(), batch_size=len(ids), max_len=2 * lens + 2
        )
    out = tok.decode_tgt([h[0].tokens for h in hyps])
    exact = sum(o == r for o, r in zip(out, ref_text, strict=True)) / len(ref_text)
    assert exact >= 0.95, list(zip(out, ref_text, strict=True))[:5]
    assert summary.best_val_bleu is not None and summary.best_val_bleu > 90


@pytest.mark.parametrize("stop", ["training.max_steps=5", "training.max_epochs=2"])
def test_a_run_ending_between_validations_validates_its_final_state(tmp_path, stop):
    # 3 batches an epoch (46 sentences, at most 16 a batch, whatever the tokenizer's pieces), a validation
    # every 4 steps: max_steps=5 and the end of epoch 2 (step 6) fall between validations; the final
    # state must be scored too, or the exported model is older
    sets = ("data.batch_tokens=100000", "data.max_sentences=16", "training.val_every_steps=4")
    cfg = tiny_config(tmp_path / "run", *sets, "training.max_steps=-1", stop)
    summary = train(cfg)
    assert summary.steps == (5 if "max_steps" in stop else 6)
    rows = read_metrics(summary.out_dir)
    vals = [i for i, r in enumerate(rows) if r.get("val_bleu")]
    trained = [i for i, r in enumerate(rows) if r.get("train_loss")]
    assert len(vals) == 2  # step 4 and the final state
    assert vals[-1] > trained[-1]  # scored after the last training step, not before it
    assert summary.best_step in (4, summary.steps)


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_resume_continues_the_same_loss_curve(tmp_path, schedule, caplog):
    # dropout on: the RNG must be restored too; 4 steps end mid-epoch (3 batches per epoch, set by sentence
    # count so that any tokenizer gives 3): sampler position.
    # plateau: validations at steps 2 and 4 without a better BLEU halve the lr after step 4, so the resume
    # from step 4's checkpoint must still feed that validation to the scheduler
    sets = ("data.batch_tokens=100000", "data.max_sentences=16",
            "training.log_every_steps=1", "model.dropout=0.2", f"training.schedule={schedule}",
            "training.val_every_steps=" + ("2" if schedule == "plateau" else "3"),
            "training.plateau_patience=0")  # fmt: skip
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        full = train(tiny_config(tmp_path / "full", "training.max_steps=8", *sets))
    # no "ReduceLROnPlateau conditioned on metric val_bleu which is not available" before the first
    # validation, no deprecation notice from Lightning's pytree use, no advert for a logging service
    assert not [w for w in seen if "ReduceLROnPlateau" in str(w.message) or "LeafSpec" in str(w.message)]
    assert "litlogger" not in caplog.text
    assert "GPU available" in caplog.text  # Lightning's other lines still come through
    train(tiny_config(tmp_path / "half", "training.max_steps=4", *sets))
    resumed = train(tiny_config(tmp_path / "half", "training.max_steps=8", *sets), resume=True)
    assert full.steps == resumed.steps == 8
    a_dir, b_dir = full.out_dir, resumed.out_dir
    a, b = train_losses(a_dir), train_losses(b_dir)
    assert sorted(a) == sorted(b) == list(range(8))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    lrs = [{int(r["step"]): float(r["lr"]) for r in read_metrics(x) if r.get("lr")} for x in (a_dir, b_dir)]
    assert lrs[0] == lrs[1]
    assert (min(lrs[0].values()) < max(lrs[0].values())) == (schedule == "plateau")
    wa = load_checkpoint_file(RunDir(full.out_dir).last_ckpt)["state_dict"]
    wb = load_checkpoint_file(RunDir(resumed.out_dir).last_ckpt)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("stop, every", [(3, 2), (4, 2), (4, 6)])
def test_resume_without_validation_continues_the_same_loss_curve(tmp_path, stop, every):
    """No data.valid: last.ckpt is written every val_every_steps and at the final step only. Stopped at
    an epoch's last batch (3 batches an epoch) or inside the next one, before or after a periodic save,
    the resumed run trains every epoch's batches in the same epochs as the uninterrupted run, with the
    same dropout (the train loader must not draw from the global RNG that the checkpoint restores, and
    no save after the loop may close the epoch in last.ckpt)."""
    sets = ("data.valid=", "data.batch_tokens=100000", "data.max_sentences=16", "training.log_every_steps=1",
            "model.dropout=0.2", f"training.val_every_steps={every}")  # fmt: skip
    full = train(tiny_config(tmp_path / "full", "training.max_steps=8", *sets))
    train(tiny_config(tmp_path / "half", f"training.max_steps={stop}", *sets))
    resumed = train(tiny_config(tmp_path / "half", "training.max_steps=8", *sets), resume=True)
    assert full.steps == resumed.steps == 8
    a, b = train_losses(full.out_dir), train_losses(resumed.out_dir)
    assert sorted(a) == sorted(b) == list(range(8))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    epochs = [{int(r["step"]): int(r["epoch"]) for r in read_metrics(x) if r.get("train_loss")}
              for x in (full.out_dir, resumed.out_dir)]  # fmt: skip
    assert epochs[0] == epochs[1] and max(epochs[0].values()) == 2
    wa = load_checkpoint_file(RunDir(full.out_dir).last_ckpt)["state_dict"]
    wb = load_checkpoint_file(RunDir(resumed.out_dir).last_ckpt)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=0)


class SavedSteps(L.Callback):
    """The step of every checkpoint the run writes."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: object, checkpoint: dict) -> None:
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize(
    "every, accumulate, saved", [(2, 1, [2, 4, 6, 7]), (0, 1, [3, 6, 7]), (1, 2, [1, 2, 3, 4, 5, 6, 7])]
)
def test_without_validation_last_ckpt_is_saved_every_val_every_steps_or_each_epoch(
    tmp_path, every, accumulate, saved
):
    """3 batches an epoch, 7 steps: last.ckpt (the only checkpoint) is written where the validations
    would have come and at the final step, each step once however many batches it accumulates."""
    sets = ("data.valid=", "data.batch_tokens=100000", "data.max_sentences=16", "training.max_steps=7",
            f"training.val_every_steps={every}", f"training.accumulate={accumulate}")  # fmt: skip
    steps = SavedSteps()
    train(tiny_config(tmp_path / "run", *sets), callbacks=[steps])
    assert steps.steps == saved
    assert [p.name for p in RunDir(tmp_path / "run").checkpoints.glob("*.ckpt")] == ["last.ckpt"]


def test_resume_with_another_model_config_is_refused(tmp_path):
    train(tiny_config(tmp_path / "run", "training.max_steps=2"))
    with pytest.raises(UserError, match=r"cannot resume .*: model\.hidden_size is 48 now but was 32 in "):
        train(tiny_config(tmp_path / "run", "training.max_steps=4", "model.hidden_size=48"), resume=True)


def test_training_again_into_a_used_directory_needs_resume_or_overwrite(tmp_path):
    train(tiny_config(tmp_path / "run", "training.max_steps=1"))
    with pytest.raises(UserError, match="already holds a training run"):
        train(tiny_config(tmp_path / "run", "training.max_steps=1"))
    assert train(tiny_config(tmp_path / "run", "training.max_steps=1"), overwrite=True).steps == 1


def test_a_config_that_decodes_with_a_shortlist_gets_one_built_by_training(tmp_path):
    from seq2seq_lstm.inference.translator import Translator

    run = tmp_path / "run"
    train(tiny_config(run, "training.max_steps=2", "generation.shortlist=40", "generation.beam_size=2"))
    assert RunDir(run).shortlist.is_file()
    translator = Translator.from_checkpoint(run)
    assert translator.shortlist is not None and translator.generation.shortlist == 40
    assert len(translator.translate(["In the beginning God created the heaven and the earth."])) == 1


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert load_config(path).task in ("translation", "lm")  # unknown or misspelt keys would raise


MALFORMED = (
    "malformed override; write KEY=VALUE with a non-empty dotted key, e.g. --set model.hidden_size=256"
)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        # torch's "Invalid learning rate" traceback, after the tokenizer was trained into the run directory
        ("--set", "training.lr=.nan", "training.lr must be a finite number > 0.0; got nan"),
        ("--set", "training.lr=.inf", "training.lr must be a finite number > 0.0; got inf"),
        # Lightning's MisconfigurationException traceback
        ("--max-steps", "-5", "training.max_steps must be -1 (no limit) or >= 1; got -5"),
        # "checkpoint .../last.ckpt does not exist", after training nothing
        ("--max-steps", "0", "training.max_steps must be -1 (no limit) or >= 1; got 0"),
        ("--set", "training.max_epochs=0", "training.max_epochs must be -1 (no limit) or >= 1; got 0"),
        ("--set", "training.clip_norm=.inf", "training.clip_norm must be a finite number >= 0.0; got inf"),
        ("--set", "training.label_smoothing=.nan",
         "training.label_smoothing must be a finite number >= 0.0 and <= 0.5; got nan"),
        ("--set", "model.dropout=.nan", "model.dropout must be a finite number >= 0.0 and <= 0.9; got nan"),
        ("--set", "training.betas=[0.9, 1.0]", "training.betas must be >= 0.0 and < 1.0; got 1.0"),
        ("--set", "training.plateau_factor=1", "training.plateau_factor must be > 0.0 and < 1.0; got 1.0"),
        ("--set", "training.weight_decay=-0.1", "training.weight_decay must be >= 0.0; got -0.1"),
        ("--set", "training.seed=-1", "training.seed must be >= 0 and <= 4294967295; got -1"),
        ("--set", "data.max_ratio=.inf", "data.max_ratio must be a finite number >= 1.0; got inf"),
        ("--set", "generation.alpha=11", "generation.alpha must be >= 0.0 and <= 10.0; got 11.0"),
        # these were blamed on the config file
        ("--set", "model.hidden_size=abc", "model.hidden_size must be int; got 'abc' (str)"),
        ("--set", "model.hidden_size=", "model.hidden_size must be int; got '' (str)"),
        ("--set", "data.min_len=70", "data.min_len (70) must be <= data.max_len (60)"),
        # "unknown key ;"
        ("--set", "=5", MALFORMED),
        ("--set", "foo", MALFORMED),
        ("--set", "model..dropout=0.1", MALFORMED),
    ],
)  # fmt: skip
def test_cli_a_bad_setting_is_one_line_naming_it_before_the_run_directory_is_made(
    tmp_path, option, value, message
):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(TINY), "--out-dir", str(run), option, value])
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: {option} {value}: {message}\n"
    assert not run.exists()


def test_a_config_error_is_blamed_on_the_file_or_on_the_overrides_that_cause_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("hidden_size: 32", "hidden_size: lots"), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{bad}: model\.hidden_size must be int; got 'lots' \(str\)$"):
        load_config(bad, ["model.dropout=0.1"])  # an unrelated override does not take the blame
    assert load_config(bad, ["model.hidden_size=16"]).model.hidden_size == 16  # one that fixes the file
    # both together break the rule; each alone is fine; the file is not to blame
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["data.min_len=50", "data.max_len=40", "model.dropout=0.1"])
    assert str(e.value) == (
        "--set data.min_len=50, --set data.max_len=40: data.min_len (50) must be <= data.max_len (40)"
    )
    # options that set a key name themselves (labels), --set for the rest
    with pytest.raises(ConfigError, match=r"^--max-steps 0: training\.max_steps must be"):
        load_config(TINY, ["training.max_steps=0"], {"training.max_steps=0": "--max-steps 0"})


def test_more_cpu_processes_than_cores_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    # Lightning started 1000 gloo processes on a 2-core machine and hung after "TPU available"
    from seq2seq_lstm.training.trainer import check_cpu_devices, check_trainer_options

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = tiny_config(tmp_path / "run", "training.devices=1000", "training.accelerator=cpu")
    message = (
        "training.devices=1000 asks for 1000 CPU training processes but this machine has 2 CPU cores; "
        "use --devices 2 or fewer, or train on a GPU (--accelerator gpu)"
    )
    with pytest.raises(UserError) as e:
        check_trainer_options(cfg)
    assert str(e.value) == message
    with pytest.raises(UserError, match="1000 CPU training processes"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    # as many as the cores and Lightning's own choice (auto) pass; GPU lists (0,1) are Lightning's to judge
    for devices in ("2", "auto"):
        check_trainer_options(cfg.replace(training={"devices": devices}))
    check_cpu_devices(cfg.replace(training={"devices": "0,1"}).training)
    if not torch.cuda.is_available():  # accelerator auto means the CPU here
        with pytest.raises(UserError, match="1000 CPU training processes"):
            check_cpu_devices(cfg.replace(training={"accelerator": "auto"}).training)


def test_a_fresh_run_that_fails_takes_away_only_the_directory_it_made(tmp_path):
    # the length filter leaves nothing: found after config.yaml and tokenizer/ were written
    empty = ("data.min_len=70", "data.max_len=80")
    with pytest.raises(UserError, match="no sentences left after the length filter"):
        train(tiny_config(tmp_path / "new" / "run", *empty))
    assert not (tmp_path / "new").exists()  # the parent it made too
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no sentences left"):
        train(tiny_config(tmp_path / "empty", *empty))
    assert list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="no sentences left"):
        train(tiny_config(tmp_path / "used", *empty))
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"  # a directory in use is left alone
    # a loss that is NaN at the first step trained nothing; one at step 3 leaves logs worth reading
    for name, step in (("at_once", 0), ("later", 2)):
        with pytest.raises(UserError, match="no checkpoint was saved before it"):
            train(tiny_config(tmp_path / name, "training.val_every_steps=10"), callbacks=[PoisonAt(step)])
    assert not (tmp_path / "at_once").exists()
    assert {p.name for p in (tmp_path / "later").iterdir()} == {"config.yaml", "tokenizer", "logs"}


class WeightsAtStart(L.Callback):
    """Keeps a copy of the model's weights as training starts (after any initialisation)."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.model.state_dict().items()}


def test_fine_tuning_starts_from_the_source_weights_and_keeps_its_tokenizer(tmp_path):
    source = tmp_path / "source"
    train(tiny_config(source, "training.max_steps=3"))
    start = WeightsAtStart()
    # other text, too small for the config's 120 pieces: a tokenizer could not even be trained on it
    other_text = [f"data.train={ROOT / 'tests/fixtures/tiny/valid'}", "training.max_steps=2"]
    summary = train(
        tiny_config(tmp_path / "tuned", *other_text, f"training.init_from={source}"), callbacks=[start]
    )
    assert summary.steps == 2  # a fresh step count: only the weights come along
    spm = (tmp_path / "tuned/tokenizer/spm.model").read_bytes()
    assert spm == (source / "tokenizer/spm.model").read_bytes()
    source_state = load_for_inference(source)[0].state_dict()
    assert start.state.keys() == source_state.keys()
    for name, tensor in source_state.items():
        assert torch.equal(start.state[name], tensor), name
    tuned = load_for_inference(tmp_path / "tuned")[0].state_dict()
    assert any(not torch.equal(tuned[n], source_state[n]) for n in source_state)  # and it trained on


def test_fine_tuning_on_new_text_fits_that_text_better_than_more_of_the_old(tmp_path):
    source = tmp_path / "source"
    train(tiny_config(source, "training.max_steps=20"))

    def final_val_loss(name: str, text: str) -> float:
        sets = [f"data.train={ROOT / 'tests/fixtures/tiny' / text}", "training.max_steps=10"]
        train(tiny_config(tmp_path / name, *sets, f"training.init_from={source}"))
        return [float(r["val_loss"]) for r in read_metrics(tmp_path / name) if r.get("val_loss")][-1]

    # both validate on the valid split; only one of them trains on it
    # (3.43 against 3.73 when written)
    assert final_val_loss("new", "valid") < final_val_loss("old", "train") - 0.1


def test_fine_tuning_from_another_shape_task_or_nothing_is_one_clear_error(tmp_path):
    source = tmp_path / "source"
    train(tiny_config(source, "training.max_steps=1"))
    wider = tiny_config(
        tmp_path / "wider", "training.max_steps=1", "model.hidden_size=48", f"training.init_from={source}"
    )
    shapes = r"source does not match this config: parameter .* has shape \(128, 32\) in the weights but "
    shapes += r"\(192, 48\) in the model built from the config"
    with pytest.raises(CheckpointError, match=shapes):
        train(wider)
    lm = tiny_config(tmp_path / "lm", "task=lm", "training.max_steps=1", f"training.init_from={source}")
    with pytest.raises(
        ConfigError, match=r"holds a translation model but this config trains a language model"
    ):
        train(lm)
    assert not (tmp_path / "lm" / "tokenizer").exists()  # refused before anything was written
    missing = tiny_config(
        tmp_path / "x", "training.max_steps=1", f"training.init_from={tmp_path / 'nothing'}"
    )
    with pytest.raises(
        CheckpointError, match=r"^training\.init_from: model .*nothing does not exist; pass a run directory"
    ):
        train(missing)


class PoisonAt(L.Callback):
    """Makes the next training step's loss NaN at a given step, as an exploding model would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.model.decoder.generator.bias.fill_(float("nan"))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "run", "training.max_steps=20", "training.val_every_steps=4")
    last = RunDir(tmp_path / "run").last_ckpt
    with pytest.raises(UserError) as e:
        train(cfg, callbacks=[PoisonAt(6)])
    assert str(e.value) == (
        f"loss became nan at step 7; the last good checkpoint is {last}; lower training.lr or check the data"
    )
    ckpt = load_checkpoint_file(last)
    assert ckpt["global_step"] == 4  # saved by the validation at step 4, not overwritten since
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


class SignalAt(L.Callback):
    """Sends this process a signal during a step: SIGINT as a user pressing Ctrl-C would, SIGTERM as
    `kill`, `docker stop` or a batch system would."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_finishes_the_step_saves_it_and_says_how_to_continue(tmp_path, signum, name):
    # SIGTERM used to end the run at once with exit code 0, nothing saved since the last validation
    run = RunDir(tmp_path / "run")
    cfg = tiny_config(run.root, "training.max_steps=20", "training.val_every_steps=10")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as e:
        train(cfg, callbacks=[SignalAt(3, signum)])  # during the 4th step: it is finished, then saved
    assert str(e.value) == (
        f"stopped by {name}: step 4 is saved in {run.last_ckpt}; continue with: s2s train --resume "
        f"--out-dir {run.root}"
    )
    assert load_checkpoint_file(run.last_ckpt)["global_step"] == 4
    assert run.weights.is_file()  # the best weights so far are exported
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back
    assert train(tiny_config(run.root, "training.max_steps=6"), resume=True).steps == 6


def test_progress_lines_give_the_steps_of_the_budget_and_the_time_left(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        train(tiny_config(tmp_path / "run", "training.max_steps=4", "training.val_every_steps=2"))
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("step ") and "so far" in r.getMessage()
    ]
    assert len(lines) == 2
    assert re.fullmatch(r"step 2/4: 0:\d\d so far, about 0:\d\d left", lines[0]), lines
    assert re.fullmatch(r"step 4/4: 0:\d\d so far", lines[1]), lines  # nothing left to estimate


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        trainer.should_stop = trainer.should_stop or trainer.global_step >= self.step


def test_a_step_budget_that_max_time_would_cut_short_is_announced_early(tmp_path, caplog):
    # 100,000 steps cannot fit in a minute: said after 20 timed steps, not found out at the end
    sets = ("training.max_steps=100000", "training.max_time=1", "training.val_every_steps=1000")
    with caplog.at_level(logging.WARNING):
        train(tiny_config(tmp_path / "run", *sets), callbacks=[StopAt(21)])
    lines = [r.getMessage() for r in caplog.records if "training.max_time stops" in r.getMessage()]
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"at \d+\.\d\d s a step the 99980 steps still to do need about [\d:]+, but training\.max_time stops "
        r"the run in 0:\d\d: it will end with fewer steps unless training\.max_time is raised",
        lines[0],
    ), lines


def test_time_left_is_the_steps_to_do_times_the_mean_step_capped_by_max_time():
    from seq2seq_lstm.training.progress import clock, seconds_left

    assert seconds_left(300, 1200, 0.2, None) == pytest.approx(180.0)  # 900 steps of 0.2 s
    assert seconds_left(300, 1200, 0.2, 60.0) == 60.0  # max_time ends it first
    assert seconds_left(300, None, 0.2, 60.0) == 60.0  # no step budget: only the cap says
    assert seconds_left(0, 1200, None, None) is None  # no step timed yet
    assert seconds_left(300, None, 0.2, -7154.0) == 0.0  # past max_time (a resumed run): nothing left
    assert [clock(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]


def test_the_main_job_is_budgeted_in_steps_with_time_only_as_a_safety_cap():
    # a time budget gave 161 steps and BLEU 0.8 on a busy machine where a quiet one did 1,190 steps
    t = load_config(ROOT / "configs" / "quickstart.yaml").training
    assert t.max_steps == 1200 and t.max_epochs == -1
    assert t.max_time >= 20  # minutes: several times what the steps take on 2 cores


def test_cli_train_prints_bleu_and_where_the_model_is(tmp_path):
    data = [f"--set=data.{s}={ROOT / 'tests/fixtures/tiny' / s}" for s in ("train", "valid", "test")]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", "--config", str(TINY), *data, "--max-steps", "3", "--out-dir", str(out),
               "--accelerator", "cpu", "--precision", "bf16-mixed", "--set", "training.val_every_steps=3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best validation BLEU " in result.output and ", chrF " in result.output
    assert f"model: {out / 'model.safetensors'}" in result.output
    assert {"config.yaml", "tokenizer", "checkpoints", "logs", "model.safetensors", "model.json"} <= {
        p.name for p in out.iterdir()
    }
    assert load_config(out / "config.yaml").training.precision == "bf16-mixed"


def test_cli_validation_line_is_not_written_into_a_progress_bar(tmp_path):
    # The BLEU line used to land on the validation bar's last frame ("... 4.34it/s]step 3: BLEU").
    # A real process with stdout and stderr on one pipe, as on a terminal (CliRunner buffers stderr).
    data = [f"--set=data.{s}={ROOT / 'tests/fixtures/tiny' / s}" for s in ("train", "valid", "test")]
    cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--config", str(TINY), *data, "--max-steps", "3",
           "--out-dir", str(tmp_path / "run"), "--set", "training.val_every_steps=3",
           "--set", "training.progress_bar=true"]  # fmt: skip
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300).stdout
    assert "it/s" in out and "step 3: BLEU" in out, out  # bars were drawn, then the line
    before = out.split("step 3: BLEU")[0].removesuffix("\x1b[A")  # tqdm may move up a line first
    assert before[-1].isspace(), repr(before[-80:])  # the bars were cleared, not written after


def test_cli_gpu_without_cuda_is_one_clear_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["train", "--config", str(TINY), "--accelerator", "gpu",
                                       "--out-dir", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 1
    assert result.output == (
        "Error: training.accelerator=gpu but no CUDA device is available; use --accelerator cpu\n"
    )


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (["--devices", "abc"], "`devices` selected with `CPUAccelerator` should be an int > 0."),
        (["--devices", "1,a"], "invalid literal for int() with base 10: 'a'"),
        (["--strategy", "nonsense"], "You selected an invalid strategy name: `strategy='nonsense'`."),
        (["--precision", "8-bit"], "Precision '8-bit' is invalid."),
    ],
)
def test_cli_device_options_lightning_refuses_are_one_line_before_anything_is_written(
    tmp_path, option, reason
):
    # these were Lightning tracebacks, raised after the tokenizer had been trained into the run directory
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", "--config", str(TINY), "--accelerator", "cpu", *option, "--out-dir", str(run)]
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: Lightning refuses the device options (training.accelerator=cpu, ")
    assert reason in lines[0]
    assert not run.exists()


def test_cli_nan_loss_is_one_line_and_exit_1(tmp_path):
    # a learning rate beyond float32 turns the weights into inf and NaN after the first step
    data = [f"--set=data.{s}={ROOT / 'tests/fixtures/tiny' / s}" for s in ("train", "valid", "test")]
    result = CliRunner().invoke(
        main, ["train", "--config", str(TINY), *data, "--out-dir", str(tmp_path / "run"),
               "--set", "training.lr=1e300", "--set", "training.clip_norm=0"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and " became " in last and " at step " in last, last
    assert last.endswith("; lower training.lr or check the data")
    assert "Traceback" not in result.output


def test_cli_init_from_sets_the_key_and_a_missing_run_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", str(TINY), "--out-dir", str(tmp_path / "run"),
                                       "--init-from", str(tmp_path / "nothing")])  # fmt: skip
    assert result.exit_code == 1
    assert result.output == (
        f"Error: training.init_from: model {tmp_path / 'nothing'} does not exist; pass a run directory "
        "written by `s2s train`\n"
    )


def train_in_subprocess(out_dir: Path, *args: str) -> None:
    """``s2s train`` on the tiny config in a fresh process (DDP spawns its ranks from the command line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--config", str(TINY), *args]
    cmd += ["--out-dir", str(out_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_accumulation_on_one(tmp_path):
    """DDP averages the gradients of W per-rank batches, each normalized by its own tokens: that is
    exactly gradient accumulation over the same W batches on one process (Lightning divides by W).
    The sampler gives rank r the batches r, r+W, ... of the same epoch order, so ``devices=2`` and
    ``accumulate=2`` see the same batch pairs. The epoch holds an even number of batches (8 sentences
    of one length each, at most 8 per batch) so that no partial accumulation happens at epoch ends.
    The validation set has 3 batches, so rank 1 gets a repeat of batch 0: it must not count twice."""
    data = write_reverse_task(tmp_path, n_train=64, n_test=24, lengths=(5, 5))
    common = ["--set=data.max_sentences=8", "--set=data.batch_tokens=500", "--set=training.log_every_steps=1",
              "--set=training.val_every_steps=6", "--set=training.max_steps=6",
              "--accelerator=cpu"]  # fmt: skip
    base = [f"--set={s}" for s in _reverse_sets(data)]
    runs = {
        "ddp": ["--devices=2", "--strategy=ddp"],
        "single": ["--devices=1", "--set=training.accumulate=2"],
    }
    for name, extra in runs.items():
        train_in_subprocess(tmp_path / name, *base, *common, *extra)
    val = {n: [float(r["val_loss"]) for r in read_metrics(tmp_path / n) if r.get("val_loss")] for n in runs}
    assert len(val["ddp"]) == len(val["single"]) == 1
    assert val["ddp"][0] == pytest.approx(val["single"][0], abs=1e-4)
    wd = load_checkpoint_file(RunDir(tmp_path / "ddp").last_ckpt)["state_dict"]
    ws = load_checkpoint_file(RunDir(tmp_path / "single").last_ckpt)["state_dict"]
    assert load_checkpoint_file(RunDir(tmp_path / "ddp").last_ckpt)["global_step"] == 6
    for name in ws:
        torch.testing.assert_close(wd[name], ws[name], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_ddp_resume_restores_every_ranks_rng(tmp_path):
    """DDP 6 steps == DDP 3 steps + resume to 6, with dropout on. Sentences of mixed lengths make the
    ranks draw different amounts of randomness, so their RNG states part; restoring rank 0's state on
    both ranks would change rank 1's dropout masks after the resume and with them the weights."""
    data = write_reverse_task(tmp_path, n_train=64, n_test=8, lengths=(2, 9))
    base = [f"--set={s}" for s in _reverse_sets(data)] + [
        "--set=data.max_sentences=8", "--set=data.batch_tokens=500", "--set=model.dropout=0.3",
        "--set=training.val_every_steps=3", "--accelerator=cpu", "--devices=2", "--strategy=ddp",
    ]  # fmt: skip
    train_in_subprocess(tmp_path / "full", *base, "--max-steps=6")
    train_in_subprocess(tmp_path / "half", *base, "--max-steps=3")
    ranks = load_checkpoint_file(RunDir(tmp_path / "half").last_ckpt)[CKPT_KEY]["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    train_in_subprocess(tmp_path / "half", *base, "--max-steps=6", "--resume")
    wa = load_checkpoint_file(RunDir(tmp_path / "full").last_ckpt)["state_dict"]
    wb = load_checkpoint_file(RunDir(tmp_path / "half").last_ckpt)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=0)


def _reverse_sets(data: Path) -> list[str]:
    return [
        f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", f"data.test={data / 'test'}",
        "data.src_lang=src", "data.tgt_lang=tgt", "tokenizer.vocab_size=20", "tokenizer.byte_fallback=false",
        "training.num_threads=1", "training.progress_bar=false", "training.max_epochs=-1",
        "training.label_smoothing=0.0", "generation.beam_size=1",
    ]  # fmt: skip


def test_bf16_falls_back_to_fp32_on_a_cpu_without_bf16(tmp_path, monkeypatch):
    # emulated bf16 on an AVX2 CPU trains ~10x slower than fp32: a bf16 config runs in 32-true there
    from seq2seq_lstm.model import cells
    from seq2seq_lstm.training.trainer import cpu_precision

    cfg = tiny_config(tmp_path, "training.precision=bf16-mixed", "training.accelerator=cpu")
    monkeypatch.setattr(cells, "cpu_supports_bf16", lambda: False)
    assert cpu_precision(cfg.training) == "32-true"
    gpu = tiny_config(tmp_path, "training.precision=bf16-mixed", "training.accelerator=gpu")
    assert cpu_precision(gpu.training) == "bf16-mixed"  # GPUs have bf16
    monkeypatch.setattr(cells, "cpu_supports_bf16", lambda: True)
    assert cpu_precision(cfg.training) == "bf16-mixed"
