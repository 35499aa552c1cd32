"""The bad-input battery: one table of what every `s2s` command must refuse, and how.

Each row is a command line (long option names), what it reads on standard input, and what must happen:
the exit code, a fragment of the one ``Error: ...`` line it ends with (no traceback, no warning), and
the files that must come through byte for byte. A row may first damage the run directories it uses
(``setup``). Every row also checks that no pickle payload ran: the payloads planted by the rows would
create ``{tmp}/pwned``.

When a command or an option that reads user input is added, add its bad inputs here. Deeper tests of
one kind of damage live beside this file (checkpoint files: test_checkpoints.py).

Placeholders in arguments, fragments and paths: ``{run}`` a translation run directory, ``{lm}`` a
language-model run directory (copies of the ones built in conftest.py, free to damage), ``{tmp}`` the
test's temporary directory, ``{tiny}`` the fixture corpus.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from seq2seq_lstm.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"
TINY_CONFIG = (ROOT / "configs" / "tiny.yaml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Places:
    """Where a row's files are, and the payload class its setup may plant."""

    run: Path
    lm: Path
    tmp: Path
    payload: type

    @property
    def marker(self) -> Path:
        return self.tmp / "pwned"

    def fill(self, text: str) -> str:
        return text.format(run=self.run, lm=self.lm, tmp=self.tmp, tiny=TINY)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    fragment: str  # in the last stderr line, after "Error: "
    code: int = 1
    stdin: str | bytes | None = None
    setup: Callable[[Places], Any] | None = None
    unchanged: tuple[str, ...] = field(default=())  # files that must keep their bytes


# --------------------------------------------------------------------------------------------------
# What the setups do to the files


def write(path: str, data: str | bytes) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        target = Path(at.fill(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(at.fill(data), encoding="utf-8")

    return setup


def config_with(old: str, new: str, path: str = "{tmp}/bad.yaml") -> Callable[[Places], None]:
    """configs/tiny.yaml with one text replaced, its data paths made absolute."""
    text = TINY_CONFIG.replace("tests/fixtures/tiny", str(TINY))
    assert old in text and "{" not in text
    return write(path, text.replace(old, new))


def pickle_payload(path: str, legacy: bool = False) -> Callable[[Places], None]:
    """A checkpoint as `s2s train` writes it, plus an object whose unpickling creates the marker."""

    def setup(at: Places) -> None:
        target = Path(at.fill(path))
        ckpt = torch.load(at.run / "checkpoints" / "best.ckpt", weights_only=True)
        ckpt["hyper_parameters"] = at.payload(at.marker)
        torch.save(ckpt, target, _use_new_zipfile_serialization=not legacy)

    return setup


def plain_pickle(path: str) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        Path(at.fill(path)).write_bytes(pickle.dumps({"state_dict": at.payload(at.marker)}, protocol=4))

    return setup


def truncated(path: str, keep: float) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        target = Path(at.fill(path))
        target.write_bytes(target.read_bytes()[: int(target.stat().st_size * keep)])

    return setup


def meta_field(run: str, name: str, value: Any) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        meta = Path(at.fill(run)) / "model.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text(encoding="utf-8")), name: value}), "utf-8")

    return setup


def removed(*paths: str) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        for path in paths:
            target = Path(at.fill(path))
            shutil.rmtree(target) if target.is_dir() else target.unlink()

    return setup


def both(*setups: Callable[[Places], Any]) -> Callable[[Places], None]:
    def setup(at: Places) -> None:
        for step in setups:
            step(at)

    return setup


def other_tokenizer(run: str) -> Callable[[Places], None]:
    """Replace the run's tokenizer by one trained with another vocabulary size (its sha256 differs)."""

    def setup(at: Places) -> None:
        from seq2seq_lstm.config import TokenizerConfig
        from seq2seq_lstm.data.tokenizer import Tokenizer

        texts = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
        cfg = TokenizerConfig(vocab_size=100, byte_fallback=False)
        Tokenizer.train(texts, None, cfg, Path(at.fill(run)) / "tokenizer")

    return setup


def exported(run: str, out: str) -> Callable[[Places], None]:
    """`s2s export` of a run, for the rows that load (or damage) an ONNX export folder."""

    def setup(at: Places) -> None:
        from seq2seq_lstm.export.exporter import export_run

        export_run(at.fill(run), at.fill(out))

    return setup


def manifest_field(folder: str, name: str, value: Any) -> Callable[[Places], None]:
    """A manifest with one top-level field set to ``value`` (a hand edit, or another tool's)."""

    def setup(at: Places) -> None:
        path = Path(at.fill(folder)) / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), name: value}), "utf-8")

    return setup


def manifest_sizes(folder: str, old: int, new: int) -> Callable[[Places], None]:
    """A manifest that says hidden size ``new`` everywhere (consistent in itself) over graphs of ``old``."""

    def setup(at: Places) -> None:
        path = Path(at.fill(folder)) / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["state"]["hidden_size"] = new
        for graph in manifest["graphs"].values():
            for tensor in graph["inputs"] + graph["outputs"]:
                tensor["shape"] = [new if d == old else d for d in tensor["shape"]]
        path.write_text(json.dumps(manifest), encoding="utf-8")

    return setup


