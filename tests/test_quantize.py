"""int8 and bfloat16 inference weights: the same cells and models up to rounding, really smaller."""

import copy
import io

import pytest
import torch

from seq2seq_lstm.cells import CELLS
from seq2seq_lstm.config import ModelConfig
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.model import LanguageModel, Seq2Seq
from seq2seq_lstm.quantize import Int8Cell, convert_weights

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


@pytest.mark.parametrize("cell", ["lstm", "cifg"])
def test_int8_language_model_steps_like_the_float_one(cell):
    """Both decoder kinds: the fused nn.LSTM (quantized by torch) and the per-step cells (Int8Cell)."""
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
    quantized = [m for m in int8.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert len(quantized) >= 2  # the recurrent part and the output layer
    assert _nbytes(int8) < 0.8 * _nbytes(model)


def test_int8_translation_model_steps_like_the_float_one():
    """Input feeding: the first cell gets precomputed embedding gates and the attentional feed."""
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, hidden_size=64, enc_layers=1, dec_layers=2, dropout=0.0, cell="peephole")
    model = Seq2Seq(cfg, 500, 500).eval()
    int8 = convert_weights(copy.deepcopy(model), "int8")
    assert all(isinstance(layer, Int8Cell) for layer in int8.decoder.rnn.layers)
    src, lens = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]]), torch.tensor([5, 3])
    with torch.inference_mode():
        s0, s1 = model.start(src, lens), int8.start(src, lens)
        for tok in (2, 40, 41):
            tokens = torch.tensor([tok, tok])
            (want, s0, _), (got, s1, _) = model.step(tokens, s0), int8.step(tokens, s1)
            assert (want.exp() - got.exp()).abs().sum(1).max().item() < 0.05


def test_bfloat16_and_bad_dtype():
    model = LanguageModel(ModelConfig(emb_dim=16, hidden_size=16, dec_layers=1, cell="cifg"), 100)
    assert convert_weights(copy.deepcopy(model), "float32").decoder.embed.weight.dtype == torch.float32
    assert convert_weights(copy.deepcopy(model), "bfloat16").decoder.embed.weight.dtype == torch.bfloat16
    with pytest.raises(UserError, match="dtype must be one of float32, bfloat16, int8; got 'int4'"):
        convert_weights(model, "int4")
