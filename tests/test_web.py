"""`s2s export --format web`: the page suggests in headless Chromium what `s2s suggest` prints.

A tiny language model is trained by `s2s train` (English side of the fixture), exported with the page,
served on 127.0.0.1 and typed into keystroke by keystroke (seq2seq_lstm/web/headless.py); every
keystroke's three words must equal the Python suggester's. The JavaScript port of the word rules and
the piece table is also checked directly against the Python code under Node.js.

The browser, Node.js and the page's npm files are optional here (the test skips, saying what is
missing), except under CI=true, where .ci/run installs them and a missing one is a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_results import ok, one_error_line
from click.testing import CliRunner
from test_translate import make_run

from seq2seq_lstm.cli import main
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.suggest.pieces import PieceTable
from seq2seq_lstm.suggest.suggester import Suggester
from seq2seq_lstm.suggest.words import parse_typed
from seq2seq_lstm.web import build
from seq2seq_lstm.web.headless import find_browser, type_in_browser

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/fixtures/tiny"
WEB = ROOT / "seq2seq_lstm/web"
# typed keystroke by keystroke: sentence ends, commas, an apostrophe, a bracket, two spaces
TEXTS = ["The cat is black. The dog", "The (big) house, the car's  red"]


def s2s(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, prog_name="s2s")


def need(reason: str) -> None:
    """Skip for want of an optional tool, except under CI, which installs every one (.ci/run)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI installs it (.ci/run)")
    pytest.skip(reason)


def node(script: str) -> object:
    """Run an ES module script with Node.js in the page's folder; its stdout parsed as JSON."""
    if shutil.which("node") is None:
        need("Node.js (node) is not installed")
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=WEB, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("web") / "lm"
    sets = [f"data.train={TINY / 'train.en'}", f"data.valid={TINY / 'valid.en'}", "data.test=", "task=lm",
            "training.val_every_steps=40", "training.num_threads=1"]  # fmt: skip
    ok(s2s("train", "--config", ROOT / "configs/tiny.yaml", *(f"--set={s}" for s in sets),
           "--max-steps", 40, "--accelerator", "cpu", "--out-dir", out))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def web_export(lm_run, tmp_path_factory) -> Path:
    try:
        build.npm_files()
    except UserError as error:
        need(str(error))
    out = tmp_path_factory.mktemp("web") / "page"
    line = ok(s2s("export", lm_run, "--format", "web", "--out", out))
    assert line.startswith(f"wrote {out} (app.js, index.html, lm_step.onnx, manifest.json, ")
    return out


def test_export_holds_the_page_the_model_and_its_libraries(web_export):
    names = {str(p.relative_to(web_export)) for p in web_export.rglob("*") if p.is_file()}
    assert names == {
        *build.PAGE_FILES, "manifest.json", "tokenizer.model", "lm_step.onnx", "pieces.json",
        *(f"vendor/{name}" for name in build.VENDOR_FILES),
    }  # fmt: skip
    pieces = json.loads((web_export / "pieces.json").read_text(encoding="utf-8"))
    assert pieces["pieces"][:4] == ["<pad>", "<unk>", "<s>", "</s>"] and pieces["special"] == [0, 1, 2, 3]