def renamed_input(graph: str, old: str, new: str) -> Callable[[Places], None]:
    """An ONNX graph whose input ``old`` is called ``new`` (as another exporter might name it)."""

    def setup(at: Places) -> None:
        import onnx

        model = onnx.load(at.fill(graph))
        for tensor in model.graph.input:
            tensor.name = new if tensor.name == old else tensor.name
        for node in model.graph.node:
            node.input[:] = [new if name == old else name for name in node.input]
        onnx.save(model, at.fill(graph))

    return setup


def user_model(path: str, run: str, **fields: Any) -> Callable[[Places], None]:
    """A user model of ``run``'s tokenizer (as `s2s suggest --user-model` writes it), fields replaced."""

    def setup(at: Places) -> None:
        from seq2seq_lstm.data.tokenizer import Tokenizer
        from seq2seq_lstm.suggest.user_model import FORMAT, tokenizer_fingerprint

        fingerprint = tokenizer_fingerprint(Tokenizer.load(Path(at.fill(run)) / "tokenizer"))
        words = [["tea", 1.0, 1, {"tea": 1}, ""]]
        state = {"weight": 0.15, "clock": 1, "total": 1.0, "words": words, "pairs": []}
        data = {"format": FORMAT, "version": 1, "adapter": "cache", "tokenizer": fingerprint, "state": state}
        write(path, json.dumps(data | fields).encode())(at)  # bytes: no placeholders filled

    return setup


SRC = write("{tmp}/src.txt", "Hello.\nThe dog is black.\n")
HYP_REF = both(
    write("{tmp}/hyp.txt", "the cat sat\na dog\n"), write("{tmp}/ref.txt", "the cat sat\nthe dog\n")
)
J00 = b"J\x00"  # the report's struct.error
STREAM_BAD_TSV = write("{tmp}/bad.tsv", "en\tes\n" + "a b\tc d\n" * 1500 + "no tab here\n" + "e f\tg h\n" * 9)
PROTO_Q = b"\x80\x02q\x00"  # the report's IndexError
REFUSED = "holds pickled Python objects, not only tensors; refusing to load it (it could run code)"


# --------------------------------------------------------------------------------------------------
# The table

TOKENIZER = [
    Case("tokenizer-train/config-missing", ("tokenizer", "train", "--config", "{tmp}/none.yaml",
         "--out", "{tmp}/tok"), "config file {tmp}/none.yaml does not exist"),
    Case("tokenizer-train/config-unknown-key", ("tokenizer", "train", "--config", "{tmp}/bad.yaml",
         "--out", "{tmp}/tok"), "{tmp}/bad.yaml: unknown key tokenizer.vocab;",
         setup=config_with("vocab_size: 120", "vocab_size: 120\n  vocab: 3")),
    Case("tokenizer-train/config-wrong-type", ("tokenizer", "train", "--config", "{tmp}/bad.yaml",
         "--out", "{tmp}/tok"), "{tmp}/bad.yaml: tokenizer.vocab_size must be int; got 'lots' (str)",
         setup=config_with("vocab_size: 120", "vocab_size: lots")),
    Case("tokenizer-train/set-bad-choice", ("tokenizer", "train", "--input", "{tiny}/train.en",
         "--set", "tokenizer.model_type=word", "--out", "{tmp}/tok"), "tokenizer.model_type must be one of"),
    Case("tokenizer-train/empty-input", ("tokenizer", "train", "--input", "{tmp}/empty.txt", "--out",
         "{tmp}/tok"), "cannot train a tokenizer on an empty corpus", setup=write("{tmp}/empty.txt", "")),
    Case("tokenizer-train/input-missing", ("tokenizer", "train", "--input", "{tmp}/none.txt", "--out",
         "{tmp}/tok"), "corpus file {tmp}/none.txt does not exist"),
    Case("tokenizer-encode/no-tokenizer", ("tokenizer", "encode", "--model", "{tmp}"),
         "no tokenizer in {tmp}: expected spm.model, or src.model and tgt.model", stdin="hello\n"),
    Case("tokenizer-encode/input-missing", ("tokenizer", "encode", "--model", "{run}/tokenizer",
         "{tmp}/none.txt"), "INPUT_FILE {tmp}/none.txt does not exist"),
    Case("tokenizer-decode/not-an-id", ("tokenizer", "decode", "--model", "{run}/tokenizer", "--ids"),
         "line 1: 'x9' is not a piece id of this tokenizer", stdin="x9\n"),
]  # fmt: skip

DATA = [
    Case("data-stats/config-missing", ("data", "stats", "--config", "{tmp}/none.yaml", "--tokenizer",
         "{run}/tokenizer"), "config file {tmp}/none.yaml does not exist"),
    Case("data-stats/corpus-missing", ("data", "stats", "--config", "{tmp}/bad.yaml", "--tokenizer",
         "{run}/tokenizer"), "corpus file {tmp}/nope.en does not exist",
         setup=config_with(f"{TINY}/train", "{tmp}/nope")),
    Case("data-stats/no-tokenizer", ("data", "stats", "--config", "{run}/config.yaml", "--tokenizer",
         "{tmp}/none"), "no tokenizer in {tmp}/none: expected spm.model"),
]  # fmt: skip

