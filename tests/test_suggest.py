"""Next-word suggestion: word building from pieces, partial words, caching, bad input, evaluation, CLI."""

from __future__ import annotations

import copy
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from seq2seq_lstm.config import TokenizerConfig
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.model.decoder import DecoderState
from seq2seq_lstm.suggest.keystrokes import evaluate_suggestions, simulate_keystrokes
from seq2seq_lstm.suggest.pieces import PieceTable
from seq2seq_lstm.suggest.suggester import Suggester, Suggestion
from seq2seq_lstm.suggest.words import EITHER, GLUED, SPACE, Typed, parse_typed, word_spans
from seq2seq_lstm.vocab import BOS_ID, EOS_ID

# A tiny corpus with one strong habit: "a cup of" is followed by "tea" 4 times out of 5.
SENTENCES = [
    "I would like a cup of tea.",
    "She made a cup of tea for him.",
    "We had a cup of tea and some cake.",
    "He wants a cup of coffee.",
    "They drank a cup of tea together.",
    "The weather is nice today.",
    "I think the weather will change tomorrow.",
    "Do you want to come with us?",
    "I don't know what to say.",
    "Where is the station, please?",
    "The train leaves at noon.",
    "My brother likes to read books.",
    "Thank you very much for your help.",
    "Please close the door when you leave.",
    "It is raining again, isn't it?",
    "She sings beautifully and plays the piano.",
]


class TinyLM(nn.Module):
    """An nn.LSTM language model with the LanguageModel step()/start() contract, for these tests."""

    def __init__(self, vocab: int, dim: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tgt_in: torch.Tensor) -> torch.Tensor:
        """(B, T) -> logits (B, T, V)."""
        return self.out(self.rnn(self.embed(tgt_in))[0])

    def start(self, batch_size: int) -> DecoderState:
        zeros = torch.zeros(1, batch_size, self.rnn.hidden_size)
        return DecoderState(h=zeros, c=zeros)

    def step(self, tokens: torch.Tensor, state: DecoderState):
        out, (h, c) = self.rnn(self.embed(tokens).unsqueeze(1), (state.h, state.c))  # (B, 1, H)
        return F.log_softmax(self.out(out[:, 0]), dim=-1), DecoderState(h=h, c=c), None


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    cfg = TokenizerConfig(vocab_size=90, byte_fallback=False, input_sentence_size=0)
    return Tokenizer.train(SENTENCES * 4, None, cfg)


def _train(model: nn.Module, tokenizer: Tokenizer, steps: int = 300) -> nn.Module:
    """Full-batch Adam on the fixture sentences: a few seconds on one thread."""
    rows = [[BOS_ID, *ids, EOS_ID] for ids in tokenizer.encode_tgt(SENTENCES)]
    width = max(map(len, rows))
    batch = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # (B, T+1), PAD = 0
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(tokenizer) -> Suggester:
    torch.manual_seed(0)
    return Suggester(_train(TinyLM(tokenizer.tgt_vocab_size), tokenizer), tokenizer)


@pytest.fixture(scope="module")
def untrained(tokenizer) -> Suggester:
    torch.manual_seed(1)
    return Suggester(TinyLM(tokenizer.tgt_vocab_size), tokenizer)


# ------------------------------------------------------------------------------------------------
# Words in plain text


def test_word_spans_keep_inner_apostrophes_and_drop_punctuation():
    text = "I don't know, 'tis fine (really)!"
    assert [text[a:b] for a, b in word_spans(text)] == ["I", "don't", "know", "tis", "fine", "really"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Typed("", "", SPACE)),
        ("Hello, wor", Typed("Hello,", "wor", SPACE)),
        ("Hello,", Typed("Hello,", "", EITHER)),
        ("Say (hi", Typed("Say (", "hi", GLUED)),
        ("I don'", Typed("I", "don'", SPACE)),
        ("It rains. I would  ", Typed("I would", "", SPACE)),  # only the current sentence is read
        ("a\x00b\x07 c", Typed("ab", "c", SPACE)),  # control characters are dropped
        ("a\u200bb\tc d", Typed("ab c", "d", SPACE)),  # format marks too; a tab separates words
    ],
)
def test_parse_typed_splits_context_and_partial_word(text, expected):
    assert parse_typed(text, max_chars=1000) == expected


def test_parse_typed_bounds_the_work():
    assert parse_typed("x" * 100_000, max_chars=1000) is None  # a 100k-letter "word" has no completion
    typed = parse_typed("word " * 20_000 + "la", max_chars=1000)
    assert typed.partial == "la" and len(typed.context) < 1000 and typed.context.startswith("word")


