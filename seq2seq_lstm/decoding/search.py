"""Decoding over any step decoder: greedy search, beam search and sampling, behind one :func:`generate`.

Every search works with a :class:`~seq2seq_lstm.decoding.protocol.StepDecoder` (``step(tokens (N,),
state) -> (log_probs (N, V), state, attn (N, S) | None)``) whose state has ``reorder(index (N',),
same_source=False)`` (``same_source=True`` promises every row keeps its sentence, so a state may skip
copying its source side) and ``expand_beams`` (beam search's first reorder: K adjacent rows per
sentence, which may share their source side, as every later reorder keeps each group of K rows within
one sentence). What to do comes in one :class:`~seq2seq_lstm.decoding.options.SearchOptions`; each
search returns, for each of the B sentences, a list of :class:`Hypothesis`::

    options = SearchOptions.from_generation(cfg.generation)          # beam 5, GNMT penalty, ...
    state = model.start(src, src_lens)
    nbest = generate(model, state, options, batch_size=B, max_len=options.max_lengths(src_lens),
                     src_lens=src_lens)
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
- Sampling draws ``n_best`` samples per sentence (its rows repeated n times, one pass) and returns them
  best first.
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
usually stopped the search before any longer one could compete, so the penalty changed almost nothing
and outputs stayed short whichever penalty was chosen. With a
penalty the search does not depend on ``n_best``; K = 1 is still greedy search.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..vocab import BOS_ID, EOS_ID, UNK_ID
from .options import LENGTH_PENALTIES, Sampling, SearchOptions
from .protocol import SearchState, StepDecoder
from .topk import beam_step, top_k

NEG_INF = float("-inf")


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


# ---------------------------------------------------------------------------------------------------------
# The rules every step applies
# ---------------------------------------------------------------------------------------------------------


def _limits(max_len: int | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``max_len`` as (B,) long on ``device``: an int for every sentence, or one per sentence."""
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
    return limit


@dataclass(frozen=True)
class StepRules:
    """What a step may produce, one row per path being extended (reordered together with the state)."""

    max_len: Tensor  # (N,) long: at step max_len only EOS is allowed
    prefix: Tensor  # (N, P) long: forced token at each step, -1 after the row's prefix
    min_len: int = 0  # no EOS at steps < min_len
    banned: tuple[int, ...] = ()  # never produced (the unknown piece)
    no_repeat_ngram: int = 0  # no n-gram of this size twice in one path (0 = off)
    # no row reaches its max_len before this step: a lower bound (rows only leave), so a step before
    # it and past every prefix forces nothing, and ``apply`` skips the few tensor ops that find that
    first_end: int = 0

    @classmethod
    def build(
        cls,
        options: SearchOptions,
        batch_size: int,
        max_len: int | Tensor,
        prefix: Sequence[Sequence[int]] | None,
        device: torch.device,
    ) -> StepRules:
        """The rules of ``options`` for B sentences with their ``max_len`` and forced ``prefix``."""
        limit = _limits(max_len, batch_size, device)
        prefix = prefix or [[] for _ in range(batch_size)]
        if len(prefix) != batch_size:
            raise ValueError(f"prefix needs one list per sentence ({batch_size}); got {len(prefix)}")
        if any(EOS_ID in p for p in prefix):
            raise ValueError("a forced prefix must not contain EOS; pass the tokens only")
        lengths = torch.tensor([len(p) for p in prefix], dtype=torch.long, device=device)
        max_len = torch.maximum(limit, lengths)  # the typed prefix always fits
        return cls(
            max_len=max_len,
            prefix=pad_ids(prefix, -1).to(device),
            min_len=options.min_len,
            banned=(UNK_ID,) if options.ban_unk else (),
            no_repeat_ngram=options.no_repeat_ngram,
            first_end=int(max_len.min()),
        )

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
                masked[:, EOS_ID] = NEG_INF
            stuck = masked.amax(dim=1) == NEG_INF  # the bans left nothing: let the row end
        if stuck is None and self.prefix.size(1) <= step < self.first_end:
            return masked
        # Rows that must take one token: a prefix token, EOS at max_len, or EOS when stuck
        force = self.prefix[:, step] if step < self.prefix.size(1) else torch.full_like(self.max_len, -1)
        force = torch.where(self.max_len <= step, EOS_ID, force)
        if stuck is not None:
            force = torch.where((force < 0) & stuck, EOS_ID, force)
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

    def __init__(self, batch_size: int, n_best: int, options: SearchOptions, src_lens: Tensor | None):
        self.hyps: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
        self.n_best, self.penalty = n_best, LENGTH_PENALTIES[options.length_penalty]
        self.alpha = options.alpha
        self.src_lens = None if src_lens is None else src_lens.tolist()
        self.nth = torch.full((batch_size,), NEG_INF)  # n-th best score of each sentence, on the CPU

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
            if len(kept) == self.n_best:
                self.nth[sentence] = kept[-1].score

    def nth_best(self, sentences: Tensor) -> Tensor:
        """(B',) n-th best finished score of each sentence, -inf while it has fewer than n."""
        return self.nth[sentences.cpu()].to(sentences.device)


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


