"""CUDA paths against the CPU: cells (fused kernels), a training step, beam search, bf16 autocast.

Skipped without a GPU (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

import pytest
import torch

from seq2seq_lstm.config import ModelConfig
from seq2seq_lstm.decoding.options import SearchOptions
from seq2seq_lstm.decoding.search import beam_search, greedy_search
from seq2seq_lstm.model.cells import CELLS
from seq2seq_lstm.model.seq2seq import LanguageModel, Seq2Seq

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

B, I, H = 3, 5, 4
SRC_V, TGT_V = 17, 19


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("inputs", ["x", "x_gates", "both"])
def test_cell_on_cuda_matches_cpu_with_gradients(name, inputs):
    # "both" is the input-feeding decoder's first layer: precomputed embedding gates plus the feed
    torch.manual_seed(0)
    cpu = CELLS[name](I, H).double()
    gpu = CELLS[name](I, H).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(B, I, dtype=torch.double)
    pre = torch.randn(B, cpu.weight_ih.size(0), dtype=torch.double)
    state = (torch.randn(B, H, dtype=torch.double), torch.randn(B, H, dtype=torch.double))

    def run(cell, device):
        args = {
            "x": (x.to(device), None),
            "x_gates": (None, pre.to(device)),
            "both": (x.to(device), pre.to(device)),
        }[inputs]
        h, c = cell(args[0], tuple(s.to(device) for s in state), x_gates=args[1])
        (h.sum() + 0.5 * c.sum()).backward()
        return h.cpu(), c.cpu(), [None if p.grad is None else p.grad.cpu() for p in cell.parameters()]

    h0, c0, g0 = run(cpu, "cpu")
    h1, c1, g1 = run(gpu, "cuda")
    torch.testing.assert_close(h1, h0, atol=1e-10, rtol=0)
    torch.testing.assert_close(c1, c0, atol=1e-10, rtol=0)
    for a, b in zip(g1, g0, strict=True):
        assert (a is None) == (b is None)  # W_ih gets no gradient when only precomputed gates come in
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def tiny(**kw) -> ModelConfig:
    base = {"emb_dim": 6, "hidden_size": 8, "enc_layers": 2, "dec_layers": 2, "dropout": 0.0}
    return ModelConfig(**{**base, **kw})


def batch():
    torch.manual_seed(3)
    lens = torch.tensor([5, 3, 4])
    src = torch.randint(4, SRC_V, (3, 5))
    src[1, 3:] = 0
    src[2, 4:] = 0
    return src, lens, torch.randint(4, TGT_V, (3, 6))


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("input_feeding", [True, False])
def test_seq2seq_loss_and_gradients_on_cuda_match_cpu(cell, input_feeding):
    torch.manual_seed(0)
    cpu = Seq2Seq(tiny(cell=cell, input_feeding=input_feeding), SRC_V, TGT_V).double()
    gpu = Seq2Seq(tiny(cell=cell, input_feeding=input_feeding), SRC_V, TGT_V).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    src, lens, tgt = batch()
    losses, grads = [], []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        logits = model(src.to(device), lens.to(device), tgt.to(device))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.to(device).flatten())
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.cpu() for n, p in model.named_parameters()})
    assert losses[1] == pytest.approx(losses[0], abs=1e-10)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-9, rtol=0, msg=name)


@pytest.mark.parametrize("beam", [1, 4])
def test_search_on_cuda_finds_the_cpu_hypotheses(beam):
    torch.manual_seed(0)
    cpu = Seq2Seq(tiny(), SRC_V, TGT_V).double().eval()
    gpu = Seq2Seq(tiny(), SRC_V, TGT_V).double().cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    src, lens, _ = batch()
    found = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        with torch.inference_mode():
            state, on = model.start(src.to(device), lens.to(device)), lens.to(device)
            if beam == 1:
                hyps = greedy_search(
                    model.decoder, state, SearchOptions(), batch_size=3, max_len=12, src_lens=on
                )
            else:
                options = SearchOptions(beam_size=beam)
                hyps = beam_search(model.decoder, state, options, batch_size=3, max_len=12, src_lens=on)
        found.append([[(h.tokens, round(h.score, 8)) for h in sent] for sent in hyps])
    assert found[1] == found[0]


def test_bf16_autocast_training_step_on_cuda_is_close_to_fp32():
    # the cuDNN LSTM and the fused cell under autocast: same loss to bf16 precision, finite gradients
    torch.manual_seed(0)
    model = LanguageModel(tiny(hidden_size=64, emb_dim=32), TGT_V).cuda()
    tokens = torch.randint(4, TGT_V, (8, 12), device="cuda")
    fp32 = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(tokens)
    bf16 = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
    bf16.backward()
    assert bf16.item() == pytest.approx(fp32.item(), rel=2e-2)
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())
