"""Faster weights for step-by-step inference: bfloat16, and dynamic int8 quantization.

A suggestion or a decoding step multiplies a handful of rows by every weight matrix of the decoder once,
so on a CPU its time is the time to read those weights from memory. bfloat16 halves the bytes; dynamic
int8 (Jacob et al. 2018) quarters them: weights are stored as int8 with one scale per output row,
activations are quantized on the fly, products accumulate in int32. Here the decoder's cells, its
embedding, its attentional and output layers, and the encoder's fused LSTM go to int8; the attention
scores, the bridge and the encoder's per-step cells (peephole, CIFG) stay in float32.

    model = convert_weights(model, "int8")   # in place for bfloat16; int8 swaps modules
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .cells import LSTMCell, StackedCell
from .errors import UserError

DTYPES = ("float32", "bfloat16", "int8")


def _int8_linear(weight: Tensor) -> nn.Module:
    """A dynamic int8 ``Linear`` (no bias) with per-output-row weight scales: LSTM gate blocks and
    vocabulary rows differ in range, so one scale per row keeps more precision than one per matrix."""
    linear = nn.Linear(weight.size(1), weight.size(0), bias=False)
    linear.weight = nn.Parameter(weight.detach().float(), requires_grad=False)
    spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    with warnings.catch_warnings():  # torch.ao's deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), spec, dtype=torch.qint8)[0]


class Int8Embedding(nn.Module):
    """An embedding stored as int8 rows with one float scale each (symmetric: row = scale * int8).

    A tied output layer and embedding are one matrix in training; quantizing only the output layer would
    keep the float embedding beside its int8 copy and make the model larger than before.
    """

    def __init__(self, embed: nn.Embedding) -> None:
        super().__init__()
        w = embed.weight.detach().float()  # (V, E)
        scale = w.abs().amax(1).clamp_min(1e-12) / 127.0  # (V,)
        self.register_buffer("qweight", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale)
        self.num_embeddings, self.embedding_dim = w.shape

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (...) long -> (..., E) float32."""
        return self.qweight[tokens].float() * self.scale[tokens].unsqueeze(-1)


class Int8Cell(nn.Module):
    """A cell of :mod:`seq2seq_lstm.cells` whose two matrix products run in dynamic int8.

    Same interface as the cell (``input_gates``, ``forward(x, (h, c), x_gates)``, ``bias``); the gate
    math (standard, peephole or CIFG) is the wrapped cell's own, in float32.
    """

    fused = False

    def __init__(self, cell: LSTMCell) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size, self.input_size = cell.hidden_size, cell.input_size
        self.ih = _int8_linear(cell.weight_ih)  # (G*H, I)
        self.hh = _int8_linear(cell.weight_hh)  # (G*H, H)
        self.bias = cell.bias
        # the float weights stay reachable through self.cell; drop them so the model really shrinks
        cell.weight_ih = cell.weight_hh = None

    def input_gates(self, x: Tensor) -> Tensor:
        """(..., I) -> (..., G*H), bias included."""
        gates = self.ih(x)
        return gates if self.bias is None else gates + self.bias

    def forward(self, x: Tensor | None, state: tuple[Tensor, Tensor], x_gates: Tensor | None = None):
        """x (B, I) or None, (h, c) each (B, H), x_gates (B, G*H) or None -> the new (h, c)."""
        h, c = state
        gates = self.hh(h)
        if x_gates is not None:
            gates = gates + x_gates  # precomputed input gates hold the bias already
        elif self.bias is not None:
            gates = gates + self.bias
        if x is not None:
            gates = gates + self.ih(x)
        return self.cell.gate_math(gates, c)


def convert_weights(model: nn.Module, dtype: str) -> nn.Module:
    """``model`` (in eval mode) with the weight type ``dtype``: float32 (as trained), bfloat16 (every
    weight), or int8 (dynamic quantization of the matrices a decoding step reads, see the module
    docstring). Returns the converted model; the argument is changed in place, copy it to keep it."""
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype == "bfloat16":
        return model.to(torch.bfloat16)
    if dtype == "int8":
        decoder = model.decoder
        names = {"decoder.generator", "decoder.out_proj", "decoder.attn_out", "decoder.emb_gates"}
        if isinstance(decoder.rnn, StackedCell):
            decoder.rnn.layers = nn.ModuleList(Int8Cell(cell) for cell in decoder.rnn.layers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = {name: torch.ao.quantization.per_channel_dynamic_qconfig for name in names}
            # the fused nn.LSTMs (per-channel is not implemented for them): the decoder's, and the
            # encoder's, which runs once per sentence but over all its tokens
            lstms = [n for n, m in model.named_modules() if isinstance(m, nn.LSTM)]
            spec.update({name: torch.ao.quantization.default_dynamic_qconfig for name in lstms})
            model = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
        model.decoder.embed = Int8Embedding(model.decoder.embed)
        return model
    return model