def test_piece_table_flags(tokenizer):
    sp = tokenizer.tgt_sp
    table = PieceTable(sp)
    tea, comma, apostrophe = (sp.piece_to_id(p) for p in ("▁tea", ",", "'"))
    # a piece of letters without "▁", which continues a word: the first in the vocabulary ("of" here),
    # as which ones exist depends on the SentencePiece version
    inner = next(
        i for i in range(sp.get_piece_size()) if len(sp.id_to_piece(i)) > 1 and sp.id_to_piece(i).isalpha()
    )
    assert table.leads[tea] == "tea" and table.boundary[tea] and table.allowed[SPACE][tea]
    assert table.leads[comma] == "" and table.boundary[comma] and not table.allowed["word"][comma]
    assert (
        table.leads[inner] == sp.id_to_piece(inner)
        and not table.boundary[inner]
        and table.allowed["word"][inner]
    )
    # an apostrophe continues a word ("don" + "'" + "t") but does not start one glued to punctuation
    assert table.allowed["word"][apostrophe] and not table.allowed[GLUED][apostrophe]
    assert table.boundary[EOS_ID] and not table.boundary[BOS_ID] and not table.allowed[SPACE][BOS_ID]


# ------------------------------------------------------------------------------------------------
# Word probabilities against a brute-force enumeration on a tiny hand-made vocabulary

TINY_PIECES = [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",  # fmt: skip
    "▁",
    "▁t",
    "▁th",
    "▁the",
    "▁a",
    "h",
    "e",
    "he",
    "re",
    "e,",
    "'",
    "s",
    "'s",
    ",",
    ".",
]


class TinySP:
    """The part of SentencePieceProcessor's interface the suggester uses, over a fixed piece list."""

    def __init__(self, pieces):
        self.pieces = pieces

    def get_piece_size(self):
        return len(self.pieces)

    def id_to_piece(self, i):
        return self.pieces[i]

    def is_control(self, i):
        return i in (0, 2, 3)

    def is_unknown(self, i):
        return i == 1

    def is_byte(self, i):
        return False

    def encode(self, text, out_type=int):
        assert text == "", "these tests only type at the start of a sentence"
        return []


class TinyTokenizer:
    tgt_sp = TinySP(TINY_PIECES)


def _brute_force(model, max_word_pieces: int) -> dict[str, float]:
    """P(first word of the continuation = w), by enumerating piece sequences and reading their text.

    A sequence decides the next word when its text is " " + w followed by a non-word character, or
    is " " + w followed by </s>; summing over the *shortest* deciding sequences counts disjoint events.
    """
    from seq2seq_lstm.suggest.words import is_word_char

    def status(text: str):
        """None: undecided; "" : no word; else the word."""
        if not text.startswith(" ") or len(text) < 2 or not is_word_char(text[1], first=True):
            return "" if len(text) >= 2 or (text and not text.startswith(" ")) else None
        for i in range(2, len(text)):
            if not is_word_char(text[i]):
                return text[1:i]
        return None

    words: dict[str, float] = {}
    with torch.no_grad():
        state = model.start(1)
        lp, state, _ = model.step(torch.tensor([BOS_ID]), state)
        frontier = [((), 0.0, lp[0], state)]
        for depth in range(max_word_pieces + 1):
            grown = []
            for seq, logp, lp, _ in frontier:
                text = "".join(TINY_PIECES[i] for i in seq).replace("▁", " ")
                for v in range(4, len(TINY_PIECES)):
                    new_text = text + TINY_PIECES[v].replace("▁", " ")
                    decided = status(new_text)
                    if decided:
                        letters_in_last = not TINY_PIECES[v].startswith("▁") and is_word_char(
                            TINY_PIECES[v][0]
                        )
                        if depth < max_word_pieces or not letters_in_last:
                            words[decided] = words.get(decided, 0.0) + math.exp(logp + lp[v].item())
                    elif decided is None and depth < max_word_pieces:
                        grown.append((seq + (v,), logp + lp[v].item()))
                if text.startswith(" ") and len(text) > 1 and status(text) is None:  # " w" then </s>
                    words[text[1:]] = words.get(text[1:], 0.0) + math.exp(logp + lp[EOS_ID].item())
            if not grown:
                break
            tokens = torch.tensor([s[-1] for s, _ in grown])
            parents = {seq: (lp, state) for seq, _, lp, state in frontier}
            new_frontier = []
            for (seq, logp), tok in zip(grown, tokens, strict=True):
                _, st = parents[seq[:-1]]
                out, st2, _ = model.step(tok.view(1), st)
                new_frontier.append((seq, logp, out[0], st2))
            frontier = new_frontier
    return words


@pytest.fixture(scope="module")
def tiny_case():
    torch.manual_seed(3)
    model = TinyLM(len(TINY_PIECES), dim=16).eval()
    with torch.no_grad():
        model.out.weight.mul_(6)  # a peaked, far from uniform distribution
    exact = Suggester(model, TinyTokenizer(), beam=10**6, max_pieces=3, stop_ratio=0.0)
    return exact, _brute_force(model, 3)


