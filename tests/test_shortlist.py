"""Vocabulary shortlists: IBM Model 1 against a worked example, the per-sentence choice, exact logits
over the shortlist, and translations that do not depend on the batch."""

import random

import pytest
import torch
from click.testing import CliRunner
from test_translate import TINY, make_run, same

from seq2seq_lstm.checkpoint import RunDir
from seq2seq_lstm.cli import main
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.decoding.shortlist import (
    RESTRICT_MIN_SENTENCES,
    SPECIALS,
    Shortlist,
    ShortlistDecoder,
    ibm_model1,
)
from seq2seq_lstm.errors import CheckpointError
from seq2seq_lstm.inference.translator import Sampling, Translator
from seq2seq_lstm.vocab import BOS_ID

SIZE = 40  # of the tiny run's 120 pieces


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("shortlist") / "run")
    tok = Tokenizer.load(RunDir(run).tokenizer)
    src = tok.encode_src((TINY / "train.en").read_text(encoding="utf-8").splitlines())
    tgt = tok.encode_tgt((TINY / "train.es").read_text(encoding="utf-8").splitlines())
    lexicon = Shortlist.train(
        src, tgt, tok.src_vocab_size, tok.tgt_vocab_size, per_source=5, num_frequent=10, copy_source=tok.joint
    )
    lexicon.save(RunDir(run).shortlist)
    return run


@pytest.fixture(scope="module")
def lines():
    base = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
    rng = random.Random(0)
    return base + [" ".join(rng.sample(base, rng.randint(2, 4))) for _ in range(10)]


