"""Every `s2s` command once, through click's CliRunner: the happy path prints what a person expects, and
one bad input ends with exit code 1, one `Error:` line and no traceback.

Two run directories serve the commands that need a model: an untrained translation run
(test_translate.make_run, under a second) and a tiny language model trained here by `s2s train` itself
(4 steps, a few seconds), which is also `train`'s happy path. Deeper tests of each command live in
test_cli_foundation (tokenizer, data), test_train, test_translate, test_shortlist, test_cli_evaluate and
test_suggest; the cases here are chosen not to repeat them. Long option names only.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import re
import shutil
from pathlib import Path

import click
import pytest
from cli_results import ok, one_error_line
from click.testing import CliRunner
from test_translate import make_run

from seq2seq_lstm.cli import COMMANDS, main
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.suggest.words import word_spans

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/fixtures/tiny"
TINY_CONFIG = ROOT / "configs/tiny.yaml"
LM_DATA = [f"data.train={TINY / 'train.es'}", f"data.valid={TINY / 'valid.es'}", "data.test="]


def s2s(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, prog_name="s2s")


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("cli") / "mt")


@pytest.fixture(scope="module")
def lm_training(tmp_path_factory):
    """`s2s train` of a tiny language model on the Spanish side of the fixture: (result, run directory)."""
    out = tmp_path_factory.mktemp("cli") / "lm"
    sets = [
        *LM_DATA,
        "task=lm",
        "training.val_every_steps=4",
        "training.num_threads=1",
        "training.log_every_steps=1",
    ]
    result = s2s("train", "--config", TINY_CONFIG, *(f"--set={s}" for s in sets), "--max-steps", 4,
                 "--accelerator", "cpu", "--out-dir", out)  # fmt: skip
    return result, out


@pytest.fixture(scope="module")
def lm_run(lm_training) -> Path:
    result, out = lm_training
    ok(result)
    return out


# ------------------------------------------------------------------------------------------ s2s itself


def test_help_lists_every_command_in_order():
    out = ok(s2s("--help"))
    listed = re.findall(r"^  (\S+)  ", out.split("Commands:\n")[1], flags=re.MULTILINE)
    assert listed == list(COMMANDS) == [
        "tokenizer", "data", "train", "translate", "shortlist", "average", "evaluate", "bleu", "suggest",
        "suggest-eval", "serve", "export", "plot", "runs",
    ]  # fmt: skip


def commands() -> list[tuple[str, ...]]:
    """Every runnable command as the words that name it: ("train",), ("tokenizer", "encode"), ..."""
    ctx = click.Context(main)
    found = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += [(name, sub) for sub in command.list_commands(ctx)]
        else:
            found.append((name,))
    return found


@pytest.mark.parametrize("words", commands(), ids=" ".join)
def test_every_command_has_help_and_every_option_a_help_text(words):
    out = ok(s2s(*words, "--help"))
    assert out.startswith(f"Usage: s2s {' '.join(words)} [OPTIONS]")
    command = main.get_command(click.Context(main), words[0])
    for word in words[1:]:
        command = command.get_command(click.Context(command), word)
    undocumented = [p.opts for p in command.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []


def test_version_is_the_installed_package_version():
    assert ok(s2s("--version")) == f"s2s, version {importlib.metadata.version('seq2seq-lstm')}\n"


def test_an_unknown_command_is_a_usage_error():
    result = s2s("translat")
    # one line and exit code 1 like every other bad input (click alone: three lines, exit code 2)
    assert (result.exit_code, result.output) == (1, "Error: No such command 'translat'; see 's2s --help'\n")


# ------------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_train_a_language_model_tokenizer_from_the_config(tmp_path):
    # task: lm reads one language (data.train is one text file) and writes one spm.model
    config = tmp_path / "lm.yaml"
    config.write_text(
        f"task: lm\ndata:\n  train: {TINY / 'train.es'}\n"
        "tokenizer:\n  vocab_size: 100\n  byte_fallback: false\n"  # 46 sentences fill no 256 byte pieces
    )
    out = tmp_path / "tok"
    assert ok(s2s("tokenizer", "train", "--config", config, "--out", out)).splitlines() == [
        f"wrote {out}/spm.model (unigram, one language)",
        "vocabulary: 100 pieces",
    ]
    assert Tokenizer.load(out).tgt_vocab_size == 100


def test_tokenizer_train_refuses_three_inputs(tmp_path):
    result = s2s("tokenizer", "train", *(arg for f in ("train.en", "train.es", "valid.en")
                 for arg in ("--input", TINY / f)), "--out", tmp_path / "tok")  # fmt: skip
    assert one_error_line(result) == (
        "Error: --input takes one file (one language or LM) or two (source, target); got 3"
    )
    assert not (tmp_path / "tok").exists()


def test_tokenizer_encode_then_decode_from_stdin_keeps_every_line(lm_run):
    text = "El perro es negro.\n\nLa casa es grande.\n"  # an empty line stays an empty line
    model = lm_run / "tokenizer"
    ids = ok(s2s("tokenizer", "encode", "--model", model, "--ids", input=text))
    rows = ids.splitlines()
    assert len(rows) == 3 and rows[1] == ""
    assert all(4 <= int(i) < 120 for row in rows for i in row.split())  # no pad/unk/bos/eos (0-3)
    assert ok(s2s("tokenizer", "decode", "--model", model, "--ids", input=ids)) == text
    pieces = ok(s2s("tokenizer", "encode", "--model", model, input=text))
    assert pieces.splitlines()[0].startswith("▁El ")
    assert ok(s2s("tokenizer", "decode", "--model", model, input=pieces)) == text


def test_tokenizer_encode_without_a_tokenizer(tmp_path):
    assert one_error_line(s2s("tokenizer", "encode", "--model", tmp_path, input="hola\n")) == (
        f"Error: no tokenizer in {tmp_path}: expected spm.model, or src.model and tgt.model; "
        "train one with `s2s tokenizer train --out DIR`"
    )


def test_tokenizer_decode_refuses_the_id_one_past_the_vocabulary(lm_run):
    # ids run from 0 to 119 in a 120-piece vocabulary
    assert one_error_line(
        s2s("tokenizer", "decode", "--model", lm_run / "tokenizer", "--ids", input="5 120\n")
    ) == (
        "Error: <stdin> line 1: '120' is not a piece id of this tokenizer (0 to 119); "
        "drop --ids to read piece strings"
    )


# ------------------------------------------------------------------------------------------ data stats


def test_data_stats_of_a_language_model_corpus_has_one_pieces_column(lm_run):
    out = ok(s2s("data", "stats", "--config", TINY_CONFIG, *(f"--set={s}" for s in [*LM_DATA, "task=lm"]),
                 "--tokenizer", lm_run / "tokenizer", "--split", "train"))  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith(f"tokenizer: {lm_run / 'tokenizer'} (") and lines[0].endswith(
        "batch_tokens=512"
    )
    assert lines[1].split() == ["split", "sentences", "kept", "short", "long", "ratio", "pieces", "batches",
                                "sent/batch", "padding", "random", "order"]  # fmt: skip
    # the 46 fixture sentences are all between 1 and 60 pieces
    assert lines[2].split()[:6] == ["train", "46", "46", "0", "0", "0"]
    assert lines[3:] == [f"train: {TINY / 'train.es'}"]  # --split train: no valid row


def test_data_stats_without_a_corpus(lm_run):
    assert one_error_line(s2s("data", "stats", "--tokenizer", lm_run / "tokenizer")) == (
        "Error: no corpus configured; set data.train (and data.valid, data.test)"
    )


# ------------------------------------------------------------------------------------------ train


def test_train_a_language_model_prints_steps_perplexity_and_the_model(lm_training):
    result, out = lm_training
    lines = ok(result).strip().splitlines()[-3:]
    assert re.fullmatch(r"trained 4 steps in \d+\.\d min", lines[0]), lines[0]
    ppl = re.fullmatch(r"best validation perplexity (\d+\.\d\d) \(step 4\)", lines[1])
    assert ppl, lines[1]
    assert lines[2] == f"model: {out / 'model.safetensors'} (run directory {out})"
    # the printed perplexity is exp(validation loss), as logged
    (row,) = [
        r
        for r in csv.DictReader(next(out.glob("logs/*/metrics.csv")).read_text().splitlines())
        if r["val_ppl"]
    ]
    assert float(ppl[1]) == pytest.approx(math.exp(float(row["val_loss"])), abs=0.006)
    assert 1 < float(ppl[1]) < 2 * 120  # near the 120-piece vocabulary after 4 steps, never below 1
    assert {"config.yaml", "tokenizer", "checkpoints", "logs", "model.safetensors"} <= {
        p.name for p in out.iterdir()
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", TINY_CONFIG, "--resume", "--overwrite"],
         "--resume and --overwrite contradict each other; pass one of them"),
        ([], "pass --config FILE (or --resume with --out-dir to reuse the run's own config)"),
    ],
)  # fmt: skip
def test_train_refuses_contradicting_or_missing_options_before_writing(tmp_path, args, message):
    assert one_error_line(s2s("train", *args, "--out-dir", tmp_path / "run")) == f"Error: {message}"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ translate


def test_translate_prints_one_line_per_input_line(translation_run, tmp_path):
    from seq2seq_lstm.inference.translator import Translator

    lines = ["The dog is black.", "", "Hello.", "The house is big and the dog is black."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = ok(s2s("translate", "--checkpoint", translation_run, "--input", source))
    assert out.split("\n") == [*Translator.from_checkpoint(translation_run).translate(lines), ""]
    assert out.split("\n")[1] == ""  # an empty line is translated to an empty line


def test_translate_with_a_language_model(lm_run):
    assert one_error_line(s2s("translate", "--checkpoint", lm_run, input="Hola\n")) == (
        f"Error: {lm_run} holds a language model; `s2s translate` needs a translation model "
        "(use `s2s suggest` for language models)"
    )


# ------------------------------------------------------------------------------------------ shortlist


def test_shortlist_writes_its_file_and_prints_coverage(translation_run, tmp_path, monkeypatch):
    run = shutil.copytree(translation_run, tmp_path / "run")
    monkeypatch.chdir(ROOT)  # the tiny config names its corpus relative to the repository
    out = ok(s2s("shortlist", "--checkpoint", run, "--per-source", 5, "--frequent", 10))
    # 46 training pairs; a shortlist of 500 or more pieces holds the whole 120-piece vocabulary
    assert out == (
        f"wrote {run / 'shortlist.safetensors'} (IBM Model 1 on 46 training pairs); validation reference "
        "pieces inside the shortlist of size 500: 100.0%, 1000: 100.0%, 2000: 100.0%\n"
    )
    assert (run / "shortlist.safetensors").read_bytes()[8:9] == b"{"  # safetensors: length, then JSON


def test_shortlist_of_a_language_model(lm_run):
    assert one_error_line(s2s("shortlist", "--checkpoint", lm_run)) == (
        f"Error: {lm_run} holds a language model; a shortlist is for translation models"
    )


# ------------------------------------------------------------------------------------------ evaluate, bleu


@pytest.fixture
def texts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ref.txt").write_text("the cat sat on a mat\na dog barks in the park\n", encoding="utf-8")
    Path("hyp.txt").write_text("the cat sat on the mat\n", encoding="utf-8")
    return tmp_path


def test_evaluate_a_perfect_hypothesis_scores_100_100_and_0(texts):
    out = ok(s2s("evaluate", "ref.txt", "ref.txt", "--metrics", "bleu,chrf,ter"))
    scores = [
        (line.split("|")[0].strip(), float(line.split(" = ")[1].split()[0])) for line in out.splitlines()
    ]
    assert scores == [("BLEU", 100.0), ("chrF2", 100.0), ("TER", 0.0)]


def test_evaluate_reads_only_the_hypothesis_from_stdin(texts):
    assert (
        one_error_line(s2s("evaluate", "hyp.txt", "-", input="x\n"))
        == "Error: only HYP may be - (standard input)"
    )


def test_bleu_prints_sacrebleus_line_with_precisions_a_person_can_count(texts):
    Path("ref1.txt").write_text("the cat sat on a mat\n", encoding="utf-8")
    out = ok(s2s("bleu", "hyp.txt", "ref1.txt"))
    # matches: 1-grams 5/6 ("the" twice against once), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths,
    # so BP = 1 and BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 53.7
    assert out.startswith("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert out.endswith(" = 53.7 83.3/60.0/50.0/33.3 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)\n")
    assert 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25 == pytest.approx(53.73, abs=0.01)


def test_bleu_of_files_of_different_lengths(texts):
    assert one_error_line(s2s("bleu", "hyp.txt", "ref.txt")) == (
        "Error: hypothesis file 'hyp.txt' has 1 line but reference file 'ref.txt' has 2 lines; "
        "each file needs one line per sentence"
    )


# ------------------------------------------------------------------------------------------ suggest


def test_suggest_prints_the_top_words_as_text_and_json(lm_run):
    text = ok(s2s("suggest", "--checkpoint", lm_run, "El "))
    rows = [line.split("\t") for line in text.splitlines()]
    assert len(rows) == 3  # generation.suggest_k
    words, probs = [w for w, _ in rows], [float(p) for _, p in rows]
    assert len(set(words)) == 3 and all(w and " " not in w for w in words)
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    data = json.loads(ok(s2s("suggest", "--checkpoint", lm_run, "--format", "json", "El ")))
    assert data["text"] == "El " and [s["word"] for s in data["suggestions"]] == words
    assert [round(s["prob"], 4) for s in data["suggestions"]] == pytest.approx(probs, abs=1e-4)


def test_suggest_with_a_translation_model_needs_the_source(translation_run):
    line = one_error_line(s2s("suggest", "--checkpoint", translation_run, "El "))
    assert line.startswith(
        "Error: a translation model suggests words of a translation: give the source sentence"
    )


def test_suggest_eval_counts_every_word_of_the_file(lm_run, tmp_path):
    report = tmp_path / "report.json"
    out = ok(s2s("suggest-eval", "--checkpoint", lm_run, TINY / "valid.es", "--bootstrap", 0,
                 "--format", "json", "--output", report))  # fmt: skip
    data = json.loads(out)
    sentences = (TINY / "valid.es").read_text(encoding="utf-8").splitlines()
    assert data["sentences"] == len(sentences) == 10
    assert data["words"] == sum(len(word_spans(s)) for s in sentences)
    assert json.loads(report.read_text(encoding="utf-8")) == data  # the same report in the file


def test_suggest_eval_of_a_file_that_is_not_utf8(lm_run, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Hola\ncaf\xe9 con leche\n".encode("latin-1"))
    line = one_error_line(s2s("suggest-eval", "--checkpoint", lm_run, bad))
    assert line.startswith(f"Error: {bad} line 2: ") and "0xe9" in line