def test_word_probabilities_match_brute_force(tiny_case):
    exact, truth = tiny_case
    got = {s.word: s.prob for s in exact.suggest("", k=1000)}
    assert set(got) == set(truth)  # e.g. "the" from "▁the", "▁th"+"e", "▁t"+"he", "▁t"+"h"+"e", "▁the"+"re"
    for word, p in truth.items():
        assert got[word] == pytest.approx(p, rel=1e-5, abs=1e-9), word
    assert {"the", "there", "a", "t's"} <= set(got)
    assert sum(got.values()) <= 1 + 1e-6


@pytest.mark.parametrize("partial", ["t", "th", "the", "a"])
def test_partial_word_probabilities_are_the_unconstrained_ones(tiny_case, partial):
    exact, truth = tiny_case
    got = {s.word: s.prob for s in exact.suggest(partial, k=1000)}
    expected = {w: p for w, p in truth.items() if w.startswith(partial)}
    assert set(got) == set(expected)
    for word, p in expected.items():
        assert got[word] == pytest.approx(p, rel=1e-5, abs=1e-9)
        if len(word) <= 4:  # longer typed words get one more piece per character (beyond the enumeration)
            assert math.exp(exact.session().word_log_prob("", word)) == pytest.approx(p, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("text", ["", "t", "th", "a"])
def test_early_stop_and_pruning_keep_the_top_k(tiny_case, text):
    # stop_ratio 1 drops each open hypothesis less probable than the k-th word and stops when none is
    # left: the top k words of the full enumeration (stop_ratio 0) stay, in order; a word's
    # probability may miss segmentations that were dropped (a lower bound, as documented)
    exact, _ = tiny_case
    runs = {}
    for ratio in (0.0, 1.0):
        counting = CountingLM(exact.model)
        got = Suggester(counting, exact.tokenizer, beam=10**6, max_pieces=3, stop_ratio=ratio).suggest(text)
        runs[ratio] = got, counting.tokens
    (want, all_rows), (got, rows) = runs[0.0], runs[1.0]
    assert [s.word for s in got] == [s.word for s in want]
    for g, w in zip(got, want, strict=True):
        assert 0.0 < g.prob <= w.prob * (1 + 1e-6)
    assert rows < all_rows  # and it does save work


def test_each_segmentation_is_counted_once(tiny_case):
    # "the" has several segmentations; its probability is their sum, and equals word_log_prob
    exact, truth = tiny_case
    session = exact.session()
    p_the = math.exp(session.word_log_prob("", "the"))
    assert p_the == pytest.approx(truth["the"], rel=1e-5)
    words = exact.suggest("", k=1000)
    assert len({s.word for s in words}) == len(words)


# ------------------------------------------------------------------------------------------------
# A trained tiny language model


def test_trained_model_ranks_the_frequent_word_first(trained):
    for text in ("I would like a cup of ", "She made a cup of ", "a cup of t"):
        assert trained.suggest(text)[0].word == "tea", text


@pytest.mark.parametrize("text", ["a cup of t", "The wea", "I d", "Where is the st", "Thank you v", "I don'"])
def test_half_typed_word_suggestions_start_with_typed_characters(trained, text):
    partial = parse_typed(text, 1000).partial
    suggestions = trained.suggest(text, k=5)
    assert suggestions, text
    assert all(s.word.startswith(partial) for s in suggestions), suggestions
    probs = [s.prob for s in suggestions]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)


def test_casing_and_punctuation_stay_as_typed(trained):
    assert all(s.word.startswith("Th") for s in trained.suggest("Th", k=5))
    assert trained.suggest("Where is the station, ")[0].word == "please"


def test_all_candidates_are_distinct_and_sum_to_at_most_one(trained):
    for text in ("", "a cup of ", "I "):
        words = trained.suggest(text, k=10_000)
        assert len({s.word for s in words}) == len(words)
        assert sum(s.prob for s in words) <= 1 + 1e-5


def _assert_same(got: list[Suggestion], want: list[Suggestion], what: str = "") -> None:
    """The same words in the same order, probabilities equal up to float rounding of batch sizes."""
    assert [s.word for s in got] == [s.word for s in want], what
    assert [s.prob for s in got] == pytest.approx([s.prob for s in want], rel=1e-5), what


class CountingLM(nn.Module):
    """Wraps a model and counts the tokens it steps."""

    def __init__(self, model):
        super().__init__()
        self.model, self.tokens = model, 0

    def start(self, batch_size):
        return self.model.start(batch_size)

    def step(self, tokens, state):
        self.tokens += tokens.numel()
        return self.model.step(tokens, state)


def test_session_matches_fresh_runs_keystroke_by_keystroke(trained, tokenizer):
    text = "She made a cup of tea, I think. The weather is nice today."
    counting = CountingLM(trained.model)
    cached = Suggester(counting, tokenizer).session()
    fresh_tokens = 0
    for i in range(len(text) + 1):
        got = cached.suggest(text[:i])
        counting_fresh = CountingLM(trained.model)
        want = Suggester(counting_fresh, tokenizer).suggest(text[:i])
        fresh_tokens += counting_fresh.tokens
        _assert_same(got, want, text[:i])
    assert counting.tokens < fresh_tokens / 2  # the cache saves the context steps


