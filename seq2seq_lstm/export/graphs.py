"""What each exported graph computes (torch wrappers over the model's own code) and its interface.

The wrappers call the same ``start``/``step`` that search uses, so the graphs hold the torch model's
numbers: ``lm_step`` (a ``LanguageModel`` step), ``encoder`` (``Seq2Seq.start``: encoder, bridge,
attention keys) and ``decoder_step`` (a ``Decoder`` step over K rows per sentence). The interface of
each, names, dtypes and shapes in order, is data (:class:`GraphSpec`): the exporter names the graph's
inputs and outputs from it, the manifest records it, and the engine checks a graph against it.
Shape letters: N rows, B sentences, S source pieces (the dynamic axes); L, H, V fixed numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..model.decoder import DecoderState

DYNAMIC_AXES = ("N", "B", "S")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: ``shape`` holds sizes (int) and dynamic axes (a letter)."""

    name: str
    dtype: str  # int64, float32 or bool
    shape: tuple[int | str, ...]
    what: str

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "what": self.what}


@dataclass(frozen=True)
class GraphSpec:
    """A graph's file and its inputs and outputs, in order."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """For ``torch.onnx.export``: tensor name -> {dimension: axis letter}."""
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
            for t in (*self.inputs, *self.outputs)
        }


def _state(L: int, H: int, rows: str, suffix: str, when: str) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec(f"h{suffix}", "float32", (L, rows, H), f"hidden state per layer {when}"),
        TensorSpec(f"c{suffix}", "float32", (L, rows, H), f"cell state per layer {when}"),
    )


def lm_step_spec(L: int, H: int, V: int) -> GraphSpec:
    """tokens (N,), h, c (L, N, H) -> log_probs (N, V), h_out, c_out (L, N, H)."""
    tokens = TensorSpec("tokens", "int64", ("N",), "the piece each row reads now (BOS first)")
    log_probs = TensorSpec("log_probs", "float32", ("N", V), "log-softmax over the next piece")
    return GraphSpec(
        "lm_step.onnx",
        (tokens, *_state(L, H, "N", "", "before the step (zeros at the start)")),
        (log_probs, *_state(L, H, "N", "_out", "after the step")),
    )


def encoder_spec(L: int, H: int) -> GraphSpec:
    """src (B, S), src_lens (B,) -> memory, mask, keys (B, S, ...), the decoder's first h, c (L, B, H)."""
    return GraphSpec(
        "encoder.onnx",
        (
            TensorSpec("src", "int64", ("B", "S"), "source pieces, PAD (0) on the right, no BOS/EOS"),
            TensorSpec("src_lens", "int64", ("B",), "real source pieces per sentence (>= 1)"),
        ),
        (
            TensorSpec("memory", "float32", ("B", "S", H), "encoder outputs (attention values)"),
            TensorSpec("mask", "bool", ("B", "S"), "true on real source pieces"),
            TensorSpec("keys", "float32", ("B", "S", H), "attention keys, projected once per sentence"),
            *_state(L, H, "B", "", "the decoder starts from (the bridge of the encoder's final state)"),
        ),
    )


def decoder_step_spec(L: int, H: int, V: int, input_feeding: bool) -> GraphSpec:
    """tokens (N,), h, c (L, N, H), [feed (N, H)], memory, keys (B, S, H), mask (B, S) -> log_probs
    (N, V), h_out, c_out, [feed_out], attention (N, S); N = K rows per sentence, adjacent."""
    feed = (TensorSpec("feed", "float32", ("N", H), "previous attentional vector (zeros at first)"),)
    feed_out = (TensorSpec("feed_out", "float32", ("N", H), "attentional vector for the next step"),)
    return GraphSpec(
        "decoder_step.onnx",
        (
            TensorSpec("tokens", "int64", ("N",), "the piece each row reads now (BOS first)"),
            *_state(L, H, "N", "", "before the step"),
            *(feed if input_feeding else ()),
            TensorSpec("memory", "float32", ("B", "S", H), "encoder memory, one row per sentence"),
            TensorSpec("keys", "float32", ("B", "S", H), "attention keys, one row per sentence"),
            TensorSpec("mask", "bool", ("B", "S"), "true on real source pieces"),
        ),
        (
            TensorSpec("log_probs", "float32", ("N", V), "log-softmax over the next target piece"),
            *_state(L, H, "N", "_out", "after the step"),
            *(feed_out if input_feeding else ()),
            TensorSpec("attention", "float32", ("N", "S"), "attention weights (0 on padding)"),
        ),
    )


class LMStepGraph(nn.Module):
    """``LanguageModel.step`` on explicit tensors: tokens (N,), h, c (L, N, H) -> log-probs (N, V), h, c."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_probs, state, _ = self.model.step(tokens, DecoderState(h=h, c=c))
        return log_probs, state.h, state.c


class EncoderGraph(nn.Module):
    """``Seq2Seq.start``: src (B, S), src_lens (B,) -> memory, mask, keys (B, S, ...), h, c (L, B, H)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, ...]:
        state = self.model.start(src, src_lens)
        return state.memory, state.mask, state.keys, state.h, state.c


class DecoderStepGraph(nn.Module):
    """``Seq2Seq.step`` with K = N / B rows per sentence: inputs and outputs as :func:`decoder_step_spec`.

    K is read from the shapes, so one graph serves greedy search (K = 1) and beam search; it must be
    traced with K > 1, where the decoder attends K rows per memory row (``DecoderState.beams``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_feeding = model.decoder.input_feeding

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, *source: Tensor) -> tuple[Tensor, ...]:
        feed, memory, keys, mask = source if self.input_feeding else (None, *source)
        beams = tokens.size(0) // memory.size(0)  # traced from the shapes, not a constant
        state = DecoderState(h=h, c=c, feed=feed, memory=memory, mask=mask, keys=keys, beams=beams)
        log_probs, new, attention = self.model.step(tokens, state)
        feed_out = (new.feed,) if self.input_feeding else ()
        return (log_probs, new.h, new.c, *feed_out, attention)