def table(keys, probs, vocab):
    return {(int(k) // vocab, int(k) % vocab): round(float(p), 4) for k, p in zip(keys, probs, strict=True)}


def test_ibm_model1_reproduces_the_textbook_example():
    """Koehn, Statistical Machine Translation (2010), figure 4.4: das Haus / the house, das Buch / the
    book, ein Buch / a book, no NULL. Iteration 1 by hand: each target word splits its count evenly
    over its two source words, so das saw the 1, house 1/2, book 1/2 -> t(the|das) = 1/2. Iteration 2:
    'the' in das Haus now splits 1/2 : 1/2 and in das Buch 2/3 : 1/3 (t(the|buch) = 1/4), so
    c(the|das) = 7/6 of das's 11/6 -> 7/11 = 0.6364."""
    das, haus, buch, ein = 0, 1, 2, 3
    the, house, book, a = 0, 1, 2, 3
    src = [[das, haus], [das, buch], [ein, buch]]
    tgt = [[the, house], [the, book], [a, book]]
    one = table(*ibm_model1(src, tgt, 4, 4, iterations=1, null=False), 4)
    assert one[das, the] == 0.5 and one[das, house] == 0.25 and one[das, book] == 0.25
    assert one[buch, book] == 0.5 and one[ein, a] == 0.5 and one[haus, house] == 0.5
    two = table(*ibm_model1(src, tgt, 4, 4, iterations=2, null=False), 4)
    assert two[das, the] == 0.6364 and two[das, house] == 0.1818 and two[das, book] == 0.1818
    assert two[buch, book] == 0.6364 and two[ein, a] == 0.5714 and two[haus, house] == 0.5714
    assert two[haus, the] == 0.4286 and two[ein, book] == 0.4286
    assert (das, a) not in two  # never in one sentence: no probability, not stored


def test_each_source_piece_keeps_its_best_translations_and_null_absorbs_function_words():
    # 0 -> 10 always, 1 -> 11 always; target 12 appears everywhere (a function word)
    src = [[0], [1], [0, 1], [0], [1]]
    tgt = [[10, 12], [11, 12], [10, 11, 12], [10, 12], [11, 12]]
    lexicon = Shortlist.train(src, tgt, 2, 13, per_source=1, num_frequent=0, iterations=10)
    assert lexicon.candidates.tolist() == [[10], [11]]
    assert lexicon.frequent[:4].tolist() == [12, 10, 11, 0]  # by count, ties by id
    # NULL (source id 2) is in every sentence, so it explains 12: p(12 | 0) falls from 0.455 without
    # NULL to 0.115 with it, and 12 is NULL's best translation (0.937)
    with_null = table(*ibm_model1(src, tgt, 2, 13, iterations=10), 13)
    without = table(*ibm_model1(src, tgt, 2, 13, iterations=10, null=False), 13)
    assert with_null[0, 12] == pytest.approx(0.115, abs=1e-3)
    assert without[0, 12] == pytest.approx(0.455, abs=1e-3)
    assert with_null[2, 12] == max(v for (s, _), v in with_null.items() if s == 2)


def test_a_sentences_pieces_depend_on_it_alone_and_hold_what_they_must(run_dir):
    tok = Tokenizer.load(RunDir(run_dir).tokenizer)
    lexicon = Shortlist.load(RunDir(run_dir).shortlist, tok.src_vocab_size, tok.tgt_vocab_size)
    sentences = tok.encode_src((TINY / "train.en").read_text(encoding="utf-8").splitlines()[:6])
    prefix = [[] for _ in sentences]
    prefix[2] = [100, 101, 5]
    batch = lexicon.pieces(sentences, SIZE, prefix)
    assert batch.shape == (len(sentences), SIZE)
    for i, ids in enumerate(sentences):
        row = batch[i]
        assert torch.equal(row, lexicon.pieces([ids], SIZE, [prefix[i]])[0])  # alone == in a batch
        assert torch.equal(row, row.sort().values) and len(set(row.tolist())) == SIZE
        assert row[:SPECIALS].tolist() == list(range(SPECIALS))
        kept = set(row.tolist())
        assert set(lexicon.frequent[:10].tolist()) <= kept
        best = lexicon.candidates[torch.tensor(ids)][:, 0]
        assert set(best[best >= 0].tolist()) <= kept
        if tok.joint:
            assert set(ids) <= kept  # copied pieces
        assert set(prefix[i]) <= kept


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("sentences", [2, RESTRICT_MIN_SENTENCES])
def test_shortlist_log_probs_are_the_full_logits_renormalised(run_dir, dtype, sentences):
    """Each kept logit equals the full output layer's (int8: the cut layer holds the same int8 rows; for
    fewer than RESTRICT_MIN_SENTENCES sentences the whole layer is used), and each row is a log-softmax
    over its own sentence's pieces only."""
    model = Translator.from_checkpoint(run_dir, dtype=dtype).models[0]
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]).repeat(sentences // 2, 1)
    lens = torch.tensor([4, 2]).repeat(sentences // 2)
    rows = [torch.arange(SIZE), torch.cat([torch.arange(SPECIALS), torch.arange(60, 60 + SIZE - 4)])]
    pieces = torch.stack(rows * (sentences // 2))
    short = ShortlistDecoder(model, pieces)
    assert (short.generator is model.decoder.generator) == (dtype == "int8" and sentences < 4)
    bos = torch.full((sentences,), BOS_ID)
    with torch.inference_mode():
        feats, _, _ = model.decoder.step_features(bos, model.start(src, lens))
        full_logits = model.decoder.generator(feats).float()  # (B, V)
        log_probs, state, _ = short.step(bos, short.start(src, lens))
    assert log_probs.shape == (sentences, SIZE)
    for b in range(sentences):
        own = full_logits[b, pieces[b]]
        torch.testing.assert_close(log_probs[b], torch.log_softmax(own, 0), rtol=0, atol=1e-6)
    assert state.rows.tolist() == list(range(sentences))
    assert state.reorder(torch.tensor([1, 1, 0])).rows.tolist() == [1, 1, 0]


def test_a_shortlist_of_the_whole_vocabulary_changes_nothing(run_dir, lines):
    full = Translator.from_checkpoint(run_dir, beam_size=3, n_best=2).translate_full(lines, attention=False)
    every = Translator.from_checkpoint(run_dir, beam_size=3, n_best=2, shortlist=10_000)  # cut to 120
    for a, b in zip(full, every.translate_full(lines, attention=False), strict=True):
        same(a, b)


@pytest.mark.parametrize(("beam_size", "dtype"), [(3, "float32"), (3, "int8"), (1, "float32")])
def test_shortlist_translations_do_not_depend_on_the_batch_and_stay_inside_it(
    run_dir, lines, beam_size, dtype
):
    opts = {"beam_size": beam_size, "n_best": 1, "dtype": dtype, "shortlist": SIZE}
    alone_tr = Translator.from_checkpoint(run_dir, batch_sentences=1, **opts)
    alone = [alone_tr.translate_full([line], attention=False)[0] for line in lines]
    full = Translator.from_checkpoint(run_dir, beam_size=beam_size, dtype=dtype).translate(lines)
    assert sum(a[0].text != f for a, f in zip(alone, full, strict=True)) > 0  # the shortlist does cut
    lexicon, tok = alone_tr.shortlist, alone_tr.tokenizer
    for line, hyps in zip(lines, alone, strict=True):
        allowed = set(lexicon.pieces(tok.encode_src([line]), SIZE)[0].tolist())
        assert set(hyps[0].tokens) <= allowed
        assert hyps[0].text == tok.decode_tgt([hyps[0].tokens])[0]
    order = list(range(len(lines)))
    random.Random(2).shuffle(order)
    for options in ({"batch_sentences": 7}, {"batch_tokens": 60}, {}):
        got = Translator.from_checkpoint(run_dir, **opts, **options).translate_full(
            [lines[i] for i in order], attention=False
        )
        for i, hyps in zip(order, got, strict=True):
            same(hyps, alone[i])


def test_a_forced_prefix_goes_through_the_shortlist(run_dir, lines):
    tr = Translator.from_checkpoint(run_dir, beam_size=3, shortlist=SIZE)
    prefix = "la casa"
    out = tr.translate_full(lines[:4], [prefix] * 4, attention=False)
    want = tr.tokenizer.encode_tgt([prefix])[0]
    for hyps in out:
        assert hyps[0].tokens[: len(want)] == want
        assert hyps[0].text.startswith(prefix)


def test_sampling_and_ensembles_go_through_the_shortlist(run_dir, lines):
    sampler = Sampling(temperature=1.5, seed=3)
    a = Translator.from_checkpoint(run_dir, sampling=sampler, n_best=2, shortlist=SIZE)
    b = Translator.from_checkpoint(run_dir, sampling=sampler, n_best=2, shortlist=SIZE)
    first, again = a.translate_full(lines, attention=False), b.translate_full(lines, attention=False)
    tok = a.tokenizer
    for line, hyps, same_hyps in zip(lines, first, again, strict=True):
        allowed = set(a.shortlist.pieces(tok.encode_src([line]), SIZE)[0].tolist())
        assert [h.tokens for h in hyps] == [h.tokens for h in same_hyps]  # seeded: reproducible
        assert all(set(h.tokens) <= allowed for h in hyps)
    single = Translator.from_checkpoint(run_dir, beam_size=3, shortlist=SIZE)
    double = Translator.from_checkpoint([run_dir, run_dir], beam_size=3, shortlist=SIZE)
    for one, two in zip(single.translate_full(lines, attention=False),
                        double.translate_full(lines, attention=False), strict=True):  # fmt: skip
        same(one, two)


def test_cli_builds_the_shortlist_and_translates_with_it(lines, tmp_path, monkeypatch):
    run = tmp_path / "run"
    make_run(run)
    monkeypatch.chdir(TINY.parents[2])  # the tiny config's data paths are relative to the repository
    res = CliRunner().invoke(main, ["shortlist", "-m", str(run), "--per-source", "5", "--frequent", "10"])
    assert res.exit_code == 0, res.output
    assert "shortlist.safetensors" in res.output and "validation reference pieces" in res.output
    assert RunDir(run).shortlist.is_file()
    res = CliRunner().invoke(
        main, ["translate", "-m", str(run), "--shortlist", str(SIZE)], input=lines[0] + "\n"
    )
    assert res.exit_code == 0, res.output
    # one line per input, the API's translation (possibly empty: the tiny model is barely trained)
    assert res.output == Translator.from_checkpoint(run, shortlist=SIZE).translate(lines[:1])[0] + "\n"


def test_a_missing_or_mismatched_shortlist_is_one_clear_line(run_dir, tmp_path):
    run = make_run(tmp_path / "bare")
    res = CliRunner().invoke(main, ["translate", "-m", str(run), "--shortlist", "30"], input="hello\n")
    assert res.exit_code != 0
    assert "shortlist.safetensors is missing; build it with `s2s shortlist" in res.output
    assert "Traceback" not in res.output
    with pytest.raises(CheckpointError, match="built for vocabularies of"):
        Shortlist.load(RunDir(run_dir).shortlist, 120, 121)
    RunDir(run).shortlist.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Shortlist.load(RunDir(run).shortlist, 120, 120)