class _CountingSentencePiece:
    """A SentencePiece model that records the texts it encodes."""

    def __init__(self, sp) -> None:
        self.sp, self.encoded = sp, []

    def encode(self, text, **kwargs):
        self.encoded.append(text)
        return self.sp.encode(text, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.sp, name)


def test_a_session_encodes_each_context_once(trained, tokenizer):
    """The keystrokes of a word share the context before it: SentencePiece reads it once, not per key."""
    counting = copy.copy(tokenizer)
    counting.tgt_sp = _CountingSentencePiece(tokenizer.tgt_sp)
    session = Suggester(trained.model, counting).session()
    text = "She made a cup of tea"
    for i in range(len(text) + 1):
        _assert_same(session.suggest(text[:i]), trained.suggest(text[:i]), text[:i])
    assert counting.tgt_sp.encoded == ["She", "She made", "She made a", "She made a cup", "She made a cup of"]


def test_prefetched_keystrokes_are_answered_without_a_model_step(trained, tokenizer):
    """Between keystrokes the session works out the likely next ones; when one comes, suggest() only
    looks it up, and every answer equals a fresh run's, whether prefetched or not."""
    text = "She made a cup of tea, I think. The weather is nice today."
    counting = CountingLM(trained.model)
    session = Suggester(counting, tokenizer).session()
    looked_up = 0
    for i in range(len(text) + 1):
        before = counting.tokens
        got = session.suggest(text[:i])
        looked_up += counting.tokens == before
        want = trained.suggest(text[:i])
        _assert_same(got, want, text[:i])
        assert session.prefetch(text[:i], chars=2) >= 1
    # a space after each word, and the first letters of common words, were prefetched
    assert looked_up > (len(text) + 1) / 2
    session = Suggester(counting, tokenizer).session()
    session.suggest("She made a cup of te")
    session.prefetch("She made a cup of te")  # "tea" is the likely word: its next letter is "a"
    before = counting.tokens
    assert session.suggest("She made a cup of tea")[0].word == "tea"
    assert counting.tokens == before
    session.prefetch("She made a cup of tea")  # a word: a space (the next word) comes first
    want = [s.word for s in trained.suggest("She made a cup of tea ")]
    assert [s.word for s in session.suggest("She made a cup of tea ")] == want
    assert counting.tokens > before  # the prefetch stepped
    before = counting.tokens
    session.suggest("She made a cup of tea ")
    assert counting.tokens == before


def test_sessions_of_a_language_model_share_the_start_of_a_sentence(trained, tokenizer):
    counting = CountingLM(trained.model)
    suggester = Suggester(counting, tokenizer)
    first = suggester.session()
    want = [first.suggest(text) for text in ("", "T", "The weather. ")]
    before = counting.tokens
    second = suggester.session()
    assert counting.tokens == before + 1  # the session steps BOS, nothing else
    assert [second.suggest(text) for text in ("", "T", "The weather. ")] == want
    assert counting.tokens == before + 1
    assert second.suggest("The ") == trained.suggest("The ") and counting.tokens > before + 1


def test_prefetch_gives_way_to_a_waiting_keystroke(trained, tokenizer):
    counting = CountingLM(trained.model)
    session = Suggester(counting, tokenizer).session()
    session.suggest("She made a cup")
    before = counting.tokens
    assert session.prefetch("She made a cup", should_stop=lambda: True) == 0
    assert counting.tokens == before  # asked before the first step: nothing was stepped
    calls = []
    session.prefetch("She made a cup", should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3  # stopped at the third step it was about to take
    # what was stepped before the stop is kept and correct
    got, want = session.suggest("She made a cup "), trained.suggest("She made a cup ")
    _assert_same(got, want)


def test_a_full_node_cache_keeps_working(trained, tokenizer, monkeypatch):
    """With room for only a few stepped sequences, eviction keeps what the step needs: same answers."""
    import seq2seq_lstm.suggest.suggester as suggest_module

    monkeypatch.setattr(suggest_module, "MAX_CACHED_SEQUENCES", 12)
    session = trained.session()
    text = "She made a cup of tea. The weather is nice today. I don't know what to say."
    for i in range(len(text) + 1):
        got, want = session.suggest(text[:i]), trained.suggest(text[:i])
        _assert_same(got, want, text[:i])
        assert len(session._nodes) <= 12 + trained.beam


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n\t",
        "\x00\x01\x1b[31m",
        "日本語 ",
        "I like 日",
        "\ud800 a",
        "a cup of \u200b",
        "!!! ???",
        "'",
    ],
)
def test_bad_input_never_crashes(trained, text):
    suggestions = trained.suggest(text)
    assert isinstance(suggestions, list) and all(isinstance(s, Suggestion) for s in suggestions)


