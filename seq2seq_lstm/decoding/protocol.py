"""What the searches and the suggester need from a model: a step decoder and its state value.

Implemented by ``Seq2Seq`` and ``LanguageModel`` (with :class:`~seq2seq_lstm.model.decoder.DecoderState`),
:class:`~seq2seq_lstm.decoding.ensemble.EnsembleDecoder` and
:class:`~seq2seq_lstm.decoding.shortlist.ShortlistDecoder`; the tests' toy decoders follow it too.
Nothing is probed with ``hasattr``: a state that can do no better implements ``expand_beams`` as
``reorder(index)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from torch import Tensor

S = TypeVar("S", bound="SearchState")


class SearchState(Protocol):
    """A decoder state with one row per path being decoded (N rows)."""

    @property
    def batch_size(self) -> int:
        """N, the rows of the state."""
        ...

    def reorder(self: S, index: Tensor, same_source: bool = False) -> S:
        """Rows ``index`` (N',) long, in that order (repeats allowed). ``same_source``: the caller
        vouches that every new row keeps the source sentence of the row at its position, so the
        source side may stay as it is."""
        ...

    def expand_beams(self: S, index: Tensor, beams: int) -> S:
        """``reorder(index)`` for ``index`` = each row repeated ``beams`` times, copies adjacent
        (``arange(N).repeat_interleave(beams)``): every later reorder of beam search keeps each group
        of ``beams`` rows within one sentence, so a state may keep its source side one row per
        sentence."""
        ...


class ConcatState(SearchState, Protocol):
    """A state whose blocks of rows can be joined (the suggester steps sequences cached in several
    earlier steps at once)."""

    @classmethod
    def cat(cls: type[S], states: Sequence[S]) -> S:
        """The rows of ``states`` one after the other."""
        ...


class StepDecoder(Protocol):
    """A model decoded one token per row and step."""

    def start(self, *args: Any, **kwargs: Any) -> SearchState:
        """The state before the first step: ``start(src (B, S), src_lens (B,))`` for a translation
        model, ``start(batch_size)`` for a language model."""
        ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any, Tensor | None]:
        """tokens (N,) long -> log-probs (N, V) float32, the state after them, attention (N, S) or None."""
        ...
