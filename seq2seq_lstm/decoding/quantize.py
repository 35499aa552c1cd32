"""Faster weights for step-by-step inference: bfloat16, and dynamic int8 quantization.

A suggestion or a decoding step multiplies a handful of rows by every weight matrix of the decoder once,
so on a CPU its time is the time to read those weights from memory. bfloat16 halves the bytes; dynamic
int8 (Jacob et al. 2018) quarters them: weights are stored as int8 with one scale per output row,
activations are quantized on the fly over a range that does not depend on the batch (fixed by
construction, or one per row: :class:`Int8Linear`), products accumulate exactly in int32. Here the
decoder's cells (a translation model's fused ``nn.LSTM`` decoder becomes a stack of cells first), its
embedding, its attentional and output layers, attention's projections, and the encoder's LSTM layers
(as cells too: torch's int8 LSTM would take its activation range from the whole batch) go to int8.
The encoder's embedding (a table lookup), the bridge and the attention scores and weighted sums stay
in float32: they run once per sentence or are cheap. Cells and the attentional layer compute tanh as
2 sigmoid(2x) - 1 (:func:`~seq2seq_lstm.model.cells.tanh_via_sigmoid`).

    model = convert_weights(model, "int8")   # in place for bfloat16; int8 swaps modules
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..config import DTYPES
from ..errors import UserError
from ..model.cells import LSTMCell, StackedCell, tanh_via_sigmoid
from ..model.decoder import Decoder
from ..model.encoder import CellLSTM, Encoder, PackedLSTM

# x (M, K) float32, its quantization scale and zero point, a packed int8 weight -> x W^T (M, N) float32
_int8_product = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32


class Int8Linear(nn.Module):
    """``x W^T + b`` with W in int8 (one scale per output row) and x quantized on the fly, with an
    activation range that does not depend on the other rows of the batch.

    Why: torch's dynamic quantization takes one activation range per call from the batch's own min
    and max, so a sentence's numbers depended on its batch neighbours, and so did its translation (77
    of 100 Bible test sentences changed between batch 1 and batch 32). Here the range is fixed and
    each output row is a function of its own input row: the int32 accumulation is exact and the rest
    is elementwise.

    * ``bound`` given: the inputs are known to lie in [-bound, bound] (an LSTM's h, a tanh output, an
      attention context), the range of every call.
    * ``bound=None``: each row is divided by its largest magnitude (then spans [-1, 1]) and the output
      is scaled back, i.e. one quantization scale per row ("per token"): for inputs without a tight
      bound (embedding rows, whose magnitudes differ a lot from row to row).

    The product is fbgemm's int8 kernel called with that range (``quantized::
    linear_with_input_q_dq_qweight_dq_output_fp32``); an input outside ``bound`` would be clipped to
    it, so the callers pass bounds that hold by construction. Quantized engines without that kernel
    (QNNPACK, torch's engine on ARM CPUs) derive the range from the input instead, so there two
    pinning columns fix it: every row gets two extra entries +p and -p, multiplied by two columns of
    zero weights (no effect on the product).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None, bound: float | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.inner = _quantized_linear(weight.detach().float())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self.bound = bound
        p = 1.0 if bound is None else float(bound)
        # 7-bit activations (as torch's dynamic Linear with reduce_range): [-p, p] onto [0, 128] with
        # zero point 64, so no pair of u8 x s8 products overflows the int16 sums of fbgemm's AVX2
        # kernel and the int32 result is exact
        self.x_scale = p / 63.5
        self.pins: Tensor | None = None  # (1, 2) [[p, -p]] where the engine has no fixed-range kernel
        if not _fixed_range_kernel(self.inner):
            self.pins = torch.tensor([[p, -p]])
            pinned = torch.cat([weight.detach().float(), weight.new_zeros(self.out_features, 2)], 1)
            self.inner = _quantized_linear(pinned)  # (N, K + 2)
        self._rows: tuple[Tensor, Tensor, Tensor] | None = None  # int8 rows, scales, zero points (cache)

    def select_outputs(self, index: Tensor) -> Int8Linear:
        """This layer cut to the output features ``index`` (U,) long: the same int8 rows, scales and
        input range, so every kept output equals the full layer's bit for bit (the int32 sums are
        exact and the rest is per output). A vocabulary shortlist uses it for the output layer."""
        index = index.cpu()
        if self._rows is None:  # the int8 matrix unpacked once; each cut then costs one prepack
            qweight = self.inner.weight()  # (N, K) per-row int8 (K + 2 with pins)
            self._rows = (
                qweight.int_repr(),
                qweight.q_per_channel_scales(),
                qweight.q_per_channel_zero_points(),
            )
        ints, scales, zero_points = self._rows
        rows = torch._make_per_channel_quantized_tensor(ints[index], scales[index], zero_points[index], 0)
        sub = Int8Linear.__new__(Int8Linear)
        nn.Module.__init__(sub)
        sub.out_features, sub.in_features, sub._rows = int(index.numel()), self.in_features, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub.inner = torch.ao.nn.quantized.dynamic.Linear(  # packs a 1-row stub, then the real rows
                ints.size(1), 1, bias_=False, dtype=torch.qint8
            )
            sub.inner.set_weight_bias(rows, None)
        bias = None if self.bias is None else self.bias[index.to(self.bias.device)]
        sub.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        sub.bound, sub.x_scale, sub.pins = self.bound, self.x_scale, self.pins
        return sub

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features) float32."""
        rows = x.reshape(-1, self.in_features).float()  # (M, K)
        scale = None
        if self.bound is None:
            scale = rows.abs().amax(1, keepdim=True).clamp_min(1e-30)  # (M, 1); a zero row stays zero
            rows = rows / scale
        packed = self.inner._packed_params._packed_params
        if self.pins is None:
            y = _int8_product(rows, self.x_scale, 64, packed)  # (M, N)
        else:  # the kernel takes its range from the rows: the pins make it [-p, p]
            rows = torch.cat([rows, self.pins.expand(rows.size(0), 2)], 1)  # (M, K + 2)
            y = torch.ops.quantized.linear_dynamic.default(rows, packed, True)  # (M, N)
        if scale is not None:
            y = y * scale if self.bias is None else torch.addcmul(self.bias, y, scale)
        elif self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def _quantized_linear(weight: Tensor) -> nn.Module:
    """torch's dynamic int8 Linear of a float (N, K) weight, one scale per output row, no bias."""
    linear = nn.Linear(weight.size(1), weight.size(0), bias=False)
    linear.weight = nn.Parameter(weight, requires_grad=False)
    spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    with warnings.catch_warnings():  # torch.ao's deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), spec, dtype=torch.qint8)[0]


