"""int8 and bfloat16 inference weights: the same cells and models up to rounding, really smaller."""

import copy
import io

import pytest
import torch

from seq2seq_lstm.config import ModelConfig
from seq2seq_lstm.decoding.quantize import (
    Int8Cell,
    Int8Linear,
    cells_from_lstm,
    convert_weights,
    encoder_cells,
)
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.model.cells import CELLS, tanh_via_sigmoid
from seq2seq_lstm.model.encoder import CellLSTM, Encoder
from seq2seq_lstm.model.seq2seq import LanguageModel, Seq2Seq

B, I, H = 6, 24, 32


def _nbytes(model: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("inputs", ["x", "x_gates", "both"])
def test_int8_cell_matches_the_float_cell(name, inputs):
    """Every way a cell is called (input, precomputed input gates, both: input feeding) gives the float
    cell's (h, c) up to int8 rounding, through the cell's own gate math."""
    torch.manual_seed(0)
    cell = CELLS[name](I, H).eval()
    if name == "peephole":
        torch.nn.init.uniform_(cell.peephole, -0.5, 0.5)
    x, h, c = torch.randn(B, I), torch.randn(B, H).tanh(), torch.randn(B, H)
    x_gates = cell.input_gates(torch.randn(B, I)) if inputs != "x" else None
    x_in = None if inputs == "x_gates" else x
    with torch.no_grad():
        want = cell(x_in, (h, c), x_gates)
        int8 = Int8Cell(copy.deepcopy(cell))
        got = int8(x_in, (h, c), x_gates)
        gates = int8.input_gates(x)
    for w, g in zip(want, got, strict=True):
        err = (w - g).abs().max().item()
        assert 0 < err < 0.03, err  # really quantized, and close
    assert (gates - cell.input_gates(x)).abs().max().item() < 0.03
    assert int8.cell.weight_ih is None and int8.cell.weight_hh is None  # no float copy left behind


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_joint_int8_cell_matches_the_float_cell(name):
    """[x; h] through one product (x an LSTM or tanh output, in [-1, 1] like h)."""
    torch.manual_seed(0)
    cell = CELLS[name](I, H).eval()
    x, h, c = torch.randn(B, I).tanh(), torch.randn(B, H).tanh(), torch.randn(B, H)
    x_gates = cell.input_gates(torch.randn(B, I))
    with torch.no_grad():
        int8 = Int8Cell(copy.deepcopy(cell), joint=True)
        for gx in (None, x_gates):
            for w, g in zip(cell(x, (h, c), gx), int8(x, (h, c), gx), strict=True):
                assert 0 < (w - g).abs().max().item() < 0.03


@pytest.mark.parametrize("cell", ["lstm", "cifg"])
def test_int8_language_model_steps_like_the_float_one(cell):
    """Both decoder kinds: the fused nn.LSTM (torch's int8 LSTM) and the per-step cells (Int8Cell)."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=64, dec_layers=2, dropout=0.0, cell=cell)
    model = LanguageModel(cfg, 3000).eval()
    int8 = convert_weights(copy.deepcopy(model), "int8")
    tokens = torch.tensor([[2, 17, 250, 9, 1200, 44]] * 3)
    with torch.inference_mode():
        states = [model.start(3), int8.start(3)]
        for t in range(tokens.size(1)):
            (want, states[0], _), (got, states[1], _) = (
                m.step(tokens[:, t], s) for m, s in zip((model, int8), states, strict=True)
            )
            assert (want.exp() - got.exp()).abs().sum(1).max().item() < 0.05  # total variation
    if cell == "lstm":  # a language model's fused LSTM: torch's int8 LSTM, one call per step
        assert type(int8.decoder.rnn).__module__.startswith("torch.ao.nn.quantized")
    else:
        assert all(isinstance(layer, Int8Cell) for layer in int8.decoder.rnn.layers)
    assert isinstance(int8.decoder.generator, Int8Linear)
    assert _nbytes(int8) < 0.8 * _nbytes(model)


@pytest.mark.parametrize("attention", ["general", "bahdanau", "dot"])
def test_int8_translation_model_steps_like_the_float_one(attention):
    """Input feeding: the first cell gets precomputed embedding gates and the attentional feed;
    attention's projections of the memory and the query are int8 too."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        emb_dim=32,
        hidden_size=64,
        enc_layers=1,
        dec_layers=2,
        dropout=0.0,
        cell="peephole",
        attention=attention,
    )
    model = Seq2Seq(cfg, 500, 500).eval()
    int8 = convert_weights(copy.deepcopy(model), "int8")
    assert all(isinstance(layer, Int8Cell) for layer in int8.decoder.rnn.layers)
    projections = {"general": ["linear_in"], "bahdanau": ["key_layer", "query_layer"], "dot": []}[attention]
    assert all(isinstance(getattr(int8.decoder.attention, n), Int8Linear) for n in projections)
    src, lens = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]]), torch.tensor([5, 3])
    with torch.inference_mode():
        s0, s1 = model.start(src, lens), int8.start(src, lens)
        for tok in (2, 40, 41):
            tokens = torch.tensor([tok, tok])
            (want, s0, _), (got, s1, _) = model.step(tokens, s0), int8.step(tokens, s1)
            assert (want.exp() - got.exp()).abs().sum(1).max().item() < 0.05


