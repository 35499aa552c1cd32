"""Greedy, beam and sampling search: hand-worked scripted decoders, invariants on a random toy decoder."""

import math

import pytest
import torch
from toy_decoders import BOS, EOS, UNK, RowCounter, ScriptedDecoder, ToyDecoder, pad, random_sources

from seq2seq_lstm.config import LENGTH_PENALTIES, GenerationConfig
from seq2seq_lstm.decoding import options as options_module
from seq2seq_lstm.decoding import search as search
from seq2seq_lstm.decoding import topk as topk
from seq2seq_lstm.decoding.ensemble import EnsembleDecoder
from seq2seq_lstm.decoding.options import Sampling, SearchOptions, max_lengths
from seq2seq_lstm.decoding.search import (
    beam_search,
    filter_logits,
    generate,
    greedy_search,
    ngram_bans,
    sample,
)
from seq2seq_lstm.decoding.topk import beam_step, top_k
from seq2seq_lstm.errors import UserError

A, B_ = 4, 5  # the two content tokens of the scripted tables ("a" and "b")


def toy_batch(n=32, seed=0, a=1.5, b=2, vocab=12):
    src, lens = pad(random_sources(n, vocab=vocab, seed=seed))
    return src, lens, max_lengths(lens, a, b)


def make_options(temperature=None, top_k=None, top_p=None, **fields):
    """SearchOptions from flat keywords; any of temperature, top_k, top_p makes its Sampling part."""
    given = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    sampling = {k: v for k, v in given.items() if v is not None}
    return SearchOptions(sampling=Sampling(**sampling) if sampling else None, **fields)


def run(search_fn, decoder, src, lens, max_len, *, prefix=None, generator=None, **options):
    """``search_fn`` over a padded batch with ``make_options(**options)``."""
    where = {} if generator is None else {"generator": generator}
    return search_fn(decoder, decoder.start(src, lens), make_options(**options), batch_size=src.size(0),
                     max_len=max_len, prefix=prefix, src_lens=lens, **where)  # fmt: skip


def teacher_forced_log_probs(decoder, state, tokens):
    """log p of tokens + EOS, one step at a time for one sentence (state of batch size 1)."""
    out, prev = [], BOS
    for token in [*tokens, EOS]:
        log_probs, state, _ = decoder.step(torch.tensor([prev]), state)
        out.append(log_probs[0, token].item())
        prev = token
    return out


def has_repeat(tokens, n):
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


# ---- known values ------------------------------------------------------------------------------------


def test_length_penalty_registry_and_values():
    assert set(search.LENGTH_PENALTIES) == set(LENGTH_PENALTIES)
    assert search.LENGTH_PENALTIES["none"](9, 0.6) == 1.0
    assert search.LENGTH_PENALTIES["gnmt"](7, 0.5) == pytest.approx(math.sqrt(2))  # ((5+7)/6)^0.5
    assert search.LENGTH_PENALTIES["gnmt"](1, 0.6) == pytest.approx(1.0)  # (6/6)^alpha
    assert search.LENGTH_PENALTIES["average"](4, 0.6) == 4.0


def test_beam_step_takes_2k_best_over_the_grid():
    scores = torch.tensor([[0.0, -1.0]])  # K = 2
    log_probs = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]]))  # (1, K=2, V=3)
    top, beam, token = beam_step(scores, log_probs)
    # beam 0: 0.5, 0.3, 0.2; beam 1: e^-1 * (0.1, 0.6, 0.3) = 0.037, 0.221, 0.110
    assert beam.tolist() == [[0, 0, 1, 0]] and token.tolist() == [[0, 1, 1, 2]]
    assert top[0, 2].item() == pytest.approx(-1 + math.log(0.6))


