"""Corpora in every format, bad input, tokenization, length filter, token-budget batches, DataModules."""

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seq2seq_lstm.config import load_config
from seq2seq_lstm.data import corpus
from seq2seq_lstm.data.batching import (
    Collator,
    TokenBatchSampler,
    column_lengths,
    filter_by_length,
    pack_batches,
    padding_ratio,
    tokenize,
)
from seq2seq_lstm.data.corpus import load_monolingual, load_parallel
from seq2seq_lstm.data.datamodule import LMDataModule, TranslationDataModule
from seq2seq_lstm.data.stats import corpus_stats
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.vocab import BOS_ID, EOS_ID, PAD_ID

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny"


def text_pairs():
    en = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
    es = (TINY / "train.es").read_text(encoding="utf-8").splitlines()
    return list(zip(en, es, strict=True))


def tiny_cfg(*overrides):
    return load_config(
        None,
        [
            f"data.train={TINY / 'train'}",
            f"data.valid={TINY / 'valid'}",
            "data.src_lang=en",
            "data.tgt_lang=es",
            "data.batch_tokens=200",
            "data.max_len=40",
            *overrides,
        ],
    )


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "path",
    ["train", "train.tsv", "train.jsonl", "train.jsonl.gz", "train.parquet", "train_struct.parquet"],
)
def test_every_format_gives_the_same_pairs(path):
    ds = load_parallel(str(TINY / path), "en", "es")
    assert ds.column_names == ["line", "src", "tgt"]
    assert list(zip(ds["src"], ds["tgt"], strict=True)) == text_pairs()
    assert list(ds["line"]) == list(range(len(ds)))


def test_tsv_keeps_quotes_verbatim():
    ds = load_parallel(str(TINY / "train.tsv"), "en", "es")
    assert ('He said "hello" to me.', 'Él me dijo "hola".') in list(zip(ds["src"], ds["tgt"], strict=True))


def test_explicit_format_overrides_the_extension(tmp_path):
    odd = tmp_path / "pairs.txt"
    odd.write_bytes((TINY / "train.tsv").read_bytes())
    ds = load_parallel(str(odd), "en", "es", fmt="tsv")
    assert list(zip(ds["src"], ds["tgt"], strict=True)) == text_pairs()


def test_jsonl_with_top_level_language_keys(tmp_path):
    path = tmp_path / "flat.jsonl"
    path.write_text(
        "\n".join(json.dumps({"en": a, "es": b}) for a, b in text_pairs()) + "\n\n", encoding="utf-8"
    )
    ds = load_parallel(str(path), "en", "es")
    assert list(zip(ds["src"], ds["tgt"], strict=True)) == text_pairs()


def test_embedded_paths_resolve_inside_the_package(monkeypatch):
    monkeypatch.setattr(corpus, "_corpora_root", lambda: FIXTURES / "corpora")
    ds = load_parallel("embedded:tiny-en-es/train", "en", "es", fmt="text")  # embedded is always TSV
    assert list(zip(ds["src"], ds["tgt"], strict=True)) == text_pairs()
    with pytest.raises(
        UserError,
        match=r"^no embedded corpus embedded:tiny-en-es/dev; available: "
        r"embedded:tiny-en-es/test, embedded:tiny-en-es/train",
    ):
        load_parallel("embedded:tiny-en-es/dev", "en", "es")


def test_shipped_embedded_corpus_loads():
    ds = load_parallel("embedded:bible-en-es/valid", "en", "es")
    assert len(ds) > 0 and all(ds["src"][:5]) and all(ds["tgt"][:5])
    with pytest.raises(UserError, match="the header has columns en, es but no de"):
        load_parallel("embedded:bible-en-es/valid", "en", "de")


def test_monolingual_sources(tmp_path):
    path = tmp_path / "mono.txt"
    path.write_text("one sentence\n\n  two  \n", encoding="utf-8")
    ds = load_monolingual(str(path), "en")
    assert ds.column_names == ["line", "text"] and list(ds["text"]) == ["one sentence", "", "two"]
    spanish = [b for _, b in text_pairs()]
    assert list(load_monolingual(str(TINY / "train"), "es")["text"]) == spanish  # prefix -> train.es
    assert list(load_monolingual(str(TINY / "train.tsv"), "es")["text"]) == spanish  # a column of a TSV