def _fixed_range_kernel(inner: nn.Module) -> bool:
    """Whether the quantized engine that packed ``inner`` has the product with a given input range."""
    try:
        _int8_product(torch.zeros(1, inner.in_features), 1.0 / 63.5, 64, inner._packed_params._packed_params)
    except RuntimeError:  # "not implemented for this packed parameter type" (QNNPACK)
        return False
    return True


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
    """A cell of :mod:`seq2seq_lstm.model.cells` whose matrix products run in int8 (:class:`Int8Linear`).

    Same interface as the cell (``input_gates``, ``forward(x, (h, c), x_gates)``, ``bias``); the gate
    math (standard, peephole or CIFG) is the wrapped cell's own, in float32, with tanh computed as
    2 sigmoid(2x) - 1 (:func:`~seq2seq_lstm.model.cells.tanh_via_sigmoid`). With ``joint`` (a cell always
    called with an input ``x`` that, like h, is an LSTM or tanh output in [-1, 1]: upper layers, the
    input-fed first layer) ``[x; h]`` goes through one product with ``[W_ih W_hh]``: one kernel call
    instead of two, and one quantization range is right for both halves. Otherwise W_ih and W_hh are
    apart, so that ``input_gates`` can project an embedding with a scale per row (or all of an
    encoder layer's input sequence at once).
    """

    fused = False

    def __init__(self, cell: LSTMCell, joint: bool = False) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size, self.input_size = cell.hidden_size, cell.input_size
        self.joint = joint
        # h = o * tanh(c) lies in (-1, 1); so does a joint cell's x (see above): a fixed range of [-1, 1]
        if joint:
            self.ihh = Int8Linear(torch.cat([cell.weight_ih, cell.weight_hh], 1), bound=1.0)  # (G*H, I+H)
        else:
            self.ih = Int8Linear(cell.weight_ih)  # (G*H, I): an embedding, a scale per row
            self.hh = Int8Linear(cell.weight_hh, bound=1.0)  # (G*H, H)
        self.bias = cell.bias
        # the float weights stay reachable through self.cell; drop them so the model really shrinks
        cell.weight_ih = cell.weight_hh = None

    def input_gates(self, x: Tensor) -> Tensor:
        """(..., I) -> (..., G*H), bias included."""
        if self.joint:
            raise RuntimeError("a joint Int8Cell has no separate input weights")
        gates = self.ih(x)
        return gates if self.bias is None else gates + self.bias

    def forward(self, x: Tensor | None, state: tuple[Tensor, Tensor], x_gates: Tensor | None = None):
        """x (B, I) or None, (h, c) each (B, H), x_gates (B, G*H) or None -> the new (h, c)."""
        h, c = state
        if self.joint:
            if x is None:
                raise RuntimeError("a joint Int8Cell needs its input x")
            gates = self.ihh(torch.cat([x, h], 1))
        else:
            gates = self.hh(h)
            if x is not None:
                gates = gates + self.ih(x)
        if x_gates is not None:
            gates = gates + x_gates  # precomputed input gates hold the bias already
        elif self.bias is not None:
            gates = gates + self.bias
        return self.cell.gate_math(gates, c, tanh=tanh_via_sigmoid)


