"""Weights shared over a time loop: the same values and gradients as plain autograd, one product each."""

import itertools

import pytest
import torch

from seq2seq_lstm.config import ModelConfig
from seq2seq_lstm.decoding.quantize import convert_weights
from seq2seq_lstm.model.decoder import Decoder
from seq2seq_lstm.model.seq2seq import LanguageModel, Seq2Seq
from seq2seq_lstm.model.shared_weight import SharedLinear


def recurrence(weight, xs, h, linear):
    """h_t = tanh(linear([x_t; h_{t-1}])) over the steps; returns the sum of all h_t (a scalar to
    differentiate through every step and through the recurrence)."""
    total = 0
    for x in xs:
        h = torch.tanh(linear(torch.cat([x, h], 1)))
        total = total + h.sum() * (1 + x.mean())
    return total


def test_shared_linear_equals_plain_autograd():
    torch.manual_seed(0)
    weight = torch.randn(6, 4 + 6, dtype=torch.float64, requires_grad=True)
    xs = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    h0 = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)

    out = recurrence(weight, xs, h0, SharedLinear(weight, torch.float64))
    grads = torch.autograd.grad(out, [weight, h0, *xs])
    ref_out = recurrence(weight, xs, h0, lambda x: x @ weight.T)
    ref_grads = torch.autograd.grad(ref_out, [weight, h0, *xs])
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=0)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_shared_linear_in_bf16_equals_autocast_per_step_casts():
    # autocast's way (with its cast cache off, as under Lightning): cast the weight at every step,
    # bf16 products, the per-step weight gradients cast back to float32 and summed
    torch.manual_seed(0)
    weight = (0.2 * torch.randn(32, 16 + 32)).requires_grad_()
    xs = [torch.randn(8, 16) for _ in range(6)]
    h0 = torch.zeros(8, 32)
    shared = recurrence(weight, xs, h0, SharedLinear(weight, torch.bfloat16))
    (grad,) = torch.autograd.grad(shared, [weight])
    ref = recurrence(weight, xs, h0, lambda x: x.bfloat16() @ weight.bfloat16().T)
    (ref_grad,) = torch.autograd.grad(ref, [weight])
    assert grad.dtype == torch.float32  # the parameter's dtype, whatever the compute dtype
    assert torch.equal(shared, ref)  # the same bf16 products forward
    # backward differs only in where the sum over steps is rounded
    assert (grad - ref_grad).norm() / ref_grad.norm() < 5e-3


def shared_and_plain_gradients(model, run):
    """Gradients of ``run()`` with the decoder's shared-weight loop and with its per-step ``_recur``."""
    out = {}
    for shared in (True, False):
        model.zero_grad()
        original = Decoder._shared_recur
        if not shared:
            Decoder._shared_recur = lambda self: self._recur
        try:
            run().backward()
        finally:
            Decoder._shared_recur = original
        out[shared] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out[True], out[False]


@pytest.mark.parametrize(
    "cell,attention,input_feeding",
    list(itertools.product(["lstm", "peephole", "cifg"], ["general", "bahdanau"], [True, False])),
)
def test_decoder_training_loop_gets_the_per_step_gradients(cell, attention, input_feeding):
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=8, hidden_size=12, dropout=0.0, cell=cell, attention=attention,
                      input_feeding=input_feeding)  # fmt: skip
    model = Seq2Seq(cfg, 20, 20).double()
    src, lens, tgt = torch.randint(4, 20, (3, 5)), torch.tensor([5, 3, 4]), torch.randint(4, 20, (3, 6))
    shared, plain = shared_and_plain_gradients(model, lambda: model(src, lens, tgt).logsumexp(-1).sum())
    assert shared.keys() == plain.keys() and len(shared) == len(list(model.parameters()))
    for name in shared:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("cell", ["peephole", "cifg"])
def test_language_model_training_loop_gets_the_per_step_gradients(cell):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(emb_dim=8, hidden_size=12, dropout=0.0, cell=cell), 20).double()
    tokens = torch.randint(4, 20, (3, 7))
    shared, plain = shared_and_plain_gradients(model, lambda: model(tokens).logsumexp(-1).sum())
    assert shared.keys() == plain.keys()
    for name in shared:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-9, atol=1e-12, msg=name)


def test_record_is_emptied_by_backward():
    weight = torch.randn(4, 3, requires_grad=True)
    linear = SharedLinear(weight, torch.float32)
    out = sum(linear(torch.randn(2, 3)).sum() for _ in range(3))
    out.backward()
    assert linear._record.inputs == [] and linear._record.grads == []
    assert weight.grad is not None and weight.grad.shape == (4, 3)


def test_int8_model_forward_with_gradients_enabled_takes_the_per_step_loop():
    # an int8 decoder's cells have no float weights to share: forward must not look for them
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(emb_dim=8, hidden_size=12, dropout=0.0), 20, 20).eval()
    int8 = convert_weights(model, "int8")
    src, lens, tgt = torch.randint(4, 20, (2, 5)), torch.tensor([5, 3]), torch.randint(4, 20, (2, 6))
    with torch.no_grad():
        expected = int8(src, lens, tgt)
    torch.testing.assert_close(int8(src, lens, tgt), expected)
