"""What a search may do, in one validated value: :class:`SearchOptions` (and :class:`Sampling` inside it).

Built once from the run's ``generation`` section plus the command line's overrides, checked once here,
and passed whole to :func:`seq2seq_lstm.decoding.search.generate`::

    options = SearchOptions.from_generation(cfg.generation, beam_size=1, return_attention=False)
    options = SearchOptions.from_generation(cfg.generation, sampling=Sampling(temperature=0.7, seed=1))
    max_len = options.max_lengths(src_lens)                 # (B,) floor(max_len_a * S + max_len_b)

Messages name each option as the config spells it (``n_best``, ``alpha``); the sampling options, which
only the command line sets, as the CLI spells them (``--temperature``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from ..config import ALPHA_MAX, GenerationConfig
from ..errors import UserError

MAX_LEN = 2**31 - 1  # max_lengths caps a * S + b here: never reached, and no int64 overflow for a huge a
# Sampling temperatures: log-probs are float32, and (log p) / T must stay finite for the allowed pieces
# (a forced piece can have log p near -100): below 1e-6 sampling is greedy search anyway, above 1e6 a
# uniform draw; at 1e-38 or 1e39 a row's log-probs all turned -inf or NaN and torch.multinomial failed
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-6, 1e6
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes 64 bits

# the fields of config.GenerationConfig that are search options (same names here)
FROM_GENERATION = ("beam_size", "n_best", "length_penalty", "alpha", "min_len", "max_len_a", "max_len_b",
                   "no_repeat_ngram", "ban_unk")  # fmt: skip

# |Y| (EOS included), alpha -> lp; a hypothesis scores sum(log p) / lp. Keys match config.LENGTH_PENALTIES.
LENGTH_PENALTIES: dict[str, Callable[[int, float], float]] = {
    "none": lambda length, alpha: 1.0,
    "gnmt": lambda length, alpha: ((5.0 + length) / 6.0) ** alpha,  # Wu et al. (2016), eq. 14
    "average": lambda length, alpha: float(length),  # mean log-prob per token
}


def check_number(
    name: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False
) -> None:
    """Refuse ``value`` (as :class:`UserError` naming it ``name``) unless it is a finite number >= ``lo``
    (> ``lo`` with ``lo_open``) and <= ``hi``. NaN passes every comparison, so it is tested apart."""
    try:
        finite = math.isfinite(value)
    except TypeError:
        finite = False
    if finite and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi):
        return
    if hi is None:
        allowed = f"> {lo:g}" if lo_open else f">= {lo:g}"
    else:
        allowed = f"in ({lo:g}, {hi:g}]" if lo_open else f"between {lo:g} and {hi:g}"
    raise UserError(f"{name} must be a finite number {allowed}; got {value!r}")


def max_lengths(src_lens: Tensor, a: float, b: int) -> Tensor:
    """Per-sentence maximum target length ``floor(a * source_length + b)``, at most :data:`MAX_LEN`;
    (B,) -> (B,) long. ``a`` and ``b`` must be finite and >= 0."""
    check_number("max_len_a", a, 0.0)
    check_number("max_len_b", b, 0.0)
    return torch.floor(a * src_lens.double() + b).clamp(max=MAX_LEN).long()


@dataclass(frozen=True)
class Sampling:
    """Ancestral sampling instead of search: softmax(log p / temperature), cut to top-k and top-p.
    ``n_best`` samples are drawn per sentence; there is no beam (``beam_size`` must be 1)."""

    temperature: float = 1.0  # in [1e-6, 1e6]; below 1 sharpens, above 1 flattens
    top_k: int = 0  # sample among the k most probable pieces (0, or k >= the vocabulary size: all)
    top_p: float = 1.0  # nucleus: the smallest set of pieces holding this much probability
    seed: int | None = None  # seeds one generator per generate() (Translator: per translate call)

    def __post_init__(self) -> None:
        check_number("--temperature", self.temperature, TEMPERATURE_MIN, TEMPERATURE_MAX)
        if self.top_k < 0:
            raise UserError(f"--top-k must be >= 0; got {self.top_k}")
        check_number("--top-p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.seed is not None and not 0 <= self.seed <= SEED_MAX:
            raise UserError(f"--seed must be between 0 and {SEED_MAX}; got {self.seed}")


@dataclass(frozen=True)
class SearchOptions:
    """Every option of a search (:mod:`seq2seq_lstm.decoding.search` says what each one does).

    The defaults are the plain search: greedy, no length penalty, no constraints. ``sampling`` set:
    draw ``n_best`` samples per sentence instead of searching.
    """

    beam_size: int = 1  # beam width; 1 = greedy search
    n_best: int = 1  # hypotheses returned per sentence (<= beam_size); with sampling, samples drawn
    length_penalty: str = "none"  # a key of LENGTH_PENALTIES
    alpha: float = 0.6  # the GNMT exponent
    min_len: int = 0  # no EOS before this many target tokens
    max_len_a: float = 1.5  # max_lengths(): at most floor(a * source tokens + b) target tokens
    max_len_b: int = 10
    no_repeat_ngram: int = 0  # no n-gram of this size twice in one output (0 = off)
    ban_unk: bool = False  # never produce the unknown piece
    sampling: Sampling | None = None
    return_attention: bool = True  # keep each hypothesis's attention (T, S)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise UserError(f"beam_size must be >= 1; got {self.beam_size}")
        if self.sampling is not None:
            if self.beam_size != 1:
                raise UserError(
                    f"--beam-size {self.beam_size} contradicts --sampling: sampling has no beam (it draws "
                    "--n-best samples per line); drop one of them"
                )
            if self.n_best < 1:
                raise UserError(f"n_best (samples per sentence) must be >= 1; got {self.n_best}")
        elif not 1 <= self.n_best <= self.beam_size:
            raise UserError(f"n_best must be between 1 and beam_size ({self.beam_size}); got {self.n_best}")
        if self.length_penalty not in LENGTH_PENALTIES:
            raise UserError(
                f"length_penalty must be one of {', '.join(LENGTH_PENALTIES)}; got {self.length_penalty!r}"
            )
        check_number("alpha", self.alpha, 0.0, ALPHA_MAX)
        for name in ("min_len", "no_repeat_ngram"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0; got {getattr(self, name)}")
        check_number("max_len_a", self.max_len_a, 0.0)
        check_number("max_len_b", self.max_len_b, 0.0)

    @classmethod
    def from_generation(cls, generation: GenerationConfig, **overrides: Any) -> SearchOptions:
        """The search options of a ``generation`` config section, with ``overrides`` (field names of this
        class) on top. With ``sampling`` the config's beam does not apply: ``beam_size`` is 1 unless
        overridden (and then refused unless 1)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UserError(f"unknown search option {unknown[0]}; allowed: {', '.join(sorted(names))}")
        values = {name: getattr(generation, name) for name in FROM_GENERATION}
        if overrides.get("sampling") is not None:
            values["beam_size"] = 1
        return cls(**{**values, **overrides})

    @property
    def kept_finished(self) -> int:
        """How many finished hypotheses per sentence beam search waits for (search's stopping rule):
        ``n_best`` without a length penalty, else the whole beam."""
        return self.n_best if self.length_penalty == "none" else self.beam_size

    def max_lengths(self, src_lens: Tensor) -> Tensor:
        """(B,) source lengths -> (B,) long maximum target lengths ``floor(max_len_a * S + max_len_b)``."""
        return max_lengths(src_lens, self.max_len_a, self.max_len_b)