def _copy_lstm_layer(cell: LSTMCell, lstm: nn.LSTM, suffix: str) -> None:
    """Load one layer and direction of ``lstm`` (``suffix``: "_l0", "_l1_reverse", ...) into a standard
    cell: the same weights, nn.LSTM's two biases summed into the cell's one."""
    with torch.no_grad():
        cell.weight_ih.copy_(getattr(lstm, f"weight_ih{suffix}"))
        cell.weight_hh.copy_(getattr(lstm, f"weight_hh{suffix}"))
        if lstm.bias:
            cell.bias.copy_(getattr(lstm, f"bias_ih{suffix}") + getattr(lstm, f"bias_hh{suffix}"))
        else:
            cell.bias = None


def cells_from_lstm(lstm: nn.LSTM, dropout: float = 0.0) -> StackedCell:
    """The layers of a unidirectional ``nn.LSTM`` as a :class:`StackedCell` of standard cells (same
    numbers: nn.LSTM's two biases are summed into the cell's one), so they can be stepped one by one."""
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("only a unidirectional nn.LSTM without projections converts to cells")
    stack = StackedCell("lstm", lstm.input_size, lstm.hidden_size, lstm.num_layers, dropout)
    for k, cell in enumerate(stack.layers):
        _copy_lstm_layer(cell, lstm, f"_l{k}")
    return stack.train(lstm.training)


def encoder_cells(rnn: PackedLSTM) -> CellLSTM:
    """A fused encoder LSTM (uni- or bidirectional) as a :class:`CellLSTM` of standard cells: the same
    equations, padding masked instead of packed, so the same memory and final state up to float
    rounding (a test checks 1e-6)."""
    lstm = rnn.lstm
    if lstm.proj_size:
        raise ValueError("an nn.LSTM with projections does not convert to cells")
    cells = CellLSTM(
        "lstm", lstm.input_size, lstm.hidden_size * rnn.num_directions, lstm.num_layers, lstm.dropout,
        lstm.bidirectional,
    )  # fmt: skip
    for k, directions in enumerate(cells.layers):
        for d, cell in enumerate(directions):
            _copy_lstm_layer(cell, lstm, f"_l{k}" + ("_reverse" if d else ""))
    return cells.train(lstm.training)


