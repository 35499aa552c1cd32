"""Subword regularization (data.sample_alpha): new segmentations each epoch, reproducible, in budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seq2seq_lstm.config import TokenizerConfig, load_config
from seq2seq_lstm.data import datamodule
from seq2seq_lstm.data.datamodule import LMDataModule, TranslationDataModule
from seq2seq_lstm.data.subword_sampling import example_seeds
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import ConfigError

TINY = Path(__file__).parent / "fixtures" / "tiny"
BUDGET = 200


def cfg(*overrides):
    return load_config(
        None,
        [f"data.train={TINY / 'train'}", f"data.valid={TINY / 'valid'}", "data.src_lang=en",
         "data.tgt_lang=es", f"data.batch_tokens={BUDGET}", "data.max_len=40", *overrides],
    )  # fmt: skip


def epoch_batches(dm, epoch: int) -> list[dict]:
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        all((x[k] == y[k]).all() for k in ("src", "tgt_in", "tgt_out", "index"))
        for x, y in zip(a, b, strict=True)
    )


def pieces_by_index(batches: list[dict]) -> dict[int, tuple[list[int], list[int]]]:
    """Example index -> (source ids, target ids) as the batches hold them, padding removed."""
    out = {}
    for b in batches:
        for k, i in enumerate(b["index"].tolist()):
            src = b["src"][k, : b["src_lens"][k]].tolist()
            tgt = b["tgt_out"][k, : b["tgt_lens"][k] - 1].tolist()
            out[i] = (src, tgt)
    return out


def test_samples_are_fixed_by_their_seed_and_decode_to_the_text(tok):
    texts = (TINY / "train.en").read_text(encoding="utf-8").splitlines()[:20]
    seeds = list(range(100, 120))
    a = tok.sample(texts, "src", 0.1, seeds)
    b = tok.sample(texts[::-1], "src", 0.1, seeds[::-1])[::-1]  # another order: the same draws
    assert a == b
    assert tok.decode_src(a) == texts
    assert a != tok.encode_src(texts)  # at alpha 0.1 almost every sentence splits differently
    assert tok.sample(texts, "src", 0.1, [s + 1 for s in seeds]) != a


def test_bpe_samples_by_dropping_merges(tmp_path):
    en = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
    bpe = Tokenizer.train(en, None, TokenizerConfig(vocab_size=120, model_type="bpe", byte_fallback=False))
    ids = bpe.sample(en, "src", 0.5, range(len(en)))
    assert bpe.decode_src(ids) == en
    assert sum(map(len, ids)) > sum(map(len, bpe.encode_src(en)))  # dropped merges: more pieces


def test_example_seeds_depend_on_each_part_and_not_on_the_batch():
    seeds = example_seeds(1234, 0, 0, range(1000))
    assert seeds.min() >= 0 and seeds.max() < 2**31 and len(set(seeds.tolist())) == 1000
    assert example_seeds(1234, 0, 0, [7, 3]).tolist() == [seeds[7], seeds[3]]
    for other in (example_seeds(1235, 0, 0, range(1000)), example_seeds(1234, 1, 0, range(1000)),
                  example_seeds(1234, 0, 1, range(1000))):  # fmt: skip
        assert (other != seeds).mean() > 0.99


def test_each_epoch_sees_new_segmentations_of_the_same_text_within_the_budget(tok):
    dm = TranslationDataModule(cfg("data.sample_alpha=0.1"), tok)
    dm.setup("fit")
    train = dm.datasets["train"]
    epochs = [epoch_batches(dm, e) for e in (0, 1)]
    for batches in epochs:
        for b in batches:
            assert max(b["src"].shape[1], b["tgt_in"].shape[1]) * len(b["index"]) <= BUDGET
    first, second = (pieces_by_index(b) for b in epochs)
    assert sorted(first) == sorted(second) == list(range(len(train)))
    changed = [i for i in first if first[i] != second[i]]
    assert len(changed) > 0.8 * len(train)
    for i in (0, len(train) // 2, len(train) - 1):
        for pieces in (first[i], second[i]):
            assert tok.decode_src([pieces[0]]) == [train[i]["src"]]
            assert tok.decode_tgt([pieces[1]]) == [train[i]["tgt"]]
    deterministic = sum(first[i] == (train[i]["src_ids"], train[i]["tgt_ids"]) for i in first)
    assert deterministic < 0.2 * len(train)


def test_sampled_batches_are_reproducible_and_resume_where_they_stopped(tok):
    def run(*extra):
        dm = TranslationDataModule(cfg("data.sample_alpha=0.1", *extra), tok)
        dm.setup("fit")
        return dm

    dm = run()
    full = epoch_batches(dm, 1)
    again = epoch_batches(run(), 1)
    assert same_batches(full, again)
    assert pieces_by_index(epoch_batches(run("data.seed=7"), 1)) != pieces_by_index(full)
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    it = iter(loader)
    for _ in range(3):
        next(it)
    resumed = run().train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    assert same_batches(rest, full[3:])


def test_worker_processes_draw_what_the_main_process_draws(tok):
    one = TranslationDataModule(cfg("data.sample_alpha=0.1"), tok)
    two = TranslationDataModule(cfg("data.sample_alpha=0.1"), tok, num_workers=2)
    one.setup("fit"), two.setup("fit")
    assert pieces_by_index(epoch_batches(one, 2)) == pieces_by_index(epoch_batches(two, 2))


def test_validation_batches_stay_deterministic(tok):
    sampled = TranslationDataModule(cfg("data.sample_alpha=0.1"), tok)
    plain = TranslationDataModule(cfg(), tok)
    sampled.setup("fit"), plain.setup("fit")
    epoch_batches(sampled, 3)
    for a, b in zip(sampled.val_dataloader(), plain.val_dataloader(), strict=True):
        assert (a["src"] == b["src"]).all() and (a["tgt_out"] == b["tgt_out"]).all()
    valid = pieces_by_index(list(sampled.val_dataloader()))
    ds = sampled.datasets["valid"]
    assert all(valid[i] == (ds[i]["src_ids"], ds[i]["tgt_ids"]) for i in valid)


def test_a_sample_too_wide_for_its_batch_keeps_the_deterministic_pieces(tok, monkeypatch):
    """Packed without room for longer samples, the budget still holds: the widest samples give way."""
    monkeypatch.setattr(datamodule, "stretch_factor", lambda ds, sampling: 1.0)
    dm = TranslationDataModule(cfg("data.sample_alpha=0.1"), tok)
    dm.setup("fit")
    train = dm.datasets["train"]
    batches = epoch_batches(dm, 0)
    for b in batches:
        assert max(b["src"].shape[1], b["tgt_in"].shape[1]) * len(b["index"]) <= BUDGET
    got = pieces_by_index(batches)
    kept = sum(got[i] == (train[i]["src_ids"], train[i]["tgt_ids"]) for i in got)
    assert 0 < kept < len(train)


def test_a_language_model_samples_its_text(tok):
    dm = LMDataModule(cfg("task=lm", "data.sample_alpha=0.1"), tok)
    dm.setup("fit")
    ds = dm.datasets["train"]
    got = {}
    for b in epoch_batches(dm, 0):
        for k, i in enumerate(b["index"].tolist()):
            got[i] = b["tgt_out"][k, : b["tgt_lens"][k] - 1].tolist()
    assert sorted(got) == list(range(len(ds)))
    assert tok.decode_tgt([got[0]]) == [ds[0]["text"]]
    assert np.mean([got[i] != ds[i]["tgt_ids"] for i in got]) > 0.8


def test_sample_alpha_is_checked():
    with pytest.raises(ConfigError, match=r"data.sample_alpha must be >= 0.0; got -0.1"):
        cfg("data.sample_alpha=-0.1")
    with pytest.raises(ConfigError, match=r"data.sample_alpha must be < 1 with tokenizer.model_type bpe"):
        cfg("data.sample_alpha=1.0", "tokenizer.model_type=bpe")
    assert cfg("data.sample_alpha=2.0").data.sample_alpha == 2.0  # a unigram alpha is a temperature


def test_lightning_draws_new_pieces_each_epoch_and_resumes_with_the_same_ones(tok, tmp_path):
    """Through a real Trainer: Lightning's set_epoch reaches the sampled batches (epoch 1 differs from
    epoch 0), and a run resumed mid-epoch trains on exactly the pieces the uninterrupted run did."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning_probe import Recorder, quiet_trainer

    def pieces(module, batch):  # example index -> its source pieces this step
        return {i: tuple(batch["src"][k].tolist()) for k, i in enumerate(batch["index"].tolist())}

    def fit(model, trainer=None, **kw):
        data = TranslationDataModule(cfg("data.sample_alpha=0.1", "data.batch_tokens=100"), tok)
        quiet_trainer(tmp_path, **(trainer or {})).fit(model, data, **kw)

    dm = TranslationDataModule(cfg("data.sample_alpha=0.1", "data.batch_tokens=100"), tok)
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    full = Recorder(pieces)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=per_epoch + 3, save_top_k=-1, filename="mid")
    fit(full, trainer={"callbacks": [ckpt]})
    first = {i: s for step in full.seen[:per_epoch] for i, s in step.items()}
    second = {i: s for step in full.seen[per_epoch:] for i, s in step.items()}
    assert sorted(first) == sorted(second) and sum(first[i] != second[i] for i in first) > 0.8 * len(first)
    resumed = Recorder(pieces)
    fit(resumed, ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.seen == full.seen[per_epoch + 3 :]
