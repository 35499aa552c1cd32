"""Decoding over any step-wise decoder: greedy search, beam search and sampling.

Every function works with an object that has ``step(tokens (N,), state) -> (log_probs (N, V), state,
attn (N, S) | None)`` and a state with ``reorder(index (N',), same_source=False) -> state`` (``Seq2Seq``,
``LanguageModel``, ``EnsembleDecoder``; ``same_source=True`` promises every row keeps its sentence, so a
state may skip copying its source side), and returns, for each of the B sentences, a list of
:class:`Hypothesis`. Beam search starts with :func:`expand_beams` (K adjacent rows per sentence;
a state may share its source side among them, as every later reorder keeps each group of K rows
within one sentence)::

    state = model.start(src, src_lens)
    nbest = beam_search(model, state, B, BOS_ID, EOS_ID, max_lengths(src_lens, 1.5, 10), beam_size=5)
    nbest[i][0].tokens                                     # best hypothesis of sentence i, no BOS/EOS

Conventions shared by all three searches
- ``max_len`` (int or (B,) long) counts target tokens without EOS. At step ``max_len`` only EOS is
  allowed (with the model's own log-prob for it), so every hypothesis ends with EOS and
  ``len(token_log_probs) == len(tokens) + 1``. ``min_len`` forbids EOS before that many tokens; the
  maximum wins (as in OpenNMT-py): a sentence whose ``max_len`` is below ``min_len`` gets exactly
  ``max_len`` tokens, whatever the model predicts with EOS banned (``Translator`` warns when this happens).
- ``prefix`` (one list of ids per sentence) forces the first tokens: interactive translation continues
  what a translator typed; for a language model it is a prompt. Forced tokens are part of the returned
  tokens and of the score; they override the bans, and ``max_len`` is raised to the prefix length.
- Scores: ``score = sum(token_log_probs) / lp(len(tokens) + 1)``, EOS counted in the length, with
  ``lp`` from :data:`LENGTH_PENALTIES` ("none": 1; "gnmt": ((5 + |Y|) / 6) ** alpha, Wu et al. 2016;
  "average": |Y|). Sampling reports the model's log-probs, not the temperature-scaled ones.
- A sentence stops costing compute as soon as it is complete: its rows are dropped from the decoder
  state (one ``reorder`` per step does both the beam shuffle and the shrinking).

Beam search (fairseq-style): each step takes the 2K best extensions over the K*V grid; EOS candidates
ranked within the first K end a hypothesis, and the first K non-EOS candidates form the next beam, so
the beam always holds K open paths. Stopping rule, per sentence, checked after every step t (0-based,
hypotheses ending at t have length t + 1 with EOS): the sentence is done when

    n-th best finished score >= max over open beams of  cum_log_prob / lp(t + 1)

or at its ``max_len`` (where all open beams were forced to end), or when no open beam is left. With
"none", n = n_best and the rule is exact: log-probs are <= 0, so an open beam can only lose score, and
the n-best list equals the one a search run to ``max_len`` returns. With "gnmt"/"average" a longer
continuation can still gain after normalisation, so n = K, as in fairseq and Hugging Face
(``early_stopping=False``): K hypotheses must have finished, and the K-th best must beat the open beams
at the current length, before the best of them is taken. With n = n_best the first hypothesis to end
usually stopped the search before any longer one could compete, and the penalty changed almost nothing
(Ding validation: brevity penalty 0.84 with every penalty; 0.92 with "average" and n = K). With a
penalty the search does not depend on ``n_best``; K = 1 is still greedy search.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from ..config import ALPHA_MAX
from ..errors import UserError

NEG_INF = float("-inf")
MAX_LEN = 2**31 - 1  # max_lengths caps a * S + b here: never reached, and no int64 overflow for a huge a
# Sampling temperatures: log-probs are float32, and (log p) / T must stay finite for the allowed pieces
# (a forced piece can have log p near -100): below 1e-6 sampling is greedy search anyway, above 1e6 a
# uniform draw; at 1e-38 or 1e39 a row's log-probs all turned -inf or NaN and torch.multinomial failed
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-6, 1e6

# |Y| (EOS included), alpha -> lp; a hypothesis scores sum(log p) / lp. Keys match config.LENGTH_PENALTIES.
LENGTH_PENALTIES: dict[str, Callable[[int, float], float]] = {
    "none": lambda length, alpha: 1.0,
    "gnmt": lambda length, alpha: ((5.0 + length) / 6.0) ** alpha,  # Wu et al. (2016), eq. 14
    "average": lambda length, alpha: float(length),  # mean log-prob per token
}


class Decoder(Protocol):
    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any, Tensor | None]: ...


@dataclass(frozen=True)
class Hypothesis:
    """One output sequence: ``tokens`` without BOS/EOS; ``token_log_probs`` one per token and one for EOS;
    ``score`` their sum divided by the length penalty; ``attention`` (T, S) with T = len(tokens) + 1
    (row i: the weights used to produce token i, the last row EOS), cut to the source length when the
    search was given ``src_lens``; None when the decoder has no attention or it was not asked for."""

    tokens: list[int]
    score: float
    token_log_probs: list[float]
    attention: Tensor | None = None


def pad_ids(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    """Ragged id lists -> (B, longest) long, ``value`` where a row is shorter."""
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out


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


# ---------------------------------------------------------------------------------------------------------
# The rules every step applies
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRules:
    """What a step may produce, one row per path being extended (reordered together with the state)."""

    eos: int
    max_len: Tensor  # (N,) long: at step max_len only EOS is allowed
    prefix: Tensor  # (N, P) long: forced token at each step, -1 after the row's prefix
    min_len: int = 0  # no EOS at steps < min_len
    banned: tuple[int, ...] = ()  # never produced (the unknown piece)
    no_repeat_ngram: int = 0  # no n-gram of this size twice in one path (0 = off)

    def select(self, index: Tensor) -> StepRules:
        return replace(self, max_len=self.max_len[index], prefix=self.prefix[index])

    def apply(self, log_probs: Tensor, history: Tensor, step: int) -> Tensor:
        """log_probs (N, V), history (N, step) tokens so far -> log_probs with disallowed tokens at -inf.

        Copies only when something is masked: this runs once per step on (N, V)."""
        masked, stuck = log_probs, None
        if self.banned or self.no_repeat_ngram or step < self.min_len:
            masked = log_probs.clone()
            if self.banned:
                masked[:, list(self.banned)] = NEG_INF
            if self.no_repeat_ngram:
                masked.masked_fill_(ngram_bans(history, self.no_repeat_ngram, masked.size(1)), NEG_INF)
            if step < self.min_len:
                masked[:, self.eos] = NEG_INF
            stuck = masked.amax(dim=1) == NEG_INF  # the bans left nothing: let the row end
        # Rows that must take one token: a prefix token, EOS at max_len, or EOS when stuck
        force = self.prefix[:, step] if step < self.prefix.size(1) else torch.full_like(self.max_len, -1)
        force = torch.where(self.max_len <= step, self.eos, force)
        if stuck is not None:
            force = torch.where((force < 0) & stuck, self.eos, force)
        rows = (force >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return masked
        token = force[rows]
        kept = log_probs[rows, token]  # the model's own log-prob of the forced token
        masked = masked.clone() if masked is log_probs else masked
        masked[rows] = NEG_INF
        masked[rows, token] = kept
        return masked


def ngram_bans(history: Tensor, n: int, vocab: int) -> Tensor:
    """history (N, t) -> (N, V) bool: tokens w such that (last n-1 tokens, w) already occurs in the row."""
    rows, t = history.shape
    bans = torch.zeros(rows, vocab + 1, dtype=torch.bool, device=history.device)
    if t >= n:
        grams = history.unfold(1, n, 1)  # (N, t-n+1, n) every complete n-gram so far
        tail = history[:, t - n + 1 :]  # (N, n-1) the n-gram being started
        hit = (grams[:, :, :-1] == tail.unsqueeze(1)).all(dim=2)  # (N, t-n+1)
        bans.scatter_(1, torch.where(hit, grams[:, :, -1], vocab), True)  # misses go to a spare column
    return bans[:, :vocab]


def _step_rules(
    batch_size: int,
    eos: int,
    max_len: int | Tensor,
    min_len: int,
    ban_unk: bool,
    unk: int,
    no_repeat_ngram: int,
    prefix: Sequence[Sequence[int]] | None,
    device: torch.device,
) -> StepRules:
    if isinstance(max_len, Tensor):
        if max_len.shape != (batch_size,):
            raise ValueError(
                f"max_len must be an int or a ({batch_size},) tensor; got shape {tuple(max_len.shape)}"
            )
        limit = max_len.to(device=device, dtype=torch.long)
    else:
        limit = torch.full((batch_size,), int(max_len), dtype=torch.long, device=device)
    if bool((limit < 0).any()):
        raise ValueError("max_len must be >= 0")
    if min_len < 0 or no_repeat_ngram < 0:
        raise ValueError("min_len and no_repeat_ngram must be >= 0")
    prefix = prefix or [[] for _ in range(batch_size)]
    if len(prefix) != batch_size:
        raise ValueError(f"prefix needs one list per sentence ({batch_size}); got {len(prefix)}")
    if any(eos in p for p in prefix):
        raise ValueError("a forced prefix must not contain EOS; pass the tokens only")
    forced = pad_ids(prefix, -1)
    lengths = torch.tensor([len(p) for p in prefix], dtype=torch.long, device=device)
    return StepRules(
        eos=eos,
        max_len=torch.maximum(limit, lengths),  # the typed prefix always fits
        prefix=forced.to(device),
        min_len=min_len,
        banned=(unk,) if ban_unk else (),
        no_repeat_ngram=no_repeat_ngram,
    )


# ---------------------------------------------------------------------------------------------------------
# Paths and finished hypotheses
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paths:
    """What each row has produced so far: tokens (N, t), their log-probs (N, t), attention (N, t, S)."""

    tokens: Tensor
    log_probs: Tensor
    attention: Tensor | None
    keep_attention: bool

    @classmethod
    def empty(cls, rows: int, device: torch.device, keep_attention: bool) -> _Paths:
        return cls(
            torch.empty(rows, 0, dtype=torch.long, device=device),
            torch.empty(rows, 0, device=device),
            None,
            keep_attention,
        )

    def extend(self, index: Tensor, tokens: Tensor, log_probs: Tensor, attn: Tensor | None) -> _Paths:
        """Rows ``index`` of the current paths, each followed by one more token."""
        attention = None
        if attn is not None and self.keep_attention:
            new = attn[index].unsqueeze(1)  # (N', 1, S)
            attention = new if self.attention is None else torch.cat([self.attention[index], new], dim=1)
        return _Paths(
            torch.cat([self.tokens[index], tokens.unsqueeze(1)], dim=1),
            torch.cat([self.log_probs[index], log_probs.unsqueeze(1)], dim=1),
            attention,
            self.keep_attention,
        )

    def finish(
        self, rows: Tensor, eos_log_probs: Tensor, attn: Tensor | None
    ) -> list[tuple[list[int], list[float], Tensor | None]]:
        """(tokens, token log-probs with EOS, attention (T, S)) for the paths in ``rows`` ending now."""
        tokens = self.tokens[rows].tolist()
        log_probs = torch.cat([self.log_probs[rows], eos_log_probs.unsqueeze(1)], dim=1).tolist()
        if attn is None or not self.keep_attention:
            return [(t, lp, None) for t, lp in zip(tokens, log_probs, strict=True)]
        last = attn[rows].unsqueeze(1)  # (M, 1, S)
        attention = last if self.attention is None else torch.cat([self.attention[rows], last], dim=1)
        return [(t, lp, a) for t, lp, a in zip(tokens, log_probs, attention.float().cpu(), strict=True)]


class _Finished:
    """The n best finished hypotheses of every sentence, best first (ties: found first)."""

    def __init__(self, batch_size: int, n_best: int, penalty: str, alpha: float, src_lens: Tensor | None):
        self.hyps: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
        self.n_best, self.penalty, self.alpha = n_best, LENGTH_PENALTIES[penalty], alpha
        self.src_lens = None if src_lens is None else src_lens.tolist()

    def add(self, sentences: list[int], paths: list, cum_log_probs: list[float]) -> None:
        for sentence, (tokens, log_probs, attention), cum in zip(
            sentences, paths, cum_log_probs, strict=True
        ):
            if attention is not None and self.src_lens is not None:
                attention = attention[:, : self.src_lens[sentence]]
            score = cum / self.penalty(len(log_probs), self.alpha)
            kept = self.hyps[sentence]
            kept.append(Hypothesis(tokens, score, log_probs, attention))
            kept.sort(key=lambda h: -h.score)  # stable: earlier finds win ties
            del kept[self.n_best :]

    def nth_best(self, sentences: Tensor) -> Tensor:
        """(B',) n-th best finished score of each sentence, -inf while it has fewer than n."""
        n = self.n_best
        best = [
            h[n - 1].score if len(h) >= n else NEG_INF for h in map(self.hyps.__getitem__, sentences.tolist())
        ]
        return torch.tensor(best, device=sentences.device)


def sentence_done(
    nth_best: Tensor, scores: Tensor, step: int, max_len: Tensor, penalty: str, alpha: float
) -> Tensor:
    """The stopping rule (module docstring): nth_best (B',), open-beam scores (B', K), max_len (B',)
    -> (B',) bool. Open beams are compared at the length of the hypotheses that ended at ``step``."""
    bound = scores.amax(dim=1) / LENGTH_PENALTIES[penalty](step + 1, alpha)
    return (nth_best >= bound) | (max_len <= step)


# ---------------------------------------------------------------------------------------------------------
# Beam search
# ---------------------------------------------------------------------------------------------------------


def expand_beams(state: Any, index: Tensor, beams: int) -> Any:
    """``state.reorder(index)`` for ``index`` = each row repeated ``beams`` times, copies adjacent
    (``arange(B).repeat_interleave(beams)``): ``state.expand_beams(index, beams)`` where the state has
    it (a :class:`~seq2seq_lstm.model.decoder.DecoderState` keeps its source side one row per sentence, shared
    by the beams), else ``reorder``."""
    if hasattr(state, "expand_beams"):
        return state.expand_beams(index, beams)
    return state.reorder(index)


@functools.lru_cache(maxsize=1024)  # (cols, k) pairs: one per vocabulary or shortlist size
def _chunk_width(cols: int, k: int) -> int:
    """The chunk width :func:`top_k` cuts ``cols`` columns into, 0 when chunking would not pay: a divisor
    of ``cols`` between 32 and 128, nearest 64 (measured fastest for torch's max over the chunks here),
    leaving at least 4k chunks so that the k chunks searched are at most a quarter of the row."""
    widths = [w for w in range(32, 129) if cols % w == 0 and cols // w >= 4 * k]
    return min(widths, key=lambda w: (abs(w - 64), w), default=0)


def _pick_chunks(chunks: Tensor, index: Tensor) -> Tensor:
    """chunks (N, C, w), index (N, k) -> chunks[n, index[n, j]] as (N, k, w). One index_select over the
    flattened chunks: 10 us where ``gather`` with an expanded index took 38 (32 x 10 chunks of 64)."""
    rows, count, width = chunks.shape
    flat = index + torch.arange(rows, device=index.device).unsqueeze(1) * count  # (N, k)
    return chunks.reshape(rows * count, width).index_select(0, flat.view(-1)).view(rows, -1, width)


def top_k(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """x (N, M) -> the k largest values of each row and their columns, each (N, k), largest first, like
    ``x.topk(k, dim=1)`` (between equal values the column chosen may differ; each row is searched on its
    own either way, so results never depend on the other rows).

    Why not plain topk: on the CPU it passes every element through a partial sort, about 2 ns each on an
    AVX2 core (2-3 ms of a ~24 ms beam-5 step for 32 sentences over 8,000 pieces), while a max over
    contiguous memory is vectorised. So each row is cut into chunks of width w and topk runs only over
    the k chunks with the largest maxima: those k maxima are k values >= the k-th largest maximum m, so
    the row's k-th largest value is >= m too, and every other chunk (max <= m) can only tie with it."""
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


@torch.no_grad()
def beam_search(
    decoder: Decoder,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    *,
    beam_size: int = 5,
    n_best: int = 1,
    min_len: int = 0,
    length_penalty: str = "none",
    alpha: float = 0.6,
    no_repeat_ngram: int = 0,
    ban_unk: bool = False,
    unk: int = 1,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    return_attention: bool = True,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; ``state`` holds B sentences and is expanded to B*K rows here.

    Returns, per sentence, up to ``n_best`` hypotheses best first (fewer only when fewer distinct
    finite-probability paths exist, e.g. ``max_len=0``). Stopping rule: module docstring.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}); got {n_best}")
    _check_penalty(length_penalty, alpha)
    if batch_size == 0:
        return []
    device = _device(device, max_len, src_lens)
    K = beam_size
    rules = _step_rules(batch_size, eos, max_len, min_len, ban_unk, unk, no_repeat_ngram, prefix, device)
    # how many finished hypotheses the stopping rule waits for (module docstring); n_best are returned
    kept = n_best if length_penalty == "none" else K
    finished = _Finished(batch_size, kept, length_penalty, alpha, src_lens)
    rows = torch.arange(batch_size, device=device).repeat_interleave(K)  # (B*K,) sentence of each row
    paths = _Paths.empty(batch_size, device, return_attention)
    scores = torch.full((batch_size, K), NEG_INF, device=device)
    scores[:, 0] = 0.0  # one open beam at first, else the K copies would fill the beam with duplicates
    sentences = torch.arange(batch_size, device=device)  # original index of each active sentence
    last = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    for step in itertools.count():
        log_probs, state, attn = decoder.step(last, state)
        log_probs = rules.apply(log_probs.float(), paths.tokens, step)  # (N, V)
        if step == 0:
            # The K beams of a sentence all start from BOS, so the first step ran one row per sentence
            # (for beam 5 over 32 sentences, 4 of every 5 rows of the costliest step were dead beams);
            # now each row becomes the sentence's K rows, beam 0 open, the others at -inf as before
            state, rules = expand_beams(state, rows, K), rules.select(rows)
            paths = _Paths.empty(batch_size * K, device, return_attention)
            log_probs = log_probs.index_select(0, rows)
            attn = None if attn is None else attn.index_select(0, rows)
        active = scores.size(0)
        cand_scores, cand_beam, cand_token = beam_step(scores, log_probs.view(active, K, -1))  # (B', 2K)
        cand_row = cand_beam + K * torch.arange(active, device=device).unsqueeze(1)  # (B', 2K) row extended
        cand_log_prob = log_probs[cand_row, cand_token]  # (B', 2K)
        # EOS candidates ranked inside the beam end a hypothesis (-inf ones are paths that never lived)
        ends = (cand_token == eos) & (cand_scores > NEG_INF)
        ends[:, K:] = False
        if bool(ends.any()):
            b, j = ends.nonzero(as_tuple=True)
            done_paths = paths.finish(cand_row[b, j], cand_log_prob[b, j], attn)
            finished.add(sentences[b].tolist(), done_paths, cand_scores[b, j].tolist())
        # The first K non-EOS candidates (stable sort keeps their rank order) form the next beam
        pick = torch.sort((cand_token == eos).to(torch.uint8), dim=1, stable=True).indices[:, :K]  # (B', K)
        scores = cand_scores.gather(1, pick)
        limit = rules.max_len.view(active, K)[:, 0]  # (B',)
        done = sentence_done(finished.nth_best(sentences), scores, step, limit, length_penalty, alpha)
        if bool(done.all()):
            break
        # Keep the unfinished sentences only: one reorder does the beam shuffle and the shrinking
        live = (~done).nonzero().squeeze(1)  # (B'',)
        keep = (live.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)  # (B''*K,) next rows
        index = cand_row.gather(1, pick).view(-1)[keep]
        last = cand_token.gather(1, pick).view(-1)[keep]
        paths = paths.extend(index, last, cand_log_prob.gather(1, pick).view(-1)[keep], attn)
        # while no sentence has finished, every row stays with its sentence: the source side stays put
        state, rules = state.reorder(index, same_source=live.numel() == active), rules.select(index)
        scores, sentences = scores[live], sentences[live]
    return [hyps[:n_best] for hyps in finished.hyps]


# ---------------------------------------------------------------------------------------------------------
# Greedy search and sampling: one path per sentence
# ---------------------------------------------------------------------------------------------------------


def _single_path(
    decoder: Decoder,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    choose: Callable[[Tensor], Tensor],
    *,
    min_len: int,
    length_penalty: str,
    alpha: float,
    no_repeat_ngram: int,
    ban_unk: bool,
    unk: int,
    prefix: Sequence[Sequence[int]] | None,
    src_lens: Tensor | None,
    return_attention: bool,
    device: torch.device | str | None,
) -> list[list[Hypothesis]]:
    """Extend each sentence by ``choose(log_probs (N, V)) -> (N,)`` until EOS; rows leave when done."""
    _check_penalty(length_penalty, alpha)
    if batch_size == 0:
        return []
    device = _device(device, max_len, src_lens)
    rules = _step_rules(batch_size, eos, max_len, min_len, ban_unk, unk, no_repeat_ngram, prefix, device)
    finished = _Finished(batch_size, 1, length_penalty, alpha, src_lens)
    paths = _Paths.empty(batch_size, device, return_attention)
    cum = torch.zeros(batch_size, device=device)  # summed like beam_search's scores, so beam 1 == greedy
    sentences = torch.arange(batch_size, device=device)
    last = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    for step in itertools.count():
        log_probs, state, attn = decoder.step(last, state)
        log_probs = rules.apply(log_probs.float(), paths.tokens, step)  # (N, V)
        last = choose(log_probs)  # (N,)
        log_prob = log_probs.gather(1, last.unsqueeze(1)).squeeze(1)  # (N,)
        cum = cum + log_prob
        ends = last == eos  # forced at max_len
        if bool(ends.any()):
            rows = ends.nonzero().squeeze(1)
            finished.add(
                sentences[rows].tolist(), paths.finish(rows, log_prob[rows], attn), cum[rows].tolist()
            )
            if bool(ends.all()):
                break
            live = (~ends).nonzero().squeeze(1)
            state, rules = state.reorder(live), rules.select(live)
        else:
            live = torch.arange(last.size(0), device=device)
        paths = paths.extend(live, last[live], log_prob[live], attn)
        last, cum, sentences = last[live], cum[live], sentences[live]
    return finished.hyps


@torch.no_grad()
def greedy_search(
    decoder: Decoder,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    *,
    min_len: int = 0,
    length_penalty: str = "none",
    alpha: float = 0.6,
    no_repeat_ngram: int = 0,
    ban_unk: bool = False,
    unk: int = 1,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    return_attention: bool = True,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """The most probable next token at every step; one hypothesis per sentence (a list, like beam)."""
    return _single_path(
        decoder, state, batch_size, bos, eos, max_len, lambda log_probs: top_k(log_probs, 1)[1].squeeze(1),
        min_len=min_len, length_penalty=length_penalty, alpha=alpha, no_repeat_ngram=no_repeat_ngram,
        ban_unk=ban_unk, unk=unk, prefix=prefix, src_lens=src_lens, return_attention=return_attention,
        device=device,
    )  # fmt: skip


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """(N, V) logits with everything outside the top ``top_k`` (0 = all) and outside the nucleus set to
    -inf. The nucleus (Holtzman et al. 2020) is the smallest set of most probable tokens whose
    probability reaches ``top_p``; the most probable token is always kept."""
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(1)), dim=1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p < 1.0:
        ordered, order = logits.sort(dim=1, descending=True)
        probs = ordered.softmax(dim=1)
        outside = probs.cumsum(dim=1) - probs >= top_p  # mass before the token already reaches top_p
        logits = logits.masked_fill(outside.scatter(1, order, outside), NEG_INF)
    return logits


@torch.no_grad()
def sample(
    decoder: Decoder,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    min_len: int = 0,
    length_penalty: str = "none",
    alpha: float = 0.6,
    no_repeat_ngram: int = 0,
    ban_unk: bool = False,
    unk: int = 1,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    return_attention: bool = True,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """Ancestral sampling from softmax(log_probs / temperature), optionally cut to top-k and top-p.
    ``temperature`` lies in [:data:`TEMPERATURE_MIN`, :data:`TEMPERATURE_MAX`] (for the argmax use
    greedy_search); a ``top_k`` of the vocabulary size or more keeps every piece, like 0.
    Pass a seeded ``torch.Generator`` (on the decoder's device) for reproducible samples."""
    check_number("temperature", temperature, TEMPERATURE_MIN, TEMPERATURE_MAX)
    if top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_k must be >= 0 and top_p in (0, 1]; got top_k={top_k}, top_p={top_p}")

    def choose(log_probs: Tensor) -> Tensor:
        probs = filter_logits(log_probs / temperature, top_k, top_p).softmax(dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _single_path(
        decoder, state, batch_size, bos, eos, max_len, choose,
        min_len=min_len, length_penalty=length_penalty, alpha=alpha, no_repeat_ngram=no_repeat_ngram,
        ban_unk=ban_unk, unk=unk, prefix=prefix, src_lens=src_lens, return_attention=return_attention,
        device=device,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------


def _check_penalty(length_penalty: str, alpha: float) -> None:
    if length_penalty not in LENGTH_PENALTIES:
        raise ValueError(
            f"length_penalty must be one of {', '.join(LENGTH_PENALTIES)}; got {length_penalty!r}"
        )
    check_number("alpha", alpha, 0.0, ALPHA_MAX)


def _device(
    device: torch.device | str | None, max_len: int | Tensor, src_lens: Tensor | None
) -> torch.device:
    """Where step inputs and bookkeeping live: ``device``, else that of ``max_len``/``src_lens``, else CPU."""
    if device is not None:
        return torch.device(device)
    for t in (max_len, src_lens):
        if isinstance(t, Tensor):
            return t.device
    return torch.device("cpu")