def _to_int8(decoder: Decoder) -> None:
    """Swap the decoder's matrices for int8 ones, in place. Input ranges (:class:`Int8Linear`): LSTM
    and tanh outputs, the encoder's memory and attention contexts (averages of it) lie in [-1, 1];
    embeddings, and the output layer's input behind an H -> E projection, get a scale per row.

    One exception: a language model's fused LSTM stays one call to torch's int8 LSTM, whose range
    covers the rows of the step. A language model serves suggestions, where all rows of a step are
    piece sequences of one text, so one range over them costs nothing in consistency, and one fused
    call per step does less work than stepping the cells."""
    if isinstance(decoder.rnn, nn.LSTM) and decoder.attention is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = {nn.LSTM: torch.ao.quantization.default_dynamic_qconfig}
            decoder.replace_rnn(
                torch.ao.quantization.quantize_dynamic(nn.Sequential(decoder.rnn), spec, dtype=torch.qint8)[0]
            )
    elif isinstance(decoder.rnn, nn.LSTM):  # torch's int8 LSTM would range over the batch: cells
        decoder.replace_rnn(cells_from_lstm(decoder.rnn, decoder.dropout))
    decoder.replace_embedding(Int8Embedding(decoder.embed))
    # the first layer's input is the attentional feed (input feeding) or nothing (its embedding part
    # comes in as precomputed gates); the upper layers' input is the layer below's h
    if isinstance(decoder.rnn, StackedCell):
        layers = decoder.rnn.layers
        for k, cell in enumerate(list(layers)):
            layers[k] = Int8Cell(cell, joint=k > 0 or decoder.input_feeding)
    bounds = {"emb_gates": None, "attn_out": 1.0, "out_proj": 1.0}
    bounds["generator"] = None if isinstance(decoder.out_proj, nn.Linear) else 1.0
    for name, linear in decoder.projections().items():
        if isinstance(linear, nn.Linear):
            decoder.replace_projection(name, Int8Linear(linear.weight, linear.bias, bound=bounds[name]))
    decoder.replace_tanh(tanh_via_sigmoid)  # the attentional vector's tanh(W_c [c; h])
    # attention's projections of the memory (encoder LSTM outputs) and of the query (the top layer's
    # h): inputs in [-1, 1]. Bahdanau's energy layer (H -> 1) is no projection and stays float.
    if decoder.attention is not None:
        for name, linear in decoder.attention.projections().items():
            if isinstance(linear, nn.Linear):
                decoder.attention.replace_projection(name, Int8Linear(linear.weight, linear.bias, bound=1.0))


def _encoder_to_int8(encoder: Encoder) -> None:
    """Swap the encoder's LSTM for int8 cells, in place: the fused ``nn.LSTM`` becomes cells first
    (:func:`encoder_cells`; torch's int8 LSTM would take its activation range from the whole batch).
    Each layer projects its whole input sequence in one int8 product with a scale per row (embeddings,
    and the layer below's outputs); the time loop multiplies h, in [-1, 1], by the int8 W_hh. Left in
    float32, the encoder would be a large share of int8 decoding, whose other products are int8."""
    if isinstance(encoder.rnn, PackedLSTM):
        encoder.rnn = encoder_cells(encoder.rnn)
    for directions in encoder.rnn.layers:
        for d, cell in enumerate(directions):
            directions[d] = Int8Cell(cell)


def convert_weights(model: nn.Module, dtype: str) -> nn.Module:
    """``model`` (in eval mode) with the weight type ``dtype``: float32 (as trained), bfloat16 (every
    weight), or int8 (the decoder's matrices, see the module docstring). Returns the converted model;
    the argument is changed in place, copy it to keep it."""
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype == "bfloat16":
        return model.to(torch.bfloat16)
    if dtype == "int8":
        where = {p.device.type for p in model.parameters()} - {"cpu"}
        if where:  # torch's int8 kernels (fbgemm, QNNPACK) are CPU kernels
            raise UserError(
                f"dtype int8 runs on the CPU only; the model is on {sorted(where)[0]}: use --device cpu, "
                "or float32 / bfloat16 weights on a GPU"
            )
        _to_int8(model.decoder)
        if isinstance(getattr(model, "encoder", None), Encoder):
            _encoder_to_int8(model.encoder)
    return model
