"""Scoring: scores equal sacrebleu's API and its published values; reading and ranking."""

import math

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq_lstm.errors import UserError
from seq2seq_lstm.scoring import metrics as ev
from seq2seq_lstm.scoring import significance, worst

# sacrebleu's README example (its test/test_bleu.py): two reference streams, three sentences
README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]

# a small corpus with punctuation, case, non-Latin scripts and an empty hypothesis
HYPS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "",
    "Il a dit: « Bonjour, le monde ».",
    "我们今天去公园散步。",
    "It costs $3.50 -- not 4,000 EUR.",
]
REFS = [
    [
        "The cat is sitting on the mat.",
        "The quick brown fox jumped over the lazy dog.",
        "Nothing was said.",
        "Il a dit : « Bonjour le monde ! »",
        "我们今天去公园散步了。",
        "It costs $3.50, not 4,000 EUR.",
    ],
    [
        "A cat sat on the mat.",
        "a quick brown fox jumps over a lazy dog.",
        "He said nothing.",
        "Il dit « bonjour, monde ».",
        "今天我们去公园散步。",
        "The price is $3.50 and not 4,000 euros.",
    ],
]


def available_tokenizers() -> list:
    """Every sacreBLEU tokenizer, those that cannot run here marked skip with the reason."""
    params = []
    for name in ev.tokenizer_names():
        problem = ev.tokenizer_problem(name)
        marks = [pytest.mark.skip(reason=problem)] if problem else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


# ------------------------------------------------------------------------------------- known values


@pytest.mark.parametrize(
    "hyps, tokenize, expected",
    [
        (README_HYPS, "13a", 48.530827),
        (README_HYPS, "none", 49.1919566),
        (README_HYPS, "intl", 43.91623493),
        (["", "", ""], "13a", 0.0),  # empty hypotheses are scored, not dropped
    ],
)
def test_bleu_matches_sacrebleu_published_values(hyps, tokenize, expected):
    (result,) = ev.corpus_scores(hyps, README_REFS, ev.ScoreOptions(tokenize=tokenize))
    assert result.name == "BLEU"
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert (
        result.signature
        == f"nrefs:2|case:mixed|eff:no|tok:{tokenize}|smooth:exp|version:{sacrebleu.__version__}"
    )


def test_core_tokenizers_run_offline():
    # the skip list of the parity tests may only hold tokenizers with optional downloads or packages
    for name in ["none", "zh", "13a", "intl", "char"]:
        assert ev.tokenizer_problem(name) is None


def test_tokenizer_choices_are_sacrebleus_table():
    assert ev.tokenizer_names() == tuple(sacrebleu.metrics.bleu._TOKENIZERS)
    assert set(ev.METRICS) == {m.lower() for m in sacrebleu.metrics.METRICS}


# ------------------------------------------------------------------------------------- API parity


@pytest.mark.parametrize("tokenize", available_tokenizers())
@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("nrefs", [1, 2])
def test_bleu_equals_sacrebleu_api(tokenize, lowercase, nrefs):
    refs = REFS[:nrefs]
    (ours,) = ev.corpus_scores(HYPS, refs, ev.ScoreOptions(tokenize=tokenize, lowercase=lowercase))
    metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    theirs = metric.corpus_score(HYPS, refs)
    assert ours.score == theirs.score
    assert ours.signature == str(metric.get_signature())
    assert ours.text(2) == theirs.format(2, signature=str(metric.get_signature()))


@pytest.mark.parametrize("word_order", [0, 2])
def test_chrf_and_ter_equal_sacrebleu_api(word_order):
    options = ev.ScoreOptions(metrics=("ter", "chrf"), chrf_word_order=word_order)
    chrf_result, ter_result = ev.corpus_scores(HYPS, REFS, options)  # sacreBLEU's order: by name
    chrf = CHRF(word_order=word_order)
    assert chrf_result.score == chrf.corpus_score(HYPS, REFS).score
    assert chrf_result.name == ("chrF2++" if word_order == 2 else "chrF2")
    assert chrf_result.signature == str(chrf.get_signature())
    ter = TER()
    assert ter_result.score == ter.corpus_score(HYPS, REFS).score
    assert ter_result.signature == str(ter.get_signature())


