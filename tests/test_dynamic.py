"""Dynamic evaluation (seq2seq_lstm.suggest.dynamic): learning from committed text, reset, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from test_suggest import SENTENCES, _train

from seq2seq_lstm.config import ModelConfig, TokenizerConfig
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.decoding.quantize import convert_weights
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.model.seq2seq import LanguageModel
from seq2seq_lstm.suggest.adapt import build_adapter
from seq2seq_lstm.suggest.dynamic import DynamicAdapter, DynamicSettings
from seq2seq_lstm.suggest.suggester import Suggester

NEW_SENTENCE = "She likes the cheese."  # "cheese": letters the fixture has, a word it never uses


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    cfg = TokenizerConfig(vocab_size=90, byte_fallback=False, input_sentence_size=0)
    return Tokenizer.train(SENTENCES * 4, None, cfg)


@pytest.fixture(scope="module")
def lm(tokenizer) -> LanguageModel:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=48, dec_layers=1, dropout=0.0, cell="lstm", tie_output=True)
    return _train(LanguageModel(cfg, tokenizer.tgt_vocab_size), tokenizer, steps=150)


def _type(suggester: Suggester, adapter, sentence: str) -> None:
    """Type ``sentence`` keystroke by keystroke in a new session and finish it (commits it all)."""
    session = suggester.session(adapter=adapter)
    for end in range(1, len(sentence) + 1):
        session.suggest(sentence[:end])
    session.finish(sentence)


def _outputs(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.encode_tgt(["I would like a cup of tea."])[0]
    return model(torch.tensor([[1, *ids]]))  # (1, T, V) logits


def test_a_repeated_rare_word_becomes_more_probable(lm, tokenizer):
    suggester = Suggester(lm, tokenizer)
    adapter = build_adapter("dynamic", suggester, {"lr": 0.05, "budget_ms": 1e6})
    before = suggester.session().word_log_prob("She likes the ", "cheese")
    waiting = suggester.session(adapter=adapter)  # opened before the learning: must see it all the same
    seen = [before]
    for _ in range(3):
        _type(suggester, adapter, NEW_SENTENCE)
        seen.append(suggester.session(adapter=adapter).word_log_prob("She likes the ", "cheese"))
    assert seen == sorted(seen) and seen[-1] > before + 5.0, seen  # each time likelier, e^5 times in all
    assert waiting.word_log_prob("She likes the ", "cheese") == pytest.approx(seen[-1], abs=1e-5)
    assert suggester.session().word_log_prob("She likes the ", "cheese") == before  # the base is untouched
    assert adapter.stats.sentences == 3 and adapter.stats.words == 12 and adapter.stats.steps == 3


def test_reset_restores_the_trained_outputs_exactly(lm, tokenizer):
    suggester = Suggester(lm, tokenizer)
    adapter = DynamicAdapter(lm, tokenizer, DynamicSettings(lr=0.5, steps=2, budget_ms=1e6))
    want = _outputs(lm, tokenizer)
    plain = suggester.session().suggest("She likes the ")
    _type(suggester, adapter, NEW_SENTENCE)
    assert not torch.equal(_outputs(adapter.model(lm), tokenizer), want)
    version = adapter.version
    adapter.reset()
    assert adapter.version > version  # sessions re-step with the restored weights
    assert torch.equal(_outputs(adapter.model(lm), tokenizer), want)
    assert suggester.session(adapter=adapter).suggest("She likes the ") == plain


def test_sentences_are_learned_when_they_end(lm, tokenizer):
    adapter = DynamicAdapter(lm, tokenizer, DynamicSettings(budget_ms=1e6))
    adapter.commit("We had tea. We ", start=True, end=False)  # one sentence finished, one begun
    assert adapter.stats.sentences == 1 and adapter.state()["sentences"] == ["We had tea. "]
    adapter.commit("had cake", start=False, end=True)
    assert adapter.state()["sentences"] == ["We had tea. ", "We had cake"]


def test_the_time_budget_skips_steps(lm, tokenizer):
    adapter = DynamicAdapter(lm, tokenizer, DynamicSettings(steps=3, budget_ms=1e-6))
    adapter.commit(NEW_SENTENCE, start=True, end=True)  # no step time known yet: the first step runs
    version = adapter.version
    for _ in range(3):
        adapter.commit(NEW_SENTENCE, start=True, end=True)
    assert adapter.stats.steps <= 2 and adapter.stats.skipped >= 3 * 3 + 1
    assert adapter.version <= version + 1  # skipped steps change no weight


def test_a_saved_state_replays_to_the_same_weights(lm, tokenizer):
    settings = DynamicSettings(lr=0.3, budget_ms=1e6)
    first = DynamicAdapter(lm, tokenizer, settings)
    for sentence in ("We had tea. ", NEW_SENTENCE):
        first.commit(sentence, start=True, end=True)
    second = DynamicAdapter(lm, tokenizer, settings)
    second.load_state(first.state())
    assert torch.equal(_outputs(first.model(lm), tokenizer), _outputs(second.model(lm), tokenizer))
    with pytest.raises(ValueError, match="'sentences': a list of strings"):
        second.load_state({"sentences": [1, 2]})


@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_int8_and_bfloat16_weights_are_refused_in_one_line(lm, tokenizer, dtype):
    suggester = Suggester(convert_weights(copy.deepcopy(lm), dtype), tokenizer)
    with pytest.raises(
        UserError, match=r"^--adapt dynamic takes gradient steps on float32 weights; use --dtype float32"
    ):
        build_adapter("dynamic", suggester, {})


def test_bad_settings_are_named(lm, tokenizer):
    suggester = Suggester(lm, tokenizer)
    with pytest.raises(UserError, match="dynamic evaluation has no setting 'weight'; choose from budget_ms"):
        build_adapter("dynamic", suggester, {"weight": 0.1})
    with pytest.raises(UserError, match="steps must be a whole number >= 1; got 0"):
        build_adapter("dynamic", suggester, {"steps": 0.0})
    with pytest.raises(UserError, match="lr must be a positive number; got -1"):
        DynamicSettings(lr=-1)


def test_the_adaptation_report_gives_the_cost_per_committed_word(lm, tokenizer):
    from seq2seq_lstm.suggest.keystrokes import evaluate_adaptation

    suggester = Suggester(lm, tokenizer)
    adapter = DynamicAdapter(lm, tokenizer, DynamicSettings(budget_ms=1e6))
    docs = [["We had a cup of tea.", "She made a cup of tea."], [NEW_SENTENCE]]
    report = evaluate_adaptation(suggester, docs, adapter, bootstrap=10)
    cost = report.settings["adapter_cost"]
    assert (cost["sentences"], cost["words"], cost["steps"]) == (3, 16, 3)
    assert cost["ms_per_word"] == pytest.approx(1000 * cost["seconds"] / 16, abs=0.1)  # seconds are rounded