@pytest.mark.parametrize(("beams", "vocab"), [(5, 640), (4, 8000), (3, 7), (1, 640)])
def test_beam_step_equals_the_top_of_the_whole_grid(beams, vocab):
    """The chunk search without the grid of sums (vocabularies of 640 and 8000) and the plain one (7)
    give the values of topk over all K*V sums, each pointing at the beam and token whose sum it is."""
    g = torch.Generator().manual_seed(beams * vocab)
    scores = -10 * torch.rand(6, beams, generator=g)
    scores[0, 1:] = float("-inf")  # first step: only beam 0 is open
    log_probs = torch.randn(6, beams, vocab, generator=g).log_softmax(dim=2)
    log_probs[1, :, 3] = float("-inf")  # a banned token
    log_probs[2, 0, : vocab // 2] = 0.0  # ties inside one beam's row
    top, beam, token = beam_step(scores, log_probs)
    k = min(2 * beams, beams * vocab)
    grid = (scores.unsqueeze(2) + log_probs).view(6, -1)
    assert torch.equal(top, grid.topk(k, dim=1).values)
    assert torch.equal(scores.gather(1, beam) + log_probs[torch.arange(6).unsqueeze(1), beam, token], top)
    assert all(
        len(set(zip(b, t, strict=True))) == k for b, t in zip(beam.tolist(), token.tolist(), strict=True)
    )
    assert (topk._chunk_width(vocab, 2) > 0) == (vocab != 7)


@pytest.mark.parametrize(("cols", "k"), [(40_000, 10), (2560, 8), (640, 1), (8000, 2)])
def test_top_k_equals_torch_topk(cols, k):
    assert topk._chunk_width(cols, k) > 0  # the chunked path, not the fallback
    g = torch.Generator().manual_seed(cols + k)
    x = torch.randn(33, cols, generator=g).log_softmax(dim=1) - 5 * torch.rand(33, 1, generator=g)
    x[3, cols // 2] = 5.0  # one row's best values in one chunk (the k chunks need not hold one each)
    x[3, cols // 2 + 1 : cols // 2 + k] = 4.0 - torch.arange(k - 1) / 8
    values, columns = top_k(x, k)
    expected = x.topk(k, dim=1)
    assert torch.equal(values, expected.values) and torch.equal(columns, expected.indices)  # no ties here


def test_top_k_with_ties_and_minus_infinity():
    x = torch.randint(0, 3, (6, 2560), generator=torch.Generator().manual_seed(0)).float()
    x[1] = float("-inf")  # a row that never lived
    x[2, :] = float("-inf")
    x[2, [5, 700, 2000]] = torch.tensor([-1.0, -2.0, -3.0])  # fewer finite values than k
    values, columns = top_k(x, 8)
    assert torch.equal(values, x.topk(8, dim=1).values)
    assert torch.equal(x.gather(1, columns), values)  # each column holds its value...
    assert all(len(set(row)) == 8 for row in columns.tolist())  # ...and no column twice
    assert columns[2, :3].tolist() == [5, 700, 2000]
    strided = torch.randn(5, 2 * 2560)[:, ::2]  # not contiguous: chunked through a copy
    assert torch.equal(top_k(strided, 8)[1], strided.topk(8, dim=1).indices)
    # no divisor of 2503 (prime) makes chunks: plain topk
    assert topk._chunk_width(2503, 1) == 0
    y = torch.randn(4, 2503)
    assert torch.equal(top_k(y, 3)[1], y.topk(3, dim=1).indices)


def test_ngram_bans():
    history = torch.tensor([[4, 5, 4]])
    assert ngram_bans(history, 2, 8)[0].nonzero().flatten().tolist() == [5]  # "4 5" was seen, tail is 4
    assert not ngram_bans(history, 3, 8).any()  # tail "5 4" never started a trigram
    assert ngram_bans(history, 1, 8)[0].nonzero().flatten().tolist() == [4, 5]


def test_filter_logits_top_k_and_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    inf = float("-inf")
    # top_p 0.5: the mass before "0.3" is already 0.6 >= 0.5, so only the first token stays
    assert filter_logits(logits, top_p=0.5)[0, 1:].tolist() == [inf, inf]
    kept = filter_logits(logits, top_p=0.7)[0]  # mass before 0.1 is 0.9 >= 0.7
    assert torch.isfinite(kept).tolist() == [True, True, False]
    assert torch.isfinite(filter_logits(logits, top_k=2)[0]).tolist() == [True, True, False]


# ---- a scripted decoder, worked by hand ----------------------------------------------------------------

# Table A: greedy takes "a" (0.6) and ends: p = 0.6 * 0.5 = 0.30. Beam 2 keeps "b" (0.4) too.
TABLE_A = {(): {A: 0.6, B_: 0.4}, (A,): {EOS: 0.5, A: 0.3, B_: 0.2}, (B_,): {EOS: 0.9, A: 0.1}}


def test_scripted_greedy_and_beam():
    d = ScriptedDecoder(TABLE_A)
    (g,) = greedy_search(d, d.start(1), SearchOptions(), batch_size=1, max_len=10)[0]
    assert g.tokens == [A] and g.score == pytest.approx(math.log(0.3))
    assert g.token_log_probs == pytest.approx([math.log(0.6), math.log(0.5)])
    # Beam 2, step 0: beams a (0.6), b (0.4).
    # Step 1 candidates: bEOS .36, aEOS .30, aa .18, ab .12, ba .04 -> both EOS are in the first K=2
    # positions and end; aa, ab stay open. Best finished log .36 = -1.022 >= log .18 = -1.715: done.
    best, second = beam_search(d, d.start(1), SearchOptions(beam_size=2, n_best=2), batch_size=1, max_len=10)[
        0
    ]
    assert best.tokens == [B_] and best.score == pytest.approx(math.log(0.36))
    assert best.token_log_probs == pytest.approx([math.log(0.4), math.log(0.9)])
    assert second.tokens == [A] and second.score == pytest.approx(math.log(0.30))
    (only,) = beam_search(d, d.start(1), SearchOptions(beam_size=2, n_best=1), batch_size=1, max_len=10)[0]
    assert only.tokens == [B_] and only.score == pytest.approx(math.log(0.36))


# Table B: the length penalty changes the winner.
TABLE_B = {
    (): {A: 0.7, B_: 0.3},
    (A,): {EOS: 0.4, A: 0.6},
    (B_,): {EOS: 0.6, B_: 0.4},
    (A, A): {EOS: 0.4, B_: 0.6},
    (B_, B_): {EOS: 1.0},
    (A, A, B_): {EOS: 1.0},
}


# Beam 2.
# Step 1: aa .42, aEOS .28, bEOS .18, bb .12. aEOS is in the first 2 positions: "a" ends (p .28, |Y| 2);
#   bEOS is third, outside the beam, and is dropped. Open: aa (.42), bb (.12).
# Step 2: aab .252, aaEOS .168, bbEOS .12. "a a" ends (p .168, |Y| 3); open: aab (.252) and a dead path.
# Step 3: aabEOS .252: "a a b" ends (|Y| 4).
#   none:    "a" -1.2730 | after step 2, open aab log .252 = -1.3783 < -1.2730 -> done: "a".
#   average: "a" -1.2730/2 = -0.6365, "a a" -1.7838/3 = -0.5946; open aab -1.3783/3 = -0.4594 is better,
#            so go on: "a a b" -1.3783/4 = -0.3446 wins.
#   gnmt a=1: lp = (5+|Y|)/6: "a" -1.2730/(7/6) = -1.0911, "a a" -1.7838/(8/6) = -1.3379; open aab
#            -1.3783/(8/6) = -1.0337 is better: go on, "a a b" -1.3783/(9/6) = -0.9189 wins.
@pytest.mark.parametrize(
    "penalty, tokens, score, probs",
    [
        ("none", [A], math.log(0.28), [0.7, 0.4]),
        ("average", [A, A, B_], math.log(0.252) / 4, [0.7, 0.6, 0.6, 1.0]),
        ("gnmt", [A, A, B_], math.log(0.252) / 1.5, [0.7, 0.6, 0.6, 1.0]),
    ],
)
def test_scripted_length_penalty(penalty, tokens, score, probs):
    d = ScriptedDecoder(TABLE_B)
    (best,) = beam_search(
        d, d.start(1), SearchOptions(beam_size=2, length_penalty=penalty, alpha=1.0), batch_size=1, max_len=10
    )[0]
    assert best.tokens == tokens and best.score == pytest.approx(score, abs=1e-6)
    assert best.token_log_probs == pytest.approx([math.log(p) for p in probs], abs=1e-6)


def test_scripted_nbest_is_exact_under_no_penalty():
    # n_best 2, none: after step 2 the second best ("a a", -1.784) is below the open aab (-1.378), so the
    # search goes on and finds "a a b" (-1.378): the true second best, not "a a".
    d = ScriptedDecoder(TABLE_B)
    first, second = beam_search(
        d, d.start(1), SearchOptions(beam_size=2, n_best=2), batch_size=1, max_len=10
    )[0]
    assert (first.tokens, second.tokens) == ([A], [A, A, B_])
    assert second.score == pytest.approx(math.log(0.252))


def test_max_len_forces_eos_with_its_own_probability():
    d = ScriptedDecoder(TABLE_B)
    # max_len 1: "a" then EOS at step 1 (p .4); "b" then EOS (p .6): .28 vs .18
    (g,) = greedy_search(d, d.start(1), SearchOptions(), batch_size=1, max_len=1)[0]
    hyps = beam_search(d, d.start(1), SearchOptions(beam_size=2, n_best=2), batch_size=1, max_len=1)[0]
    assert g.tokens == [A] and g.score == pytest.approx(math.log(0.28))
    assert [h.tokens for h in hyps] == [[A], [B_]]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.28), math.log(0.18)])


