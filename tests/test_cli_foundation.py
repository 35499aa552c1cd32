"""`s2s tokenizer` and `s2s data` via CliRunner: help, real runs, and one clear line per bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq_lstm.cli import main
from seq2seq_lstm.data.tokenizer import Tokenizer

TINY = Path(__file__).parent / "fixtures" / "tiny"
CONFIG = f"""\
task: translation
tokenizer:
  vocab_size: 400
data:
  train: {TINY / "train"}
  valid: {TINY / "valid"}
  src_lang: en
  tgt_lang: es
  max_len: 40
  batch_tokens: 200
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fails_with(result, line):
    """Exit code 1, the exact error line last, and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {line}"
    assert "Traceback" not in result.output


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


HELP_IMPORTS = """
import sys
import click
from seq2seq_lstm.cli import main
commands = main.list_commands(click.Context(main))
assert len(commands) >= 9, commands
for command in commands:
    try:
        main([command, "--help"], standalone_mode=False)
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "lightning", "datasets", "sentencepiece") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_no_command_help_imports_torch():
    # `s2s CMD --help` must start fast: torch alone takes seconds to import (it did for translate, whose
    # --dtype choices came from the quantize module)
    out = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_help_lists_the_groups_and_documents_every_option():
    out = run("--help").output
    assert "tokenizer" in out and "data" in out
    from seq2seq_lstm.cli.data import stats
    from seq2seq_lstm.cli.tokenizer import decode, encode, train

    for command in (train, encode, decode, stats):
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{command.name} {param.opts} has no help text"
    help_text = run("tokenizer", "train", "--help").output
    for opt in [
        "--config",
        "--set",
        "--input",
        "--out",
        "--vocab-size",
        "--model-type",
        "--character-coverage",
        "--joint / --separate",
        "--byte-fallback / --no-byte-fallback",
    ]:
        assert opt in help_text


def test_train_from_config_then_stats(tmp_path, config):
    out = tmp_path / "tok"
    result = run("tokenizer", "train", "--config", config, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"wrote {out}/spm.model (unigram, joint)", "vocabulary: 400 pieces"]
    assert Tokenizer.load(out).src_vocab_size == 400

    result = run("data", "stats", "-c", config, "--tokenizer", out)  # -c is --config in every command
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:6] == ["split", "pairs", "kept", "short", "long", "ratio"]
    assert lines[2].split()[:6] == ["train", "46", "46", "0", "0", "0"]
    assert lines[3].split()[:6] == ["valid", "10", "10", "0", "0", "0"]
    assert lines[2].split()[-2].endswith("%") and lines[2].split()[-1].endswith("%")


def test_train_from_inputs_with_options(tmp_path):
    out = tmp_path / "sep"
    result = run(
        "tokenizer", "train", "--input", TINY / "train.en", "--input", TINY / "train.es", "--out", out,
        "--separate", "--vocab-size", 330, "--model-type", "bpe", "--character-coverage", 0.9995,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"wrote {out}/src.model, {out}/tgt.model (bpe, separate)",
        "vocabulary: source 330 pieces, target 330 pieces",
    ]
    result = run("tokenizer", "encode", "--model", out, "--side", "tgt", "--ids", TINY / "valid.es")
    tok = Tokenizer.load(out)
    first = " ".join(map(str, tok.encode_tgt(["El perro es negro."])[0]))
    assert result.exit_code == 0 and result.output.splitlines()[0] == first
    # decode is encode's inverse, from ids and from pieces
    ids_file, pieces_file = tmp_path / "ids.txt", tmp_path / "pieces.txt"
    ids_file.write_text(result.output, encoding="utf-8")
    back = run("tokenizer", "decode", "--model", out, "--side", "tgt", "--ids", ids_file)
    assert back.exit_code == 0, back.output
    assert back.output == (TINY / "valid.es").read_text(encoding="utf-8")
    split = run("tokenizer", "encode", "--model", out, "--side", "tgt", TINY / "valid.es")
    pieces_file.write_text(split.output, encoding="utf-8")
    back = run("tokenizer", "decode", "--model", out, "--side", "tgt", pieces_file)
    assert back.output == (TINY / "valid.es").read_text(encoding="utf-8")
    ids_file.write_text("5 6\n7 x9\n", encoding="utf-8")
    bad = run("tokenizer", "decode", "--model", out, "--ids", ids_file)
    assert bad.exit_code == 1
    assert bad.output == (
        f"Error: {ids_file} line 2: 'x9' is not a piece id of this tokenizer (0 to 329); "
        "drop --ids to read piece strings\n"
    )