def test_unseen_characters_in_the_word_give_no_suggestions(trained):
    assert trained.suggest("I like 日") == []


def test_100k_characters_are_bounded_work(trained, monkeypatch):
    # the work is counted, not timed: at most the context window's pieces plus one word's pieces are
    # stepped, however long the text
    rows = []
    step = trained.model.step
    monkeypatch.setattr(
        trained.model, "step", lambda tokens, state: rows.append(len(tokens)) or step(tokens, state)
    )
    for text in ("a cup of tea " * 7700, "x" * 100_000, "I would like a cup of" + " " * 100_000):
        rows.clear()
        trained.session().suggest(text)
        assert len(rows) <= trained.context + trained.max_pieces + 1
        assert max(rows, default=0) <= trained.beam
    assert trained.suggest("x" * 100_000) == []
    assert "tea" in [s.word for s in trained.suggest("blah " * 20_000 + "I would like a cup of ")]


# ------------------------------------------------------------------------------------------------
# The real LanguageModel and Seq2Seq


@pytest.fixture(scope="module")
def real_lm(tokenizer):
    from seq2seq_lstm.config import ModelConfig
    from seq2seq_lstm.model.seq2seq import LanguageModel

    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=48, dec_layers=1, dropout=0.0, cell="cifg", tie_output=True)
    return _train(LanguageModel(cfg, tokenizer.tgt_vocab_size), tokenizer, steps=150)


def test_real_language_model_learns_the_fixture(real_lm, tokenizer):
    suggester = Suggester(real_lm, tokenizer)
    assert suggester.suggest("She made a cup of ")[0].word == "tea"
    assert all(s.word.startswith("wea") for s in suggester.suggest("The wea"))


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_faster_weight_types_keep_the_suggestions(real_lm, tokenizer, dtype):
    """bfloat16 and int8 weights change probabilities by rounding only: same words, close values."""
    import copy

    from seq2seq_lstm.decoding.quantize import convert_weights
    from seq2seq_lstm.errors import UserError

    exact = Suggester(real_lm, tokenizer)
    fast = Suggester(convert_weights(copy.deepcopy(real_lm), dtype), tokenizer)
    if dtype == "int8":
        from seq2seq_lstm.decoding.quantize import Int8Linear

        assert isinstance(fast.model.decoder.generator, Int8Linear)
    else:
        assert fast.model.decoder.embed.weight.dtype == torch.bfloat16
    for text in ("She made a cup of ", "The wea", "I would like a cup of t"):
        want, got = exact.suggest(text, k=1), fast.suggest(text, k=1)
        assert [s.word for s in got] == [s.word for s in want], text
        # int8 quantizes activations to 7 bits on the fly; over the several steps of a word the rounding
        # moves a probability by up to ~20% (more on AVX2 kernels than on AVX-512 ones)
        assert got[0].prob == pytest.approx(want[0].prob, rel=0.25), text
    with pytest.raises(UserError, match="dtype must be one of float32, bfloat16, int8"):
        convert_weights(real_lm, "float16")


def _other_lm(tokenizer, seed: int):
    from seq2seq_lstm.config import ModelConfig
    from seq2seq_lstm.model.seq2seq import LanguageModel

    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=32, hidden_size=40, dec_layers=2, dropout=0.0, cell="lstm", tie_output=True)
    return _train(LanguageModel(cfg, tokenizer.tgt_vocab_size), tokenizer, steps=60)


def test_an_ensemble_of_a_model_with_itself_suggests_like_the_model(real_lm, tokenizer):
    from seq2seq_lstm.decoding.ensemble import EnsembleDecoder

    single, twice = Suggester(real_lm, tokenizer), Suggester(EnsembleDecoder([real_lm, real_lm]), tokenizer)
    for text in ("", "She made a cup of ", "The wea"):
        want, got = single.suggest(text, k=5), twice.suggest(text, k=5)
        _assert_same(got, want, text)


def test_an_ensemble_session_matches_fresh_runs_and_mixes_its_members(real_lm, tokenizer):
    """Two different models (CIFG, 1 layer; LSTM, 2 layers): the session's cached, concatenated states
    are the members' own, keystroke by keystroke; and the mixture is neither member."""
    from seq2seq_lstm.decoding.ensemble import EnsembleDecoder

    other = _other_lm(tokenizer, seed=3)
    ensemble = Suggester(EnsembleDecoder([real_lm, other]), tokenizer)
    session = ensemble.session()
    text = "She made a cup of tea. The weather"
    for i in range(len(text) + 1):
        got, want = session.suggest(text[:i]), ensemble.suggest(text[:i])
        _assert_same(got, want, text[:i])
    members = [
        Suggester(m, tokenizer).session().word_log_prob("She made a cup of ", "tea") for m in (real_lm, other)
    ]
    mixed = ensemble.session().word_log_prob("She made a cup of ", "tea")
    assert min(members) - 1e-4 <= mixed <= max(members) + 1e-4 and mixed not in members


