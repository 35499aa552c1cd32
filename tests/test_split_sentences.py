"""Sentence splitting in the Translator and `s2s translate --split-sentences`: a line of several
sentences translates to the join of each sentence's translation alone, a one-sentence line exactly
as without splitting, and every input line gives one output line.

The run is test_translate's untrained tiny model (peaked, varied outputs); what is checked is the
bookkeeping, which holds whatever the model has learnt.
"""

import json

import pytest
from click.testing import CliRunner
from test_translate import make_run, same

from seq2seq_lstm.cli import main
from seq2seq_lstm.inference.sentences import split_sentences
from seq2seq_lstm.inference.translator import Translator

TWO = "The cat is black. The dog is white."
THREE = "Where is the station? It is far. Can you help me, please?"
ONE = ["The cat is black.", "The house is big.", "Dr. Smith paid 3.5 euros, e.g. for tea."]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("split") / "run")


@pytest.fixture(scope="module")
def split(run_dir):
    return Translator.from_checkpoint(run_dir, beam_size=3, split_sentences=True)


@pytest.fixture(scope="module")
def whole(run_dir):
    return Translator.from_checkpoint(run_dir, beam_size=3)


def test_the_splitter_keeps_abbreviations_and_numbers_and_returns_one_sentence_untouched():
    # the library's rules, pinned: "Dr.", "e.g." and "3.5" end no sentence
    line = "Dr. Smith paid 3.5 euros, e.g. for tea.  Then he left! Why?"
    assert split_sentences(line, "en") == ["Dr. Smith paid 3.5 euros, e.g. for tea.", "Then he left!", "Why?"]
    assert split_sentences("  Hello there.  ", "en") == ["  Hello there.  "]  # one sentence: as it is
    assert split_sentences("", "en") == [""] and split_sentences("   ", "en") == ["   "]
    # a language without rules of its own falls back (to English's)
    assert split_sentences("One. Two.", "xx") == ["One.", "Two."]


def test_the_translator_splits_by_the_runs_source_language(split, whole):
    assert split.split_sentences == "en" and whole.split_sentences is None


def test_a_line_of_several_sentences_is_the_join_of_each_sentence_alone(split, whole):
    [two, three] = split.translate_full([TWO, THREE])
    for joined, line in ((two, TWO), (three, THREE)):
        parts = split_sentences(line, "en")
        alone = whole.translate_full(parts)
        assert joined[0].chunks == len(parts) > 1
        assert joined[0].text == " ".join(a[0].text for a in alone if a[0].text)
        assert joined[0].score == pytest.approx(sum(a[0].score for a in alone), rel=1e-6)
        assert joined[0].tokens == [t for a in alone for t in a[0].tokens]
        assert joined[0].source_pieces == [p for a in alone for p in a[0].source_pieces]
        # alignments point into the whole line's pieces: each sentence's shifted by those before it
        offsets = [0]
        for a in alone:
            offsets.append(offsets[-1] + len(a[0].source_pieces))
        assert joined[0].alignment == [
            o + i for o, a in zip(offsets, alone, strict=False) for i in a[0].alignment
        ]
        assert joined[0].attention is None  # no single (T, S) matrix for several searches
    # the same whatever else is in the batch
    same(split.translate_full([*ONE, TWO, THREE])[3], two)


def test_one_sentence_lines_translate_exactly_as_without_splitting(split, whole):
    for a, b in zip(split.translate_full(ONE), whole.translate_full(ONE), strict=True):
        assert a[0].chunks == 1 and a[0].attention is not None
        same(a, b)
        assert a[0].source_pieces == b[0].source_pieces and a[0].alignment == b[0].alignment


def test_empty_and_blank_lines_keep_their_place(split, whole):
    lines = ["", TWO, "   ", "\t", ONE[0], ""]
    out = split.translate(lines)
    assert len(out) == len(lines)
    assert out[0] == out[2] == out[3] == out[5] == ""
    assert out[1] == " ".join(whole.translate(split_sentences(TWO, "en")))
    assert out[4] == whole.translate([ONE[0]])[0]


