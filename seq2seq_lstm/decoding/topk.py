"""Top-k over a search step's scores, faster than ``torch.topk`` on the CPU (chunked; results equal).

:func:`top_k` is the k largest values of each row; :func:`beam_step` the 2K best one-token extensions
of K beams without forming the K x V grid of sums. On a GPU both are ``topk``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor


@functools.lru_cache(maxsize=1024)  # (cols, k) pairs: one per vocabulary or shortlist size
def _chunk_width(cols: int, k: int) -> int:
    """The chunk width :func:`top_k` cuts ``cols`` columns into, 0 when chunking would not pay: a divisor
    of ``cols`` between 32 and 128, nearest 64 (wide enough for torch's vectorised max over a chunk,
    narrow enough that the k chunks searched stay small), leaving at least 4k chunks so that the k
    chunks searched are at most a quarter of the row."""
    widths = [w for w in range(32, 129) if cols % w == 0 and cols // w >= 4 * k]
    return min(widths, key=lambda w: (abs(w - 64), w), default=0)


def _pick_chunks(chunks: Tensor, index: Tensor) -> Tensor:
    """chunks (N, C, w), index (N, k) -> chunks[n, index[n, j]] as (N, k, w). One index_select over the
    flattened chunks copies each chosen chunk once, where ``gather`` would need an index as large as
    the result, expanded over the chunk width."""
    rows, count, width = chunks.shape
    flat = index + torch.arange(rows, device=index.device).unsqueeze(1) * count  # (N, k)
    return chunks.reshape(rows * count, width).index_select(0, flat.view(-1)).view(rows, -1, width)


def top_k(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """x (N, M) -> the k largest values of each row and their columns, each (N, k), largest first, like
    ``x.topk(k, dim=1)`` (between equal values the column chosen may differ; each row is searched on its
    own either way, so results never depend on the other rows).

    Why not plain topk: on the CPU it passes every element through a partial sort, a visible share of a
    beam-search step over a whole vocabulary, while a max over contiguous memory is vectorised. So each
    row is cut into chunks of width w and topk runs only over the k chunks with the largest maxima:
    those k maxima are k values >= the k-th largest maximum m, so the row's k-th largest value is >= m
    too, and every other chunk (max <= m) can only tie with it."""
    rows, cols = x.shape
    width = _chunk_width(cols, k)
    if width == 0 or x.device.type != "cpu":  # GPUs run topk in parallel: nothing to gain there
        return x.topk(k, dim=1)
    chunks = x.reshape(rows, cols // width, width)  # a view unless x is a strided slice
    best = chunks.amax(dim=2).topk(k, dim=1).indices.sort(dim=1).values  # (N, k) in column order
    inside = _pick_chunks(chunks, best).view(rows, k * width)
    values, at = inside.topk(k, dim=1)
    return values, best.gather(1, at // width) * width + at % width


def beam_step(scores: Tensor, log_probs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Choose the 2K best one-token extensions of each sentence's K beams (fairseq ``BeamSearch.step``).

    scores (B, K) cumulative log-probs; log_probs (B, K, V) step log-probs with the rules applied.
    Returns candidate scores, the beam each extends and its token, each (B, 2K), best first. Taking 2K
    leaves K non-EOS candidates even when every beam's best extension is EOS (a beam holds one EOS).

    On the CPU this is :func:`top_k`'s chunk search over the K x V grid of sums ``score + log_prob``
    without forming the grid: a beam's score is one constant over its row, so a chunk's largest sum is
    the beam's score plus the chunk's largest log-prob, and only the 2K chunks searched get their sums
    (the whole grid would be one more pass over 5 MB for beam 5 over 32 sentences and 8,000 pieces).
    """
    batch, beams, vocab = log_probs.shape
    k = min(2 * beams, beams * vocab)
    width = _chunk_width(vocab, math.ceil(k / beams))  # at least 4k chunks in the K x V grid
    if width == 0 or log_probs.device.type != "cpu":
        flat = (scores.unsqueeze(2) + log_probs).view(batch, beams * vocab)  # (B, K*V)
        top, index = top_k(flat, k)
        return top, index // vocab, index % vocab
    per_beam = vocab // width
    chunks = log_probs.reshape(batch, beams * per_beam, width)  # a view unless log_probs is strided
    maxima = (chunks.amax(dim=2).view(batch, beams, per_beam) + scores.unsqueeze(2)).view(batch, -1)
    best = maxima.topk(k, dim=1).indices.sort(dim=1).values  # (B, 2K) chunks in grid order
    inside = _pick_chunks(chunks, best)  # (B, 2K, w)
    sums = (inside + scores.gather(1, best // per_beam).unsqueeze(2)).view(batch, k * width)
    top, at = sums.topk(k, dim=1)
    index = best.gather(1, at // width) * width + at % width  # (B, 2K) in the K*V grid
    return top, index // vocab, index % vocab