# ---- invariants on the random toy decoder ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"length_penalty": "none"},
        {"length_penalty": "gnmt", "alpha": 0.6},
        {"length_penalty": "average", "min_len": 2, "no_repeat_ngram": 2},
    ],
)
@pytest.mark.parametrize("vocab", [12, 640])  # 640: top_k searches chunks of the vocabulary
def test_beam_one_equals_greedy(options, vocab):
    d = ToyDecoder(vocab=vocab)
    src, lens, max_len = toy_batch(64, vocab=vocab)
    greedy = run(greedy_search, d, src, lens, max_len, **options)
    beam = run(beam_search, d, src, lens, max_len, beam_size=1, **options)
    for (g,), (b,) in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, abs=1e-6)
        assert g.token_log_probs == pytest.approx(b.token_log_probs, abs=1e-6)
    assert len({len(g.tokens) for (g,) in greedy}) > 3  # varied lengths, so the check means something


def test_nbest_first_equals_one_best():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(32)
    one = run(beam_search, d, src, lens, max_len, beam_size=4)
    many = run(beam_search, d, src, lens, max_len, beam_size=4, n_best=4)
    assert all(len(h) == 4 for h in many)
    for (o,), m in zip(one, many, strict=True):
        assert m[0].tokens == o.tokens and m[0].score == pytest.approx(o.score, abs=1e-6)
        assert [h.score for h in m] == sorted((h.score for h in m), reverse=True)
    # with a penalty the search waits for K finished hypotheses whatever n_best is: the same best
    for penalty in ("gnmt", "average"):
        one = run(beam_search, d, src, lens, max_len, beam_size=4, length_penalty=penalty)
        many = run(beam_search, d, src, lens, max_len, beam_size=4, n_best=4, length_penalty=penalty)
        for (o,), m in zip(one, many, strict=True):
            assert m[0].tokens == o.tokens and m[0].score == pytest.approx(o.score, abs=1e-6)