def _lm_run(out, model, model_type: str = "unigram"):
    """A language-model run directory as `s2s train` writes it (the tokenizer retrained: deterministic)."""
    from seq2seq_lstm.checkpoint import RunDir, export_weights, save_checkpoint_info
    from seq2seq_lstm.config import Config, DataConfig, save_config

    run = RunDir(out)
    cfg = Config(
        task="lm",
        tokenizer=TokenizerConfig(
            vocab_size=90, model_type=model_type, byte_fallback=False, input_sentence_size=0
        ),
        data=DataConfig(train="train.txt", valid="valid.txt"),
        model=model.cfg,
    )
    tokenizer = Tokenizer.train(SENTENCES * 4, None, cfg.tokenizer, out_dir=run.tokenizer)
    save_config(cfg, run.config)
    export_weights(model, run, save_checkpoint_info(cfg, tokenizer))
    return out


def test_suggester_loads_an_ensemble_of_run_directories(real_lm, tokenizer, tmp_path):
    from seq2seq_lstm.cli import main
    from seq2seq_lstm.decoding.ensemble import EnsembleDecoder
    from seq2seq_lstm.errors import CheckpointError

    a = _lm_run(tmp_path / "a", real_lm)
    b = _lm_run(tmp_path / "b", _other_lm(tokenizer, seed=3))
    ensemble = Suggester.from_checkpoint([a, b])
    assert isinstance(ensemble.model, EnsembleDecoder) and len(ensemble.model.decoders) == 2
    assert ensemble.suggest("She made a cup of ")[0].word == "tea"
    result = CliRunner().invoke(main, ["suggest", "-m", str(a), "-m", str(b), "She made a cup of "])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split("\t")[0] == "tea"
    c = _lm_run(tmp_path / "c", _other_lm(tokenizer, seed=4), model_type="bpe")  # another tokenizer
    with pytest.raises(CheckpointError, match="was trained with another tokenizer than"):
        Suggester.from_checkpoint([a, c])
    result = CliRunner().invoke(main, ["suggest", "-m", str(a), "-m", str(c), "tea"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {c} was trained with another tokenizer than {a}; the members of an ensemble must share "
        "one vocabulary"
    )


def test_translation_suggestions_are_conditioned_on_the_source(tokenizer):
    from seq2seq_lstm.config import ModelConfig
    from seq2seq_lstm.errors import UserError
    from seq2seq_lstm.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=16, hidden_size=32, enc_layers=1, dec_layers=1, dropout=0.0)
    model = Seq2Seq(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval()
    suggester = Suggester(model, tokenizer, task="translation")
    a = suggester.suggest("a cup of t", source="I would like a cup of tea.")
    b = suggester.suggest("a cup of t", source="The weather is nice today.")
    assert a and all(s.word.startswith("t") for s in a)
    assert [s.prob for s in a] != pytest.approx([s.prob for s in b])  # the source changes the state
    # at the start of a sentence too: a translation's first words are not shared between sources
    a, b = (suggester.suggest("", source=src) for src in ("I would like tea.", "The weather is nice."))
    assert [s.prob for s in a] != pytest.approx([s.prob for s in b])
    session = suggester.session("I would like a cup of tea.")
    for text in ("", "I", "I would like a cup", "I would like a cup of t"):
        want = suggester.suggest(text, source="I would like a cup of tea.")
        assert [s.word for s in session.suggest(text)] == [s.word for s in want]
    with pytest.raises(UserError, match="give the source sentence"):
        suggester.session()


def test_source_with_a_language_model_is_an_error(trained):
    from seq2seq_lstm.errors import UserError

    with pytest.raises(UserError, match="language model; --source needs a translation model"):
        trained.session("Hallo")


# ------------------------------------------------------------------------------------------------
# Keystroke evaluation


def test_simulated_keystrokes_by_hand():
    sentence = "I like tea."
    spans = word_spans(sentence)
    # "I" offered at once (1 key, space free), "like" never (4 + space), "tea" after "t" (2), "." (1)
    assert simulate_keystrokes(sentence, spans, [0, None, 1]) == 1 + 5 + 2 + 1
    assert simulate_keystrokes(sentence, spans, [None, None, None]) == len(sentence)
    # offered only once the word is typed in full is no saving: typed in full, the space is typed
    assert simulate_keystrokes(sentence, spans, [1, 4, 3]) == len(sentence)


class ScriptedPredictor:
    """Suggests from one fixed ranked list, filtered by the typed characters; P(word) = 1/4 if listed."""

    RANKED = ["tea", "I", "like", "a"]

    def session(self, source=None):
        return self

    def suggest(self, text, k=None):
        partial = parse_typed(text, 1000).partial
        return [Suggestion(w, 0.25) for w in self.RANKED if w.startswith(partial)][:k]

    def word_log_prob(self, text, word):
        return math.log(0.25) if word in self.RANKED else -math.inf


def test_evaluation_metrics_by_hand():
    report = evaluate_suggestions(ScriptedPredictor(), ["I like tea.", "", "I like cake."], bootstrap=200)
    m = {name: metric.value for name, metric in report.metrics.items()}
    assert (report.sentences, report.words) == (2, 6)
    # nothing typed: ranks I=2, like=3, tea=1 | I=2, like=3, cake absent
    assert m["top1@0"] == pytest.approx(1 / 6)
    assert m["top3@0"] == pytest.approx(5 / 6)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 + 1 / 2 + 1 / 3 + 0) / 6)
    # one letter typed (words longer than one letter): like, tea, like hit; cake not
    assert m["top1@1"] == pytest.approx(3 / 4)
    # keys: sentence 1: I(1) like(1) tea(1) .(1) = 4 of 11; sentence 2: I(1) like(1) cake(4) .(1) = 7 of 12
    assert m["keystroke_savings"] == pytest.approx(1 - 11 / 23)
    # perplexity: five words at 1/4, "cake" floored at 1e-6
    assert m["word_perplexity"] == pytest.approx(math.exp(-(5 * math.log(0.25) + math.log(1e-6)) / 6))
    assert m["floored_words"] == pytest.approx(1 / 6)
    for metric in report.metrics.values():
        assert metric.lo <= metric.value + 1e-12 and metric.value <= metric.hi + 1e-12
    assert "keystroke_savings" in report.format_table() and report.to_dict()["words"] == 6