def test_n_best_joins_each_sentences_kth_best_and_sums_scores(run_dir):
    split = Translator.from_checkpoint(run_dir, beam_size=3, n_best=2, split_sentences=True)
    whole = Translator.from_checkpoint(run_dir, beam_size=3, n_best=2)
    [hyps] = split.translate_full([TWO])
    alone = whole.translate_full(split_sentences(TWO, "en"))
    assert len(hyps) == 2
    for k, h in enumerate(hyps):
        assert h.text == " ".join(a[k].text for a in alone if a[k].text)
        assert h.score == pytest.approx(sum(a[k].score for a in alone), rel=1e-6)


def test_a_forced_prefix_starts_the_first_sentence_only(split, whole):
    prefix = "El gato"
    [hyps] = split.translate_full([TWO], prefixes=[prefix])
    first, second = split_sentences(TWO, "en")
    [head] = whole.translate_full([first], prefixes=[prefix])
    [tail] = whole.translate_full([second])
    assert hyps[0].text.startswith(prefix)
    assert hyps[0].text == f"{head[0].text} {tail[0].text}".strip()


# --------------------------------------------------------------------------------------------------
# The command line


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_cli_splits_by_default_and_no_split_sentences_gives_the_whole_line_output(run_dir, split, whole):
    lines = [TWO, "", ONE[0], "  ", THREE]
    source = "\n".join(lines) + "\n"
    on = invoke("translate", "-m", run_dir, "--beam-size", 3, input=source)
    flag = invoke("translate", "-m", run_dir, "--beam-size", 3, "--split-sentences", input=source)
    off = invoke("translate", "-m", run_dir, "--beam-size", 3, "--no-split-sentences", input=source)
    assert on.exit_code == flag.exit_code == off.exit_code == 0, on.output + off.output
    assert on.stdout == flag.stdout == "\n".join(split.translate(lines)) + "\n"
    assert off.stdout == "\n".join(whole.translate(lines)) + "\n"
    assert len(on.stdout.splitlines()) == len(off.stdout.splitlines()) == len(lines)
    assert on.stdout != off.stdout  # the multi-sentence lines differ (this model is peaked enough)


def test_cli_jsonl_of_a_split_line_has_no_attention_and_its_plot_is_skipped_with_a_warning(
    run_dir, tmp_path, caplog
):
    plots = tmp_path / "plots"
    result = invoke("translate", "-m", run_dir, "--format", "jsonl", "--plot-attention", plots,
                    input=f"{TWO}\n{ONE[0]}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(row) for row in result.stdout.splitlines()]
    assert [r["source"] for r in records] == [TWO, ONE[0]]
    assert records[0]["nbest"][0]["attention"] is None and records[1]["nbest"][0]["attention"] is not None
    assert len(records[0]["nbest"][0]["alignment"]) == len(records[0]["nbest"][0]["ids"])
    assert "line 1 was split into 2 chunks" in caplog.text
    assert sorted(p.name for p in plots.iterdir()) == ["line-000002.png"]


def test_an_onnx_export_splits_by_the_source_language_it_records(run_dir, split, tmp_path):
    pytest.importorskip("onnxruntime")
    from seq2seq_lstm.export.exporter import export_run

    folder = export_run(run_dir, tmp_path / "exp")
    manifest = folder / "manifest.json"
    assert json.loads(manifest.read_text(encoding="utf-8"))["languages"] == {"source": "en", "target": "es"}
    onnx = Translator.from_export(folder, beam_size=3, split_sentences=True)
    assert onnx.split_sentences == "en"
    assert onnx.translate([TWO, ONE[0]]) == split.translate([TWO, ONE[0]])
    # an export written before manifests named their languages translates lines whole
    old = {k: v for k, v in json.loads(manifest.read_text(encoding="utf-8")).items() if k != "languages"}
    manifest.write_text(json.dumps(old), encoding="utf-8")
    assert Translator.from_export(folder, split_sentences=True).split_sentences is None