# Table C: the first hypothesis to end beats the open beams at its length, a longer one wins after it.
TABLE_C = {
    (): {A: 0.6, B_: 0.4},
    (A,): {EOS: 0.6, A: 0.4},
    (B_,): {B_: 0.75, EOS: 0.25},
    (A, A): {EOS: 1.0},
    (B_, B_): {EOS: 1.0},
}


def test_a_length_penalty_waits_for_k_finished_hypotheses():
    # Beam 2, average. Step 1: aEOS .36, bb .30, aa .24, bEOS .10: "a" ends (log .36 / 2 = -0.511) and
    # beats the open beams at length 2 (bb: log .30 / 2 = -0.602), but only 1 of K = 2 has finished, so
    # the search goes on. Step 2: "b b" (log .30 / 3 = -0.401) and "a a" (log .24 / 3 = -0.476) end and
    # "b b" wins. Stopping at the first finished hypothesis (n = n_best) would have returned "a".
    d = ScriptedDecoder(TABLE_C)
    (best,) = beam_search(
        d, d.start(1), SearchOptions(beam_size=2, length_penalty="average"), batch_size=1, max_len=10
    )[0]
    assert best.tokens == [B_, B_] and best.score == pytest.approx(math.log(0.30) / 3, abs=1e-6)
    hyps = beam_search(
        d,
        d.start(1),
        SearchOptions(beam_size=2, n_best=2, length_penalty="average"),
        batch_size=1,
        max_len=10,
    )[0]
    assert [h.tokens for h in hyps] == [[B_, B_], [A, A]]
    # without a penalty "a" is the exact best (.36 > .30)
    (best,) = beam_search(d, d.start(1), SearchOptions(beam_size=2), batch_size=1, max_len=10)[0]
    assert best.tokens == [A] and best.score == pytest.approx(math.log(0.36))


@pytest.mark.parametrize("vocab", [12, 640])
def test_early_stop_is_exact_without_penalty(monkeypatch, vocab):
    d = ToyDecoder(vocab=vocab)
    src, lens, max_len = toy_batch(32, vocab=vocab)
    early = run(beam_search, d, src, lens, max_len, beam_size=4, n_best=3)
    # the same search run to max_len for every sentence
    monkeypatch.setattr(search, "sentence_done", lambda nth, scores, step, max_len, p, a: max_len <= step)
    full = run(beam_search, d, src, lens, max_len, beam_size=4, n_best=3)
    for e, f in zip(early, full, strict=True):
        assert [h.tokens for h in e] == [h.tokens for h in f]
        assert [h.score for h in e] == pytest.approx([h.score for h in f], abs=1e-6)


@pytest.mark.parametrize("method", ["beam", "greedy"])
@pytest.mark.parametrize("vocab", [12, 640])  # 640: top_k searches chunks of the vocabulary
def test_same_output_alone_and_in_any_batch(method, vocab):
    d = ToyDecoder(vocab=vocab)
    src, lens, max_len = toy_batch(32, seed=3, a=1.0, b=3, vocab=vocab)
    options = {"beam_size": 4, "n_best": 2, "length_penalty": "gnmt"} if method == "beam" else {}
    fn = beam_search if method == "beam" else greedy_search

    def decode(indices):
        sources = [src[i, : lens[i]].tolist() for i in indices]
        s, ln = pad(sources)
        return run(fn, d, s, ln, max_len[indices], **options)

    alone = [decode([i])[0] for i in range(32)]
    batches = {32: [list(range(32))], 7: [list(range(i, min(i + 7, 32))) for i in range(0, 32, 7)]}
    batches["shuffled"] = [torch.randperm(32, generator=torch.Generator().manual_seed(0)).tolist()]
    for groups in batches.values():
        for group in groups:
            for i, hyps in zip(group, decode(group), strict=True):
                assert [h.tokens for h in hyps] == [h.tokens for h in alone[i]]
                assert [h.score for h in hyps] == pytest.approx([h.score for h in alone[i]], abs=1e-5)
                for h, a in zip(hyps, alone[i], strict=True):
                    assert h.attention.shape == a.attention.shape == (len(h.tokens) + 1, lens[i])
                    torch.testing.assert_close(h.attention, a.attention, atol=1e-5, rtol=0)