TRAIN = [
    Case("train/config-unknown-key", ("train", "--config", "{tmp}/bad.yaml", "--out-dir", "{tmp}/out"),
         "{tmp}/bad.yaml: unknown key model.hidden;", setup=config_with("hidden_size: 32", "hidden: 32")),
    Case("train/config-missing", ("train", "--config", "{tmp}/none.yaml"),
         "config file {tmp}/none.yaml does not exist; pass --config with a YAML file"),
    Case("train/set-unknown-key", ("train", "--config", "{run}/config.yaml", "--set", "model.hiddensize=3",
         "--out-dir", "{tmp}/out"), "--set model.hiddensize=3: unknown key model.hiddensize; allowed keys:"),
    Case("train/set-malformed", ("train", "--config", "{run}/config.yaml", "--set", "nonsense", "--out-dir",
         "{tmp}/out"), "--set nonsense: malformed override; write KEY=VALUE"),
    Case("train/set-bad-value", ("train", "--config", "{run}/config.yaml", "--set", "model.hidden_size=0",
         "--out-dir", "{tmp}/out"), "model.hidden_size must be"),
    Case("train/resume-nothing", ("train", "--config", "{run}/config.yaml", "--resume", "--out-dir",
         "{tmp}/empty"), "cannot resume: {tmp}/empty/checkpoints/last.ckpt does not exist"),
    Case("train/run-exists", ("train", "--config", "{run}/config.yaml", "--out-dir", "{run}"),
         "{run} already holds a training run", unchanged=("{run}/checkpoints/last.ckpt", "{run}/model.json",
         "{run}/model.safetensors", "{run}/config.yaml")),
    Case("train/resume-garbage", ("train", "--resume", "--out-dir", "{run}"),
         "{run}/checkpoints/last.ckpt is corrupt or truncated (unreadable data: struct.error",
         setup=both(write("{run}/checkpoints/last.ckpt", J00), write("{run}/checkpoints/best.ckpt", J00)),
         unchanged=("{run}/checkpoints/last.ckpt", "{run}/config.yaml")),
    Case("train/resume-payload", ("train", "--resume", "--out-dir", "{run}"),
         f"{{run}}/checkpoints/last.ckpt {REFUSED}", setup=pickle_payload("{run}/checkpoints/last.ckpt"),
         unchanged=("{run}/checkpoints/last.ckpt", "{run}/checkpoints/best.ckpt")),
    Case("train/resume-malformed-record", ("train", "--resume", "--out-dir", "{run}"),
         "src_vocab must be a whole number >= 1; got 'many' (str)",
         setup=lambda at: _edit_record(at.run / "checkpoints" / "last.ckpt", src_vocab="many")),
    Case("train/init-from-missing", ("train", "--config", "{run}/config.yaml", "--set",
         "training.init_from={tmp}/none", "--out-dir", "{tmp}/out"), "{tmp}/none does not exist"),
    Case("train/stream-file-missing", ("train", "--config", "{run}/config.yaml", "--set",
         "data.streaming=true", "--set", "data.train={tmp}/none.tsv", "--out-dir", "{tmp}/out"),
         "corpus file {tmp}/none.tsv does not exist"),
    Case("train/stream-bad-window", ("train", "--config", "{run}/config.yaml", "--set", "data.streaming=true",
         "--set", "data.window=0", "--out-dir", "{tmp}/out"), "data.window must be >= 1; got 0"),
    # the tokenizer's sample reads the stream first and finds the line
    Case("train/stream-bad-line", ("train", "--config", "{run}/config.yaml", "--set", "data.streaming=true",
         "--set", "data.train={tmp}/bad.tsv", "--out-dir", "{tmp}/out"),
         "{tmp}/bad.tsv line 1502: 1 tab-separated fields but the header has 2", setup=STREAM_BAD_TSV),
    # a fine-tuning run reuses its tokenizer: a DataLoader worker finds the line, mid-training
    Case("train/stream-bad-line-in-worker", ("train", "--config", "{run}/config.yaml", "--set",
         "data.streaming=true", "--set", "data.num_workers=2", "--set", "data.train={tmp}/bad.tsv", "--set",
         "training.init_from={run}", "--out-dir", "{tmp}/out"),
         "{tmp}/bad.tsv line 1502: 1 tab-separated fields but the header has 2", setup=STREAM_BAD_TSV),
]  # fmt: skip