def test_evaluation_refuses_text_without_words_and_bootstrap_beyond_its_bounds(monkeypatch):
    from seq2seq_lstm.errors import UserError
    from seq2seq_lstm.suggest import keystrokes as suggest_eval

    # before: a table of zeros (keystroke savings 100%, perplexity 1) for nothing scored
    for sentences in ([], ["", "   "], ["...", "!?"]):
        with pytest.raises(UserError, match="^there are no words to score: every sentence is empty or only"):
            evaluate_suggestions(ScriptedPredictor(), sentences)
    for bootstrap in (-1, 100_001):
        with pytest.raises(UserError, match=f"^--bootstrap is {bootstrap}; give 0 to 100000 resamples$"):
            evaluate_suggestions(ScriptedPredictor(), ["I like tea."], bootstrap=bootstrap)
    # every resample is held at once (16 bytes per resample and sentence): over the limit, refused up front
    monkeypatch.setattr(suggest_eval, "BOOTSTRAP_MEMORY_LIMIT", 2**20)
    with pytest.raises(UserError) as error:
        evaluate_suggestions(ScriptedPredictor(), ["I like tea."] * 100, bootstrap=1000)
    assert str(error.value) == (
        "--bootstrap 1000 on 100 sentences would take about 2 MiB of memory (the limit is 1 MiB); "
        "give at most 655 resamples"
    )
    assert evaluate_suggestions(ScriptedPredictor(), ["I like tea."] * 100, bootstrap=655).sentences == 100


def test_evaluation_of_the_trained_model(trained):
    report = evaluate_suggestions(trained, SENTENCES[:5], bootstrap=100)
    m = {name: metric.value for name, metric in report.metrics.items()}
    # it has learned these very sentences: most words are offered before a letter is typed
    assert m["top3@0"] > 0.8 and m["top3@2"] > 0.9 and m["keystroke_savings"] > 0.5
    assert m["word_perplexity"] < 3 and m["floored_words"] == 0.0


# ------------------------------------------------------------------------------------------------
# The Kneser-Ney baseline, scored by the same code


def _kneser_ney_module():
    from benchmark_module import load_benchmark, unload_benchmark

    module = load_benchmark("kneser_ney_baseline")
    unload_benchmark("kneser_ney_baseline")
    return module


def test_kneser_ney_matches_nltk():
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    kn = _kneser_ney_module()
    fast = kn.KneserNeySuggester(order=3, discount=0.75).fit(SENTENCES)
    reference = KneserNeyInterpolated(3, discount=0.75)
    reference.fit(*padded_everygram_pipeline(3, [kn.words_of(s) for s in SENTENCES]))
    vocab = [w for w in reference.vocab if w != "<UNK>"]
    for context in [(), ("a", "cup"), ("cup", "of"), ("unseen", "of"), ("<s>", "<s>")]:
        for word in vocab:
            assert fast.model.score(word, context) == pytest.approx(reference.score(word, context), abs=1e-12)


def test_kneser_ney_suggests_through_the_same_interface():
    kn = _kneser_ney_module()
    model = kn.KneserNeySuggester(order=3).fit(SENTENCES)
    assert model.suggest("She made a cup of ")[0].word == "tea"
    assert all(s.word.startswith("w") for s in model.suggest("The w", k=5))
    assert model.suggest("x" * 100_000) == [] and isinstance(model.suggest("\x00 日本"), list)
    assert model.word_log_prob("a cup of ", "zebra") == -math.inf
    report = evaluate_suggestions(model, SENTENCES[:5], bootstrap=50)
    assert report.words == sum(len(word_spans(s)) for s in SENTENCES[:5])
    assert report.metrics["top3@0"].value > 0.3