@pytest.mark.parametrize("input_feeding", [True, False])
def test_int8_swaps_the_decoders_parts_through_its_public_methods(input_feeding):
    """Every projection the decoder and its attention name become int8, the fused LSTM becomes cells,
    the attentional tanh goes through the sigmoid; Bahdanau's scoring vector stays float."""
    cfg = ModelConfig(emb_dim=16, hidden_size=32, enc_layers=1, dec_layers=2, dropout=0.0,
                      attention="bahdanau", input_feeding=input_feeding)  # fmt: skip
    int8 = convert_weights(Seq2Seq(cfg, 50, 50).eval(), "int8")
    decoder = int8.decoder
    assert decoder.projections() and all(isinstance(p, Int8Linear) for p in decoder.projections().values())
    assert sorted(decoder.attention.projections()) == ["key_layer", "query_layer"]
    assert all(isinstance(p, Int8Linear) for p in decoder.attention.projections().values())
    assert type(decoder.attention.energy_layer) is torch.nn.Linear
    assert decoder.tanh is tanh_via_sigmoid and not decoder.fused
    assert all(isinstance(layer, Int8Cell) for layer in decoder.rnn.layers)
    lm = convert_weights(LanguageModel(cfg, 50).eval(), "int8")
    assert lm.decoder.fused and not isinstance(lm.decoder.rnn, torch.nn.LSTM)  # torch's int8 LSTM, one call


# fbgemm (x86) takes the input range as an argument; QNNPACK (ARM CPUs) needs the pinning columns
ENGINES = ["default"] + [e for e in ["qnnpack"] if e in torch.backends.quantized.supported_engines]


@pytest.fixture(params=ENGINES)
def engine(request):
    """Pack and run int8 products with torch's quantized engine ("default": as installed)."""
    before = torch.backends.quantized.engine
    if request.param != "default":
        torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = before


def test_int8_linear_fixes_its_range_on_each_engine(engine):
    linear = Int8Linear(torch.randn(20, 8), bound=1.0)
    assert (linear.pins is not None) == (engine == "qnnpack")
    x = torch.randn(3, 8).tanh()
    assert torch.equal(linear(x[1:2]), linear(x)[1:2])


@pytest.mark.parametrize("bound", [1.0, None])
def test_int8_linear_rows_do_not_depend_on_the_batch(bound, engine):
    """A fixed range (inputs in [-1, 1], as tanh outputs) or a scale per row: each row's output is
    bit for bit the same alone and in batches of any size, and close to the float product."""
    torch.manual_seed(0)
    weight, bias = torch.randn(300, 64) * 0.1, torch.randn(300)
    x = torch.randn(40, 64)
    x = x.tanh() if bound else x * torch.rand(40, 1) * 5  # rows of very different magnitudes
    linear = Int8Linear(weight, bias, bound=bound)
    full = linear(x)
    for size in (1, 2, 7, 16, 33):
        for start in range(0, 40 - size + 1, 5):
            assert torch.equal(linear(x[start : start + size]), full[start : start + size]), (size, start)
    want = torch.nn.functional.linear(x, weight, bias)
    err = (full - want).norm() / want.norm()
    assert 0 < err < 0.03, err
    assert linear(x[:3].unsqueeze(0)).shape == (1, 3, 300)  # leading dimensions kept