@dataclass(frozen=True)
class BeamChoice:
    """One step's choice for B' sentences of K open beams (fairseq ``search.BeamSearch.step``): the 2K
    best one-token extensions of each sentence, best first, each (B', 2K). Taking 2K leaves K non-EOS
    candidates even when every beam's best extension is EOS."""

    scores: Tensor  # cumulative log-probs
    rows: Tensor  # long: the row (of the B'*K) each candidate extends
    tokens: Tensor  # long
    log_probs: Tensor  # the step log-prob of each candidate's token
    ends: Tensor  # bool: EOS ranked within the first K, of a path that lived: a finished hypothesis
    next_beam: Tensor  # (B', K) long: the first K non-EOS candidates (columns), the next open beams

    @classmethod
    def choose(cls, scores: Tensor, log_probs: Tensor) -> BeamChoice:
        """scores (B', K) of the open beams, log_probs (B'*K, V) of this step with the rules applied."""
        active, beams = scores.shape
        cand_scores, cand_beam, cand_token = beam_step(scores, log_probs.view(active, beams, -1))
        cand_row = cand_beam + beams * torch.arange(active, device=scores.device).unsqueeze(1)
        # EOS candidates ranked inside the beam end a hypothesis (-inf ones are paths that never lived)
        ends = (cand_token == EOS_ID) & (cand_scores > NEG_INF)
        ends[:, beams:] = False
        # the first K non-EOS candidates (a stable sort keeps their rank order) form the next beam
        next_beam = torch.sort((cand_token == EOS_ID).to(torch.uint8), dim=1, stable=True).indices[:, :beams]
        return cls(cand_scores, cand_row, cand_token, log_probs[cand_row, cand_token], ends, next_beam)

    def next_scores(self) -> Tensor:
        """(B', K) cumulative log-probs of the next open beams."""
        return self.scores.gather(1, self.next_beam)

    def next_rows(self, live: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For the sentences ``live`` (B'',) (indices into B'): the rows the next beams extend, their
        tokens and those tokens' log-probs, each (B''*K,)."""
        beams = self.next_beam.size(1)
        keep = (live.unsqueeze(1) * beams + torch.arange(beams, device=live.device)).view(-1)  # (B''*K,)
        return tuple(
            x.gather(1, self.next_beam).view(-1)[keep] for x in (self.rows, self.tokens, self.log_probs)
        )


@torch.no_grad()
def beam_search(
    decoder: StepDecoder,
    state: SearchState,
    options: SearchOptions,
    *,
    batch_size: int,
    max_len: int | Tensor,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search with ``options.beam_size`` = K beams; ``state`` holds B sentences and is
    expanded to B*K rows after the first step.

    Returns, per sentence, up to ``n_best`` hypotheses best first (fewer only when fewer distinct
    finite-probability paths exist, e.g. ``max_len=0``). Stopping rule: module docstring.
    """
    if batch_size == 0:
        return []
    device, K = _device(device, max_len, src_lens), options.beam_size
    rules = StepRules.build(options, batch_size, max_len, prefix, device)
    finished = _Finished(batch_size, options.kept_finished, options, src_lens)
    paths = _Paths.empty(batch_size, device, options.return_attention)
    scores = torch.full((batch_size, K), NEG_INF, device=device)
    scores[:, 0] = 0.0  # one open beam at first, else the K copies would fill the beam with duplicates
    sentences = torch.arange(batch_size, device=device)  # original index of each active sentence
    last = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)
    for step in itertools.count():
        log_probs, state, attn = decoder.step(last, state)
        log_probs = rules.apply(log_probs.float(), paths.tokens, step)  # (N, V)
        if step == 0:
            # The K beams of a sentence all start from BOS, so the first step ran one row per sentence
            # (for beam 5 over 32 sentences, 4 of every 5 rows of the costliest step were dead beams);
            # now each row becomes the sentence's K rows, beam 0 open, the others at -inf as before
            rows = torch.arange(batch_size, device=device).repeat_interleave(K)  # (B*K,)
            state, rules = state.expand_beams(rows, K), rules.select(rows)
            paths = _Paths.empty(batch_size * K, device, options.return_attention)
            log_probs = log_probs.index_select(0, rows)
            attn = None if attn is None else attn.index_select(0, rows)
        choice = BeamChoice.choose(scores, log_probs)
        if bool(choice.ends.any()):
            b, j = choice.ends.nonzero(as_tuple=True)
            ended = paths.finish(choice.rows[b, j], choice.log_probs[b, j], attn)
            finished.add(sentences[b].tolist(), ended, choice.scores[b, j].tolist())
        scores, active = choice.next_scores(), scores.size(0)
        limit = rules.max_len.view(active, K)[:, 0]  # (B',)
        nth = finished.nth_best(sentences)
        done = sentence_done(nth, scores, step, limit, options.length_penalty, options.alpha)
        if bool(done.all()):
            break
        # Keep the unfinished sentences only: one reorder does the beam shuffle and the shrinking
        live = (~done).nonzero().squeeze(1)  # (B'',)
        index, last, log_prob = choice.next_rows(live)
        paths = paths.extend(index, last, log_prob, attn)
        # while no sentence has finished, every row stays with its sentence: the source side stays put
        state, rules = state.reorder(index, same_source=live.numel() == active), rules.select(index)
        scores, sentences = scores[live], sentences[live]
    return [hyps[: options.n_best] for hyps in finished.hyps]


# ---------------------------------------------------------------------------------------------------------
# Greedy search and sampling: one path per sentence
# ---------------------------------------------------------------------------------------------------------


def _single_path(
    decoder: StepDecoder,
    state: SearchState,
    options: SearchOptions,
    choose: Callable[[Tensor], Tensor],
    *,
    batch_size: int,
    max_len: int | Tensor,
    prefix: Sequence[Sequence[int]] | None,
    src_lens: Tensor | None,
    device: torch.device,
) -> list[list[Hypothesis]]:
    """Extend each sentence by ``choose(log_probs (N, V)) -> (N,)`` until EOS; rows leave when done."""
    rules = StepRules.build(options, batch_size, max_len, prefix, device)
    finished = _Finished(batch_size, 1, options, src_lens)
    paths = _Paths.empty(batch_size, device, options.return_attention)
    cum = torch.zeros(batch_size, device=device)  # summed like beam_search's scores, so beam 1 == greedy
    sentences = torch.arange(batch_size, device=device)
    last = torch.full((batch_size,), BOS_ID, dtype=torch.long, device=device)
    for step in itertools.count():
        log_probs, state, attn = decoder.step(last, state)
        log_probs = rules.apply(log_probs.float(), paths.tokens, step)  # (N, V)
        last = choose(log_probs)  # (N,)
        log_prob = log_probs.gather(1, last.unsqueeze(1)).squeeze(1)  # (N,)
        cum = cum + log_prob
        ends = last == EOS_ID  # forced at max_len
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
    decoder: StepDecoder,
    state: SearchState,
    options: SearchOptions,
    *,
    batch_size: int,
    max_len: int | Tensor,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """The most probable next token at every step; one hypothesis per sentence (a list, like beam).
    ``options.beam_size`` and ``n_best`` do not apply."""
    if batch_size == 0:
        return []
    return _single_path(
        decoder, state, options, lambda log_probs: top_k(log_probs, 1)[1].squeeze(1),
        batch_size=batch_size, max_len=max_len, prefix=prefix, src_lens=src_lens,
        device=_device(device, max_len, src_lens),
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
    decoder: StepDecoder,
    state: SearchState,
    options: SearchOptions,
    *,
    batch_size: int,
    max_len: int | Tensor,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """``options.n_best`` draws per sentence, best first, each by ancestral sampling from
    softmax(log_probs / temperature) cut to top-k and top-p (``options.sampling``; None: temperature 1,
    no cut). A ``top_k`` of the vocabulary size or more keeps every piece, like 0. The draws come from
    ``generator`` (on the decoder's device), else from one seeded with ``sampling.seed``, else from
    torch's default generator."""
    if batch_size == 0:
        return []
    s, n = options.sampling or Sampling(), options.n_best
    device = _device(device, max_len, src_lens)
    if generator is None and s.seed is not None:
        generator = torch.Generator(device=device).manual_seed(s.seed)

    def choose(log_probs: Tensor) -> Tensor:
        probs = filter_logits(log_probs / s.temperature, s.top_k, s.top_p).softmax(dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    # each sentence's row repeated n times: n draws in one pass, then each sentence's draws ranked
    rows = torch.arange(batch_size, device=device).repeat_interleave(n)  # (B*n,)
    draws = _single_path(
        decoder, state.reorder(rows), options, choose, batch_size=batch_size * n,
        max_len=_limits(max_len, batch_size, device)[rows],
        prefix=None if prefix is None else [prefix[i] for i in rows.tolist()],
        src_lens=None if src_lens is None else src_lens[rows], device=device,
    )  # fmt: skip
    return [
        sorted((d[0] for d in draws[i * n : (i + 1) * n]), key=lambda h: -h.score) for i in range(batch_size)
    ]


# ---------------------------------------------------------------------------------------------------------


def generate(
    decoder: StepDecoder,
    state: SearchState,
    options: SearchOptions,
    *,
    batch_size: int,
    max_len: int | Tensor,
    prefix: Sequence[Sequence[int]] | None = None,
    src_lens: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[list[Hypothesis]]:
    """Decode the B sentences of ``state`` as ``options`` say: :func:`sample` when ``options.sampling``
    is set, else :func:`beam_search` (``beam_size`` > 1) or :func:`greedy_search`.

    ``max_len`` (an int, or (B,) long: ``options.max_lengths(src_lens)``) and ``prefix`` (forced tokens
    per sentence): module docstring; ``src_lens`` (B,) cuts each attention row to its source;
    ``generator``: for sampling; ``device``: where the search's bookkeeping lives (default: that of
    ``max_len`` or ``src_lens``, else the CPU).
    """
    if state.batch_size != batch_size:
        raise ValueError(f"the state holds {state.batch_size} rows, not batch_size={batch_size}")
    where = {"batch_size": batch_size, "max_len": max_len, "prefix": prefix, "src_lens": src_lens}
    if options.sampling is not None:
        return sample(decoder, state, options, generator=generator, device=device, **where)
    search = beam_search if options.beam_size > 1 else greedy_search
    return search(decoder, state, options, device=device, **where)


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