TRANSLATE = [
    Case("translate/checkpoint-missing", ("translate", "--checkpoint", "{tmp}/none"),
         "model {tmp}/none does not exist", stdin="Hello.\n"),
    Case("translate/no-model-in-dir", ("translate", "--checkpoint", "{tmp}"), "{tmp} holds no model",
         stdin="Hello.\n"),
    Case("translate/payload-zip", ("translate", "--checkpoint", "{run}/checkpoints/best.ckpt"),
         f"{{run}}/checkpoints/best.ckpt {REFUSED}", stdin="Hello.\n",
         setup=pickle_payload("{run}/checkpoints/best.ckpt")),
    Case("translate/payload-legacy", ("translate", "--checkpoint", "{run}/checkpoints/best.ckpt"),
         f"{{run}}/checkpoints/best.ckpt {REFUSED}", stdin="Hello.\n",
         setup=pickle_payload("{run}/checkpoints/best.ckpt", legacy=True)),
    Case("translate/payload-plain-pickle", ("translate", "--checkpoint", "{tmp}/model.pt"),
         f"{{tmp}}/model.pt {REFUSED}", stdin="Hello.\n", setup=plain_pickle("{tmp}/model.pt")),
    Case("translate/garbage-struct", ("translate", "--checkpoint", "{tmp}/x.ckpt"),
         "{tmp}/x.ckpt is corrupt or truncated (unreadable data: struct.error", stdin="hi\n",
         setup=write("{tmp}/x.ckpt", J00)),
    Case("translate/garbage-index", ("translate", "--checkpoint", "{tmp}/y.ckpt"),
         "{tmp}/y.ckpt is corrupt or truncated (unreadable data: IndexError", stdin="hi\n",
         setup=write("{tmp}/y.ckpt", PROTO_Q)),
    Case("translate/truncated-ckpt", ("translate", "--checkpoint", "{run}/checkpoints/best.ckpt"),
         "{run}/checkpoints/best.ckpt is corrupt or truncated (", stdin="Hello.\n",
         setup=truncated("{run}/checkpoints/best.ckpt", 0.5)),
    Case("translate/truncated-safetensors", ("translate", "--checkpoint", "{run}"),
         "{run}/model.safetensors is corrupt or truncated (", stdin="Hello.\n",
         setup=truncated("{run}/model.safetensors", 0.3)),
    Case("translate/wrong-shape-weights", ("translate", "--checkpoint", "{run}"),
         "{run}/model.safetensors does not match {run}/config.yaml: parameter", stdin="Hello.\n",
         setup=config_with("hidden_size: 32", "hidden_size: 48", "{run}/config.yaml")),
    Case("translate/other-tokenizer", ("translate", "--checkpoint", "{run}"),
         "{run}/tokenizer/spm.model does not match {run}/model.safetensors: its sha256 is", stdin="Hello.\n",
         setup=other_tokenizer("{run}")),
    Case("translate/config-invalid", ("translate", "--checkpoint", "{run}"),
         "{run}/config.yaml: unknown key model.hidden;", stdin="Hello.\n",
         setup=config_with("hidden_size: 32", "hidden: 32", "{run}/config.yaml")),
    Case("translate/model-json-missing", ("translate", "--checkpoint", "{run}"),
         "{run}/model.json is missing", stdin="Hello.\n", setup=removed("{run}/model.json")),
    Case("translate/model-json-not-json", ("translate", "--checkpoint", "{run}"),
         "{run}/model.json is not valid JSON", stdin="Hello.\n", setup=write("{run}/model.json", "{{x")),
    Case("translate/model-json-sha-string", ("translate", "--checkpoint", "{run}"),
         "{run}/model.json: tokenizer_sha256 must be a mapping of tokenizer file name to sha256",
         stdin="Hello.\n", setup=meta_field("{run}", "tokenizer_sha256", "abc")),
    Case("translate/model-json-vocab-string", ("translate", "--checkpoint", "{run}"),
         "{run}/model.json: src_vocab must be a whole number >= 1; got 'many' (str)", stdin="Hello.\n",
         setup=meta_field("{run}", "src_vocab", "many")),
    Case("translate/input-missing", ("translate", "--checkpoint", "{run}", "--input", "{tmp}/none.txt"),
         "{tmp}/none.txt"),
    Case("translate/invalid-utf8", ("translate", "--checkpoint", "{run}"), "invalid UTF-8",
         stdin=b"Hello\n\xff\xfe\n"),
    Case("translate/unknown-device", ("translate", "--checkpoint", "{run}", "--device", "gpu9"),
         "device 'gpu9' is not a torch device", stdin="Hello.\n"),
    Case("translate/n-best-above-beam", ("translate", "--checkpoint", "{run}", "--beam-size", "2",
         "--n-best", "3"), "generation.n_best must be smaller than or equal to generation.beam_size",
         stdin="Hello.\n"),
    Case("translate/shortlist-missing", ("translate", "--checkpoint", "{run}", "--shortlist", "10"),
         "{run}/shortlist.safetensors is missing; build it with `s2s shortlist", stdin="Hello.\n"),
    Case("translate/output-kept-on-bad-model", ("translate", "--checkpoint", "{tmp}/x.ckpt", "--output",
         "{tmp}/out.txt"), "{tmp}/x.ckpt is corrupt or truncated", stdin="Hello.\n",
         setup=both(write("{tmp}/x.ckpt", J00), write("{tmp}/out.txt", "earlier translations\n")),
         unchanged=("{tmp}/out.txt",)),
]  # fmt: skip


def kept(*steps: int) -> Callable[[Places], None]:
    """Validation checkpoints (checkpoints/step-NNNNNN.ckpt) of the run: copies of its best.ckpt."""

    def setup(at: Places) -> None:
        folder = at.run / "checkpoints"
        for step in steps:
            shutil.copyfile(folder / "best.ckpt", folder / f"step-{step:06d}.ckpt")

    return setup


