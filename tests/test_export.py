"""`s2s export --format onnx` and the ONNX Runtime engine: the same searches, the same numbers.

The runs hold untrained tiny models whose weights are drawn wide (uniform +-0.6, as in
test_translate.py): outputs are peaked and end at varied lengths, so a rounding difference between
the engines (ONNX Runtime and torch round float32 products differently, ~1e-7) cannot flip a choice.
Two layers on both sides and a bidirectional encoder, so the state and packing axes are exercised.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cli_results import ok, one_error_line
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from seq2seq_lstm.checkpoint import RunDir, export_weights, load_for_inference, save_checkpoint_info
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config, save_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import CheckpointError, UserError
from seq2seq_lstm.export.engine import load_engine, load_export
from seq2seq_lstm.export.exporter import export_run, gemm_to_matmul
from seq2seq_lstm.inference.translator import Translator
from seq2seq_lstm.model.seq2seq import build_model
from seq2seq_lstm.suggest.suggester import Suggester
from seq2seq_lstm.vocab import BOS_ID

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/fixtures/tiny"
CELLS = ("lstm", "peephole", "cifg")


def _lines(name: str) -> list[str]:
    return (TINY / name).read_text(encoding="utf-8").splitlines()


def make_run(out: Path, *overrides: str) -> Path:
    """A run directory as `s2s train` writes it, with wide random weights (module docstring)."""
    cfg = load_config(ROOT / "configs/tiny.yaml", [f"training.out_dir={out}", "model.enc_layers=2",
                      "model.dec_layers=2", *overrides])  # fmt: skip
    run = RunDir(out)
    tgt = None if cfg.task == "lm" else _lines("train.es")
    tokenizer = Tokenizer.train(_lines("train.en"), tgt, cfg.tokenizer, out_dir=run.tokenizer)
    save_config(cfg, run.config)
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    export_weights(model, run, save_checkpoint_info(cfg, tokenizer))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A translation run and its export, and a language-model run per cell type with its export."""
    root = tmp_path_factory.mktemp("export")
    made = {"translation": make_run(root / "translation", "model.bidirectional=true")}
    for cell in CELLS:
        made[f"lm-{cell}"] = make_run(root / f"lm-{cell}", "task=lm", f"model.cell={cell}")
    for name in list(made):
        made[f"{name}.onnx"] = export_run(made[name], root / f"{name}.onnx")
    return made


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """Mixed lengths: the fixture sentences and joins of two to four of them."""
    base = _lines("train.en")
    rng = random.Random(0)
    return base + [" ".join(rng.sample(base, rng.randint(2, 4))) for _ in range(10)]


# --------------------------------------------------------------------------------------------------
# Parity with torch


@pytest.mark.parametrize("beam", [5, 1], ids=["beam5", "greedy"])
def test_translations_equal_torch(runs, lines, beam):
    torch_results = Translator.from_checkpoint(runs["translation"], beam_size=beam).translate_full(lines)
    onnx_results = Translator.from_export(runs["translation.onnx"], beam_size=beam).translate_full(lines)
    for a, b in zip(torch_results, onnx_results, strict=True):
        assert [h.text for h in a] == [h.text for h in b]
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert a[0].score == pytest.approx(b[0].score, abs=1e-4)
        if a[0].attention is not None:  # a chunked line keeps none
            assert torch.allclose(a[0].attention, b[0].attention, atol=1e-5)


def _step_both(model, engine, rows: int = 3, steps: int = 6):
    """Step the torch model and the engine on the same random pieces; yields both outputs per step."""
    generator = torch.Generator().manual_seed(0)
    vocab = engine.manifest.vocab_size["target"]
    s_torch, s_onnx = model.start(rows), engine.start(rows)
    tokens = torch.full((rows,), BOS_ID)
    for _ in range(steps):
        with torch.inference_mode():
            out_torch = model.step(tokens, s_torch)
        out_onnx = engine.step(tokens, s_onnx)
        yield out_torch, out_onnx
        s_torch, s_onnx = out_torch[1], out_onnx[1]
        tokens = torch.randint(4, vocab, (rows,), generator=generator)


