"""LSTM cells against their equations written out by hand, and the standard one against nn.LSTM."""

import pytest
import torch
from torch import nn

from seq2seq_lstm.config import CELLS as CONFIG_CELLS
from seq2seq_lstm.model.cells import (
    CELLS,
    CIFGLSTMCell,
    LSTMCell,
    PeepholeLSTMCell,
    StackedCell,
    tanh_via_sigmoid,
)

B, I, H = 3, 5, 4


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def tanh(x):
    return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))


def blocks(cell, x, h, n):
    """W_k x + R_k h + b_k for each of the n gate blocks, one matrix product per block."""
    out = []
    for k in range(n):
        rows = slice(k * H, (k + 1) * H)
        out.append(x @ cell.weight_ih[rows].T + h @ cell.weight_hh[rows].T + cell.bias[rows])
    return out


def lstm_equations(cell, x, h, c):
    i, f, g, o = blocks(cell, x, h, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    return sigmoid(o) * tanh(c), c


def peephole_equations(cell, x, h, c):
    i, f, g, o = blocks(cell, x, h, 4)
    p_i, p_f, p_o = cell.peephole
    i = sigmoid(i + p_i * c)  # input and forget gates look at c_{t-1}
    f = sigmoid(f + p_f * c)
    c = f * c + i * tanh(g)
    o = sigmoid(o + p_o * c)  # the output gate looks at c_t
    return o * tanh(c), c


def cifg_equations(cell, x, h, c):
    f, g, o = blocks(cell, x, h, 3)
    f = sigmoid(f)
    c = f * c + (1.0 - f) * tanh(g)
    return sigmoid(o) * tanh(c), c


EQUATIONS = {"lstm": lstm_equations, "peephole": peephole_equations, "cifg": cifg_equations}


def make(name, seed=0):
    torch.manual_seed(seed)
    cell = CELLS[name](I, H).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.5, 0.5)  # all parameters, peepholes and biases included, clearly non-zero
    return cell


def test_registry_matches_config_choices():
    assert set(CELLS) == set(CONFIG_CELLS)
    assert (
        CELLS["lstm"] is LSTMCell and CELLS["peephole"] is PeepholeLSTMCell and CELLS["cifg"] is CIFGLSTMCell
    )


def test_cifg_has_three_gate_blocks():
    assert CIFGLSTMCell(I, H).weight_ih.shape == (3 * H, I)
    assert LSTMCell(I, H).weight_hh.shape == (4 * H, H)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_matches_its_equations_over_a_sequence(name):
    cell, equations = make(name), EQUATIONS[name]
    xs = torch.randn(6, B, I, dtype=torch.double)
    h = torch.randn(B, H, dtype=torch.double)
    c = torch.randn(B, H, dtype=torch.double)
    h_ref, c_ref = h, c
    with torch.no_grad():
        for x in xs:
            h, c = cell(x, (h, c))
            h_ref, c_ref = equations(cell, x, h_ref, c_ref)
            torch.testing.assert_close(h, h_ref, atol=1e-6, rtol=0)
            torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_precomputed_input_gates_give_the_same_step(name):
    # forward(None, state, x_gates=input_gates(x)) is how the encoder and decoder run a whole sequence
    cell = make(name)
    x = torch.randn(B, I, dtype=torch.double)
    state = (torch.randn(B, H, dtype=torch.double), torch.randn(B, H, dtype=torch.double))
    with torch.no_grad():
        direct = cell(x, state)
        split = cell(None, state, x_gates=cell.input_gates(x))
    torch.testing.assert_close(split, direct, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_split_input_with_precomputed_part(name):
    # the decoder's first layer: gates of [emb; feed] = (W_e emb + b) precomputed, plus W_f feed per step
    torch.manual_seed(1)
    E = 2
    whole = CELLS[name](E + I, H).double()
    part = CELLS[name](I, H).double()
    with torch.no_grad():
        part.weight_ih.copy_(whole.weight_ih[:, E:])
        part.weight_hh.copy_(whole.weight_hh)
        part.bias.copy_(whole.bias)
        if name == "peephole":
            part.peephole.copy_(whole.peephole)
    emb, feed = torch.randn(B, E, dtype=torch.double), torch.randn(B, I, dtype=torch.double)
    state = (torch.randn(B, H, dtype=torch.double), torch.randn(B, H, dtype=torch.double))
    with torch.no_grad():
        expected = whole(torch.cat([emb, feed], 1), state)
        pre = torch.nn.functional.linear(emb, whole.weight_ih[:, :E], whole.bias)
        got = part(feed, state, x_gates=pre)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def copy_from_lstm(lstm: nn.LSTM, stack: StackedCell) -> None:
    with torch.no_grad():
        for k, cell in enumerate(stack.layers):
            cell.weight_ih.copy_(getattr(lstm, f"weight_ih_l{k}"))
            cell.weight_hh.copy_(getattr(lstm, f"weight_hh_l{k}"))
            cell.bias.copy_(getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))


@pytest.mark.parametrize("layers", [1, 3])
def test_standard_cell_matches_nn_lstm(layers):
    torch.manual_seed(2)
    lstm = nn.LSTM(I, H, layers)
    stack = StackedCell("lstm", I, H, layers)
    copy_from_lstm(lstm, stack)
    xs = torch.randn(7, B, I)
    h0, c0 = torch.randn(layers, B, H), torch.randn(layers, B, H)
    with torch.no_grad():
        ref, (h_ref, c_ref) = lstm(xs, (h0, c0))
        state = (list(h0.unbind(0)), list(c0.unbind(0)))
        outs = []
        for x in xs:
            out, state = stack(x, state)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack(state[0]), h_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack(state[1]), c_ref, atol=1e-6, rtol=0)


def test_stacked_cell_applies_dropout_between_layers_only_in_training():
    torch.manual_seed(3)
    stack = StackedCell("cifg", I, H, 2, dropout=0.5)
    x = torch.randn(B, I)
    state = ([torch.zeros(B, H)] * 2, [torch.zeros(B, H)] * 2)
    stack.eval()
    a, _ = stack(x, state)
    b, _ = stack(x, state)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    stack.train()
    outs = {tuple(stack(x, state)[0].flatten().tolist()) for _ in range(5)}
    assert len(outs) > 1  # dropout masks differ between calls
    # the first layer gets no dropout: its state is the same as in eval mode
    _, (h_train, _) = stack(x, state)
    stack.eval()
    _, (h_eval, _) = stack(x, state)
    torch.testing.assert_close(h_train[0], h_eval[0])


def test_forget_bias_lands_on_the_forget_block():
    cell = LSTMCell(I, H)
    cell.init_forget_bias(1.0)
    assert torch.all(cell.bias[H : 2 * H] == 1.0)
    cifg = CIFGLSTMCell(I, H)
    cifg.init_forget_bias(1.0)
    assert torch.all(cifg.bias[:H] == 1.0) and not torch.all(cifg.bias[H:] == 1.0)


def test_tanh_via_sigmoid_is_tanh_to_float32_rounding():
    x = torch.linspace(-30, 30, 200_001)
    exact = torch.tanh(x.double())
    assert (tanh_via_sigmoid(x) - exact).abs().max().item() < 2e-7
    assert (tanh_via_sigmoid(x.double()) - exact).abs().max().item() < 1e-15
    special = torch.tensor([0.0, 50.0, -50.0, float("inf"), -float("inf")])
    assert tanh_via_sigmoid(special).tolist() == [0.0, 1.0, -1.0, 1.0, -1.0]
    assert tanh_via_sigmoid(torch.tensor([float("nan")])).isnan().all()