def test_sentence_scores_equal_sacrebleu_sentence_api():
    rows = ev.sentence_scores(HYPS, REFS, ev.ScoreOptions(metrics=("bleu", "chrf")))
    assert len(rows) == len(HYPS)
    for hyp, *refs, (bleu, chrf) in zip(HYPS, *REFS, rows, strict=True):
        assert bleu.score == sacrebleu.sentence_bleu(hyp, refs).score  # effective order, as sacreBLEU's -sl
        assert "eff:yes" in bleu.signature
        assert chrf.score == sacrebleu.sentence_chrf(hyp, refs).score


def test_aligned_text_output_lines_up_on_equals():
    results = ev.corpus_scores(HYPS, REFS, ev.ScoreOptions(metrics=("bleu", "chrf", "ter")))
    lines = ev.format_scores_text(results, 1).splitlines()
    assert [line.split("|")[0].strip() for line in lines] == ["BLEU", "chrF2", "TER"]
    assert len({line.index(" = ") for line in lines}) == 1


# ------------------------------------------------------------------------------------- significance


def test_paired_bootstrap_equals_sacrebleu_paired_test_and_is_seeded():
    other = ["The cat on mat.", "A fox.", "", "Bonjour.", "我们去公园。", "It costs 4,000."]
    options = ev.ScoreOptions(metrics=("bleu",))
    report = significance.paired_test(("base", other), [("sys", HYPS)], REFS, options, "bs", 200, seed=7)
    again = significance.paired_test(("base", other), [("sys", HYPS)], REFS, options, "bs", 200, seed=7)
    assert report == again
    assert report.systems == ["Baseline: base", "sys"]
    base, system = report.scores["BLEU"]
    assert base.p_value is None and system.p_value is not None and 0 < system.p_value <= 1
    assert system.score == BLEU().corpus_score(HYPS, REFS).score
    assert system.mean is not None and system.ci > 0
    assert "bs:200|seed:7" in report.signatures["BLEU"]
    other_seed = significance.paired_test(("base", other), [("sys", HYPS)], REFS, options, "bs", 200, seed=8)
    assert other_seed.scores["BLEU"][1].mean != system.mean


def test_paired_test_rejects_seed_zero_that_sacrebleu_would_treat_as_unseeded():
    with pytest.raises(UserError, match="positive integer"):
        significance.paired_test(("b", HYPS), [("s", HYPS)], REFS, ev.ScoreOptions(), "ar", 10, seed=0)


# ------------------------------------------------------------------------------------- worst sentences


def test_worst_sentences_rank_by_first_metric():
    reports = worst.worst_sentences(HYPS, REFS, ev.ScoreOptions(metrics=("bleu",)), n=2)
    expected = sorted(
        range(len(HYPS)), key=lambda i: (sacrebleu.sentence_bleu(HYPS[i], [r[i] for r in REFS]).score, i)
    )
    assert [r.line for r in reports] == [i + 1 for i in expected[:2]]
    assert reports[0].line == 3 and reports[0].hypothesis == "" and reports[0].result.score == 0.0
    assert reports[0].references == ["Nothing was said.", "He said nothing."]


def test_worst_sentences_by_ter_are_the_highest():
    sources = [f"src {i}" for i in range(len(HYPS))]
    reports = worst.worst_sentences(
        HYPS, REFS, ev.ScoreOptions(metrics=("ter", "bleu")), n=3, sources=sources
    )
    scores = [r.result.score for r in reports]
    assert scores == sorted(scores, reverse=True)
    assert reports[0].line == 3 and reports[0].result.score == 100.0  # empty hypothesis: every word deleted
    assert reports[0].source == "src 2"


# ------------------------------------------------------------------------------------- reading