STEP4 = "{run}/checkpoints/step-000004.ckpt"
AVERAGE = [
    Case("average/run-missing", ("average", "{tmp}/none", "--last", "2"), "RUN {tmp}/none does not exist"),
    Case("average/run-is-a-file", ("average", "{tmp}/x.txt", "--last", "2"), "RUN {tmp}/x.txt is a file",
         setup=write("{tmp}/x.txt", "notes\n")),
    Case("average/not-a-run", ("average", "{tmp}", "--last", "2"), "{tmp}/config.yaml is missing"),
    Case("average/no-kept-checkpoints", ("average", "{run}", "--last", "2"),
         "{run} keeps 0 validation checkpoint(s) (checkpoints/step-*.ckpt), fewer than the 2 asked for"),
    Case("average/fewer-than-n", ("average", "{run}", "--best", "3"), "keeps 2 validation checkpoint(s)",
         setup=kept(2, 4)),
    Case("average/n-zero", ("average", "{run}", "--last", "0"), "'--last': 0 is not in the range x>=1"),
    Case("average/n-not-a-number", ("average", "{run}", "--last", "five"), "'five' is not a valid integer"),
    Case("average/neither-last-nor-best", ("average", "{run}"), "pass one of --last N or --best N"),
    Case("average/out-exists", ("average", "{run}", "--last", "2", "--out", "{tmp}"),
         "--out {tmp} already exists", setup=kept(2, 4)),
    Case("average/pickle-payload", ("average", "{run}", "--last", "2", "--out", "{tmp}/avg"),
         f"{STEP4} holds pickled Python objects", setup=both(kept(2), pickle_payload(STEP4))),
    Case("average/truncated", ("average", "{run}", "--last", "2", "--out", "{tmp}/avg"),
         f"{STEP4} is corrupt or truncated", setup=both(kept(2, 4), truncated(STEP4, 0.5))),
    Case("average/other-tokenizer", ("average", "{run}", "--last", "2", "--out", "{tmp}/avg"),
         "{run}/tokenizer/spm.model does not match {run}/checkpoints/step-000002.ckpt",
         setup=both(kept(2, 4), other_tokenizer("{run}"))),
]  # fmt: skip

SHORTLIST = [
    Case("shortlist/checkpoint-missing", ("shortlist", "--checkpoint", "{tmp}/none"),
         "model {tmp}/none does not exist"),
    Case("shortlist/config-missing", ("shortlist", "--checkpoint", "{run}"), "{run}/config.yaml is missing",
         setup=removed("{run}/config.yaml"), unchanged=("{run}/model.safetensors",)),
    Case("shortlist/no-model-in-dir", ("shortlist", "--checkpoint", "{tmp}"), "{tmp} holds no model"),
    Case("shortlist/output-is-a-folder", ("shortlist", "--checkpoint", "{run}"),
         "the shortlist file {run}/shortlist.safetensors is a directory",
         setup=lambda at: (at.run / "shortlist.safetensors").mkdir()),
]  # fmt: skip

EVALUATE = [
    Case("evaluate/unknown-metric", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt", "--metrics", "rouge"),
         "'rouge' is not one of bleu, chrf, ter; see 's2s evaluate --help'", setup=HYP_REF),
    Case("evaluate/unknown-option", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt", "--bogus"),
         "No such option '--bogus'; see 's2s evaluate --help'", setup=HYP_REF),
    Case("evaluate/hyp-missing", ("evaluate", "{tmp}/none.txt", "{tmp}/ref.txt"), "{tmp}/none.txt",
         setup=HYP_REF),
    Case("evaluate/significance-without-baseline", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt",
         "--paired-bs"), "--paired-bs: a paired significance test compares HYP with a baseline system",
         setup=HYP_REF),
    Case("evaluate/checkpoint-without-source", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt",
         "--checkpoint", "{run}"), "--checkpoint needs --source SRC", setup=HYP_REF),
    Case("evaluate/checkpoint-payload", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt", "--source",
         "{tmp}/src.txt", "--checkpoint", "{run}/checkpoints/best.ckpt"),
         f"{{run}}/checkpoints/best.ckpt {REFUSED}",
         setup=both(HYP_REF, SRC, pickle_payload("{run}/checkpoints/best.ckpt"))),
    Case("evaluate/checkpoint-garbage", ("evaluate", "{tmp}/hyp.txt", "{tmp}/ref.txt", "--source",
         "{tmp}/src.txt", "--checkpoint", "{tmp}/x.ckpt"), "{tmp}/x.ckpt is corrupt or truncated",
         setup=both(HYP_REF, SRC, write("{tmp}/x.ckpt", PROTO_Q))),
]  # fmt: skip

BLEU = [
    Case("bleu/hyp-missing", ("bleu", "{tmp}/none.txt", "{tmp}/ref.txt"), "{tmp}/none.txt", setup=HYP_REF),
    Case("bleu/ref-invalid-utf8", ("bleu", "{tmp}/hyp.txt", "{tmp}/bad.txt"), "invalid UTF-8",
         setup=both(HYP_REF, write("{tmp}/bad.txt", b"the cat\n\xe9t\xe9\n"))),
    Case("bleu/line-counts-differ", ("bleu", "{tmp}/hyp.txt", "{tmp}/short.txt"), "{tmp}/short.txt",
         setup=both(HYP_REF, write("{tmp}/short.txt", "one line\n"))),
]  # fmt: skip

