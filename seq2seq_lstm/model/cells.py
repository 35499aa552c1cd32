"""LSTM cells with one ``(h, c)`` interface: the forget-gate LSTM, peepholes, and CIFG.

Every cell maps an input and a state to the next state::

    h, c = cell(x, (h, c))                       # x (B, I); h, c (B, H)
    gx = cell.input_gates(xs)                    # (B, T, I) -> (B, T, G*H): all steps in one GEMM
    h, c = cell(None, (h, c), x_gates=gx_t)      # gx_t in gx.unbind(1): the step adds the recurrent part

``x_gates`` lets a caller project inputs that do not depend on the recurrence once for a whole
sequence (the encoder's inputs, the decoder's target embeddings) and keep the per-step work to the
recurrent GEMM and the gate math. Precomputed gates already hold the cell's bias, so the cell does
not add it again; ``x`` (when given together with ``x_gates``) is the rest of the input, projected by
``weight_ih``.

Parameters are ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H) and one ``bias`` (G*H) (nn.LSTM's
``bias_ih + bias_hh``: two biases that are only ever summed are one parameter). The gates are stacked
in PyTorch's order (i, f, g, o), so the standard cell's weights copy to and from ``nn.LSTM``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .shared_weight import SharedLinear, compute_dtype

State = tuple[Tensor, Tensor]  # (h, c), each (B, H)
LayerStates = tuple[list[Tensor], list[Tensor]]  # ([h_1..h_L], [c_1..c_L])
Activation = Callable[[Tensor], Tensor]


def tanh_via_sigmoid(x: Tensor) -> Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: the same function (in float32 within 2e-7 of the exact value),
    faster where ``torch.tanh`` is slow: on x86 CPUs torch vectorises sigmoid well and tanh poorly, and
    an int8 decoding step, whose products are cheap, would otherwise spend a visible share of its time
    in tanh (benchmarks/RESULTS.md, Decoding speed). Used by int8 inference
    (seq2seq_lstm.decoding.quantize), whose products round far more than this; float32 keeps
    ``torch.tanh``, as in training."""
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


class LSTMCell(nn.Module):
    """Forget-gate LSTM (Hochreiter & Schmidhuber 1997; Gers et al. 2000), on torch's fused ``lstm_cell``.

    i, f, o = sigmoid(W x + R h + b);  g = tanh(W_g x + R_g h + b_g)
    c' = f * c + i * g;  h' = o * tanh(c')
    """

    num_gates = 4
    forget_gate = 1  # index of the forget-gate block in (i, f, g, o)
    fused = True  # torch.lstm_cell computes exactly this cell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        gates = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))
        self.bias = nn.Parameter(torch.empty(gates)) if bias else None
        self.reset_parameters()

    def reset_parameters(self, init_range: float | None = None, forget_bias: float = 0.0) -> None:
        """Uniform(-r, r) weights (default r = 1/sqrt(H), as nn.LSTM), the forget-gate bias set apart."""
        r = init_range if init_range is not None else 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters(recurse=False):
            nn.init.uniform_(p, -r, r)
        self.init_forget_bias(forget_bias)

    @torch.no_grad()
    def init_forget_bias(self, value: float) -> None:
        """A positive forget bias keeps the cell state (and its gradient) alive early in training
        (Gers et al. 2000; Jozefowicz et al. 2015)."""
        if self.bias is not None:
            H = self.hidden_size
            self.bias[self.forget_gate * H : (self.forget_gate + 1) * H] = value

    def input_gates(self, x: Tensor) -> Tensor:
        """Input part of the gate pre-activations, bias included: (..., I) -> (..., G*H)."""
        return F.linear(x, self.weight_ih, self.bias)

    def _gates(self, x: Tensor | None, h: Tensor, x_gates: Tensor | None) -> Tensor:
        """All gate pre-activations (B, G*H)."""
        bias = self.bias if x_gates is None else x_gates
        gates = F.linear(h, self.weight_hh, bias)
        if x is not None:
            gates = torch.addmm(gates, x, self.weight_ih.t())
        return gates

    def gate_math(self, gates: Tensor, c: Tensor, tanh: Activation = torch.tanh) -> State:
        """Gate pre-activations (B, G*H) and c (B, H) -> the new (h, c). ``tanh``: how tanh is computed
        (int8 inference passes :func:`tanh_via_sigmoid`)."""
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * tanh(g)
        return torch.sigmoid(o) * tanh(c), c

    def forward(self, x: Tensor | None, state: State, x_gates: Tensor | None = None) -> State:
        h, c = state
        if x is not None and self.fused:
            if x.device.type == "cpu":
                # One fused call: lstm_cell adds linear(x, W_ih, b) and linear(h, W_hh) and applies the
                # gate math in C++; precomputed gates (B, G*H) can take the bias slot (addmm broadcasts).
                bias = self.bias if x_gates is None else x_gates
                return torch.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, bias, None)
            # CUDA's lstm_cell wants two 1-D biases or none: do its two products here and call the
            # fused gate kernel it calls itself (one kernel instead of a dozen elementwise ones)
            if x_gates is None:
                igates = F.linear(x, self.weight_ih, self.bias)
            else:
                igates = torch.addmm(x_gates, x, self.weight_ih.t())
            hgates = torch.mm(h, self.weight_hh.t()).to(igates.dtype)
            h, c, _ = torch.ops.aten._thnn_fused_lstm_cell(igates, hgates, c.to(igates.dtype))
            return h, c
        return self.gate_math(self._gates(x, h, x_gates), c)