@pytest.mark.parametrize("penalty", ["none", "gnmt", "average"])
def test_scores_are_the_returned_log_probs(penalty):
    d = ToyDecoder()
    src, lens, max_len = toy_batch(12)
    lp = search.LENGTH_PENALTIES[penalty]
    for fn, kw in [(beam_search, {"beam_size": 3, "n_best": 3}), (greedy_search, {})]:
        for i, hyps in enumerate(run(fn, d, src, lens, max_len, length_penalty=penalty, **kw)):
            for h in hyps:
                assert len(h.token_log_probs) == len(h.tokens) + 1
                assert h.score == pytest.approx(sum(h.token_log_probs) / lp(len(h.tokens) + 1, 0.6), abs=1e-5)
                # and they are the decoder's own log-probs of those tokens
                state = d.start(src[i : i + 1, : lens[i]], lens[i : i + 1])
                assert h.token_log_probs == pytest.approx(
                    teacher_forced_log_probs(d, state, h.tokens), abs=1e-5
                )
                torch.testing.assert_close(h.attention.sum(dim=1), torch.ones(len(h.tokens) + 1))


def test_finished_sentences_leave_the_batch():
    d = RowCounter(ToyDecoder())
    src, lens = pad([[4, 5], [6, 7, 8]])
    # sentence 0 must end at step 1 (max_len 1); sentence 1 cannot end before step 3 (min_len)
    max_len = torch.tensor([1, 10])
    beam_search(
        d, d.decoder.start(src, lens), SearchOptions(beam_size=3, min_len=3), batch_size=2, max_len=max_len
    )
    assert d.rows_seen[:3] == [2, 6, 3]  # the first step runs one row per sentence: its beams are one
    d.rows_seen.clear()
    greedy_search(d, d.decoder.start(src, lens), SearchOptions(min_len=3), batch_size=2, max_len=max_len)
    assert d.rows_seen[:3] == [2, 2, 1]


# ---- constraints ------------------------------------------------------------------------------------------


def test_min_and_max_len():
    d = ToyDecoder(eos_bias=2.0)  # eager to stop
    src, lens, max_len = toy_batch(24)
    free = run(beam_search, d, src, lens, max_len, beam_size=3)
    assert min(len(h[0].tokens) for h in free) < 3  # so min_len has something to prevent
    for fn, kw in [(beam_search, {"beam_size": 3, "n_best": 3}), (greedy_search, {}), (sample, {})]:
        for i, hyps in enumerate(run(fn, d, src, lens, max_len, min_len=3, **kw)):
            assert all(len(h.tokens) >= min(3, max_len[i]) for h in hyps)
    d = ToyDecoder(eos_bias=-30.0)  # never wants to stop: every output runs to max_len
    for fn, kw in [(beam_search, {"beam_size": 3, "n_best": 2}), (greedy_search, {}), (sample, {})]:
        for i, hyps in enumerate(run(fn, d, src, lens, max_len, **kw)):
            assert all(len(h.tokens) == max_len[i] for h in hyps)
            assert all(math.isfinite(h.score) and h.token_log_probs[-1] < -20 for h in hyps)
    (empty,) = greedy_search(d, d.start(src[:1], lens[:1]), SearchOptions(), batch_size=1, max_len=0)[0]
    assert empty.tokens == [] and len(empty.token_log_probs) == 1


def test_no_sentences():
    d = ToyDecoder()
    for fn in (beam_search, greedy_search, sample, generate):
        assert fn(d, d.start(batch_size=0), SearchOptions(beam_size=2), batch_size=0, max_len=5) == []


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram(n):
    d = ToyDecoder(vocab=8, eos_bias=-6.0)  # few tokens, long outputs: repeats are likely
    src, lens, max_len = toy_batch(16, a=2.0, b=4, vocab=8)
    if n == 1:
        max_len = torch.clamp(max_len, max=3)  # only 4 content tokens exist
    free = run(beam_search, d, src, lens, max_len, beam_size=3, n_best=3)
    assert any(has_repeat(h.tokens, n) for hyps in free for h in hyps)
    for fn, kw in [(beam_search, {"beam_size": 3, "n_best": 3}), (greedy_search, {}), (sample, {})]:
        for hyps in run(fn, d, src, lens, max_len, no_repeat_ngram=n, **kw):
            assert not any(has_repeat(h.tokens, n) for h in hyps)


def test_ban_unk():
    d = ToyDecoder(unk_bias=3.0)
    src, lens, max_len = toy_batch(16)
    assert any(UNK in h[0].tokens for h in run(greedy_search, d, src, lens, max_len))
    for fn, kw in [(beam_search, {"beam_size": 3, "n_best": 3}), (greedy_search, {}), (sample, {})]:
        for hyps in run(fn, d, src, lens, max_len, ban_unk=True, **kw):
            assert all(UNK not in h.tokens for h in hyps)