# ---------------------------------------------------------------------------------------- bad input


def test_misaligned_files_name_both_files_and_counts(tmp_path):
    (tmp_path / "c.en").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "c.de").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_parallel(str(tmp_path / "c"), "en", "de")
    assert str(e.value) == (
        f"{tmp_path}/c.en has 3 lines but {tmp_path}/c.de has 2 lines; "
        "aligned files need one sentence per line in each, in the same order"
    )


def test_missing_and_empty_corpora(tmp_path):
    with pytest.raises(UserError, match=rf"^corpus file {tmp_path}/nope.en does not exist$"):
        load_parallel(str(tmp_path / "nope"), "en", "de")
    with pytest.raises(UserError, match=rf"^corpus file {tmp_path}/nope.tsv does not exist$"):
        load_parallel(str(tmp_path / "nope.tsv"), "en", "de")
    (tmp_path / "e.en").write_text("", encoding="utf-8")
    (tmp_path / "e.de").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=r"^corpus .*e.en / .*e.de is empty: it has no sentences$"):
        load_parallel(str(tmp_path / "e"), "en", "de")
    (tmp_path / "h.tsv").write_text("en\tde\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"h.tsv is empty"):
        load_parallel(str(tmp_path / "h.tsv"), "en", "de")


def test_invalid_utf8_strict_and_replace(tmp_path):
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "train.de").write_bytes(b"eins\nzwei\ndre\xffi\n")
    with pytest.raises(UserError) as e:
        load_parallel(str(tmp_path / "train"), "en", "de")
    assert str(e.value) == (
        f"{tmp_path}/train.de line 3: invalid UTF-8 (byte 0xff at column 4); "
        "fix the file or set data.encoding_errors=replace"
    )
    ds = load_parallel(str(tmp_path / "train"), "en", "de", encoding_errors="replace")
    assert list(ds["tgt"]) == ["eins", "zwei", "dre\ufffdi"]


