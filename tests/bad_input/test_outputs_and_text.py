"""Bad outputs and bad text, one table: every command refuses them in one line, before it works.

Each row is a command line (paths as ``{name}`` placeholders), the bytes on standard input, the exit
code, a fragment of the one ``Error:`` line, and the files that must be left exactly as they were.
A new command or option that writes files or reads text gets its rows here.
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq_lstm.cli import main

BAD_UTF8 = b"ok\nab\xffc\n"  # line 2, column 3
REPLACE = "fix the file or pass --encoding-errors replace"

# (id, args, stdin, exit code, fragment of the error line, files that must stay unchanged)
CASES = [
    # an output under a regular file: refused before the work, not a traceback after it
    ("translate -o under a file", "translate -m {run} -o {file}/out.txt", b"Hello\n", 1,
     "-o {file}/out.txt: {file} is a file, not a directory; choose another path", ["file"]),
    ("translate --plot-attention under a file", "translate -m {run} --plot-attention {file}/plots",
     b"Hello\n", 1, "--plot-attention {file}/plots: {file} is a file, not a directory", ["file"]),
    ("tokenizer train --out under a file",
     "tokenizer train --input {train} --vocab-size 300 --out {file}/tok", None, 1,
     "--out {file}/tok: {file} is a file, not a directory; choose another path", ["file"]),
    ("suggest-eval -o under a file", "suggest-eval -m {lm} {text} --bootstrap 2 -o {file}/r.json", None, 1,
     "-o {file}/r.json: {file} is a file, not a directory; choose another path", ["file"]),
    ("train --out-dir under a file", "train -c {config} --out-dir {file}/run", None, 1,
     "training.out_dir {file}/run: {file} is a file, not a directory; choose another path", ["file"]),
    # a file where a folder belongs, or the reverse: one line and exit code 1, not a usage error (2)
    ("tokenizer train --out is a file",
     "tokenizer train --input {train} --vocab-size 300 --out {file}", None, 1,
     "--out {file} is a file; give a directory", ["file"]),
    ("tokenizer encode --model is a file", "tokenizer encode --model {file} {text}", None, 1,
     "--model {file} is a file; give a directory", ["file"]),
    ("train --config is a directory", "train --config {dir}", None, 1,
     "--config {dir} is a directory; give a file", []),
    ("translate --output is a directory", "translate -m {run} -o {dir}", b"Hello\n", 1,
     "--output {dir} is a directory; give a file", []),
    ("suggest-eval FILE is missing", "suggest-eval -m {lm} {tmp}/missing.txt", None, 1,
     "FILE {tmp}/missing.txt does not exist", []),
    ("suggest --checkpoint is a file", "suggest -m {file} hello", None, 1,
     "{file}: expected a run directory, a .safetensors file or a .ckpt checkpoint", ["file"]),
    # invalid UTF-8: one rule for every command that reads text (file, line, column, the fix)
    ("tokenizer encode, a file", "tokenizer encode --model {tok} {bad}", None, 1,
     f"{{bad}} line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", ["bad"]),
    ("tokenizer encode, stdin", "tokenizer encode --model {tok}", BAD_UTF8, 1,
     f"<stdin> line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", []),
    ("tokenizer decode, stdin", "tokenizer decode --model {tok}", BAD_UTF8, 1,
     f"<stdin> line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", []),
    ("suggest, stdin (was silently U+FFFD)", "suggest -m {lm}", b"ab\xffc\n", 1,
     f"<stdin> line 1: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", []),
    ("suggest, TEXT argument", "suggest -m {lm} caf\udce9", None, 1,
     "TEXT: invalid UTF-8 (at character 4); give UTF-8 text", []),
    ("suggest-eval, a file", "suggest-eval -m {lm} {bad}", None, 1,
     f"{{bad}} line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", ["bad"]),
    ("translate names a column, not '(byte 1)'", "translate -m {run} -o {out}", BAD_UTF8, 1,
     f"stdin line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", ["out"]),
    ("bleu, a file", "bleu {bad} {text}", None, 1,
     f"hypothesis file '{{bad}}' line 2: invalid UTF-8 (byte 0xff at column 3); {REPLACE}", []),
    ("a JSON corpus: no 'starting at at column'", "tokenizer train --config {jsonl_config} --out {tmp}/t",
     None, 1, "{bad_jsonl} line 1: not valid JSON (Unterminated string starting at column 8)", []),
]  # fmt: skip


@pytest.fixture
def paths(built_runs, tmp_path) -> dict[str, Path]:
    file, bad, out, text = tmp_path / "f", tmp_path / "bad.txt", tmp_path / "out.txt", tmp_path / "t.txt"
    file.write_text("x\n")
    bad.write_bytes(BAD_UTF8)
    out.write_text("old\n")
    text.write_text("She made a cup of tea.\nok\n")
    (tmp_path / "d").mkdir()
    bad_jsonl = tmp_path / "c.jsonl"
    bad_jsonl.write_bytes(b'{"en": "unterminated}\n')
    jsonl_config = tmp_path / "c.yaml"
    jsonl_config.write_text(f"data:\n  train: {bad_jsonl}\n  src_lang: en\n  tgt_lang: es\n")
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"
    return {
        "run": built_runs["run"], "lm": built_runs["lm"], "tok": built_runs["run"] / "tokenizer",
        "tmp": tmp_path, "file": file, "bad": bad, "out": out, "text": text, "dir": tmp_path / "d",
        "bad_jsonl": bad_jsonl, "jsonl_config": jsonl_config, "train": fixtures / "train.en",
        "config": Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml",
    }  # fmt: skip


@pytest.mark.parametrize(
    "args, stdin, code, fragment, unchanged", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_in_one_line_before_any_work(paths, args, stdin, code, fragment, unchanged):
    before = {name: paths[name].read_bytes() for name in unchanged}
    result = CliRunner().invoke(main, [a.format(**paths) for a in args.split(" ")], input=stdin)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    (line,) = result.stderr.splitlines()  # one line: no usage text, no traceback
    assert line.startswith("Error: ") and fragment.format(**paths) in line, line
    assert result.stdout == ""
    assert {name: paths[name].read_bytes() for name in unchanged} == before
    assert not [p.name for p in paths["tmp"].iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize(
    "args",
    ["tokenizer encode --model {tok} --encoding-errors replace", "suggest -m {lm} --encoding-errors replace"],
)
def test_encoding_errors_replace_reads_the_bad_bytes_as_u_fffd(paths, args):
    result = CliRunner().invoke(main, [a.format(**paths) for a in args.split(" ")], input=BAD_UTF8)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) >= 2


def test_an_unwritable_tokenizer_directory_is_named_as_given_not_its_temp_name(paths, monkeypatch):
    # the temp directory beside --out is an implementation detail: the error names --out's path
    def refuse(dir=None, prefix=None, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2z3")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = paths["tmp"] / "tok"
    args = ["tokenizer", "train", "--input", str(paths["train"]), "--out", str(out), "--vocab-size", "300"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: cannot read or write {out}: Permission denied; check the path\n"
