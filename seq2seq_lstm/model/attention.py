"""Attention over the encoder memory: Luong dot and general (Luong et al. 2015), Bahdanau MLP (2015).

The modules are stateless. Keys depend only on the source, so ``project_keys(memory)`` is called once
per batch and the result travels in the decoder state (beam search reorders it with the rest)::

    keys = attn.project_keys(memory)                         # (B, S, H') once per batch
    context, weights = attn(query, keys, memory, mask)       # query (B, H) -> (B, H), (B, S)
    context, weights = attn(queries, keys, memory, mask)     # or all steps: (B, T, H) -> (B, T, H), (B, T, S)

Padding gets exactly zero weight: its scores are set to -inf before the softmax. Every row needs at
least one real position (``mask`` True), which holds for any non-empty source.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Shared masking, softmax and weighted sum; subclasses define ``project_keys`` and ``score``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size

    def project_keys(self, memory: Tensor) -> Tensor:
        """(B, S, H) memory -> keys used by ``score``; the identity unless a subclass projects."""
        return memory

    def projections(self) -> dict[str, nn.Module]:
        """The linear layers applied to the memory or the query, by name (none for "dot"); a scoring
        vector such as Bahdanau's ``v`` is not one."""
        return {}

    def replace_projection(self, name: str, layer: nn.Module) -> None:
        """Use ``layer`` (same sizes) for the projection ``name`` of :meth:`projections` (int8 inference)."""
        if name not in self.projections():
            raise KeyError(f"{type(self).__name__} has no projection {name!r}")
        setattr(self, name, layer)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, T, H), keys (B, S, H') -> scores (B, T, S)."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, H) or (B, T, H); keys from ``project_keys``; values (B, S, H); mask (B, S) bool,
        True on real tokens -> context (B, H) or (B, T, H), weights (B, S) or (B, T, S)."""
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)  # (B, 1, H)
        scores = self.score(query, keys).masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, T, S)
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(values.dtype), values)  # (B, T, H)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class DotAttention(Attention):
    """Luong et al. (2015) "dot": score(h_t, h_s) = h_t . h_s."""

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)


class GeneralAttention(Attention):
    """Luong et al. (2015) "general": score(h_t, h_s) = h_t . (W_a h_s).

    W_a is applied to the memory once per batch (``project_keys``), so each step costs as much as "dot".
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        self.linear_in = nn.Linear(hidden_size, hidden_size, bias=False)  # W_a

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.linear_in(memory)  # (B, S, H)

    def projections(self) -> dict[str, nn.Module]:
        return {"linear_in": self.linear_in}

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)


class BahdanauAttention(Attention):
    """Bahdanau et al. (2015) additive (MLP) attention: score(h_t, h_s) = v . tanh(W_q h_t + W_k h_s)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        self.key_layer = nn.Linear(hidden_size, hidden_size, bias=False)  # W_k
        self.query_layer = nn.Linear(hidden_size, hidden_size, bias=True)  # W_q (and the MLP's bias)
        self.energy_layer = nn.Linear(hidden_size, 1, bias=False)  # v

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.key_layer(memory)  # (B, S, H)

    def projections(self) -> dict[str, nn.Module]:
        return {"key_layer": self.key_layer, "query_layer": self.query_layer}

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(self.query_layer(query).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, H)
        return self.energy_layer(hidden).squeeze(-1)  # (B, T, S)


ATTENTIONS: dict[str, type[Attention]] = {
    "dot": DotAttention,
    "general": GeneralAttention,
    "bahdanau": BahdanauAttention,
}
