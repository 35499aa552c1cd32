"""Adaptation to the user: the commit tracker, the cache model's counts and mixture (values worked out
by hand), case, proposals for a half-typed word, documents and resets, user models and the CLI."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from cli_results import ok, one_error_line
from click.testing import CliRunner
from test_suggest import SENTENCES, CountingLM, TinyLM, _train

from seq2seq_lstm.cli import main
from seq2seq_lstm.config import TokenizerConfig
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.suggest.adapt import Adapter, CommitTracker, build_adapter
from seq2seq_lstm.suggest.cache import START, CacheAdapter, CacheSettings
from seq2seq_lstm.suggest.keystrokes import evaluate_adaptation, score_documents, split_documents
from seq2seq_lstm.suggest.suggester import Suggester
from seq2seq_lstm.suggest.tune import SharedAnswers, tune_cache
from seq2seq_lstm.suggest.user_model import FORMAT, UserModel, tokenizer_fingerprint
from seq2seq_lstm.suggest.words import Typed

FIXED = dict(learn_rate=0.0)  # a fixed weight: the mixture's values can be worked out by hand

# A "document" that keeps coming back to a name the network has never seen.
DOCUMENT = [
    "I would like a cup of tea with Zorblax.",
    "Zorblax made a cup of tea for him.",
    "We had a cup of tea and Zorblax had some cake.",
    "The weather is nice for Zorblax today.",
    "Please close the door when Zorblax leaves.",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    cfg = TokenizerConfig(vocab_size=90, byte_fallback=False, input_sentence_size=0)
    return Tokenizer.train(SENTENCES * 4, None, cfg)


@pytest.fixture(scope="module")
def trained(tokenizer) -> Suggester:
    torch.manual_seed(0)
    return Suggester(_train(TinyLM(tokenizer.tgt_vocab_size), tokenizer), tokenizer)


def cache(**settings) -> CacheAdapter:
    return CacheAdapter(CacheSettings(**settings))


# ------------------------------------------------------------------------------------------------
# What a session commits


def test_commit_tracker_hands_each_stretch_over_once():
    t = CommitTracker()
    assert t.stretch("I li") == ("I ", True)  # "li" is still being typed
    assert t.stretch("I like") == ("", False)
    assert t.stretch("I like t") == ("like ", False)
    assert t.stretch("I like tea.", final=True) == ("tea.", False)
    t = CommitTracker()
    t.stretch("We had tea ")
    assert t.stretch("We had cake ") == ("cake ", False)  # an edit: from the start of the changed word


def test_the_session_commits_finished_words_before_answering(trained):
    log = []

    class Spy(CacheAdapter):
        def commit(self, text, *, start, end):
            log.append((text, start, end))
            super().commit(text, start=start, end=end)

    session = trained.session(adapter=Spy())
    for i in range(len("a cup of tea")):
        session.suggest("a cup of tea"[:i])
    session.finish("a cup of tea.")
    assert log == [("a ", True, False), ("cup ", False, False), ("of ", False, False), ("tea.", False, True)]
    assert isinstance(Spy(), Adapter)


class WeightChanger(CacheAdapter):
    """Says its weights changed at every commit (as dynamic evaluation does), rescoring as the cache."""

    changes_weights = True

    def commit(self, text, *, start, end):
        super().commit(text, start=start, end=end)
        self.version += 1


def test_a_rescoring_adapter_keeps_the_cached_steps_and_a_weight_changer_drops_them(trained, tokenizer):
    for adapter, restep in ((cache(), False), (WeightChanger(), True)):
        counting = CountingLM(trained.model)
        session = Suggester(counting, tokenizer).session(adapter=adapter)
        session.suggest("She made a cup of te")
        session.prefetch("She made a cup of te")
        before = counting.tokens
        session.suggest("She made a cup of tea")  # prefetched, nothing committed: no step either way
        assert counting.tokens == before
        session.prefetch("She made a cup of tea")  # the space after "tea" is prefetched too
        before = counting.tokens
        session.suggest("She made a cup of tea ")  # commits "tea "
        assert (counting.tokens > before) == restep, type(adapter).__name__


# ------------------------------------------------------------------------------------------------
# The cache model: values by hand


def test_decayed_counts_and_witten_bell_pairs_by_hand():
    c = cache(decay=0.5, **FIXED)
    c.commit("a b a", start=True, end=False)
    # clock 3: a at 1 and 3 -> 0.25 + 1; b at 2 -> 0.5; total 1.75
    assert c.clock == 3 and c.total == pytest.approx(1.75)
    assert c.prob("a", "zzz") == pytest.approx(1.25 / 1.75)  # no pairs after "zzz": the word alone
    # after <s>: one pair (<s>, a) of decayed count 0.25, one distinct word: share 0.25 / 1.25 = 0.2
    assert c.prob("a", START) == pytest.approx(0.2 * 1.0 + 0.8 * 1.25 / 1.75)
    # after a: (a, b) of count 0.5: share 0.5 / 1.5 = 1/3
    assert c.prob("b", "a") == pytest.approx(1 / 3 + 2 / 3 * 0.5 / 1.75)
    assert c.prob("c", "a") == 0.0


def test_the_mixture_by_hand():
    c = cache(weight=0.2, decay=1.0, **FIXED)
    c.commit("tea cake tea", start=True, end=True)
    words = {"coffee": 0.5, "tea": 0.1}
    out = c.rescore(Typed("I like", "", "space"), words)
    # previous word "like" has no pairs: P_cache(tea) = 2/3, P_cache(cake) = 1/3
    assert out == pytest.approx({"coffee": 0.4, "tea": 0.08 + 0.2 * 2 / 3, "cake": 0.2 / 3})
    assert words == {"coffee": 0.5, "tea": 0.1}  # the beam's words are left alone
    assert cache(weight=0.0, min_weight=0.0, **FIXED).rescore(Typed("I", "", "space"), words) == words


def test_the_weight_learns_from_committed_words():
    c = cache(weight=0.2, learn_rate=0.5, decay=1.0)
    c.commit("tea ", start=True, end=False)
    c.rescore(Typed("tea", "", "space"), {"cake": 0.3})  # the network missed "tea"
    c.commit("tea ", start=False, end=False)
    # responsibility of the cache for "tea": P_lm = 0, so 1; the weight moves halfway to it
    assert c.weight == pytest.approx(0.6)  # 0.5 * 0.2 + 0.5 * 1, capped at max_weight 0.6
    c.rescore(Typed("tea tea", "", "space"), {"cake": 0.9})
    c.commit("cake ", start=False, end=False)  # not in the cache: responsibility 0
    assert c.weight == pytest.approx(0.3)


def test_case_the_users_casing_wins_and_sentence_starts_are_capitalized():
    c = cache(**FIXED)
    c.commit("I use NumPy daily. numpy is fast. The end.", start=True, end=True)
    mid, start = Typed("I like", "", "space"), Typed("", "", "space")
    assert "NumPy" in c.rescore(mid, {}) and "numpy" not in c.rescore(mid, {})
    assert "NumPy" in c.rescore(Typed("I like", "num", "space"), {})  # the user's own casing
    # "The" was only seen at a sentence start: lowercase where the network offers "the", else as seen
    assert "the" in c.rescore(mid, {"the": 0.1}) and "The" in c.rescore(mid, {})
    assert "I" in c.rescore(start, {}) and "Daily" in c.rescore(start, {})  # capitalized at a start
    assert "daily" in c.rescore(Typed("", "d", "space"), {})  # the typed letters stay as typed


def test_a_cached_word_is_proposed_for_a_half_typed_prefix(trained):
    session = trained.session(adapter=cache())
    assert "Zorblax" not in [s.word for s in session.suggest("I like Zo", k=3)]
    session.suggest("I met Zorblax today. ")
    assert [s.word for s in session.suggest("I like Zo", k=3)][0] == "Zorblax"
    assert all(s.word.startswith("Zo") for s in session.suggest("I like Zo", k=3))


def test_adapted_word_log_prob_mixes_in_the_cache(trained):
    adapter = cache(weight=0.2, **FIXED)
    plain = trained.session().word_log_prob("a cup of ", "tea")
    adapter.commit("tea", start=True, end=True)
    adapted = trained.session(adapter=adapter).word_log_prob("a cup of ", "tea")
    # "of" has no pairs in the cache: P_cache(tea) = 1
    assert math.exp(adapted) == pytest.approx(0.8 * math.exp(plain) + 0.2, rel=1e-5)


# ------------------------------------------------------------------------------------------------
# Documents


def test_split_documents():
    assert split_documents(["a b", "c d", "", "", "e f", ""]) == [["a b", "c d"], ["e f"]]
    assert split_documents(["a", "b"]) == [["a", "b"]]


def test_the_adapter_is_reset_between_documents(trained):
    events = []

    class Spy(CacheAdapter):
        def reset(self):
            events.append("reset")
            super().reset()

        def commit(self, text, *, start, end):
            events.append(text)
            super().commit(text, start=start, end=end)

    spy = Spy()
    events.clear()
    score_documents(trained, [["a cup of tea."], ["I think so."]], spy)
    assert events == ["reset", "a ", "cup ", "of ", "tea.", "reset", "I ", "think ", "so."]


def test_a_repeated_rare_word_raises_keystroke_savings_end_to_end(trained):
    report = evaluate_adaptation(SharedAnswers(trained), [DOCUMENT], cache(), bootstrap=200)
    without, with_, diff = report.metrics["keystroke_savings"]
    assert with_.value > without.value + 0.03 and diff.lo > 0
    assert report.metrics["top3@2"][1].value > report.metrics["top3@2"][0].value
    assert report.unit == "sentences" and report.sentences == len(DOCUMENT)
    assert "keystroke_savings" in report.format_table() and report.to_dict()["adapt"] == "cache"


def test_shared_answers_give_the_results_of_fresh_sessions(trained):
    docs = [DOCUMENT[:3], DOCUMENT[3:]]
    fresh = evaluate_adaptation(trained, docs, cache(), bootstrap=100)
    shared = evaluate_adaptation(SharedAnswers(trained), docs, cache(), bootstrap=100)
    for name, (a, b, _) in fresh.metrics.items():
        got = shared.metrics[name]
        assert (got[0].value, got[1].value) == pytest.approx((a.value, b.value), rel=1e-6), name
    assert shared.unit == "documents"


def test_no_harm_when_nothing_repeats(trained):
    # the fixture sentences typed in order: little repeats but "a cup of"; the cache must not hurt
    report = evaluate_adaptation(SharedAnswers(trained), [SENTENCES[5:]], cache(), bootstrap=0)
    assert report.metrics["keystroke_savings"][2].value >= -0.003


def test_tune_cache_ranks_weights(trained):
    grid = [CacheSettings(weight=w, min_weight=0.0, learn_rate=0.0) for w in (0.0, 0.3)]
    results = tune_cache(trained, [DOCUMENT], grid)
    assert [s.weight for s, _ in results] == [0.3, 0.0] and results[0][1] > results[1][1]


# ------------------------------------------------------------------------------------------------
# User models


def test_user_model_round_trip(trained, tmp_path):
    path = tmp_path / "me.json"
    user = UserModel(path, trained)
    trained.session(adapter=user.adapter).suggest("I met Zorblax today. Zorblax is nice. ")
    user.save()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and data["tokenizer"] == tokenizer_fingerprint(trained.tokenizer)
    again = UserModel(path, trained)
    assert again.adapter.state() == user.adapter.state()
    typed = Typed("I like", "Zo", "space")
    assert again.adapter.rescore(typed, {}) == user.adapter.rescore(typed, {}) != {}
    assert not list(tmp_path.glob(".*.tmp"))  # nothing else is left beside it


def test_the_cache_is_bounded_oldest_first(tmp_path, trained):
    c = cache(max_words=10, max_pairs=10)
    c.commit(" ".join(f"w{i}" for i in range(30)), start=True, end=True)
    assert len(c.words) <= 10 and len(c.pairs) <= 10
    assert "w29" in c.words and "w0" not in c.words  # the least recently used went first
    user = UserModel(tmp_path / "u.json", trained, {"max_words": 10, "max_pairs": 10})
    user.adapter.load_state(c.state())
    user.save()
    small = UserModel(tmp_path / "u.json", trained, {"max_words": 5, "max_pairs": 5})
    assert len(small.adapter.words) <= 5 and "w29" in small.adapter.words  # over the bound: trimmed


def test_forget_erases_the_file(trained, tmp_path):
    path = tmp_path / "me.json"
    path.write_text("not even json", encoding="utf-8")
    user = UserModel(path, trained, forget=True)
    assert user.forgotten and not path.exists() and user.adapter.words == {}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{", "is not a user model (not JSON"),
        (b"\xff\xfe", "is not a user model (not UTF-8"),
        (json.dumps({"name": "something else"}).encode(), 'is not a user model (no "format"'),
        (json.dumps({"format": FORMAT, "version": 99}).encode(), "has format version 99"),
        (json.dumps({"format": FORMAT, "version": 1, "adapter": "cache", "tokenizer": "sha256:0"}).encode(),
         "was learned with another tokenizer"),
    ],
)  # fmt: skip
def test_bad_user_models_are_refused_in_one_line_and_left_alone(trained, tmp_path, content, fragment):
    path = tmp_path / "me.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match="pass --forget to erase it") as e:
        UserModel(path, trained)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == content


def test_a_damaged_state_is_refused(trained, tmp_path):
    path = tmp_path / "me.json"
    user = UserModel(path, trained)
    user.adapter.commit("tea cake", start=True, end=True)
    user.save()
    data = json.loads(path.read_text(encoding="utf-8"))
    data["state"]["words"][0][2] = 10**9  # seen after the clock
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError, match="is damaged"):
        UserModel(path, trained)


def test_a_read_only_location_is_refused_before_any_work(trained, tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(UserError, match="cannot write in"):
        UserModel(tmp_path / "me.json", trained)


def test_a_failed_save_is_one_line_and_leaves_the_old_file(trained, tmp_path, monkeypatch):
    path = tmp_path / "me.json"
    user = UserModel(path, trained)
    user.save()
    before = path.read_bytes()
    user.adapter.commit("tea", start=True, end=True)

    def full_disk(tmp):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("seq2seq_lstm.files.fsync", full_disk)
    with pytest.raises(UserError, match="cannot be written"):
        user.save()
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_build_adapter_names_bad_choices(trained):
    assert build_adapter("none", trained) is None
    assert build_adapter("cache", trained, {"weight": 0.3}).settings.weight == 0.3
    with pytest.raises(UserError, match="no setting 'wieght'"):
        build_adapter("cache", trained, {"wieght": 0.3})
    with pytest.raises(UserError, match="weight"):
        build_adapter("cache", trained, {"weight": 1.5})


# ------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def cli(trained, monkeypatch):
    load = classmethod(lambda cls, directory, dtype="float32": trained)
    monkeypatch.setattr(Suggester, "from_checkpoint", load)
    return main


def test_cli_user_model_learns_saves_and_forgets(cli, tmp_path):
    path = str(tmp_path / "me.json")
    run = CliRunner().invoke
    first = ok(run(cli, ["suggest", "-m", "run", "--user-model", path, "I like Zo"]))
    assert "Zorblax" not in first
    ok(run(cli, ["suggest", "-m", "run", "--user-model", path, "I met Zorblax today. "]))
    assert (
        ok(run(cli, ["suggest", "-m", "run", "--user-model", path, "I like Zo"])).split("\t")[0] == "Zorblax"
    )
    result = run(cli, ["suggest", "-m", "run", "--user-model", path, "--forget"])
    assert result.exit_code == 0 and "erased" in result.stderr and not os.path.exists(path)
    lines = "I met Zorblax today. \nI like Zo\n"
    args = ["suggest", "-m", "run", "--user-model", path, "--no-interactive", "--format", "json"]
    answers = [json.loads(line) for line in ok(run(cli, args, input=lines)).splitlines()]
    assert answers[1]["suggestions"][0]["word"] == "Zorblax" and os.path.exists(path)


def test_cli_forget_needs_a_user_model(cli):
    assert one_error_line(CliRunner().invoke(cli, ["suggest", "-m", "run", "--forget"])) == (
        "Error: --forget needs --user-model FILE"
    )


def test_cli_suggest_eval_adapt_documents_and_tune(cli, tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCUMENT[:3]) + "\n\n" + "\n".join(DOCUMENT[3:]) + "\n", encoding="utf-8")
    run = CliRunner().invoke
    out = ok(run(cli, ["suggest-eval", "-m", "run", str(docs), "--adapt", "cache", "--documents",
                       "--bootstrap", "50", "--format", "json"]))  # fmt: skip
    data = json.loads(out)
    assert data["documents"] == 2 and data["bootstrap_unit"] == "documents"
    ks = data["metrics"]["keystroke_savings"]
    assert ks["with"]["value"] > ks["without"]["value"]
    assert ks["difference"]["value"] == pytest.approx(ks["with"]["value"] - ks["without"]["value"])
    out = ok(run(cli, ["suggest-eval", "-m", "run", str(docs), "--adapt", "cache", "--documents", "--tune",
                       "0,0.3"]))  # fmt: skip
    assert [line.split("\t")[0] for line in out.splitlines()] == ["weight 0.3", "weight 0"]
