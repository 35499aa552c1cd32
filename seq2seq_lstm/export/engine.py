"""The ONNX Runtime engine: an export folder as a step decoder (:mod:`seq2seq_lstm.decoding.protocol`).

``OnnxLanguageModel`` and ``OnnxSeq2Seq`` have the ``start``/``step`` of ``LanguageModel`` and
``Seq2Seq`` and keep their state in the same value, :class:`~seq2seq_lstm.model.decoder.DecoderState`
(torch tensors that each step hands to ONNX Runtime without a copy), so beam search, greedy search,
sampling, ensembles and the suggester run on them unchanged: one protocol, two engines.

Loading checks the folder three ways, each failure one line: the manifest is whole and describes the
graphs its task and sizes call for; each graph's inputs and outputs are the manifest's (names, order,
dtypes, fixed sizes); the tokenizer has the manifest's vocabulary sizes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..data.tokenizer import Tokenizer
from ..errors import CheckpointError, UserError
from ..model.decoder import DecoderState
from .graphs import GraphSpec, TensorSpec
from .manifest import Manifest, describe, read_manifest

ORT_DTYPES = {"tensor(int64)": "int64", "tensor(float)": "float32", "tensor(bool)": "bool"}


def _session(path: Path, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (steps are small: one inter-op)."""
    import onnxruntime as ort

    if not path.is_file():
        raise CheckpointError(f"{path} is missing; export the run again with `s2s export`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the engine reports problems itself
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types, one per failure kind
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a loadable ONNX graph ({reason})") from None


def _actual(session, file: str) -> GraphSpec:
    """The interface the loaded graph really has, as a :class:`GraphSpec` (dynamic axes as letters)."""

    def tensors(args) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(a.name, ORT_DTYPES.get(a.type, a.type),
                       tuple(d if isinstance(d, int) else str(d) for d in a.shape), "")
            for a in args
        )  # fmt: skip

    return GraphSpec(file, tensors(session.get_inputs()), tensors(session.get_outputs()))


def _matches(actual: tuple[TensorSpec, ...], declared: tuple[TensorSpec, ...]) -> bool:
    """Same names in order, dtypes and ranks; fixed sizes equal; a declared dynamic axis is dynamic."""

    def kinds(tensors: tuple[TensorSpec, ...]) -> list[tuple[str, str, int]]:
        return [(t.name, t.dtype, len(t.shape)) for t in tensors]

    if kinds(actual) != kinds(declared):
        return False
    return all(
        isinstance(want, str) and isinstance(got, str) or got == want
        for a, d in zip(actual, declared, strict=True)
        for got, want in zip(a.shape, d.shape, strict=True)
    )


def check_graph(session, spec: GraphSpec, path: Path) -> None:
    """Refuse a graph whose inputs or outputs differ from the manifest's ``spec``, in one line."""
    actual = _actual(session, spec.file)
    if not (_matches(actual.inputs, spec.inputs) and _matches(actual.outputs, spec.outputs)):
        raise CheckpointError(
            f"{path}: the graph's inputs/outputs differ from manifest.json (graph {describe(actual)}; "
            f"manifest {describe(spec)}); export the run again"
        )


class _OnnxModel:
    """The graphs of one export folder, loaded and checked against its manifest."""

    def __init__(self, directory: Path, manifest: Manifest, threads: int) -> None:
        self.directory, self.manifest = directory, manifest
        self.sessions = {}
        for name, spec in manifest.graphs.items():
            path = directory / spec.file
            self.sessions[name] = _session(path, threads)
            check_graph(self.sessions[name], spec, path)

    def eval(self) -> _OnnxModel:
        """Nothing to switch (a graph has no training mode); as ``nn.Module.eval`` for callers of both."""
        return self

    def _run(self, graph: str, inputs: dict[str, Tensor]) -> list[Tensor]:
        """Run ``graph`` on torch tensors (passed to ONNX Runtime as numpy views) -> its outputs."""
        feeds = {name: t.contiguous().numpy() for name, t in inputs.items()}
        return [torch.from_numpy(x) for x in self.sessions[graph].run(None, feeds)]


class OnnxLanguageModel(_OnnxModel):
    """``LanguageModel``'s ``start``/``step`` on ``lm_step.onnx``."""

    def start(self, batch_size: int) -> DecoderState:
        """Zero state (L, batch_size, H), as ``LanguageModel.start``."""
        zeros = torch.zeros(self.manifest.layers, batch_size, self.manifest.hidden_size)
        return DecoderState(h=zeros, c=zeros)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, None]:
        """tokens (N,) long -> log-probs (N, V) float32, the state after them, None (no attention)."""
        log_probs, h, c = self._run("lm_step", {"tokens": tokens, "h": state.h, "c": state.c})
        return log_probs, dataclasses.replace(state, h=h, c=c), None


class OnnxSeq2Seq(_OnnxModel):
    """``Seq2Seq``'s ``start``/``step`` on ``encoder.onnx`` and ``decoder_step.onnx``."""

    def start(self, src: Tensor, src_lens: Tensor) -> DecoderState:
        """src (B, S), src_lens (B,) -> the first state (memory, mask, keys: one row per sentence)."""
        memory, mask, keys, h, c = self._run("encoder", {"src": src, "src_lens": src_lens})
        feed = h.new_zeros(h.size(1), h.size(2)) if self.manifest.model["input_feeding"] else None
        return DecoderState(h=h, c=c, feed=feed, memory=memory, mask=mask, keys=keys)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """tokens (N,) -> log-probs (N, V), new state, attention (N, S); N = ``state.beams`` rows per
        memory row, as the graph reads them."""
        inputs = {"tokens": tokens, "h": state.h, "c": state.c}
        if state.feed is not None:
            inputs["feed"] = state.feed
        inputs.update(memory=state.memory, keys=state.keys, mask=state.mask)
        out = self._run("decoder_step", inputs)
        log_probs, h, c = out[:3]
        feed = out[3] if state.feed is not None else None
        return log_probs, dataclasses.replace(state, h=h, c=c, feed=feed), out[-1]


@dataclass(frozen=True)
class Export:
    """A loaded export folder: the engine, its manifest and its tokenizer."""

    engine: OnnxLanguageModel | OnnxSeq2Seq
    manifest: Manifest
    tokenizer: Tokenizer


def load_export(directory: str | os.PathLike, threads: int | None = None) -> Export:
    """Load and check an export folder; ``threads``: ONNX Runtime intra-op threads (default: what
    torch uses now, ``torch.get_num_threads()``, so `--threads` and the suggester's one thread apply
    to both engines alike)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder written by `s2s export`")
    manifest = read_manifest(directory)
    threads = threads or torch.get_num_threads()
    cls = OnnxLanguageModel if manifest.task == "lm" else OnnxSeq2Seq
    engine = cls(directory, manifest, threads)
    target = directory / manifest.tokenizer["target"]
    source = directory / manifest.tokenizer["source"]
    try:
        tokenizer = Tokenizer.from_model_files(source, None if source == target else target)
    except UserError as e:
        raise CheckpointError(str(e)) from None
    sizes = {"source": tokenizer.src_vocab_size, "target": tokenizer.tgt_vocab_size}
    if sizes != manifest.vocab_size:
        raise CheckpointError(
            f"{directory}: the tokenizer has {sizes} pieces but manifest.json says {manifest.vocab_size}"
        )
    return Export(engine, manifest, tokenizer)


def load_engine(directory: str | os.PathLike, threads: int | None = None) -> OnnxLanguageModel | OnnxSeq2Seq:
    """The step decoder of an export folder (:func:`load_export` without the rest)."""
    return load_export(directory, threads).engine
