"""``s2s export --format onnx``: a trained run as ONNX graphs, its SentencePiece model(s) and a manifest.

The graphs are traced with torch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
it turns the encoder's packed ``nn.LSTM`` (``pack_padded_sequence``) into ONNX's LSTM operator with its
``sequence_lens`` input, so a padded batch of any length encodes as the torch model does; the
dynamo exporter has no translation for packed sequences. Every step graph is a single step (no loop
over time), so tracing captures it whole; the batch and length axes are declared dynamic.

The folder is built under a temporary name beside ``out``, checked by loading it with the engine
(:func:`seq2seq_lstm.export.engine.load_engine`), and renamed into place: ``out`` is a whole export or
absent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_for_inference
from ..config import Config
from ..data.tokenizer import JOINT_FILE, SRC_FILE, TGT_FILE, Tokenizer
from ..errors import UserError
from ..files import fsync, plain_mode
from .graphs import DecoderStepGraph, EncoderGraph, GraphSpec, LMStepGraph
from .manifest import SOURCE_TOKENIZER_FILE, TOKENIZER_FILE, Manifest, expected_graphs, write_manifest

OPSET = 17
FORMATS = ("onnx",)


def export_run(run: str | os.PathLike, out: str | os.PathLike, int8: bool = False) -> Path:
    """Export the run directory (or weights file) ``run`` into the new folder ``out``; returns ``out``."""
    out = Path(out)
    if os.path.lexists(out):
        raise UserError(f"--out {out} already exists; give a new folder (an export never writes over one)")
    model, cfg, tokenizer = load_for_inference(run)
    if cfg.task == "translation" and cfg.model.cell != "lstm":
        raise UserError(
            f"{run}: a translation model with cell: {cfg.model.cell} cannot be exported yet (its encoder "
            "loops over the source in Python, which a traced graph fixes to one length); cell: lstm "
            "translation models and language models of every cell can"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _write(model, cfg, tokenizer, tmp, int8)
        from .engine import load_engine

        load_engine(tmp)  # the folder loads, and its graphs match the manifest
        tmp.chmod(plain_mode(directory=True))
        for f in tmp.iterdir():
            fsync(f)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(model: nn.Module, cfg: Config, tokenizer: Tokenizer, directory: Path, int8: bool) -> None:
    """Graphs, tokenizer model(s) and manifest into ``directory``."""
    m = cfg.model
    feeding = cfg.task == "translation" and m.input_feeding
    specs = expected_graphs(cfg.task, m.dec_layers, m.hidden_size, tokenizer.tgt_vocab_size, feeding)
    for name, spec in specs.items():
        wrapper, example = _graph_input(name, model, cfg)
        _trace(wrapper, example, spec, directory / spec.file)
        if int8:
            quantize_int8(directory / spec.file)
    files = {"target": TOKENIZER_FILE, "source": TOKENIZER_FILE if tokenizer.joint else SOURCE_TOKENIZER_FILE}
    protos = tokenizer.model_files()
    (directory / TOKENIZER_FILE).write_bytes(protos[JOINT_FILE if tokenizer.joint else TGT_FILE])
    if not tokenizer.joint:
        (directory / SOURCE_TOKENIZER_FILE).write_bytes(protos[SRC_FILE])
    model_section = {
        "cell": m.cell, "emb_dim": m.emb_dim, "hidden_size": m.hidden_size, "enc_layers": m.enc_layers,
        "dec_layers": m.dec_layers, "bidirectional": m.bidirectional, "bridge": m.bridge,
        "attention": m.attention if cfg.task == "translation" else None, "input_feeding": feeding,
    }  # fmt: skip
    manifest = Manifest(
        task=cfg.task, precision="int8" if int8 else "float32", opset=OPSET,
        vocab_size={"source": tokenizer.src_vocab_size, "target": tokenizer.tgt_vocab_size},
        tokenizer=files, model=model_section, layers=m.dec_layers, hidden_size=m.hidden_size,
        generation=cfg.generation, graphs=specs,
        languages={"source": cfg.data.src_lang, "target": cfg.data.tgt_lang},
    )  # fmt: skip
    write_manifest(manifest, directory)


def _graph_input(name: str, model: nn.Module, cfg: Config) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The wrapper of graph ``name`` and example inputs to trace it with.

    The decoder step is traced with 2 rows per sentence (K > 1 takes the path that reads K from the
    shapes) and few rows, so the output layer's row blocking (``Decoder._log_probs``) stays one block."""
    L, H = cfg.model.dec_layers, cfg.model.hidden_size
    if name == "lm_step":
        zeros = torch.zeros(L, 1, H)
        return LMStepGraph(model), (torch.tensor([4]), zeros, zeros)
    src, src_lens = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    if name == "encoder":
        return EncoderGraph(model), (src, src_lens)
    with torch.no_grad():
        state = model.start(src, src_lens)
    rows = torch.zeros(2, dtype=torch.long)
    h, c = state.h.index_select(1, rows), state.c.index_select(1, rows)
    feed = (torch.zeros(2, H),) if model.decoder.input_feeding else ()
    return DecoderStepGraph(model), (torch.tensor([4, 5]), h, c, *feed, state.memory, state.keys, state.mask)