@pytest.mark.parametrize("bound", [1.0, 0.5, None])
def test_int8_linear_is_the_exact_integer_product(bound):
    """The product worked out by hand in exact integers: x quantized to 7 bits over its fixed range
    ([-bound, bound] onto [0, 128], zero point 64; a row's own largest magnitude without a bound),
    times the layer's int8 rows, scaled back. Only the final float32 scaling may round."""
    torch.manual_seed(2)
    weight, bias = torch.randn(70, 40) * 0.3, torch.randn(70)
    x = torch.randn(6, 40)
    x = (x.tanh() * bound) if bound else x * torch.rand(6, 1) * 4
    if bound:
        x[0, :2] = torch.tensor([bound, -bound])  # the ends of the range
    linear = Int8Linear(weight, bias, bound=bound)
    qweight = linear.inner.weight()  # (N, K) int8 with a scale per row
    w_int = qweight.int_repr().long()
    w_scale = qweight.q_per_channel_scales().double()
    row = x.double().abs().amax(1, keepdim=True) if bound is None else torch.full((6, 1), float(bound))
    step = row / 63.5  # (M, 1) scale of each row's quantized values
    x_int = (torch.round(x.double() / step) + 64).clamp(0, 255).long()  # round half to even, as fbgemm
    assert x_int.max() <= 128 and x_int.min() >= 0  # so no int16 sum of two u8 x s8 products overflows
    acc = (x_int - 64) @ w_int.T  # (M, N) exact
    want = acc.double() * step * w_scale + bias.double()
    torch.testing.assert_close(linear(x).double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bound", [1.0, None])
def test_int8_linear_cut_to_some_outputs_gives_those_outputs_bit_for_bit(bound, engine):
    """What a vocabulary shortlist relies on: the cut layer holds the same int8 rows and scales."""
    torch.manual_seed(1)
    linear = Int8Linear(torch.randn(500, 48) * 0.2, torch.randn(500), bound=bound)
    x = torch.randn(9, 48).tanh()
    full = linear(x)
    for index in (torch.tensor([0, 7, 499]), torch.randperm(500)[:123], torch.arange(500)):
        cut = linear.select_outputs(index)
        assert cut.out_features == len(index)
        assert torch.equal(cut(x), full[:, index])
        assert torch.equal(cut(x[4:6]), full[4:6, index])  # and still row-independent


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_the_input_gate_table_changes_no_number_and_training_drops_it(dtype):
    """Decoding looks the first layer's embedding gates up in a (V, G*H) table instead of multiplying
    at every step. int8: the same log-probs bit for bit (the product is row-independent). float32: the
    table is one GEMM over V rows, and MKL rounds a 1-3 row GEMM differently in the last bit, so a
    2-row step moves by float32 rounding only (and every batch now sees the same gates)."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=64, enc_layers=1, dec_layers=2, dropout=0.0)
    model = convert_weights(Seq2Seq(cfg, 300, 300).eval(), dtype)
    src, lens = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]]), torch.tensor([5, 3])
    dec = model.decoder
    with torch.inference_mode():
        plain = [model.step(torch.tensor([t, t + 1]), model.start(src, lens))[0] for t in (2, 40, 298)]
        assert dec.cache_input_gates()
        assert dec.gate_table.shape == (300, 4 * 64)
        cached = [model.step(torch.tensor([t, t + 1]), model.start(src, lens))[0] for t in (2, 40, 298)]
    for a, b in zip(plain, cached, strict=True):
        if dtype == "int8":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not dec.cache_input_gates(max_bytes=1000)  # too large: not built
    model.train()
    assert dec.gate_table is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao's notice, not ours
def test_batch_wide_dynamic_quantization_would_depend_on_the_batch():
    """What the fixed ranges are for: torch's own dynamic Linear takes its activation range from the
    whole batch, so a row's output changes with its neighbours."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 300)
    dynamic = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(linear), {torch.nn.Linear}, torch.qint8
    )
    x = torch.randn(8, 64) * torch.tensor([[0.1], [1], [1], [1], [1], [1], [1], [8]])
    assert not torch.equal(dynamic(x[:1]), dynamic(x)[:1])


def test_a_fused_lstm_becomes_cells_with_the_same_numbers():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, H, num_layers=2, batch_first=True).eval()
    x, h0, c0 = torch.randn(B, 5, I), torch.randn(2, B, H), torch.randn(2, B, H)
    want, (hn, cn) = lstm(x, (h0, c0))
    stack = cells_from_lstm(lstm).eval()
    hc = (list(h0.unbind(0)), list(c0.unbind(0)))
    outs = []
    with torch.no_grad():
        for t in range(5):
            top, hc = stack(x[:, t], hc)
            outs.append(top)
    torch.testing.assert_close(torch.stack(outs, 1), want, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack(hc[1]), cn, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_fused_encoder_becomes_cells_with_the_same_numbers(bidirectional):
    """Packed nn.LSTM and masked cells: the same memory (zeros on padding) and final states."""
    torch.manual_seed(0)
    encoder = Encoder(50, I, H, num_layers=2, bidirectional=bidirectional).eval()
    src, lens = torch.randint(4, 50, (B, 7)), torch.tensor([7, 1, 4, 7, 2, 5])
    src[torch.arange(7) >= lens.unsqueeze(1)] = 0
    with torch.no_grad():
        want = encoder(src, lens)
        encoder.rnn = encoder_cells(encoder.rnn)
        got = encoder(src, lens)
    assert isinstance(encoder.rnn, CellLSTM)
    for w, g in zip([want[0], *want[2]], [got[0], *got[2]], strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "cifg"])