def browser_processes() -> list[int]:
    """Pids of live processes started by ``type_in_browser`` (their profile folder is in the command)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"s2s-chromium-" in (proc / "cmdline").read_bytes() and b"Z" not in _state(proc):
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def _state(proc: Path) -> bytes:
    return (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]


def test_page_shows_the_words_s2s_suggest_prints_at_every_keystroke(web_export, lm_run):
    if find_browser() is None:
        need("no headless Chromium (the Debian package chromium-headless-shell)")
    report = type_in_browser(web_export, TEXTS)
    assert browser_processes() == [], "Chromium processes outlived the run"
    suggester = Suggester.from_checkpoint(lm_run)
    typed = [text[:i] for text in TEXTS for i in range(len(text) + 1)]
    assert [r["text"] for r in report["results"]] == typed
    for result in report["results"]:
        expected = suggester.suggest(result["text"], k=3)
        assert result["words"] == [s.word for s in expected], result["text"]
        assert result["probs"] == pytest.approx([s.prob for s in expected], rel=1e-4), result["text"]
    # and the command itself, for one text
    shown = json.loads(ok(s2s("suggest", "-m", lm_run, "--format", "json", "The (big) house, the c")))
    page = next(r for r in report["results"] if r["text"] == "The (big) house, the c")
    assert [s["word"] for s in shown["suggestions"]] == page["words"] and len(page["words"]) == 3


def test_javascript_word_rules_parse_like_python():
    texts = ["", "The ca", "The cat ", "Hi. The", "Hi.  ", "(hi", "don't", "'tis", "x, ", "a\u00a0b",
             "Done!\u201d Next", "e.g. the", "a\u2019", "\u200bzero", "tab\tsep",
             "x" * 50, "word " * 30]  # fmt: skip
    script = (
        "import { parseTyped, splitPartial } from './words.js'; const texts = " + json.dumps(texts) + ";"
        "console.log(JSON.stringify([texts.map((t) => parseTyped(t, 64, true)), texts.map(splitPartial)]));"
    )
    parsed = [parse_typed(t, 64) for t in texts]
    expected = [None if p is None else dataclasses.asdict(p) for p in parsed]
    got, split = node(script)
    assert got == expected
    # the page replaces the typed part of a word with the word picked: the part the suggester completed
    assert [s[1] for s, p in zip(split, parsed, strict=True) if p] == [p.partial for p in parsed if p]
    assert ["".join(parts) for parts in split] == texts


def test_javascript_piece_table_allows_what_python_allows(web_export):
    import sentencepiece as spm

    table = PieceTable(spm.SentencePieceProcessor(model_file=str(web_export / "tokenizer.model")))
    keys = [(phase, rest, exact) for phase in ("space", "glued", "either", "word")
            for rest in ("", "t", "th", "the", "ca", "zq") for exact in (False, True)]  # fmt: skip
    script = (
        "import { readFileSync } from 'node:fs'; import { PieceTable } from './pieces.js';"
        f"const p = JSON.parse(readFileSync({json.dumps(str(web_export / 'pieces.json'))}, 'utf8'));"
        "const t = new PieceTable(p.pieces, p.special, 3);"
        f"console.log(JSON.stringify({{leads: t.leads, boundary: [...t.boundary], allowed: {json.dumps(keys)}"
        ".map(([ph, r, e]) => { const a = t.allowedAfter(ph, r, e); return [[...a.ids], a.closeAt]; })}));"
    )
    got = node(script)
    assert got["leads"] == table.leads
    assert got["boundary"] == table.boundary.int().tolist()
    assert got["allowed"] == [[a.id_list, a.close_at] for a in (table.allowed_after(*key) for key in keys)]


def test_export_web_refuses_a_translation_run(tmp_path):
    run = make_run(tmp_path / "mt")
    line = one_error_line(s2s("export", run, "--format", "web", "--out", tmp_path / "page"))
    assert line == f"Error: {run} is a translation model; the web page suggests words with a language model"
    assert not (tmp_path / "page").exists() and [p.name for p in tmp_path.iterdir()] == ["mt"]


def test_export_web_says_how_to_get_missing_npm_files(lm_run, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "WEB_DIR", tmp_path / "web")
    line = one_error_line(s2s("export", lm_run, "--format", "web", "--out", tmp_path / "page"))
    assert line == (
        f"Error: the web page's npm files are missing ({tmp_path / 'web/node_modules/onnxruntime-web/dist'}"
        f"/ort.wasm.min.mjs); install them once with `npm ci --prefix {tmp_path / 'web'}` (Node.js and the "
        "npm registry needed)"
    )
    assert not (tmp_path / "page").exists()