def _trace(wrapper: nn.Module, example: tuple[torch.Tensor, ...], spec: GraphSpec, path: Path) -> None:
    """Trace ``wrapper`` on ``example`` into ``path``, named and with the dynamic axes of ``spec``."""
    with warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
        # the tracer notes every Python branch it freezes; the wrappers' branches depend on
        # configuration only (checked by the parity tests), and the TorchScript exporter's deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper.eval(), example, str(path), dynamo=False, opset_version=OPSET,
            input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
            dynamic_axes=spec.dynamic_axes(),
        )  # fmt: skip


def quantize_int8(path: Path) -> None:
    """Replace the graph at ``path`` with ONNX Runtime's dynamic int8 quantization of it.

    ``quantize_dynamic`` quantizes MatMul, LSTM and Gather but not Gemm, which is how the exporter
    writes a linear layer on 2-D input (the output layer, the bridge, the gates of a step): those
    become MatMul + Add first (:func:`gemm_to_matmul`), so every large product runs in int8. Weights
    get a scale per output channel and 7 bits (``reduce_range``): CPUs without VNNI (AVX2, most
    AVX-512) multiply uint8 activations by int8 weights in pairs summed into int16, which saturates
    with 8-bit weights; on a tiny LM that moved the next-piece distribution 0.08 (total variation)
    from float32, with 7 bits 0.003."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(path))
    gemm_to_matmul(graph)
    with warnings.catch_warnings(), _logging_off():  # its advice to pre-process vision models
        warnings.simplefilter("ignore")
        quantize_dynamic(graph, str(path), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send what C++ code writes to the process's stderr elsewhere for a block: torch's shape
    inference notes that packed sequences have no shape function, which the parity tests cover.
    Errors still arrive as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _logging_off() -> Iterator[None]:
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def gemm_to_matmul(model) -> int:
    """Rewrite ``Gemm(A, B, C)`` nodes (alpha = beta = 1, A not transposed, B a weight) of an ONNX
    ``model`` in place as ``MatMul(A, B or B^T) + C``; returns how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes, done = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in weights or attrs.get("transA", 0) or \
                attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:  # fmt: skip
            nodes.append(node)
            continue
        b = node.input[1]
        if attrs.get("transB", 0):
            name = f"{b}__transposed"
            if name not in weights:
                weights[name] = numpy_helper.from_array(numpy_helper.to_array(weights[b]).T.copy(), name)
                graph.initializer.append(weights[name])
            b = name
        product = f"{node.output[0]}__matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], b], [product], name=f"{node.name}_MatMul"))
        if len(node.input) > 2:
            add = helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add")
            nodes.append(add)
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # a weight only Gemm read
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return done