def test_parse_lines_reads_like_sacrebleu(tmp_path):
    # split on \n only, strip trailing whitespace (\r too), keep empty lines and a last unterminated line
    assert ev.parse_lines(b"a b \r\n\nc\td\t\n x", "f", "hypothesis") == ["a b", "", "c\td", " x"]
    assert ev.parse_lines(b"\n", "f", "hypothesis") == [""]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "hypothesis file 'f.txt' is empty; it needs one line per sentence"),
        (
            b"ok\nab\xffc\n",
            "hypothesis file 'f.txt' line 2: invalid UTF-8 (byte 0xff at column 3); "
            "fix the file or pass --encoding-errors replace",
        ),
    ],
)
def test_read_lines_rejects_bad_files(tmp_path, monkeypatch, data, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_bytes(data)
    with pytest.raises(UserError) as e:
        ev.read_lines("f.txt", "hypothesis")
    assert str(e.value) == message


def test_check_aligned_names_both_files_and_counts():
    files = [ev.TextFile("hypothesis", "h", ["a"]), ev.TextFile("reference", "r", ["a", "b"])]
    with pytest.raises(UserError) as e:
        ev.check_aligned(files)
    assert str(e.value) == (
        "hypothesis file 'h' has 1 line but reference file 'r' has 2 lines; "
        "each file needs one line per sentence"
    )


def test_options_check_names():
    with pytest.raises(UserError, match="unknown metric 'meteor'"):
        ev.ScoreOptions(metrics=("meteor",))
    with pytest.raises(UserError, match="`tokenize` is 'moses'"):
        ev.ScoreOptions(tokenize="moses")


def test_options_refuse_a_smoothing_value_sacrebleu_cannot_take():
    for value in (-5.0, math.nan, math.inf):
        with pytest.raises(UserError, match=r"^`smooth_value` is .*; give a finite number >= 0$"):
            ev.ScoreOptions(smooth_method="add-k", smooth_value=value)
    assert ev.ScoreOptions(smooth_method="floor", smooth_value=0.0).smooth_value == 0.0
    # why: add-k adds the value to each order's matches and totals, and a negative precision has no
    # logarithm (sacreBLEU's own CLI takes any float and stops with this traceback)
    with pytest.raises(ValueError, match="math domain error"):
        BLEU(smooth_method="add-k", smooth_value=-5).corpus_score(
            ["a b c d e f g h i j"], [["a b c x x x x x"]]
        )


def test_options_bound_the_chrf_orders():
    assert ev.ScoreOptions(chrf_char_order=ev.MAX_CHRF_ORDER, chrf_word_order=ev.MAX_CHRF_ORDER)
    for kw in (
        {"chrf_char_order": ev.MAX_CHRF_ORDER + 1},
        {"chrf_word_order": 10**8},
        {"chrf_char_order": 0},
    ):
        with pytest.raises(
            UserError, match="`chrf_char_order` must be 1 to 100 and `chrf_word_order` 0 to 100"
        ):
            ev.ScoreOptions(**kw)


def test_paired_test_refuses_counts_and_memory_beyond_its_bounds(monkeypatch):
    options = ev.ScoreOptions()
    with pytest.raises(UserError, match=r"^--paired-bs-n is 100001; give 1 to 100000 resamples$"):
        significance.paired_test(("b", HYPS), [("s", HYPS)], REFS, options, "bs", 100_001)
    with pytest.raises(UserError, match=r"^--paired-ar-n is 100001; give 1 to 100000 trials$"):
        significance.paired_test(("b", HYPS), [("s", HYPS)], REFS, options, "ar", 100_001)
    # 10**8 resamples of 10 sentences: sacrebleu's first array alone is 37 GiB of float32 statistics
    assert significance.paired_memory("bs", 10**8, 10, options) > 37 * 2**30
    # 1000 resamples of these 6 sentences take about 1.8 MB: under a 1 MiB limit they are refused up front
    monkeypatch.setattr(significance, "PAIRED_MEMORY_LIMIT", 2**20)
    with pytest.raises(UserError) as error:
        significance.paired_test(("b", HYPS), [("s", HYPS)], REFS, options, "bs", 1000)
    assert str(error.value) == (
        "--paired-bs-n 1000 on 6 sentences would take about 2 MiB of memory (the limit is 1 MiB); "
        "give at most 586 resamples"
    )
    assert significance.paired_test(("b", HYPS), [("s", HYPS)], REFS, options, "bs", 586).n_samples == 586