# ------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def cli_suggester(trained, monkeypatch):
    load = classmethod(lambda cls, directory, dtype="float32": trained)
    monkeypatch.setattr(Suggester, "from_checkpoint", load)
    from seq2seq_lstm.cli import main

    return main


def test_cli_suggest_text_and_json(cli_suggester):
    result = CliRunner().invoke(cli_suggester, ["suggest", "--checkpoint", "run", "a cup of "])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split("\t")[0] == "tea"
    result = CliRunner().invoke(
        cli_suggester, ["suggest", "-m", "run", "-k", "2", "--format", "json", "The wea"]
    )
    data = json.loads(result.output)
    assert data["text"] == "The wea" and len(data["suggestions"]) <= 2
    assert all(s["word"].startswith("wea") for s in data["suggestions"])


def test_cli_suggest_reads_lines(cli_suggester):
    result = CliRunner().invoke(
        cli_suggester, ["suggest", "-m", "run", "--format", "json"], input="a cup of \nI like 日\n"
    )
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.output.splitlines())
    assert first["suggestions"][0]["word"] == "tea" and second["suggestions"] == []


def test_cli_suggest_source_with_a_language_model(cli_suggester):
    result = CliRunner().invoke(cli_suggester, ["suggest", "-m", "run", "--source", "Hallo", "a"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: this checkpoint is a language model; --source needs a translation model"
    )


def test_cli_suggest_eval(cli_suggester, tmp_path):
    test = tmp_path / "test.txt"
    test.write_text("\n".join(SENTENCES[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "report.json"
    args = ["suggest-eval", "-m", "run", str(test), "--bootstrap", "20", "-o", str(out), "--format", "json"]
    result = CliRunner().invoke(cli_suggester, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["words"] == sum(len(word_spans(s)) for s in SENTENCES[:3])
    sources = tmp_path / "src.txt"
    sources.write_text("one\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli_suggester, ["suggest-eval", "-m", "run", str(test), "--sources", str(sources)]
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: {sources} has 1 lines but {test} has 3; give one source per sentence"
    )


def test_cli_suggest_missing_checkpoint(tmp_path):
    from seq2seq_lstm.cli import main

    missing = tmp_path / "nope"
    result = CliRunner().invoke(main, ["suggest", "-m", str(missing), "hello"])
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: model {missing} does not exist; pass a run directory written by `s2s train`\n"
    )


@pytest.mark.parametrize("text", ["", "\n\n  \n", "...\n!?\n"])
def test_cli_suggest_eval_refuses_a_file_without_words(cli_suggester, tmp_path, text):
    test = tmp_path / "test.txt"
    test.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli_suggester, ["suggest-eval", "-m", "run", str(test)])
    assert result.exit_code == 1, result.output  # was 0, with a table of zeros
    assert result.output.strip() == (
        f"Error: {test} has no words to score (an empty file, blank lines or only punctuation); "
        "give one sentence a line"
    )
    test.write_text("\n\n" + "\n".join(SENTENCES[:3]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli_suggester, ["suggest-eval", "-m", "run", str(test), "--max-sentences", "2"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: the first 2 lines of {test} have no words; raise --max-sentences"


def test_cli_suggest_eval_bounds_the_bootstrap(cli_suggester, tmp_path):
    from seq2seq_lstm.cli import suggest as cli_suggest
    from seq2seq_lstm.suggest import keystrokes as suggest_eval

    test = tmp_path / "test.txt"
    test.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli_suggester, ["suggest-eval", "-m", "run", str(test), "--bootstrap", "100001"]
    )
    assert result.exit_code == 1  # was accepted: 10**8 ran for minutes
    assert result.output == (
        "Error: Invalid value for '--bootstrap': 100001 is not in the range 0<=x<=100000; "
        "see 's2s suggest-eval --help'\n"
    )
    assert cli_suggest.MAX_BOOTSTRAP == suggest_eval.MAX_BOOTSTRAP


def test_cli_suggest_eval_writes_its_report_with_stdout_closed(cli_suggester, tmp_path, monkeypatch):
    import click

    test = tmp_path / "test.txt"
    test.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    out = tmp_path / "report.json"
    monkeypatch.setattr(sys, "stdout", None)  # what Python sets when the process starts with `>&-`
    args = ["suggest-eval", "-m", "run", str(test), "--bootstrap", "10"]
    cli_suggester.main([*args, "-o", str(out)], standalone_mode=False)
    assert json.loads(out.read_text())["sentences"] == 1  # the report is in the file: nothing was lost
    with pytest.raises(click.ClickException, match="^standard output is closed"):  # was: printed nowhere
        cli_suggester.main(args, standalone_mode=False)