def test_an_int8_encoder_is_close_and_the_same_alone_and_in_a_batch(cell, engine):
    """The encoder's layers become int8 cells: each sentence's memory and final state are bit for bit
    those it gets alone (the input products scale each row on its own, h has the fixed range), and
    close to the float encoder's."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=64, enc_layers=2, dec_layers=1, dropout=0.0, cell=cell)
    model = Seq2Seq(cfg, 300, 300).eval()
    src, lens = torch.randint(4, 300, (7, 9)), torch.tensor([9, 3, 1, 9, 6, 2, 8])
    src[torch.arange(9) >= lens.unsqueeze(1)] = 0
    with torch.inference_mode():
        want = model.encoder(src, lens)
        int8 = convert_weights(copy.deepcopy(model), "int8")
        assert all(isinstance(c, Int8Cell) for layer in int8.encoder.rnn.layers for c in layer)
        memory, _, (h, c) = int8.encoder(src, lens)
        assert 0 < (memory - want[0]).abs().max().item() < 0.05  # quantized, and close
        assert (h - want[2][0]).abs().max().item() < 0.05
        for row in range(7):
            n = int(lens[row])
            alone, _, (h1, c1) = int8.encoder(src[row : row + 1, :n], lens[row : row + 1])
            assert torch.equal(alone[0], memory[row, :n]) and not memory[row, n:].any(), row
            assert torch.equal(h1[:, 0], h[:, row]) and torch.equal(c1[:, 0], c[:, row]), row


@pytest.mark.parametrize("kind", ["lm-cifg", "translation-input-feeding", "translation-fused-lstm"])
def test_an_int8_decoder_step_is_the_same_alone_and_in_a_batch(kind, engine):
    """Every matrix product of an int8 decoder step keeps rows apart: a row's log-probs and new state
    are bit for bit those of the row stepped alone (same-length sources, so attention sees the same
    memory shape). A translation decoder without input feeding is a fused nn.LSTM in float32: int8
    steps it as cells."""
    torch.manual_seed(0)
    if kind == "lm-cifg":
        cfg = ModelConfig(emb_dim=32, hidden_size=64, dec_layers=2, dropout=0.0, cell="cifg")
        model = LanguageModel(cfg, 500).eval()
        state = model.start(7)
    else:
        feeding = kind == "translation-input-feeding"
        cfg = ModelConfig(
            emb_dim=32, hidden_size=64, enc_layers=1, dec_layers=2, dropout=0.0, input_feeding=feeding
        )
        model = Seq2Seq(cfg, 300, 500).eval()
        assert model.decoder.fused != feeding
        state = model.start(torch.randint(4, 300, (7, 6)), torch.full((7,), 6))
    model = convert_weights(model, "int8")  # after start(): the step is tested, not the encoder
    tokens = torch.randint(4, 500, (4, 7))
    with torch.inference_mode():
        for t in range(3):  # warm the states up: h, c and the feed are no longer zeros
            _, state, _ = model.step(tokens[t], state)
        log_probs, after, _ = model.step(tokens[3], state)
        for row in range(7):
            index = torch.tensor([row])
            alone, alone_after, _ = model.step(tokens[3, index], state.reorder(index))
            assert torch.equal(alone[0], log_probs[row]), row
            assert torch.equal(alone_after.h[:, 0], after.h[:, row]), row


def test_bfloat16_and_bad_dtype():
    model = LanguageModel(ModelConfig(emb_dim=16, hidden_size=16, dec_layers=1, cell="cifg"), 100)
    assert convert_weights(copy.deepcopy(model), "float32").decoder.embed.weight.dtype == torch.float32
    assert convert_weights(copy.deepcopy(model), "bfloat16").decoder.embed.weight.dtype == torch.bfloat16
    with pytest.raises(UserError, match="dtype must be one of float32, bfloat16, int8; got 'int4'"):
        convert_weights(model, "int4")


def test_int8_off_the_cpu_is_one_clear_error():
    # torch's int8 kernels are CPU kernels; a model on another device (meta stands in for a GPU here)
    # gets a UserError before any quantization is tried
    model = Seq2Seq(ModelConfig(emb_dim=16, hidden_size=16, enc_layers=1, dec_layers=1), 50, 50).to("meta")
    with pytest.raises(
        UserError, match=r"^dtype int8 runs on the CPU only; the model is on meta: use --device cpu"
    ):
        convert_weights(model, "int8")