@pytest.mark.parametrize("cell", CELLS)
def test_lm_step_equals_torch(runs, cell):
    model, _, _ = load_for_inference(runs[f"lm-{cell}"])
    engine = load_engine(runs[f"lm-{cell}.onnx"], threads=1)
    assert torch.equal(model.start(2).h, engine.start(2).h)  # zeros for every cell
    for (lp_t, st_t, _), (lp_o, st_o, attn) in _step_both(model, engine):
        assert attn is None
        assert (lp_t - lp_o).abs().max() < 1e-5
        assert (st_t.h - st_o.h).abs().max() < 1e-5 and (st_t.c - st_o.c).abs().max() < 1e-5


def test_lm_step_graph_interface(runs):
    """The interface a browser client is written against (docs/export.md): names, dtypes, shapes."""
    session = ort.InferenceSession(str(runs["lm-lstm.onnx"] / "lm_step.onnx"))
    manifest = json.loads((runs["lm-lstm.onnx"] / "manifest.json").read_text(encoding="utf-8"))
    L, H, V = manifest["state"]["layers"], manifest["state"]["hidden_size"], manifest["vocab_size"]["target"]
    assert (L, H, manifest["state"]["start"]) == (2, 32, "zeros")
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("tokens", "tensor(int64)", ["N"]), ("h", "tensor(float)", [L, "N", H]),
        ("c", "tensor(float)", [L, "N", H]),
    ]  # fmt: skip
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("log_probs", "tensor(float)", ["N", V]), ("h_out", "tensor(float)", [L, "N", H]),
        ("c_out", "tensor(float)", [L, "N", H]),
    ]  # fmt: skip
    assert manifest["tokenizer"]["target"] == "tokenizer.model"
    assert (runs["lm-lstm.onnx"] / "tokenizer.model").read_bytes() == (
        runs["lm-lstm"] / "tokenizer/spm.model"
    ).read_bytes()


def test_suggestions_equal_torch(runs):
    """The same words and probabilities with 0-3 characters of the next word typed."""
    by_torch = Suggester.from_checkpoint(runs["lm-lstm"])
    by_onnx = Suggester.from_export(runs["lm-lstm.onnx"], threads=1)
    texts = []
    for line in _lines("test.en"):
        words = line.split()
        cut = len(words) // 2
        texts += [" ".join(words[:cut]) + " " + words[cut][:typed] for typed in range(4)]
    for text in texts:
        a, b = by_torch.suggest(text, k=5), by_onnx.suggest(text, k=5)
        assert [s.word for s in a] == [s.word for s in b], text
        assert [s.prob for s in a] == pytest.approx([s.prob for s in b], rel=1e-4, abs=1e-7)


# --------------------------------------------------------------------------------------------------
# int8


