"""Ensembles: several decoders over one target vocabulary, decoded as one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .protocol import StepDecoder

# ---------------------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsembleState:
    """The members' states, reordered together."""

    states: tuple

    @property
    def batch_size(self) -> int:
        return self.states[0].batch_size

    def reorder(self, index: Tensor, same_source: bool = False) -> EnsembleState:
        return EnsembleState(tuple(s.reorder(index, same_source) for s in self.states))

    def expand_beams(self, index: Tensor, beams: int) -> EnsembleState:
        return EnsembleState(tuple(s.expand_beams(index, beams) for s in self.states))

    @classmethod
    def cat(cls, states: Sequence[EnsembleState]) -> EnsembleState:
        """The rows of ``states`` one after the other, member by member."""
        members = zip(*(s.states for s in states), strict=True)
        return cls(tuple(type(blocks[0]).cat(blocks) for blocks in members))


class EnsembleDecoder:
    """Several decoders over one target vocabulary, decoded as one: the next-token distribution is the
    mean of the members' PROBABILITIES, log(mean(exp(log_probs))), as in OpenNMT-py and fairseq. The
    attention returned is the members' mean when all of them have one."""

    def __init__(self, decoders: Sequence[StepDecoder]) -> None:
        if not decoders:
            raise ValueError("an ensemble needs at least one decoder")
        self.decoders = list(decoders)

    def eval(self) -> EnsembleDecoder:
        """Put every member in eval mode (as ``nn.Module.eval``); returns the ensemble."""
        for decoder in self.decoders:
            decoder.eval()
        return self

    def start(self, *args: Any, **kwargs: Any) -> EnsembleState:
        """Each member's ``start(...)`` with the same arguments (source batch, or batch size for LMs)."""
        return EnsembleState(tuple(d.start(*args, **kwargs) for d in self.decoders))

    def step(self, tokens: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState, Tensor | None]:
        outs = [d.step(tokens, s) for d, s in zip(self.decoders, state.states, strict=True)]
        stacked = torch.stack([log_probs.float() for log_probs, _, _ in outs])  # (M, N, V)
        log_probs = torch.logsumexp(stacked, dim=0) - math.log(len(outs))
        attns = [attn for _, _, attn in outs if attn is not None]
        attn = torch.stack(attns).mean(dim=0) if len(attns) == len(outs) else None
        return log_probs, EnsembleState(tuple(s for _, s, _ in outs)), attn