def test_lm_tokenizer_from_one_input(tmp_path):
    result = run(
        "tokenizer", "train", "--input", TINY / "train.en", "--out", tmp_path / "lm", "--vocab-size", 320
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"wrote {tmp_path}/lm/spm.model (unigram, one language)"


# ------------------------------------------------------------------------------------------ bad input


def test_misaligned_files(tmp_path, config):
    (tmp_path / "c.en").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "c.es").write_text("x\ny\n", encoding="utf-8")
    result = run("tokenizer", "train", "--config", config, "--set", f"data.train={tmp_path / 'c'}",
                 "--out", tmp_path / "out")  # fmt: skip
    fails_with(
        result,
        f"{tmp_path}/c.en has 3 lines but {tmp_path}/c.es has 2 lines; "
        "aligned files need one sentence per line in each, in the same order",
    )
    assert not (tmp_path / "out").exists()


def test_empty_corpus(tmp_path, config):
    (tmp_path / "e.en").write_text("", encoding="utf-8")
    (tmp_path / "e.es").write_text("", encoding="utf-8")
    result = run("tokenizer", "train", "--config", config, "--set", f"data.train={tmp_path / 'e'}",
                 "--out", tmp_path / "out")  # fmt: skip
    fails_with(result, f"corpus {tmp_path}/e.en / {tmp_path}/e.es is empty: it has no sentences")
    result = run("tokenizer", "train", "--input", tmp_path / "e.en", "--out", tmp_path / "out")
    fails_with(result, "cannot train a tokenizer on an empty corpus: it has no non-empty sentences")
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path, config):
    result = run("tokenizer", "train", "--config", config, "--set", f"data.train={tmp_path / 'nope.tsv'}",
                 "--out", tmp_path / "out")  # fmt: skip
    fails_with(result, f"corpus file {tmp_path}/nope.tsv does not exist")
    result = run("data", "stats", "--config", config, "--tokenizer", tmp_path / "none")
    fails_with(
        result,
        f"no tokenizer in {tmp_path}/none: expected spm.model, or src.model and tgt.model; "
        "train one with `s2s tokenizer train --out DIR`",
    )
    assert not (tmp_path / "out").exists()


def test_invalid_utf8(tmp_path, config):
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "train.es").write_bytes(b"uno\ndos\ntr\xe9s\n")  # Latin-1, not UTF-8
    args = ["tokenizer", "train", "--config", config, "--set", f"data.train={tmp_path / 'train'}",
            "--out", tmp_path / "out", "--no-byte-fallback", "--vocab-size", 16]  # fmt: skip
    fails_with(
        run(*args),
        f"{tmp_path}/train.es line 3: invalid UTF-8 (byte 0xe9 at column 3); "
        "fix the file or set data.encoding_errors=replace",
    )
    assert not (tmp_path / "out").exists()
    result = run(*args, "--set", "data.encoding_errors=replace")
    assert result.exit_code == 0, result.output
    assert (
        result.output.startswith(f"wrote {tmp_path}/out/spm.model")
        and (tmp_path / "out" / "spm.model").is_file()
    )