SUGGEST = [
    Case("suggest/checkpoint-missing", ("suggest", "--checkpoint", "{tmp}/none", "I like"), "{tmp}/none"),
    Case("suggest/payload", ("suggest", "--checkpoint", "{lm}", "I like"),
         f"{{lm}}/checkpoints/best.ckpt {REFUSED}",
         setup=both(removed("{lm}/model.safetensors"), pickle_payload("{lm}/checkpoints/best.ckpt"))),
    Case("suggest/garbage", ("suggest", "--checkpoint", "{lm}", "I like"),
         "{lm}/checkpoints/best.ckpt is corrupt or truncated",
         setup=both(removed("{lm}/model.safetensors"), write("{lm}/checkpoints/best.ckpt", J00))),
    Case("suggest/model-json-vocab", ("suggest", "--checkpoint", "{lm}", "I like"),
         "{lm}/model.json: tgt_vocab must be a whole number >= 1; got 'many' (str)",
         setup=meta_field("{lm}", "tgt_vocab", "many")),
    Case("suggest/translation-model-without-source", ("suggest", "--checkpoint", "{run}", "I like"),
         "a translation model suggests words of a translation: give the source sentence"),
    Case("suggest-eval/no-words", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/empty.txt"),
         "{tmp}/empty.txt has no words to score", setup=write("{tmp}/empty.txt", "...\n\n")),
    Case("suggest-eval/file-missing", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/none.txt"),
         "FILE {tmp}/none.txt does not exist"),
    Case("suggest-eval/payload", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/src.txt"),
         f"{{lm}}/checkpoints/best.ckpt {REFUSED}",
         setup=both(SRC, removed("{lm}/model.safetensors"), pickle_payload("{lm}/checkpoints/best.ckpt"))),
    Case("suggest/user-model-not-json", ("suggest", "--checkpoint", "{lm}", "--user-model", "{tmp}/me.json",
         "I like"), "--user-model {tmp}/me.json is not a user model (not JSON: Expecting property name "
         "enclosed in double quotes at line 1); pass --forget to erase it and start afresh",
         setup=write("{tmp}/me.json", b"{oops"), unchanged=("{tmp}/me.json",)),
    Case("suggest/user-model-foreign", ("suggest", "--checkpoint", "{lm}", "--user-model", "{tmp}/me.json",
         "I like"), '--user-model {tmp}/me.json is not a user model (no "format": "seq2seq-lstm-user-model")',
         setup=write("{tmp}/me.json", b'{"theme": "dark"}'), unchanged=("{tmp}/me.json",)),
    Case("suggest/user-model-other-tokenizer", ("suggest", "--checkpoint", "{lm}", "--user-model",
         "{tmp}/me.json", "I like"), "--user-model {tmp}/me.json was learned with another tokenizer",
         setup=user_model("{tmp}/me.json", "{lm}", tokenizer="sha256:0123"), unchanged=("{tmp}/me.json",)),
    Case("suggest/user-model-damaged", ("suggest", "--checkpoint", "{lm}", "--user-model", "{tmp}/me.json",
         "I like"), "--user-model {tmp}/me.json is damaged: malformed cache state",
         setup=user_model("{tmp}/me.json", "{lm}", state={"words": 3}), unchanged=("{tmp}/me.json",)),
    Case("suggest/user-model-newer-version", ("suggest", "--checkpoint", "{lm}", "--user-model",
         "{tmp}/me.json", "I like"), "--user-model {tmp}/me.json has format version 2; this program reads 1",
         setup=user_model("{tmp}/me.json", "{lm}", version=2), unchanged=("{tmp}/me.json",)),
    Case("suggest/user-model-under-a-file", ("suggest", "--checkpoint", "{lm}", "--user-model",
         "{tmp}/src.txt/me.json", "I like"), "{tmp}/src.txt is a file, not a directory",
         setup=SRC, unchanged=("{tmp}/src.txt",)),
    Case("suggest/user-model-is-a-folder", ("suggest", "--checkpoint", "{lm}", "--user-model", "{tmp}",
         "I like"), "--user-model {tmp} is a directory"),
    Case("suggest/forget-without-user-model", ("suggest", "--checkpoint", "{lm}", "--forget"),
         "--forget needs --user-model FILE"),
    Case("suggest/adapt-option-malformed", ("suggest", "--checkpoint", "{lm}", "--user-model",
         "{tmp}/me.json", "--adapt-option", "weight", "I like"),
         "--adapt-option 'weight': give KEY=NUMBER, e.g. weight=0.2"),
    Case("suggest/adapt-option-unknown", ("suggest", "--checkpoint", "{lm}", "--user-model", "{tmp}/me.json",
         "--adapt-option", "wieght=0.2", "I like"), "the cache has no setting 'wieght'"),
    Case("suggest-eval/tune-without-cache", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/src.txt",
         "--tune", "0.1"), "--tune tunes the cache's weight: give --adapt cache", setup=SRC),
    Case("suggest-eval/adapt-with-sources", ("suggest-eval", "--checkpoint", "{run}", "{tmp}/src.txt",
         "--sources", "{tmp}/src.txt", "--adapt", "cache"),
         "--adapt, --documents and --tune work with language models; drop --sources", setup=SRC),
    Case("suggest-eval/documents-without-words", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/docs.txt",
         "--adapt", "cache", "--documents"), "{tmp}/docs.txt has no words to score",
         setup=write("{tmp}/docs.txt", "...\n\n!\n")),
    Case("suggest-eval/dynamic-int8", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/src.txt", "--adapt",
         "dynamic", "--dtype", "int8"),
         "--adapt dynamic takes gradient steps on float32 weights; use --dtype float32", setup=SRC),
    Case("suggest-eval/dynamic-option-unknown", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/src.txt",
         "--adapt", "dynamic", "--adapt-option", "weight=0.2"), "dynamic evaluation has no setting 'weight'",
         setup=SRC),
    Case("suggest-eval/dynamic-bad-lr", ("suggest-eval", "--checkpoint", "{lm}", "{tmp}/src.txt",
         "--adapt", "dynamic", "--adapt-option", "lr=-1"),
         "the dynamic evaluation lr must be a positive number; got -1.0", setup=SRC),
]  # fmt: skip