def test_int8_graphs_run_and_stay_close(runs, lines, tmp_path):
    """Dynamic int8 quantization moves probabilities a little (each product rounds its inputs), not
    the model: the next-piece distribution stays within 0.01 total variation of the float32 one on
    the wide-weight LM (0.003 measured; 0.08 with 8-bit weights on AVX2, see quantize_int8), and
    int8 translations stay as close to the float32 ones as torch's int8 ones do."""
    lm8 = export_run(runs["lm-lstm"], tmp_path / "lm8", int8=True)
    assert json.loads((lm8 / "manifest.json").read_text(encoding="utf-8"))["precision"] == "int8"
    assert (lm8 / "lm_step.onnx").stat().st_size < (runs["lm-lstm.onnx"] / "lm_step.onnx").stat().st_size / 2
    model, _, _ = load_for_inference(runs["lm-lstm"])
    for (lp_t, _, _), (lp_o, _, _) in _step_both(model, load_engine(lm8, threads=1)):
        assert 0.5 * (lp_t.exp() - lp_o.exp()).abs().sum(1).max() < 0.01
    mt8 = export_run(runs["translation"], tmp_path / "mt8", int8=True)
    fp32 = Translator.from_checkpoint(runs["translation"]).translate_full(lines, attention=False)
    torch8 = Translator.from_checkpoint(runs["translation"], dtype="int8").translate_full(
        lines, attention=False
    )
    onnx8 = Translator.from_export(mt8).translate_full(lines, attention=False)
    assert all(hyps[0].tokens for hyps in onnx8)

    def agreement(results) -> int:  # pieces each translation shares with float32's before they part
        return sum(_common_prefix(a[0].tokens, b[0].tokens) for a, b in zip(fp32, results, strict=True))

    # a random model's long outputs part from float32 under any rounding: torch's int8 keeps 12 of
    # 38 pieces per line on average here, ONNX Runtime's int8 14
    assert agreement(onnx8) >= 0.75 * agreement(torch8)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_gemm_to_matmul_keeps_the_numbers():
    """Y = X W^T + b as Gemm(transB=1) and as the MatMul + Add it is rewritten to: same values."""
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)  # (out 3, in 2)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([0.5, 0, -1], np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert gemm_to_matmul(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    assert [i.name for i in model.graph.initializer] == ["b", "w__transposed"]  # w itself is unused now
    session = ort.InferenceSession(model.SerializeToString())
    y = session.run(None, {"x": np.array([[1.0, 1.0], [0.0, 2.0]], np.float32)})[0]
    assert y.tolist() == [[3.5, 7.0, 10.0], [4.5, 8.0, 11.0]]  # by hand: x W^T + b


# --------------------------------------------------------------------------------------------------
# Refusals