def reference_greedy(decoder, state, prefix, max_len):
    """A plain one-sentence loop: forced prefix, then argmax until EOS or max_len."""
    tokens, prev = [], BOS
    while True:
        log_probs, state, _ = decoder.step(torch.tensor([prev]), state)
        step = len(tokens)
        prev = (
            prefix[step] if step < len(prefix) else EOS if step >= max_len else log_probs[0].argmax().item()
        )
        if prev == EOS:
            return tokens
        tokens.append(prev)


def test_forced_prefix_seq2seq():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(12)
    prefixes = [random_sources(1, min_len=0, max_len=4, seed=i)[0] for i in range(12)]
    prefixes[0] = [4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7]  # longer than max_len
    assert len(prefixes[0]) > max_len[0]
    greedy = run(greedy_search, d, src, lens, max_len, prefix=prefixes)
    beam = run(beam_search, d, src, lens, max_len, beam_size=3, n_best=3, prefix=prefixes, no_repeat_ngram=1)
    assert greedy[0][0].tokens == prefixes[0]  # the prefix is kept whole, then EOS
    for i, p in enumerate(prefixes):
        state = d.start(src[i : i + 1, : lens[i]], lens[i : i + 1])
        assert greedy[i][0].tokens == reference_greedy(d, state, p, int(max_len[i]))
        assert all(h.tokens[: len(p)] == p for h in beam[i])  # verbatim, even against no_repeat_ngram=1
        for h in beam[i]:
            state = d.start(src[i : i + 1, : lens[i]], lens[i : i + 1])
            assert h.token_log_probs == pytest.approx(teacher_forced_log_probs(d, state, h.tokens), abs=1e-5)
    assert (
        sum(len(h.tokens) > len(p) for p, hyps in zip(prefixes, beam, strict=True) for h in hyps) > 12
    )  # it goes on


def test_forced_prefix_language_model():
    lm = ToyDecoder(seed=4)
    prompts = [[4, 5], [6], [], [7, 7, 7]]
    hyps = beam_search(
        lm, lm.start(batch_size=4), SearchOptions(beam_size=3), batch_size=4, max_len=12, prefix=prompts
    )
    greedy = greedy_search(
        lm, lm.start(batch_size=4), SearchOptions(), batch_size=4, max_len=12, prefix=prompts
    )
    for p, (h,), (g,) in zip(prompts, hyps, greedy, strict=True):
        assert h.tokens[: len(p)] == p and h.attention is None
        assert g.tokens == reference_greedy(lm, lm.start(batch_size=1), p, 12)


# ---- sampling ---------------------------------------------------------------------------------------------


def test_sampling_top_k_one_is_greedy():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(32)
    greedy = run(greedy_search, d, src, lens, max_len)
    sampled = run(sample, d, src, lens, max_len, top_k=1, generator=torch.Generator().manual_seed(0))
    for (g,), (s,) in zip(greedy, sampled, strict=True):
        assert s.tokens == g.tokens and s.score == pytest.approx(g.score, abs=1e-6)


def test_sampling_nucleus_and_top_k_on_a_known_distribution():
    d = ScriptedDecoder({(): {A: 0.6, B_: 0.3, EOS: 0.1}})  # then EOS
    gen = torch.Generator().manual_seed(0)

    def outcomes(**kw):
        options = SearchOptions(sampling=Sampling(**kw))
        return {
            tuple(h[0].tokens)
            for h in sample(d, d.start(300), options, batch_size=300, max_len=5, generator=gen)
        }

    assert outcomes() == {(A,), (B_,), ()}  # all three occur in 300 draws
    assert outcomes(top_p=0.5) == {(A,)}  # the nucleus of mass 0.5 is "a" alone
    assert outcomes(top_k=2) == {(A,), (B_,)}
    assert outcomes(temperature=0.05) == {(A,)}  # (0.3/0.6)^20 ~ 1e-6: "b" practically never


def test_sampling_is_reproducible_with_a_seed():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(32)

    def draw(seed, **kw):
        hyps = run(sample, d, src, lens, max_len, generator=torch.Generator().manual_seed(seed), **kw)
        return [h[0].tokens for h in hyps], [h[0].score for h in hyps]

    assert draw(7) == draw(7)
    assert draw(7)[0] != draw(8)[0]
    tokens, scores = draw(7, temperature=2.0)
    for i, (t, s) in enumerate(
        zip(tokens, scores, strict=True)
    ):  # scores are the model's log-probs, not tempered ones
        state = d.start(src[i : i + 1, : lens[i]], lens[i : i + 1])
        assert s == pytest.approx(sum(teacher_forced_log_probs(d, state, t)), abs=1e-5)


# ---- ensembles --------------------------------------------------------------------------------------------