EXPORT = [
    Case("export/run-missing", ("export", "{tmp}/none", "--out", "{tmp}/out"),
         "model {tmp}/none does not exist"),
    Case("export/run-without-weights", ("export", "{lm}", "--out", "{tmp}/out"), "{lm} holds no model",
         setup=removed("{lm}/model.safetensors", "{lm}/checkpoints")),
    Case("export/run-without-tokenizer", ("export", "{lm}", "--out", "{tmp}/out"),
         "no tokenizer in {lm}/tokenizer", setup=removed("{lm}/tokenizer")),
    Case("export/out-exists", ("export", "{lm}", "--out", "{tmp}"),
         "--out {tmp} already exists; give a new folder"),
    Case("export/web-translation-run", ("export", "{run}", "--format", "web", "--out", "{tmp}/out"),
         "{run} is a translation model; the web page suggests words with a language model"),
    Case("export/web-run-missing", ("export", "{tmp}/none", "--format", "web", "--out", "{tmp}/out"),
         "model {tmp}/none does not exist"),
    Case("export/web-out-exists", ("export", "{lm}", "--format", "web", "--out", "{tmp}"),
         "--out {tmp} already exists; give a new folder"),
    Case("translate/onnx-not-an-export", ("translate", "--engine", "onnx", "--checkpoint", "{run}", "--input",
         "{tmp}/src.txt"), "{run}/manifest.json is missing; {run} is not a folder written by `s2s export`",
         setup=SRC),
    Case("translate/split-sentences-takes-no-value", ("translate", "--checkpoint", "{run}",
         "--split-sentences=no"), "Option '--split-sentences' does not take a value",
         stdin="Hi. Bye.\n"),
    Case("translate/onnx-manifest-languages-not-a-mapping", ("translate", "--engine", "onnx", "--checkpoint",
         "{tmp}/exp", "--input", "{tmp}/src.txt"), "{tmp}/exp/manifest.json: damaged manifest",
         setup=both(SRC, exported("{run}", "{tmp}/exp"), manifest_field("{tmp}/exp", "languages", "en"))),
    Case("translate/onnx-ensemble", ("translate", "--engine", "onnx", "--checkpoint", "{run}", "--checkpoint",
         "{run}", "--input", "{tmp}/src.txt"), "--engine onnx takes one export folder", setup=SRC),
    Case("suggest/onnx-manifest-not-matching-graphs", ("suggest", "--engine", "onnx", "--checkpoint",
         "{tmp}/exp", "The "), "{tmp}/exp/lm_step.onnx: the graph's inputs/outputs differ from manifest.json",
         setup=both(exported("{lm}", "{tmp}/exp"), manifest_sizes("{tmp}/exp", 32, 64))),
    Case("suggest/onnx-graph-inputs-differ", ("suggest", "--engine", "onnx", "--checkpoint", "{tmp}/exp",
         "The "), "{tmp}/exp/lm_step.onnx: the graph's inputs/outputs differ from manifest.json (graph "
         "in: ids",
         setup=both(exported("{lm}", "{tmp}/exp"), renamed_input("{tmp}/exp/lm_step.onnx", "tokens", "ids"))),
    Case("suggest/onnx-manifest-not-json", ("suggest", "--engine", "onnx", "--checkpoint", "{tmp}/exp",
         "The "), "{tmp}/exp/manifest.json is not valid JSON",
         setup=both(exported("{lm}", "{tmp}/exp"), write("{tmp}/exp/manifest.json", b"{"))),
    Case("suggest-eval/onnx-dtype", ("suggest-eval", "--engine", "onnx", "--dtype", "int8", "--checkpoint",
         "{lm}", "{tmp}/src.txt"), "--dtype int8 applies to --engine torch", setup=SRC),
]  # fmt: skip

SERVE = [  # each refused before a port opens
    Case("serve/checkpoint-missing", ("serve", "--checkpoint", "{tmp}/none"),
         "model {tmp}/none does not exist"),
    Case("serve/payload", ("serve", "--checkpoint", "{run}/checkpoints/best.ckpt"),
         f"{{run}}/checkpoints/best.ckpt {REFUSED}", setup=pickle_payload("{run}/checkpoints/best.ckpt")),
    Case("serve/split-sentences-takes-no-value", ("serve", "--checkpoint", "{run}", "--no-split-sentences=1"),
         "Option '--no-split-sentences' does not take a value"),
    Case("serve/port-out-of-range", ("serve", "--checkpoint", "{run}", "--port", "70000"),
         "Invalid value for '--port': 70000 is not in the range 1<=x<=65535; see 's2s serve --help'"),
    Case("serve/api-key-file-missing", ("serve", "--checkpoint", "{run}", "--api-key-file", "{tmp}/none"),
         "--api-key-file {tmp}/none does not exist"),
    Case("serve/api-key-file-is-a-folder", ("serve", "--checkpoint", "{run}", "--api-key-file", "{tmp}"),
         "--api-key-file {tmp} is a directory; give a file"),
    Case("serve/api-key-file-empty", ("serve", "--checkpoint", "{run}", "--api-key-file", "{tmp}/key"),
         "--api-key-file {tmp}/key is empty", setup=write("{tmp}/key", "\n")),
    Case("serve/queue-below-request", ("serve", "--checkpoint", "{run}", "--queue-sentences", "8"),
         "queue_sentences (8) must be >= max_sentences (256)"),
]  # fmt: skip