def test_config_unknown_key_and_wrong_type(tmp_path, config):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("vocab_size: 400", "vocab_size: 400\n  vocab: 3"), encoding="utf-8")
    fails_with(
        run("tokenizer", "train", "--config", bad, "--out", tmp_path / "out"),
        f"{bad}: unknown key tokenizer.vocab; allowed keys: model_type, vocab_size, character_coverage, "
        "byte_fallback, joint, input_sentence_size, seed, num_threads, sample_sentences",
    )
    bad.write_text(CONFIG.replace("vocab_size: 400", "vocab_size: lots"), encoding="utf-8")
    fails_with(
        run("tokenizer", "train", "--config", bad, "--out", tmp_path / "out"),
        f"{bad}: tokenizer.vocab_size must be int; got 'lots' (str)",
    )
    result = run("tokenizer", "train", "--config", config, "--character-coverage", 0.5)
    fails_with(
        result, "--character-coverage 0.5: tokenizer.character_coverage must be >= 0.9 and <= 1.0; got 0.5"
    )
    assert not (tmp_path / "out").exists()


def test_a_key_given_twice_is_refused(tmp_path):
    # plain YAML keeps the last one: a second `tokenizer:` section silently dropped the first
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG + "tokenizer:\n  seed: 3\n", encoding="utf-8")
    fails_with(
        run("tokenizer", "train", "--config", bad, "--out", tmp_path / "out"),
        f"{bad} line 11: not valid YAML ('tokenizer' appears twice (first on line 2); keep one)",
    )
    bad.write_text(CONFIG.replace("src_lang: en", "src_lang: en\n  src_lang: de"), encoding="utf-8")
    fails_with(
        run("tokenizer", "train", "--config", bad, "--out", tmp_path / "out"),
        f"{bad} line 8: not valid YAML ('src_lang' appears twice (first on line 7); keep one)",
    )
    assert not (tmp_path / "out").exists()


def test_vocab_size_too_large(tmp_path, config):
    result = run("tokenizer", "train", "--config", config, "--vocab-size", 5000, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: tokenizer.vocab_size=5000 is too large for the joint corpus: ")
    maximum = int(line.split("at most ")[1].split()[0])
    assert line.endswith(f"at most {maximum} pieces from it; lower tokenizer.vocab_size to {maximum} or less")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ closed standard streams


def s2s_redirected(redirect: str, *args, stdin=None) -> subprocess.CompletedProcess:
    """`python -m seq2seq_lstm ARGS` with a shell redirection such as `<&-` (stdin closed) or `>&-`."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", sys.executable, "-m", "seq2seq_lstm", *map(str, args)],
        stdin=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def hyp_ref(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("the cat sat on the mat\na dog barks\n", encoding="utf-8")
    ref.write_text("the cat sat on a mat\nthe dog barks\n", encoding="utf-8")
    return hyp, ref


def test_closed_stdin_is_one_line(hyp_ref):
    done = s2s_redirected("<&-", "bleu", "-", hyp_ref[1])  # was a traceback: None has no attribute 'buffer'
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: standard input is closed, so there is nothing to read; give the input as")
    done = s2s_redirected("<&-", "bleu", *hyp_ref)  # a command that does not read stdin runs as before
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("BLEU|nrefs:1|") and done.stderr == ""


def test_closed_stdout_is_one_line_not_a_silently_lost_score(hyp_ref):
    with open(hyp_ref[0]) as hyp:  # was exit code 0 with the score printed nowhere
        done = s2s_redirected(">&-", "bleu", "-", hyp_ref[1], stdin=hyp)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("Error: standard output is closed, so the output would be lost; redirect it to")


def test_stdout_opened_for_reading_is_one_line(hyp_ref):
    done = s2s_redirected("1</dev/null", "bleu", *hyp_ref)  # was a traceback: OSError [Errno 9]
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "Error: cannot use standard output: Bad file descriptor; open standard input for reading and "
        "standard output for writing, or pass files"
    ]


def test_closed_stderr_keeps_error_messages_out_of_the_output(hyp_ref, tmp_path):
    done = s2s_redirected("2>&-", "bleu", tmp_path / "nope.txt", hyp_ref[1])
    assert done.returncode == 1
    assert done.stdout == ""  # click printed "Error: ..." to stdout, among the results, with stderr closed