def test_malformed_tsv_jsonl_gzip(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("en\tde\na\tb\nc d\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.tsv line 3: 1 tab-separated fields but the header has 2"):
        load_parallel(str(bad), "en", "de")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"translation": {"en": "a", "de": "b"}}\n{"translation": {"en": "a"}}\n', encoding="utf-8"
    )
    with pytest.raises(UserError, match=r'bad.jsonl line 2: no text for "de"'):
        load_parallel(str(bad), "en", "de")
    bad.write_text('{"en": "a", "de": "b"}\n{"en": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl line 2: not valid JSON"):
        load_parallel(str(bad), "en", "de")
    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(b"en\tde\nnot gzip\n")
    with pytest.raises(UserError, match="not a valid gzip file"):
        load_parallel(str(bad), "en", "de")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 nonsense")
    with pytest.raises(UserError, match="not a parquet file"):
        load_parallel(str(bad), "en", "de")
    with pytest.raises(UserError, match="parquet columns are en, es; expected columns en and de"):
        load_parallel(str(TINY / "train.parquet"), "en", "de")


# --------------------------------------------------------------------------- tokenize and filter


def test_tokenize_matches_the_tokenizer_and_is_cached(tok):
    ds = load_parallel(str(TINY / "train"), "en", "es")
    t1 = tokenize(ds, tok)
    assert list(t1["src_ids"]) == tok.encode_src(ds["src"])
    assert list(t1["tgt_ids"]) == tok.encode_tgt(ds["tgt"])
    t2 = tokenize(load_parallel(str(TINY / "train"), "en", "es"), tok)
    assert t2._fingerprint == t1._fingerprint and t2.cache_files == t1.cache_files  # read back, not redone
    mono = tokenize(load_monolingual(str(TINY / "train"), "es"), tok)
    assert list(mono["tgt_ids"]) == list(t1["tgt_ids"])


def test_tokenize_with_worker_processes_gives_the_same_ids(tok):
    ds = load_parallel(str(TINY / "train.tsv"), "en", "es")
    assert list(tokenize(ds, tok, num_proc=2)["src_ids"]) == tok.encode_src(ds["src"])


def test_length_filter_holds_its_bounds(tok):
    ds = tokenize(load_parallel(str(TINY / "train"), "en", "es"), tok)
    kept, report = filter_by_length(ds, 10, 19, 1.25)
    s, t = column_lengths(kept, "src_ids"), column_lengths(kept, "tgt_ids")
    assert len(kept) == report.kept > 0 and report.total == len(ds)
    assert (s >= 10).all() and (t >= 10).all() and (s <= 19).all() and (t <= 19).all()
    assert (np.maximum(s, t) / np.minimum(s, t) <= 1.25).all()
    # every dropped pair broke a rule, and each rule's count matches a recount by hand
    all_s, all_t = column_lengths(ds, "src_ids"), column_lengths(ds, "tgt_ids")
    short = (np.minimum(all_s, all_t) < 10).sum()
    long = ((np.minimum(all_s, all_t) >= 10) & (np.maximum(all_s, all_t) > 19)).sum()
    assert (report.too_short, report.too_long) == (short, long)
    assert report.too_short and report.too_long and report.bad_ratio  # the bounds were chosen to bite
    assert report.kept + report.too_short + report.too_long + report.bad_ratio == len(ds)
    assert str(report).startswith(f"kept {report.kept} of {len(ds)} (dropped {short} too short")


# ------------------------------------------------------------------------------- token batches


def random_lengths(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 80, n)
    tgt = np.clip((src * rng.uniform(0.7, 1.4, n)).astype(int), 1, 100)
    return src, tgt


def cost(batch, src, tgt):
    idx = np.asarray(batch)
    return max(src[idx].max(), tgt[idx].max() + 1) * len(idx)


@pytest.mark.parametrize("bucket_width,max_sentences", [(1, 0), (8, 0), (1, 16)])
def test_batches_respect_the_budget_and_cover_each_example_once(bucket_width, max_sentences):
    src, tgt = random_lengths()
    sampler = TokenBatchSampler(
        tgt, 1000, src_lens=src, bucket_width=bucket_width, max_sentences=max_sentences, seed=3
    )
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(cost(b, src, tgt) <= 1000 for b in batches)
        if max_sentences:
            assert max(len(b) for b in batches) == max_sentences
        assert sorted(i for b in batches for i in b) == list(range(len(src)))


def test_lm_batches_count_bos_eos():
    tgt = np.array([9, 9, 9, 4])
    sampler = TokenBatchSampler(tgt, 20, shuffle=False)  # width of each = len + 1 = 10 for the long ones
    assert sampler.epoch_batches() == [[3, 0], [1, 2]]


def test_shuffle_is_deterministic_per_seed_and_epoch():
    src, tgt = random_lengths()
    a = TokenBatchSampler(tgt, 1000, src_lens=src, seed=7)
    b = TokenBatchSampler(tgt, 1000, src_lens=src, seed=7)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)
    assert TokenBatchSampler(tgt, 1000, src_lens=src, seed=8).epoch_batches(0) != a.epoch_batches(0)
    fixed = TokenBatchSampler(tgt, 1000, src_lens=src, shuffle=False)
    widths = [max(src[i], tgt[i] + 1) for b in fixed.epoch_batches() for i in b]
    assert widths == sorted(widths) and fixed.epoch_batches(0) == fixed.epoch_batches(5)


def test_buckets_pad_less_than_random_batches():
    src, tgt = random_lengths()
    sampler = TokenBatchSampler(tgt, 1000, src_lens=src, bucket_width=4)
    order = np.random.default_rng(0).permutation(len(src))
    random_batches = pack_batches(order, sampler.widths, 1000)
    bucketed, random = sampler.padding_ratio(), padding_ratio(random_batches, tgt, src)
    assert 0 < bucketed < 0.15 < 0.3 < random  # sorting removes most padding