CSV = "{tmp}/metrics.csv"
GOOD_CSV = write(CSV, "epoch,step,train_loss\n0,0,4.2\n0,1,4.1\n")  # as Lightning logged before time

PLOT = [
    Case("plot/run-missing", ("plot", "{tmp}/none", "--output", "{tmp}/c.png"),
         "RUN {tmp}/none does not exist"),
    Case("plot/run-without-logs", ("plot", "{run}", "--output", "{tmp}/c.png"),
         "{run}: no metrics.csv under {run}/logs; give a run directory of `s2s train`"),
    Case("plot/csv-not-a-number", ("plot", CSV, "--output", "{tmp}/c.png"),
         "{tmp}/metrics.csv line 3: train_loss is 'x', not a number",
         setup=write(CSV, "epoch,step,train_loss\n0,0,4.2\n0,1,x\n")),
    Case("plot/csv-short-row", ("plot", CSV, "--output", "{tmp}/c.png"),
         "{tmp}/metrics.csv line 2: 2 fields where the header has 3",
         setup=write(CSV, "epoch,step,train_loss\n0,0\n")),
    Case("plot/csv-empty", ("plot", CSV, "--output", "{tmp}/c.png"),
         "{tmp}/metrics.csv: empty; not a metrics.csv", setup=write(CSV, "")),
    Case("plot/csv-invalid-utf8", ("plot", CSV, "--output", "{tmp}/c.png"),
         "{tmp}/metrics.csv line 2: invalid UTF-8 (byte 0xff at column 5)",
         setup=write(CSV, b"epoch,step,train_loss\n0,0,\xff\n")),
    Case("plot/unknown-metric", ("plot", CSV, "--metrics", "train_loss,bleu", "--output", "{tmp}/c.png"),
         "--metrics: unknown metric 'bleu'; choose from train_loss,", setup=GOOD_CSV),
    Case("plot/no-time-column", ("plot", CSV, "--x", "time", "--output", "{tmp}/c.png"),
         "{tmp}/metrics.csv: no time column", setup=GOOD_CSV),
    Case("plot/output-is-a-folder", ("plot", CSV, "--output", "{tmp}"),
         "--output {tmp} is a directory; give a file", setup=GOOD_CSV),
    Case("plot/output-kept-on-bad-csv", ("plot", CSV, "--output", "{tmp}/c.png"), "{tmp}/metrics.csv line 2:",
         setup=both(write(CSV, "epoch,step,train_loss\n0,zero,4.2\n"), write("{tmp}/c.png", b"older")),
         unchanged=("{tmp}/c.png",)),
]  # fmt: skip

RUNS = [
    Case("runs/dir-missing", ("runs", "{tmp}/none"), "DIR {tmp}/none does not exist"),
    Case("runs/dir-is-a-file", ("runs", "{tmp}/notes.txt"), "DIR {tmp}/notes.txt is a file; give a directory",
         setup=write("{tmp}/notes.txt", "notes\n")),
]  # fmt: skip

CASES = [*TOKENIZER, *DATA, *TRAIN, *TRANSLATE, *SHORTLIST, *AVERAGE, *EVALUATE, *BLEU, *SUGGEST, *EXPORT,
         *SERVE, *PLOT, *RUNS]  # fmt: skip


def _edit_record(path: Path, **fields: Any) -> None:
    """Change fields of the "s2s" entry of a checkpoint (as a hand edit or bit rot would)."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["s2s"].update(fields)
    torch.save(ckpt, path)


def test_every_command_is_in_the_table():
    import click

    def leaves(group: click.Group, prefix: str = "") -> set[str]:
        names = set()
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # the CLI loads its commands lazily: ask, do not read
            command = group.get_command(ctx, name)
            full = f"{prefix}{name}"
            names |= leaves(command, f"{full} ") if isinstance(command, click.Group) else {full}
        return names

    commands = leaves(main)
    assert {"tokenizer train", "data stats", "translate", "suggest-eval"} <= commands
    covered = {" ".join(c.args[:2]) if c.args[0] in ("tokenizer", "data") else c.args[0] for c in CASES}
    assert commands <= covered, f"add bad-input rows for {sorted(commands - covered)}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, runs, tmp_path, payload):
    at = Places(run=runs["run"], lm=runs["lm"], tmp=tmp_path, payload=payload)
    if case.setup is not None:
        case.setup(at)
    kept = {Path(at.fill(p)): Path(at.fill(p)).read_bytes() for p in case.unchanged}
    with warnings.catch_warnings(record=True) as warned:  # pytest would otherwise swallow them
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, [at.fill(a) for a in case.args], input=case.stdin)
    assert not warned, [str(w.message)[:200] for w in warned]
    assert result.exit_code == case.code, result.output
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("Error: "), result.output
    assert at.fill(case.fragment) in lines[-1]
    assert not any(word in result.output for word in ("Traceback", "Warning")), result.output
    assert not any(line.startswith("Error") for line in lines[:-1]), result.output
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path} changed"
    assert not at.marker.exists(), "a pickle payload ran"