def test_ensemble_averages_probabilities():
    one = ScriptedDecoder({(): {A: 0.6, B_: 0.4}})
    two = ScriptedDecoder({(): {A: 0.2, B_: 0.8}})
    ens = EnsembleDecoder([one, two])
    log_probs, _, attn = ens.step(torch.tensor([BOS]), ens.start(1))
    assert log_probs[0, [A, B_]].exp().tolist() == pytest.approx([0.4, 0.6])  # not exp(mean log p)
    assert attn is None
    (h,) = greedy_search(ens, ens.start(1), SearchOptions(), batch_size=1, max_len=5)[0]
    assert h.tokens == [B_] and h.score == pytest.approx(math.log(0.6))


def test_ensemble_of_identical_decoders_equals_the_decoder():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(16)
    single = run(beam_search, d, src, lens, max_len, beam_size=4, n_best=2)
    double = run(beam_search, EnsembleDecoder([d, ToyDecoder()]), src, lens, max_len, beam_size=4, n_best=2)
    for s, e in zip(single, double, strict=True):
        assert [h.tokens for h in s] == [h.tokens for h in e]
        assert [h.score for h in s] == pytest.approx([h.score for h in e], abs=1e-5)
        torch.testing.assert_close(s[0].attention, e[0].attention)


def test_ensemble_of_different_decoders_reorders_every_state():
    members = [ToyDecoder(seed=1), ToyDecoder(seed=2)]
    ens = EnsembleDecoder(members)
    src, lens, max_len = toy_batch(8)
    for i, hyps in enumerate(run(beam_search, ens, src, lens, max_len, beam_size=3, n_best=3)):
        for h in hyps:
            state = ens.start(src[i : i + 1, : lens[i]], lens[i : i + 1])
            assert h.token_log_probs == pytest.approx(
                teacher_forced_log_probs(ens, state, h.tokens), abs=1e-5
            )


# ---- bad input ---------------------------------------------------------------------------------------------


def test_bad_arguments_are_refused():
    d = ScriptedDecoder(TABLE_A)
    with pytest.raises(UserError, match=r"^n_best must be between 1 and beam_size \(2\); got 3$"):
        SearchOptions(beam_size=2, n_best=3)
    with pytest.raises(UserError, match="length_penalty must be one of none, gnmt, average"):
        SearchOptions(length_penalty="wu")
    with pytest.raises(UserError, match=r"^beam_size must be >= 1; got 0$"):
        SearchOptions(beam_size=0)
    with pytest.raises(UserError, match=r"^min_len must be >= 0; got -1$"):
        SearchOptions(min_len=-1)
    with pytest.raises(UserError, match=r"^no_repeat_ngram must be >= 0; got -2$"):
        SearchOptions(no_repeat_ngram=-2)
    with pytest.raises(UserError, match=r"^--beam-size 4 contradicts --sampling: sampling has no beam"):
        SearchOptions(beam_size=4, sampling=Sampling())
    with pytest.raises(ValueError, match="must not contain EOS"):
        greedy_search(d, d.start(1), SearchOptions(), batch_size=1, max_len=5, prefix=[[A, EOS]])
    with pytest.raises(ValueError, match=r"max_len must be an int or a \(2,\) tensor"):
        greedy_search(d, d.start(2), SearchOptions(), batch_size=2, max_len=torch.tensor([5, 5, 5]))
    with pytest.raises(ValueError, match="temperature must be a finite number between 1e-06 and 1e"):
        Sampling(temperature=0.0)
    with pytest.raises(ValueError, match="the state holds 2 rows, not batch_size=3"):
        generate(d, d.start(2), SearchOptions(), batch_size=3, max_len=5)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(bad):
    """NaN passes every comparison, so `temperature <= 0` let it through: torch.multinomial then failed
    with a traceback, and a NaN alpha made every score NaN. Each is a UserError naming the argument."""
    lens = torch.tensor([3, 4])
    with pytest.raises(UserError, match=r"^max_len_a must be a finite number >= 0; got"):
        max_lengths(lens, bad, 10)
    with pytest.raises(UserError, match=r"^max_len_b must be a finite number >= 0; got"):
        max_lengths(lens, 1.5, bad)
    with pytest.raises(UserError, match=r"^alpha must be a finite number between 0 and 10; got"):
        SearchOptions(beam_size=2, length_penalty="gnmt", alpha=bad)
    with pytest.raises(UserError, match=r"^max_len_a must be a finite number >= 0; got"):
        SearchOptions(max_len_a=bad)
    with pytest.raises(UserError, match=r"^--temperature must be a finite number between 1e-06 and 1e\+06"):
        Sampling(temperature=bad)
    with pytest.raises(UserError, match=r"^--top-p must be a finite number in \(0, 1\]"):
        Sampling(top_p=bad)