def test_padding_ratio_by_hand():
    # batch [0, 1]: src lens 2, 4 -> pad 2; tgt positions 3+1, 1+1 -> pad 2; real 6 + 6
    assert padding_ratio([[0, 1]], np.array([3, 1]), np.array([2, 4])) == pytest.approx(4 / 16)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ddp_shards_are_disjoint_and_complete(world):
    src, tgt = random_lengths(1003)
    shards = [
        TokenBatchSampler(tgt, 1000, src_lens=src, seed=1, rank=r, world_size=world) for r in range(world)
    ]
    all_batches = shards[0].epoch_batches()
    n = len(all_batches)
    assert len({len(s) for s in shards}) == 1  # same number of batches on every rank: DDP never waits
    got = [tuple(b) for s in shards for b in s]
    assert sorted(i for b in got for i in b) == sorted(
        [i for b in all_batches for i in b] + [i for b in all_batches[: len(got) - n] for i in b]
    )
    repeats = len(got) - n
    assert 0 <= repeats < world and len(set(got)) == n  # only the documented repeats of the first batches
    for r in range(world):
        for q in range(r + 1, world):
            common = {tuple(b) for b in shards[r]} & {tuple(b) for b in shards[q]}
            assert common <= {tuple(b) for b in all_batches[:repeats]}
    dropped = [
        TokenBatchSampler(tgt, 1000, src_lens=src, seed=1, rank=r, world_size=world, drop_last=True)
        for r in range(world)
    ]
    flat = [tuple(b) for s in dropped for b in s]
    assert len(flat) == len(set(flat)) == n // world * world and len({len(s) for s in dropped}) == 1


def test_resume_mid_epoch_yields_the_remaining_batches():
    src, tgt = random_lengths()
    sampler = TokenBatchSampler(tgt, 1000, src_lens=src, seed=5, rank=1, world_size=2)
    sampler.set_epoch(2)
    it = iter(sampler)
    head = [next(it) for _ in range(7)]
    state = sampler.state_dict()
    rest = list(it)

    resumed = TokenBatchSampler(tgt, 1000, src_lens=src, seed=5, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # Lightning calls this again for the resumed epoch; it keeps the position
    assert list(resumed) == rest and head + rest == sampler.rank_batches(2)
    resumed.set_epoch(3)
    assert list(resumed) == sampler.rank_batches(3)  # a new epoch starts from its first batch
    other = TokenBatchSampler(tgt, 1000, src_lens=src, seed=6, rank=1, world_size=2)
    with pytest.raises(UserError, match="checkpoint has seed=5 but this run has 6"):
        other.load_state_dict(state)


# -------------------------------------------------------------------------------- tensors, modules


def test_collate_builds_the_contract_batch():
    rows = [
        {"src_ids": [5, 6, 7], "tgt_ids": [8], "index": 4},
        {"src_ids": [9], "tgt_ids": [10, 11], "index": 0},
    ]
    b = Collator()(rows)
    assert b["src"].tolist() == [[5, 6, 7], [9, PAD_ID, PAD_ID]] and b["src_lens"].tolist() == [3, 1]
    assert b["tgt_in"].tolist() == [[BOS_ID, 8, PAD_ID], [BOS_ID, 10, 11]]
    assert b["tgt_out"].tolist() == [[8, EOS_ID, PAD_ID], [10, 11, EOS_ID]]
    assert b["tgt_lens"].tolist() == [2, 3] and b["index"].tolist() == [4, 0]
    assert all(t.dtype == torch.long for t in b.values())
    lm = Collator()([{"tgt_ids": [8], "index": 0}])
    assert set(lm) == {"tgt_in", "tgt_out", "tgt_lens", "index"}


def test_translation_datamodule(tok):
    dm = TranslationDataModule(tiny_cfg(), tok)
    dm.setup("fit")
    train = dm.datasets["train"]
    loader = dm.train_dataloader()
    seen = []
    for batch in loader:
        s, t = batch["src"].shape[1], batch["tgt_in"].shape[1]
        assert max(s, t) * len(batch["index"]) <= 200
        for k, i in enumerate(batch["index"].tolist()):
            n = batch["src_lens"][k]
            assert batch["src"][k, :n].tolist() == train[i]["src_ids"]
            assert batch["tgt_out"][k, : len(train[i]["tgt_ids"])].tolist() == train[i]["tgt_ids"]
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(train)))
    val = [b["index"].tolist() for b in dm.val_dataloader()]
    assert sorted(sum(val, [])) == list(range(10))
    assert val == [b["index"].tolist() for b in dm.val_dataloader()]  # not shuffled
    assert dm.test_dataloader() == []  # no data.test in this config
    state = loader.state_dict()
    assert state["position"] == len(loader) and state["num_examples"] == len(train)


