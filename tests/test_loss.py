"""The chunked cross-entropy against F.cross_entropy: sums, gradients, padding, smoothing, chunk edges."""

import pytest
import torch
import torch.nn.functional as F

from seq2seq_lstm.training import loss as loss_module
from seq2seq_lstm.training.loss import cross_entropy_sums

PAD = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_equals_f_cross_entropy_across_chunks(dtype, smoothing, monkeypatch):
    # 7 rows of 50 pieces a chunk: 40 rows make 5 full chunks and a partial one
    monkeypatch.setattr(loss_module, "CHUNK_BYTES", 7 * 50 * 4)
    torch.manual_seed(0)
    logits = (torch.randn(40, 50) * 4).to(dtype).requires_grad_()
    target = torch.randint(1, 50, (40,))
    target[[0, 6, 7, 39]] = PAD  # padding rows, some on chunk edges
    before = logits.detach().clone()

    loss, nll = cross_entropy_sums(logits, target, smoothing, PAD)
    loss.backward()

    ref_logits = logits.detach().float().requires_grad_()
    ref = F.cross_entropy(ref_logits, target, ignore_index=PAD, label_smoothing=smoothing, reduction="sum")
    ref.backward()
    ref_nll = F.cross_entropy(ref_logits.detach(), target, ignore_index=PAD, reduction="sum")
    assert loss.dtype == nll.dtype == torch.float32
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-6, atol=1e-4)
    assert logits.grad.dtype == dtype
    # bf16 gradients are the float32 ones rounded once (8 bits of mantissa)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 8e-3, "atol": 1e-5}
    torch.testing.assert_close(logits.grad.float(), ref_logits.grad, **tol)
    assert logits.grad[[0, 6, 7, 39]].abs().sum() == 0  # padding rows get no gradient
    assert torch.equal(logits.detach(), before)  # the backward works on copies, never on the logits
    assert not nll.requires_grad


def test_known_values():
    # two pieces with equal logits: p = 1/2 each, so the NLL is log 2 per row, and with smoothing e the
    # loss is (1 - e) (lse - z_t) + e (lse - mean z) = log 2 too; the middle row is padding
    logits = torch.zeros(3, 2, requires_grad=True)
    loss, nll = cross_entropy_sums(logits, torch.tensor([1, 0, 1]), 0.2, ignore_index=0)
    assert loss.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert nll.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    loss.backward()
    # d/dz = p - (1 - e) onehot - e / V = 0.5 - 0.8 - 0.1 for the target, 0.5 - 0.1 for the other
    expected = torch.tensor([[0.4, -0.4], [0.0, 0.0], [0.4, -0.4]])
    torch.testing.assert_close(logits.grad, expected)


def test_all_padding_gives_zero_and_a_zero_gradient():
    logits = torch.randn(4, 9, requires_grad=True)
    loss, nll = cross_entropy_sums(logits, torch.zeros(4, dtype=torch.long), 0.1, PAD)
    loss.backward()
    assert loss.item() == nll.item() == 0.0
    assert logits.grad.abs().sum() == 0