def test_export_refuses_an_existing_folder_and_leaves_nothing_behind(runs, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(UserError, match="already exists"):
        export_run(runs["lm-lstm"], out)
    with pytest.raises(CheckpointError):
        export_run(tmp_path / "none", tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]  # no temporary folder left


def test_export_refuses_a_translation_model_with_cell_variants(tmp_path):
    run = make_run(tmp_path / "run", "model.cell=cifg")
    with pytest.raises(UserError, match="cell: cifg cannot be exported yet"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _copy(export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(export, tmp_path / "copy"))


def test_engine_refuses_a_graph_whose_inputs_differ(runs, tmp_path):
    folder = _copy(runs["lm-lstm.onnx"], tmp_path)
    shutil.copy(runs["lm-cifg.onnx"] / "lm_step.onnx", folder)
    load_engine(folder)  # another cell's graph of the same interface passes: the interface is checked
    model = onnx.load(str(folder / "lm_step.onnx"))
    model.graph.input[0].name = "token_ids"
    for node in model.graph.node:
        node.input[:] = ["token_ids" if i == "tokens" else i for i in node.input]
    onnx.save(model, str(folder / "lm_step.onnx"))
    with pytest.raises(CheckpointError, match="the graph's inputs/outputs differ from manifest.json") as e:
        load_engine(folder)
    assert "token_ids int64" in str(e.value) and "\n" not in str(e.value)


def test_engine_refuses_a_manifest_that_does_not_match_its_graphs(runs, tmp_path):
    folder = _copy(runs["lm-lstm.onnx"], tmp_path)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["state"]["hidden_size"] = 64
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(CheckpointError, match="graph lm_step is described with other inputs/outputs"):
        load_engine(folder)
    for spec in manifest["graphs"]["lm_step"]["inputs"] + manifest["graphs"]["lm_step"]["outputs"]:
        spec["shape"] = [64 if d == 32 else d for d in spec["shape"]]  # consistent, but not the graph's
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(CheckpointError, match="differ from manifest.json"):
        load_engine(folder)


# --------------------------------------------------------------------------------------------------
# The command line


def test_cli_export_then_translate_and_suggest(runs, tmp_path):
    out = tmp_path / "exported"
    assert f"wrote {out}" in ok(
        CliRunner().invoke(main, ["export", str(runs["translation"]), "--out", str(out)])
    )
    source = tmp_path / "in.txt"
    source.write_text("\n".join(_lines("test.en")) + "\n", encoding="utf-8")
    args = ["translate", "-i", str(source), "--beam-size", "5"]
    by_torch = ok(CliRunner().invoke(main, [*args, "-m", str(runs["translation"])]))
    by_onnx = ok(CliRunner().invoke(main, [*args, "--engine", "onnx", "-m", str(out)]))
    assert by_onnx == by_torch and by_onnx.count("\n") == len(_lines("test.en"))
    suggest = ["suggest", "--format", "json", "The cat "]
    assert ok(CliRunner().invoke(main, [*suggest, "-m", str(runs["lm-lstm"])])) == ok(
        CliRunner().invoke(main, [*suggest, "--engine", "onnx", "-m", str(runs["lm-lstm.onnx"])])
    )
    wrong = ["translate", "--engine", "onnx", "-m", str(runs["lm-lstm.onnx"]), "-i", str(source)]
    line = one_error_line(CliRunner().invoke(main, wrong))
    assert line == f"Error: {runs['lm-lstm.onnx']} holds a language model; `s2s translate` needs a " \
        "translation model (use `s2s suggest` for language models)"  # fmt: skip


def test_export_threads_follow_torch(runs):
    """ONNX Runtime gets torch's thread count unless told (the suggester's one thread, --threads)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        export = load_export(runs["lm-lstm.onnx"])
        options = export.engine.sessions["lm_step"].get_session_options()
        assert options.intra_op_num_threads == 1
    finally:
        torch.set_num_threads(before)


def test_serve_on_the_onnx_engine_answers_as_torch(runs):
    """`s2s serve --engine onnx`: the same translations, scores and suggestions over HTTP."""
    from fastapi.testclient import TestClient

    from seq2seq_lstm.serve.app import create_app
    from seq2seq_lstm.serve.limits import Limits
    from seq2seq_lstm.serve.models import load_models

    limits = Limits()
    texts = _lines("test.en")
    answers = []
    for engine, suffix in (("torch", ""), ("onnx", ".onnx")):
        models = load_models([runs[f"translation{suffix}"], runs[f"lm-lstm{suffix}"]], limits, engine=engine)
        with TestClient(create_app(models, limits)) as client:
            translated = client.post("/v1/translate", json={"text": texts}).json()
            suggested = client.post("/v1/suggest", json={"text": "The cat ", "model": 1}).json()
        answers.append((translated, suggested))
    (t_torch, s_torch), (t_onnx, s_onnx) = answers
    assert t_onnx["translations"] == t_torch["translations"]
    assert sum(t_onnx["scores"], []) == pytest.approx(sum(t_torch["scores"], []), abs=1e-4)
    assert [w["word"] for w in s_onnx["suggestions"]] == [w["word"] for w in s_torch["suggestions"]]
    probs = [w["prob"] for w in s_torch["suggestions"]]
    assert [w["prob"] for w in s_onnx["suggestions"]] == pytest.approx(probs, rel=1e-4)


def test_two_vocabularies_export_both_tokenizers(tmp_path, lines):
    """A run with a source and a target SentencePiece model: both travel, and the engine uses each."""
    run = make_run(
        tmp_path / "run", "tokenizer.joint=false", "model.attention=dot", "model.input_feeding=false"
    )
    folder = export_run(run, tmp_path / "exported")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tokenizer"] == {"source": "source.model", "target": "tokenizer.model"}
    assert (folder / "source.model").read_bytes() == (run / "tokenizer/src.model").read_bytes()
    assert [t["name"] for t in manifest["graphs"]["decoder_step"]["inputs"]] == [
        "tokens", "h", "c", "memory", "keys", "mask"
    ]  # fmt: skip
    by_torch = Translator.from_checkpoint(run, beam_size=5).translate(lines)
    assert Translator.from_export(folder, beam_size=5).translate(lines) == by_torch
