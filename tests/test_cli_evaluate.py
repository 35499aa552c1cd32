"""`s2s evaluate` and `s2s bleu` print exactly what sacreBLEU's own command line prints, and fail cleanly."""

import json
import os
import subprocess
import sys

import pytest
import sacrebleu
from click.testing import CliRunner
from test_evaluate import HYPS, README_HYPS, README_REFS, REFS, available_tokenizers

from seq2seq_lstm.cli import main
from seq2seq_lstm.scoring import metrics as ev
from seq2seq_lstm.scoring import significance

BASELINE = [
    "The cat on mat.",
    "A fox jumps over the dog.",
    "Nothing.",
    "Bonjour.",
    "我们去公园。",
    "It costs 4,000.",
]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """hyp.txt, ref1.txt, ref2.txt, base.txt, src.txt in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    for name, lines in [("hyp", HYPS), ("ref1", REFS[0]), ("ref2", REFS[1]), ("base", BASELINE)]:
        (tmp_path / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    (tmp_path / "src.txt").write_text("".join(f"source {i}\n" for i in range(len(HYPS))), encoding="utf-8")
    return tmp_path


def sacrebleu_cli(cwd, *args, seed=None) -> str:
    """stdout of `python -m sacrebleu ARGS` (colors off, quiet)."""
    env = {**os.environ, "NO_COLOR": "1"}
    if seed is not None:
        env["SACREBLEU_SEED"] = str(seed)
    done = subprocess.run(
        [sys.executable, "-m", "sacrebleu", *args, "-q"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def s2s(*args, input=None):
    result = CliRunner().invoke(main, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def s2s_error(*args) -> tuple[int, str]:
    """Exit code and last output line of a failing command, which must not show a traceback."""
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    return result.exit_code, result.output.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------- parity with sacreBLEU


@pytest.mark.parametrize("tokenize", available_tokenizers())
@pytest.mark.parametrize("refs, flags", [(["ref1.txt"], []), (["ref1.txt", "ref2.txt"], ["--lowercase"])])
def test_bleu_text_equals_sacrebleu_cli(corpus, tokenize, refs, flags):
    theirs = sacrebleu_cli(
        corpus, *refs, "-i", "hyp.txt", "-m", "bleu", "-f", "text", "-w", "2", "-tok", tokenize, *flags
    )
    ours = s2s("evaluate", "hyp.txt", *refs, "--tokenize", tokenize, "--width", "2", *flags)
    assert ours == theirs
    assert f"tok:{tokenize}" in ours or tokenize == "spm"  # sacreBLEU signs 'spm' as flores101


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_all_metrics_equal_sacrebleu_cli(corpus, fmt):
    sacre_args = ["-m", "bleu", "chrf", "ter", "--chrf-word-order", "2", "-w", "3", "-f", fmt]
    theirs = sacrebleu_cli(corpus, "ref1.txt", "ref2.txt", "-i", "hyp.txt", *sacre_args)
    ours = s2s("evaluate", "hyp.txt", "ref1.txt", "ref2.txt", "-m", "ter,chrf,bleu", "--chrf-word-order", "2",
               "-w", "3", "--format", fmt)  # fmt: skip
    assert ours == theirs
    assert ("chrF2++|nrefs:2|" if fmt == "text" else '"name": "chrF2++"') in ours


def test_case_options_equal_sacrebleu_cli(corpus):
    flags = ["--chrf-lowercase", "--ter-case-sensitive", "--ter-no-punct", "--chrf-char-order", "4"]
    theirs = sacrebleu_cli(corpus, "ref1.txt", "-i", "hyp.txt", "-m", "chrf", "ter", "-f", "text", *flags)
    ours = s2s("evaluate", "hyp.txt", "ref1.txt", "-m", "chrf,ter", *flags)
    assert ours == theirs
    assert "case:lc|eff:yes|nc:4" in ours and "case:mixed|tok:tercom|norm:no|punct:no" in ours


@pytest.mark.parametrize("metric", ["bleu", "chrf", "ter"])
def test_sentence_level_equals_sacrebleu_cli(corpus, metric):
    theirs = sacrebleu_cli(corpus, "ref1.txt", "ref2.txt", "-i", "hyp.txt", "-m", metric, "-sl", "-w", "2")
    ours = s2s("evaluate", "hyp.txt", "ref1.txt", "ref2.txt", "-m", metric, "--sentence-level", "-w", "2")
    assert ours == theirs
    assert len(ours.splitlines()) == len(HYPS)


def test_bleu_alias_prints_sacrebleus_bleu_line_and_reads_stdin(corpus):
    theirs = sacrebleu_cli(corpus, "ref1.txt", "ref2.txt", "-i", "hyp.txt", "-f", "text", "-tok", "intl")
    assert s2s("bleu", "hyp.txt", "ref1.txt", "ref2.txt", "-tok", "intl") == theirs
    piped = s2s("bleu", "-", "ref1.txt", "ref2.txt", "-tok", "intl", input=(corpus / "hyp.txt").read_bytes())
    assert piped == theirs


def test_published_example_value_through_the_cli(tmp_path, monkeypatch):
    # sacrebleu's README example scores 48.530827 (its test/test_bleu.py)
    monkeypatch.chdir(tmp_path)
    for name, lines in [("h", README_HYPS), ("r1", README_REFS[0]), ("r2", README_REFS[1])]:
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = s2s("bleu", "h", "r1", "r2", "-w", "4")
    assert line.startswith("BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert " = 48.5308 " in line


def test_empty_hypotheses_score_zero_like_sacrebleu(corpus):
    (corpus / "empty.txt").write_text("\n" * len(HYPS), encoding="utf-8")
    theirs = sacrebleu_cli(corpus, "ref1.txt", "-i", "empty.txt", "-m", "bleu", "chrf", "ter", "-f", "text")
    ours = s2s("evaluate", "empty.txt", "ref1.txt", "-m", "bleu,chrf,ter")
    assert ours == theirs
    assert "= 0.0 0.0/0.0/0.0/0.0" in ours


@pytest.mark.parametrize(
    "test_flags, sacre_flags",
    [
        (["--paired-bs", "--paired-bs-n", "300"], ["--paired-bs", "--paired-bs-n", "300"]),
        (["--paired-ar", "--paired-ar-n", "500"], ["--paired-ar", "--paired-ar-n", "500"]),
    ],
)
def test_significance_equals_sacrebleu_cli(corpus, test_flags, sacre_flags):
    theirs = sacrebleu_cli(corpus, "ref1.txt", "ref2.txt", "-i", "base.txt", "hyp.txt", "-m", "bleu", "chrf",
                           "-f", "text", *sacre_flags, seed=777)  # fmt: skip
    ours = s2s("evaluate", "hyp.txt", "ref1.txt", "ref2.txt", "-m", "bleu,chrf", "--baseline", "base.txt",
               "--seed", "777", *test_flags)  # fmt: skip
    # the table (scores, bootstrap means and CIs, p-values) is sacreBLEU's, drawn the same way
    table = theirs.split("\n\n")[0]
    assert table.startswith("╒") and table in ours
    assert "(p = 0." in table
    # and so are the signatures, with the test's samples and seed
    signatures = theirs[theirs.index(" - BLEU") :]
    assert ours.endswith(signatures)
    assert "seed:777" in signatures


def test_significance_json_holds_the_same_numbers(corpus):
    out = s2s(
        "evaluate", "hyp.txt", "ref1.txt", "--baseline", "base.txt", "--paired-bs-n", "200", "-f", "json"
    )
    doc = json.loads(out)
    (paired,) = doc["paired"]
    base, system = paired["systems"]
    assert base["system"] == "Baseline: base.txt" and base["BLEU"]["p_value"] is None
    assert system["system"] == "hyp.txt" and 0 < system["BLEU"]["p_value"] <= 1
    assert system["BLEU"]["score"] == pytest.approx(doc["scores"][0]["score"], abs=0.05)
    text = s2s("evaluate", "hyp.txt", "ref1.txt", "--baseline", "base.txt", "--paired-bs-n", "200")
    assert f"(p = {system['BLEU']['p_value']:.4f})" in text
    assert f"± {system['BLEU']['ci']:.1f})" in text


# ------------------------------------------------------------------------------------- worst sentences


def test_worst_shows_source_hypothesis_and_references(corpus):
    out = s2s("evaluate", "hyp.txt", "ref1.txt", "ref2.txt", "--worst", "1", "--source", "src.txt")
    block = out.split("\n\n")[-1].splitlines()
    assert block[0].startswith("Worst 1 of 6 sentences by sentence BLEU (nrefs:2|case:mixed|eff:yes|")
    assert block[1] == "line 3: BLEU = 0.0 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 4)"
    assert block[2:] == [
        "  SRC: source 2",
        "  HYP: ",
        "  REF1: Nothing was said.",
        "  REF2: He said nothing.",
    ]
    doc = json.loads(s2s("evaluate", "hyp.txt", "ref1.txt", "--worst", "2", "-m", "chrf", "-f", "json"))
    chrf = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(HYPS, REFS[0], strict=True)]
    assert [w["line"] for w in doc["worst"]] == sorted(range(1, 7), key=lambda i: (chrf[i - 1], i))[:2]
    assert doc["worst"][0] == {
        "line": 3, "name": "chrF2", "score": 0.0, "source": None, "hypothesis": "",
        "references": ["Nothing was said."],
    }  # fmt: skip


# ------------------------------------------------------------------------------------- --checkpoint


def test_checkpoint_translates_source_then_scores(tmp_path, monkeypatch):
    # one step (--checkpoint --source) must equal translating with `s2s translate`, then scoring the file
    from test_translate import TINY, make_run

    run = make_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    src, ref = str(TINY / "test.en"), str(TINY / "test.es")
    translated = CliRunner().invoke(
        main, ["translate", "--checkpoint", str(run), "--input", src, "--output", "hyp"]
    )
    assert translated.exit_code == 0, translated.output
    assert s2s("evaluate", "--checkpoint", str(run), "--source", src, ref, "-m", "bleu,chrf") == s2s(
        "evaluate", "hyp", ref, "-m", "bleu,chrf"
    )


def test_checkpoint_needs_a_source(corpus):
    assert s2s_error("evaluate", "--checkpoint", "run1", "ref1.txt") == (
        1,
        "Error: --checkpoint needs --source SRC: the file to translate",
    )


# ------------------------------------------------------------------------------------- bad input


def test_files_of_different_lengths(corpus):
    (corpus / "short.txt").write_text("one\ntwo\n", encoding="utf-8")
    assert s2s_error("evaluate", "hyp.txt", "ref1.txt", "short.txt") == (
        1,
        "Error: hypothesis file 'hyp.txt' has 6 lines but reference file 'short.txt' has 2 lines; "
        "each file needs one line per sentence",
    )
    assert s2s_error("evaluate", "hyp.txt", "ref1.txt", "--baseline", "short.txt")[1].startswith(
        "Error: hypothesis file 'hyp.txt' has 6 lines but baseline file 'short.txt' has 2 lines"
    )


def test_missing_file(corpus):
    assert s2s_error("evaluate", "hyp.txt", "nope.txt") == (
        1,
        "Error: reference file 'nope.txt' does not exist",
    )
    assert s2s_error("bleu", "nope.txt", "ref1.txt") == (
        1,
        "Error: hypothesis file 'nope.txt' does not exist",
    )


def test_empty_file(corpus):
    (corpus / "empty.txt").write_bytes(b"")
    assert s2s_error("evaluate", "empty.txt", "ref1.txt") == (
        1,
        "Error: hypothesis file 'empty.txt' is empty; it needs one line per sentence",
    )


def test_invalid_utf8(corpus):
    (corpus / "latin1.txt").write_bytes("ok\nok\ncaf\xe9\n".encode("latin-1") + b"x\n" * 3)
    assert s2s_error("evaluate", "hyp.txt", "latin1.txt") == (
        1,
        "Error: reference file 'latin1.txt' line 3: invalid UTF-8 (byte 0xe9 at column 4); "
        "fix the file or pass --encoding-errors replace",
    )


def test_unknown_tokenizer_lists_sacrebleus_choices(corpus):
    code, line = s2s_error("evaluate", "hyp.txt", "ref1.txt", "--tokenize", "moses")
    choices = ", ".join(f"'{name}'" for name in ev.tokenizer_names())
    assert code == 1  # usage errors are one line and exit code 1, like every bad input
    assert line == (
        f"Error: Invalid value for '--tokenize' / '-tok': 'moses' is not one of {choices}; "
        "see 's2s evaluate --help'"
    )


def test_unknown_metric_and_incompatible_options(corpus):
    code, line = s2s_error("evaluate", "hyp.txt", "ref1.txt", "-m", "bleu,meteor")
    assert (code, line) == (
        1,
        "Error: Invalid value for '--metrics' / '-m': 'meteor' is not one of bleu, chrf, ter; "
        "see 's2s evaluate --help'",
    )
    assert s2s_error("evaluate", "hyp.txt", "ref1.txt", "-sl", "--baseline", "base.txt") == (
        1,
        "Error: significance tests need corpus scores; drop --sentence-level or --baseline",
    )
    assert s2s_error("evaluate", "hyp.txt") == (
        1,
        "Error: give HYP and at least one REF file (or --checkpoint DIR --source SRC and REF)",
    )


def test_tokenizer_that_cannot_run_offline_is_one_line(corpus):
    missing = [name for name in ev.tokenizer_names() if ev.tokenizer_problem(name)]
    if not missing:
        pytest.skip("every sacreBLEU tokenizer can run here")
    code, line = s2s_error("evaluate", "hyp.txt", "ref1.txt", "--tokenize", missing[0])
    assert (code, line) == (1, f"Error: {ev.tokenizer_problem(missing[0])}")


def test_a_full_disk_is_one_line_not_a_traceback(tmp_path):
    # /dev/full refuses every write with ENOSPC, as a full disk does
    (tmp_path / "h").write_text("a b c d\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "seq2seq_lstm", "bleu", str(tmp_path / "h"), str(tmp_path / "h")],
            stdout=full, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: cannot read or write: No space left on device; free some space"
    ]


def test_a_smoothing_value_sacrebleu_cannot_take_is_refused(corpus):
    # sacreBLEU's CLI takes any float: -5 with add-k stops it with "math domain error", nan scores nothing
    for value in ["-5", "nan", "inf"]:
        assert s2s_error("bleu", "hyp.txt", "ref1.txt", "-s", "add-k", "-sv", value) == (
            1,
            f"Error: Invalid value for '--smooth-value' / '-sv': {float(value)} is not a finite number >= 0; "
            "see 's2s bleu --help'",
        )
    sacre = sacrebleu_cli(
        corpus, "ref1.txt", "-i", "hyp.txt", "-m", "bleu", "-s", "add-k", "-sv", "0.5", "-f", "text"
    )
    assert s2s("bleu", "hyp.txt", "ref1.txt", "-s", "add-k", "-sv", "0.5") == sacre


def test_both_significance_tests_at_once_are_refused(corpus):
    # sacreBLEU refuses the pair too; before, --paired-ar silently won
    assert s2s_error(
        "evaluate", "hyp.txt", "ref1.txt", "--baseline", "base.txt", "--paired-bs", "--paired-ar"
    ) == (
        1,
        "Error: --paired-bs and --paired-ar are two different tests; pass one of them",
    )


@pytest.mark.parametrize(
    "args, named",
    [
        (["--paired-bs"], "--paired-bs"),
        (["--paired-ar", "--paired-ar-n", "50"], "--paired-ar and --paired-ar-n"),
        (["--paired-bs-n", "1000"], "--paired-bs-n"),  # given, even at its default value
    ],
)
def test_significance_options_without_a_baseline_are_refused(corpus, args, named):
    # sacreBLEU refuses a paired test of one system too; before, the options were silently ignored
    assert s2s_error("evaluate", "hyp.txt", "ref1.txt", *args) == (
        1,
        f"Error: {named}: a paired significance test compares HYP with a baseline system; "
        "add --baseline OTHER_HYP",
    )


@pytest.mark.parametrize(
    "args, option, top",
    [
        (["--paired-bs-n", "100001"], "'--paired-bs-n'", "100000"),
        (["--paired-ar", "--paired-ar-n", "100001"], "'--paired-ar-n'", "100000"),
        (["-m", "chrf", "--chrf-char-order", "101"], "'--chrf-char-order' / '-cc'", "100"),
        (["-m", "chrf", "--chrf-word-order", "100000000"], "'--chrf-word-order' / '-cw'", "100"),
    ],
)
def test_counts_are_bounded(corpus, args, option, top):
    code, line = s2s_error("evaluate", "hyp.txt", "ref1.txt", "--baseline", "base.txt", *args)
    assert code == 1
    assert line.startswith(f"Error: Invalid value for {option}: ")
    assert line.endswith(f"<=x<={top}; see 's2s evaluate --help'")


def test_a_significance_test_too_big_for_memory_stops_before_it_starts(corpus, monkeypatch):
    # the real limit (4 GiB) is reached by e.g. 100000 resamples of 5000 sentences; a 1 MiB limit shows
    # the same refusal on 6 sentences without allocating anything
    monkeypatch.setattr(significance, "PAIRED_MEMORY_LIMIT", 2**20)
    assert s2s_error("evaluate", "hyp.txt", "ref1.txt", "--baseline", "base.txt", "-m", "chrf") == (
        1,
        "Error: --paired-bs-n 1000 on 6 sentences would take about 2 MiB of memory (the limit is 1 MiB); "
        "give at most 529 resamples",
    )


def test_the_cli_repeats_the_library_bounds():
    from seq2seq_lstm.cli import evaluate as cli_evaluate

    assert (cli_evaluate.MAX_PAIRED_N, cli_evaluate.MAX_CHRF_ORDER) == (
        significance.MAX_PAIRED_N,
        ev.MAX_CHRF_ORDER,
    )
