"""Word dropout: whole input tokens dropped at random during training (Gal & Ghahramani 2016).

Ordinary dropout zeroes single units of an embedding, so every token still reaches the network; word
dropout zeroes a token's whole vector, so the model must do without that word and lean on its context
and the source (Sennrich et al. 2016 drop whole source and target words for NMT in the same spirit).
Like ``F.dropout``, the kept vectors are scaled by ``1 / (1 - p)``: the expected input stays the same, so
evaluation needs no correction and runs the embeddings untouched.

    emb = drop_words(self.embed(tokens), p, self.training)   # (B, T, E) or (B, E)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def drop_words(emb: Tensor, p: float, training: bool) -> Tensor:
    """Embeddings (..., E) with each token's whole vector zeroed with probability ``p`` when
    ``training``, the rest scaled by ``1 / (1 - p)``; unchanged otherwise (or when ``p`` is 0)."""
    if not training or p == 0.0:
        return emb
    keep = F.dropout(emb.new_ones(*emb.shape[:-1], 1), p, True)  # (..., 1): 0 or 1 / (1 - p)
    return emb * keep