def test_extreme_finite_values_are_refused_or_bounded():
    """Values that used to end in a traceback: a temperature whose scaled float32 log-probs all became
    -inf or NaN, an alpha whose penalty overflowed, a max_len_a whose a*S+b overflowed int64 (into a
    negative max_len); a top_k above the vocabulary keeps every piece."""
    d = ScriptedDecoder(TABLE_A)
    for temperature in (1e-38, 1e39):
        with pytest.raises(UserError, match="temperature must be a finite number"):
            Sampling(temperature=temperature)
    with pytest.raises(UserError, match=r"alpha must be a finite number between 0 and 10; got 1e\+300"):
        SearchOptions(beam_size=2, length_penalty="gnmt", alpha=1e300)
    with pytest.raises(UserError, match="max_len_a must be a finite number >= 0; got -0.5"):
        max_lengths(torch.tensor([3]), -0.5, 10)
    assert max_lengths(torch.tensor([3, 4]), 1e300, 10).tolist() == [options_module.MAX_LEN] * 2
    assert max_lengths(torch.tensor([3, 4]), 1.5, 10).tolist() == [14, 16]  # unchanged below the cap
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    assert torch.equal(filter_logits(logits, top_k=100_000), logits)
    # the bounds themselves still sample, and stay finite
    for temperature in (options_module.TEMPERATURE_MIN, options_module.TEMPERATURE_MAX):
        (h,) = sample(
            d, d.start(1), SearchOptions(sampling=Sampling(temperature=temperature)), batch_size=1, max_len=5
        )[0]
        assert math.isfinite(h.score)


# ---- one options object, one entry point ----------------------------------------------------------------


def test_options_from_generation_maps_every_search_field():
    g = GenerationConfig(beam_size=4, n_best=2, length_penalty="average", alpha=0.3, min_len=1, max_len_a=2.0,
                         max_len_b=3, no_repeat_ngram=2, ban_unk=True, batch_tokens=77)  # fmt: skip
    options = SearchOptions.from_generation(g)
    assert options == SearchOptions(beam_size=4, n_best=2, length_penalty="average", alpha=0.3, min_len=1,
                                    max_len_a=2.0, max_len_b=3, no_repeat_ngram=2, ban_unk=True)  # fmt: skip
    assert options.max_lengths(torch.tensor([4, 0])).tolist() == [11, 3]  # floor(2 * S + 3)
    assert SearchOptions.from_generation(g, n_best=1, return_attention=False) == SearchOptions(
        beam_size=4, n_best=1, length_penalty="average", alpha=0.3, min_len=1, max_len_a=2.0, max_len_b=3,
        no_repeat_ngram=2, ban_unk=True, return_attention=False,
    )  # fmt: skip
    # sampling has no beam: the config's beam_size 4 does not apply, and n_best counts samples
    sampled = SearchOptions.from_generation(g, sampling=Sampling(seed=3), n_best=6)
    assert (sampled.beam_size, sampled.n_best, sampled.sampling) == (1, 6, Sampling(seed=3))
    with pytest.raises(UserError, match=r"^--beam-size 4 contradicts --sampling"):
        SearchOptions.from_generation(g, sampling=Sampling(), beam_size=4)
    with pytest.raises(UserError, match=r"^unknown search option beam; allowed: "):
        SearchOptions.from_generation(g, beam=4)
    # the stopping rule waits for n_best hypotheses without a penalty, for the whole beam with one
    assert SearchOptions(beam_size=5, n_best=2).kept_finished == 2
    assert SearchOptions(beam_size=5, n_best=2, length_penalty="gnmt").kept_finished == 5


def test_generate_runs_the_search_the_options_ask_for():
    d = ToyDecoder()
    src, lens, max_len = toy_batch(16)

    def found(fn, options, **kw):
        hyps = fn(d, d.start(src, lens), options, batch_size=16, max_len=max_len, src_lens=lens, **kw)
        return [[(h.tokens, h.score) for h in sentence] for sentence in hyps]

    greedy = found(generate, SearchOptions(beam_size=1))
    assert greedy == found(greedy_search, SearchOptions(beam_size=1))
    beam = found(generate, SearchOptions(beam_size=3, n_best=2))
    assert beam == found(beam_search, SearchOptions(beam_size=3, n_best=2))
    assert all(len(hyps) == 2 for hyps in beam)
    assert [h[:1] for h in beam] != greedy  # a beam of 3 finds something greedy misses
    seeded = SearchOptions(n_best=3, sampling=Sampling(temperature=1.5, seed=5))
    drawn = found(generate, seeded)
    assert drawn == found(generate, seeded)  # the seed in the options makes generate reproducible
    assert drawn == found(sample, seeded, generator=torch.Generator().manual_seed(5))  # from that seed
    assert drawn != found(generate, SearchOptions(n_best=3, sampling=Sampling(temperature=1.5, seed=6)))
    for draws in drawn:  # n_best samples per sentence, best first
        assert len(draws) == 3 and [s for _, s in draws] == sorted((s for _, s in draws), reverse=True)
