"""Token cross-entropy with label smoothing (Szegedy et al. 2016), summed, in cache-sized row chunks.

For logits z (N, V), targets t and smoothing e, with lse_i = log sum_j exp z_ij, each row that is not
padding adds::

    loss_i = (1 - e) * (lse_i - z_it) + e * (lse_i - mean_j z_ij)     # = F.cross_entropy's, label_smoothing=e
    nll_i  = lse_i - z_it                                             # for perplexity, no smoothing

and the gradient of the summed loss is d loss / d z_ij = softmax(z_i)_j - (1 - e) [j = t_i] - e / V.

On the CPU, ``F.cross_entropy`` on bf16 logits makes about nine passes over an N x V float32 array in
main memory (upcast, log-softmax, gather; a zero-filled gradient, scatter, log-softmax backward,
downcast). With the reference model (N about 1,600 target pieces a batch, V = 8,000) that was a fifth
of a training step. Here each chunk of rows (4 MiB of float32) is upcast, reduced and turned into its
gradient while it sits in the cache, so main memory sees the logits read twice and their gradient
written once, in the logits' own dtype. Other devices use ``F.cross_entropy`` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# float32 bytes per chunk: large enough that per-chunk overhead is small, small enough that a chunk of
# logits stays in the CPU's cache between the passes over it (the sizes tried: benchmarks/RESULTS.md)
CHUNK_BYTES = 4 << 20


def _chunks(n: int, vocab: int) -> list[tuple[int, int]]:
    rows = max(1, CHUNK_BYTES // (4 * vocab))
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, smoothing: float, ignore_index: int
    ) -> tuple[Tensor, Tensor]:
        n, vocab = logits.shape
        valid = target != ignore_index  # (N,)
        target = target.masked_fill(~valid, 0)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        mean = torch.empty_like(lse) if smoothing else None
        for s, e in _chunks(n, vocab):
            x = logits[s:e].float()  # (rows, V) in the cache
            lse[s:e] = torch.logsumexp(x, -1)
            if mean is not None:
                mean[s:e] = x.mean(-1)
        nll = (lse - logits.gather(1, target[:, None]).squeeze(1).float()) * valid  # (N,)
        loss = nll if mean is None else (1 - smoothing) * nll + smoothing * (lse - mean) * valid
        ctx.save_for_backward(logits, target, valid, lse)
        ctx.smoothing = smoothing
        nll_sum = nll.sum()
        ctx.mark_non_differentiable(nll_sum)
        return loss.sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logits, target, valid, lse = ctx.saved_tensors
        eps, (n, vocab) = ctx.smoothing, logits.shape
        scale = grad_loss.float() * valid  # (N,): padding rows get a zero gradient
        grad = torch.empty_like(logits)
        for s, e in _chunks(n, vocab):
            # a copy (also for float32 logits, which must not change): softmax = exp(z - lse)
            p = logits[s:e].to(torch.float32, copy=True).sub_(lse[s:e, None]).exp_()
            if eps:
                p.sub_(eps / vocab)
            rows = torch.arange(e - s, device=p.device)
            p[rows, target[s:e]] -= 1 - eps
            grad[s:e] = p.mul_(scale[s:e, None])
        return grad, None, None, None


def cross_entropy_sums(
    logits: Tensor, target: Tensor, smoothing: float = 0.0, ignore_index: int = -100, need_nll: bool = True
) -> tuple[Tensor, Tensor | None]:
    """logits (N, V), target (N,) long -> (summed loss with label smoothing, summed NLL without it),
    float32 scalars; rows whose target is ``ignore_index`` count for nothing. Only the first carries a
    gradient. Equal to ``F.cross_entropy(..., reduction="sum")`` with and without ``label_smoothing``.
    The NLL is free on the CPU; elsewhere, with smoothing, it costs a second pass and is None unless
    ``need_nll``."""
    if logits.device.type == "cpu":
        return _ChunkedCrossEntropy.apply(logits, target, smoothing, ignore_index)
    loss = F.cross_entropy(
        logits.float(), target, ignore_index=ignore_index, label_smoothing=smoothing, reduction="sum"
    )
    if not smoothing:
        return loss, loss.detach()
    if not need_nll:
        return loss, None
    with torch.no_grad():
        nll = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    return loss, nll
