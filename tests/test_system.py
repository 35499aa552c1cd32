"""The Lightning systems: loss by hand, schedules, gradient flow, the language-model variant."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from seq2seq_lstm.config import load_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.model.seq2seq import build_model
from seq2seq_lstm.training.system import SYSTEMS, LanguageModelSystem, TranslationSystem, warmup_inverse_sqrt
from seq2seq_lstm.vocab import BOS_ID, EOS_ID, PAD_ID

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "fixtures" / "tiny"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    texts = (DATA / "train.en").read_text().splitlines() + (DATA / "train.es").read_text().splitlines()
    return Tokenizer.train(texts, None, cfg.tokenizer)


def batch(tokenizer) -> dict[str, torch.Tensor]:
    src = tokenizer.encode_src(["The cat is black.", "Good morning!"])
    tgt = tokenizer.encode_tgt(["El gato es negro.", "Buenos días!"])
    pad = torch.nn.utils.rnn.pad_sequence

    def tensors(rows):
        return pad([torch.tensor(r) for r in rows], batch_first=True, padding_value=PAD_ID)

    return {
        "src": tensors(src), "src_lens": torch.tensor([len(s) for s in src]),
        "tgt_in": tensors([[BOS_ID, *t] for t in tgt]), "tgt_out": tensors([[*t, EOS_ID] for t in tgt]),
        "index": torch.arange(2),
    }  # fmt: skip


def test_warmup_inverse_sqrt_known_values():
    assert [warmup_inverse_sqrt(s, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_inverse_sqrt(15, 4) == pytest.approx(math.sqrt(4 / 16))  # step 16: half the peak
    assert warmup_inverse_sqrt(0, 0) == 1.0 and warmup_inverse_sqrt(3, 0) == pytest.approx(0.5)


def test_token_loss_matches_a_hand_computation_on_a_3_token_vocabulary():
    # logits for 2 positions + 1 padding position; smoothing 0.3 over V=3
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])
    target = torch.tensor([[2, 1, PAD_ID]])  # the third position is padding
    logp = logits.log_softmax(-1)[0]
    eps = 0.3
    # per token: (1 - eps) * NLL + eps * mean over V of -log p (PyTorch's definition of label smoothing)
    hand = sum((1 - eps) * -logp[i, t] + eps * -logp[i].mean() for i, t in [(0, 2), (1, 1)]) / 2

    class Fixed(TranslationSystem):
        def forward(self, b):
            return logits

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["training.label_smoothing=0.3"])
    system = Fixed(cfg, torch.nn.Linear(1, 1), tokenizer=None)
    loss_sum, _, tokens = system._token_losses({"tgt_out": target}, eps)
    assert int(tokens) == 2
    assert float(loss_sum / tokens) == pytest.approx(float(hand), abs=1e-6)
    nll = F.cross_entropy(logits[0], target[0], ignore_index=PAD_ID)
    assert float(nll) == pytest.approx(float((-logp[0, 2] - logp[1, 1]) / 2), abs=1e-6)


class GradProbe(L.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters()}


@pytest.mark.parametrize("task", ["translation", "lm"])
def test_every_parameter_gets_a_finite_nonzero_gradient(tokenizer, task, tmp_path):
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"task={task}", "model.dropout=0.1"])
    model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    system = SYSTEMS[task](cfg, model, tokenizer)
    b = batch(tokenizer)
    if task == "lm":
        b = {k: v for k, v in b.items() if not k.startswith("src")}
    probe = GradProbe()
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[probe], default_root_dir=tmp_path,
                        gradient_clip_val=5.0)  # fmt: skip
    trainer.fit(system, train_dataloaders=DataLoader([b], batch_size=None))
    names = dict(system.named_parameters())
    assert set(probe.grads) == set(names) and names
    for name, g in probe.grads.items():
        assert torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, name
    assert isinstance(system, LanguageModelSystem if task == "lm" else TranslationSystem)


def test_adamw_with_warmup_decay_schedule_sets_the_learning_rate(tokenizer, tmp_path):
    sets = [
        "training.optimizer=adamw",
        "training.schedule=warmup_decay",
        "training.warmup_steps=4",
        "training.lr=0.01",
    ]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", sets)
    system = TranslationSystem(
        cfg, build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size), tokenizer
    )
    seen = []

    class LR(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen.append(optimizer.param_groups[0]["lr"])

    trainer = L.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[LR()], default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, train_dataloaders=DataLoader([batch(tokenizer)] * 6, batch_size=None))
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)
    expected = [0.01 * warmup_inverse_sqrt(s, 4) for s in range(6)]
    assert seen == pytest.approx(expected)