class PeepholeLSTMCell(LSTMCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000): the gates see the cell state.

    i = sigmoid(W_i x + R_i h + p_i * c + b_i);  f = sigmoid(W_f x + R_f h + p_f * c + b_f)
    g = tanh(W_g x + R_g h + b_g);  c' = f * c + i * g
    o = sigmoid(W_o x + R_o h + p_o * c' + b_o);  h' = o * tanh(c')

    The peephole weights are diagonal (one vector per gate); the output gate looks at the new state.
    """

    fused = False

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias)
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # p_i, p_f, p_o
        self.reset_parameters()

    def gate_math(self, gates: Tensor, c: Tensor, tanh: Activation = torch.tanh) -> State:
        i, f, g, o = gates.chunk(4, 1)
        p_i, p_f, p_o = self.peephole
        c_new = torch.sigmoid(f + p_f * c) * c + torch.sigmoid(i + p_i * c) * tanh(g)
        return torch.sigmoid(o + p_o * c_new) * tanh(c_new), c_new


class CIFGLSTMCell(LSTMCell):
    """Coupled input-forget gate LSTM, CIFG (Greff et al. 2017; used by Gboard, Hard et al. 2018).

    f = sigmoid(W_f x + R_f h + b_f);  i = 1 - f
    g = tanh(W_g x + R_g h + b_g);  o = sigmoid(W_o x + R_o h + b_o)
    c' = f * c + (1 - f) * g;  h' = o * tanh(c')

    Three gate blocks (f, g, o) instead of four: a quarter fewer LSTM weights, about the same quality.
    """

    num_gates = 3
    forget_gate = 0  # (f, g, o)
    fused = False

    def gate_math(self, gates: Tensor, c: Tensor, tanh: Activation = torch.tanh) -> State:
        f, g, o = gates.chunk(3, 1)
        g = tanh(g)
        c = g + torch.sigmoid(f) * (c - g)  # = f * c + (1 - f) * g, one op fewer
        return torch.sigmoid(o) * tanh(c), c


CELLS: dict[str, type[LSTMCell]] = {"lstm": LSTMCell, "peephole": PeepholeLSTMCell, "cifg": CIFGLSTMCell}


class StackedCell(nn.Module):
    """L cells run for one time step, with dropout between layers (Zaremba et al. 2014).

    The state is a pair of per-layer lists ``([h_1..h_L], [c_1..c_L])`` with (B, H) entries, so a
    time loop needs no stacking per step. ``x_gates`` goes to the first layer.
    """

    def __init__(
        self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        cls = CELLS[cell]
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(cls(size, hidden_size) for size in sizes)
        self.dropout = dropout
        self.hidden_size, self.num_layers = hidden_size, num_layers

    def forward(
        self, x: Tensor | None, state: LayerStates, x_gates: Tensor | None = None
    ) -> tuple[Tensor, LayerStates]:
        """x (B, I) or None, x_gates (B, G*H) or None -> (top output (B, H), new state)."""
        return self._run_layers(x, state, x_gates, lambda layer, x, hc, xg: self.layers[layer](x, hc, xg))

    def _run_layers(
        self,
        x: Tensor | None,
        state: LayerStates,
        x_gates: Tensor | None,
        cell_step: Callable[[int, Tensor | None, State, Tensor | None], State],
    ) -> tuple[Tensor, LayerStates]:
        """One step up the stack: ``cell_step(layer, x, (h, c), x_gates) -> (h, c)`` for each layer,
        dropout between layers, ``x_gates`` to the first layer only."""
        hs, cs = state
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)
                x_gates = None
            h, c = cell_step(layer, x, (hs[layer], cs[layer]), x_gates)
            new_h.append(h)
            new_c.append(c)
            x = h
        return x, (new_h, new_c)

    def shared_steps(
        self, first_input: bool
    ) -> Callable[[Tensor | None, LayerStates, Tensor | None], tuple[Tensor, LayerStates]]:
        """``forward`` for the steps of one differentiated loop over time, with each layer's weights
        shared over the loop (:class:`~seq2seq_lstm.model.shared_weight.SharedLinear`): per layer and step one
        product ``[x; h] @ [W_ih, W_hh]^T``, the weights cast once, and one weight-gradient product per
        layer after the loop instead of one per step. The same equations (``gate_math``); only the
        rounding differs. ``first_input``: whether the first layer gets an input ``x`` besides its
        ``x_gates`` (the decoder's input feeding); build a new function for every forward pass.
        """
        dtype = compute_dtype(self.layers[0].weight_hh)
        linears, biases = [], []
        for layer, cell in enumerate(self.layers):
            with_x = layer > 0 or first_input
            weight = torch.cat([cell.weight_ih, cell.weight_hh], 1) if with_x else cell.weight_hh
            linears.append(SharedLinear(weight, dtype))  # (G*H, I + H) or (G*H, H)
            biases.append(None if cell.bias is None else cell.bias.to(dtype))

        def cell_step(layer: int, x: Tensor | None, hc: State, x_gates: Tensor | None) -> State:
            h, c = hc
            inputs = h if x is None else torch.cat([x.to(dtype), h.to(dtype)], 1)
            gates = linears[layer](inputs)  # (B, G*H)
            # precomputed input gates already hold the bias
            extra = x_gates if x_gates is not None else biases[layer]
            if extra is not None:
                gates = gates + extra
            return self.layers[layer].gate_math(gates, c)

        def step(x: Tensor | None, state: LayerStates, x_gates: Tensor | None = None):
            return self._run_layers(x, state, x_gates, cell_step)

        return step


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or newer). On AVX2 CPUs bf16 matrix products
    are emulated (about 10x slower than float32) and the bf16 LSTM primitive is refused."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume the old behaviour
        return True


def run_lstm(
    lstm: nn.LSTM, x: Tensor | nn.utils.rnn.PackedSequence, state: State | None = None
) -> tuple[Tensor | nn.utils.rnn.PackedSequence, State]:
    """``lstm(x, state)`` that also runs under CPU bf16 autocast on CPUs without bf16 LSTM kernels.

    Autocast hands ``nn.LSTM`` to oneDNN in bf16, and oneDNN cannot build that primitive on an AVX2 CPU
    ("could not create a primitive descriptor"); there the LSTM runs in float32 instead (autocast
    off for this call only; everything around it stays in bf16).
    """
    if (
        torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_supports_bf16()
    ):
        with torch.autocast("cpu", enabled=False):
            state = None if state is None else (state[0].float(), state[1].float())
            return lstm(x.float(), state)
    return lstm(x, state)


@torch.no_grad()
def init_lstm_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Set the summed forget-gate bias of every layer and direction of an ``nn.LSTM`` to ``value``."""
    H = lstm.hidden_size
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p[H : 2 * H] = value
        elif name.startswith("bias_hh"):
            p[H : 2 * H] = 0.0