def test_datamodule_shards_under_a_distributed_trainer(tok):
    dm = TranslationDataModule(tiny_cfg("data.batch_tokens=100"), tok)
    dm.setup("fit")
    seen = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        seen.append([i for b in dm.train_dataloader() for i in b["index"].tolist()])
    batches = dm.train_sampler.epoch_batches()
    repeats = 2 * len(dm.train_sampler) - len(batches)
    assert len(batches) > 2 and repeats in (0, 1)
    assert set(seen[0]) & set(seen[1]) <= {i for b in batches[:repeats] for i in b}
    assert set(seen[0]) | set(seen[1]) == set(range(len(dm.datasets["train"])))


def test_lm_datamodule(tok):
    cfg = tiny_cfg(f"data.train={TINY / 'train'}", "task=lm")
    dm = LMDataModule(cfg, tok)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert "src" not in batch and batch["tgt_in"][:, 0].eq(BOS_ID).all()
    assert list(dm.datasets["train"]["tgt_ids"]) == tok.encode_tgt([es for _, es in text_pairs()])


def test_filter_leaves_nothing(tok):
    dm = TranslationDataModule(tiny_cfg("data.max_len=2", "data.min_len=1"), tok)
    with pytest.raises(
        UserError, match=r"^data.train \(.*\): no sentences left after the length filter \(kept 0"
    ):
        dm.setup("fit")


def test_corpus_stats(tok):
    stats = corpus_stats(tiny_cfg(), tok)
    train = stats[0]
    assert [s.split for s in stats] == ["train", "valid"] and train.report.total == 46
    lens = column_lengths(tokenize(load_parallel(str(TINY / "train"), "en", "es"), tok), "src_ids")
    assert train.src_pieces == (pytest.approx(lens.mean()), lens.max())
    assert train.sentences_per_batch == pytest.approx(46 / train.batches)
    assert 0 < train.padding < train.padding_random


def test_gzip_tsv_round_trip(tmp_path):
    # a hand-made .tsv.gz reads like the plain TSV (the embedded corpora use this format)
    path = tmp_path / "c.tsv.gz"
    path.write_bytes(gzip.compress((TINY / "train.tsv").read_bytes()))
    ds = load_parallel(str(path), "en", "es")
    assert list(zip(ds["src"], ds["tgt"], strict=True)) == text_pairs()


def test_lightning_resumes_mid_epoch_with_the_remaining_batches(tok, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning_probe import Recorder, quiet_trainer

    def examples(module, batch):
        return module.current_epoch, tuple(batch["index"].tolist())

    cfg = tiny_cfg("data.batch_tokens=100")
    full = Recorder(examples)
    dm = TranslationDataModule(cfg, tok)
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=per_epoch + 3, save_top_k=-1, filename="mid")
    quiet_trainer(tmp_path, callbacks=[ckpt]).fit(full, TranslationDataModule(cfg, tok))
    assert len(full.seen) == 2 * per_epoch and full.seen[:per_epoch] != full.seen[per_epoch:]

    resumed = Recorder(examples)
    quiet_trainer(tmp_path).fit(resumed, TranslationDataModule(cfg, tok), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.seen == full.seen[per_epoch + 3 :]  # epoch 1 continues after its third batch
