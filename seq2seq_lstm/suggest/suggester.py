"""Suggester and its sessions: whole-word top-k from subword pieces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
from torch import Tensor

from ..config import TASK_NAMES
from ..decoding.quantize import convert_weights
from ..errors import CheckpointError, UserError
from ..vocab import BOS_ID
from .adapt import Adapter, CommitTracker
from .pieces import PieceTable
from .words import GLUED, WORD, Typed, clean_word, parse_typed

MAX_CACHED_SEQUENCES = 2048  # piece sequences a session keeps (each holds V log-probs)
MAX_CACHED_ANSWERS = 1024  # answers a session keeps (texts asked for or prefetched)
SORT_WHOLE = 256  # the word beam sorts up to this many candidate scores whole instead of a top-k call
CHARS_PER_PIECE = 16  # only the last suggest_context * this many characters of the text are read


# ------------------------------------------------------------------------------------------------
# Suggester and session


@dataclass(frozen=True)
class Suggestion:
    """One suggested word and its probability as the next word (a lower bound: beam search)."""

    word: str
    prob: float


@dataclass
class _Hyp:
    seq: tuple[int, ...]  # pieces since BOS: the context's, then the word's so far
    text: str  # word characters spelled so far
    logp: float  # log P(pieces so far | context)
    phase: str  # which pieces may come next


class Suggester:
    """Whole-word suggestions from a model with ``start``/``step`` and a SentencePiece tokenizer.

    ``model`` is a ``LanguageModel`` (``task="lm"``) or a ``Seq2Seq`` (``task="translation"``: the
    suggestions continue a translation of a source sentence), or an ``EnsembleDecoder`` of several
    such models over one vocabulary. ``k`` words are returned, built with a
    beam of ``beam`` piece sequences from the last ``context`` pieces of the current sentence; at most
    ``max_pieces`` pieces per word (plus one per typed character beyond four). The beam drops every
    hypothesis less probable than ``stop_ratio`` times the k-th word found, and stops when none is
    left: with 1 (the default) no word it has not found yet can then enter the top k, as a word is at
    most as probable as its first pieces. Dropping hypotheses one by one, rather than only stopping
    once the whole beam falls below the bar, saves model steps without changing the top k; a lower
    bar only spends steps on words that cannot enter it (benchmarks/RESULTS.md, suggestion latency).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        task: str = "lm",
        k: int = 3,
        beam: int = 8,
        context: int = 64,
        max_pieces: int = 8,
        stop_ratio: float = 1.0,
        max_source: int = 400,
    ) -> None:
        if task not in ("lm", "translation"):
            raise ValueError(f"task must be lm or translation; got {task!r}")
        for name, value in (("k", k), ("beam", beam), ("context", context), ("max_pieces", max_pieces)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.k, self.beam, self.context = k, beam, context
        self.max_pieces, self.stop_ratio = max_pieces, stop_ratio
        self.max_source = max_source  # source pieces read by a translation model (longer: cut)
        self.table = PieceTable(tokenizer.tgt_sp)
        # answers at the start of a sentence (empty context), shared by all sessions of a language
        # model: every text field and every new sentence starts there (a translation's depends on
        # its source)
        self._start_answers: dict[tuple, tuple[list[Suggestion], dict[str, float]]] = {}

    @classmethod
    def from_config(cls, model: torch.nn.Module, tokenizer, cfg) -> Suggester:
        """Defaults from a :class:`~seq2seq_lstm.config.Config`'s ``task`` and ``generation`` section."""
        gen = cfg.generation
        return cls(
            model,
            tokenizer,
            task=cfg.task,
            k=gen.suggest_k,
            beam=gen.suggest_beam,
            context=gen.suggest_context,
            max_source=gen.max_input_len,
        )

    @classmethod
    def from_checkpoint(
        cls, directories: str | PathLike | Sequence[str | PathLike], dtype: str = "float32"
    ) -> Suggester:
        """Load a trained language or translation model for suggestion (CPU, eval mode), its weights
        converted to ``dtype`` (one of :data:`seq2seq_lstm.decoding.quantize.DTYPES`); several run directories
        make an ensemble (the mean of the members' next-piece probabilities), whose members must share
        one task and tokenizer; the first one's ``generation`` settings apply."""
        from ..checkpoint import load_ensemble
        from ..decoding.ensemble import EnsembleDecoder

        def same_task(path, cfg, first) -> None:
            if first is not None and cfg.task != first[1].task:
                raise CheckpointError(
                    f"{path} holds a {TASK_NAMES[cfg.task]} but {first[0]} a {TASK_NAMES[first[1].task]}; "
                    "the members of an ensemble must be of one kind"
                )

        models, cfg, tokenizer = load_ensemble(directories, check=same_task)
        models = [convert_weights(model, dtype) for model in models]
        model = models[0] if len(models) == 1 else EnsembleDecoder(models)
        return cls.from_config(model, tokenizer, cfg)

    @classmethod
    def from_export(cls, directory: str | PathLike, threads: int | None = None) -> Suggester:
        """Suggest with the ONNX Runtime engine over a folder written by `s2s export` (its task and
        generation settings are the run's); ``threads``: intra-op threads (default: torch's now)."""
        from ..export.engine import load_export

        export = load_export(directory, threads)
        return cls.from_config(export.engine, export.tokenizer, export.manifest)

    def session(self, source: str | None = None, adapter: Adapter | None = None) -> SuggestSession:
        """A session for one text being typed (with ``source``: its translation, for a translation model);
        with ``adapter`` (:mod:`~seq2seq_lstm.suggest.adapt`) its suggestions adapt to the text committed
        in it and in earlier sessions of the same adapter."""
        return SuggestSession(self, source, adapter)

    def suggest(self, text: str, k: int | None = None, source: str | None = None) -> list[Suggestion]:
        """Top-k next words (or completions of the word being typed) for ``text``, from a fresh session."""
        return self.session(source).suggest(text, k)


class _Interrupted(Exception):
    """A prefetch gave way to a keystroke (see :meth:`SuggestSession.prefetch`)."""


# a stepped piece sequence: its next-piece log-probs (V,) as numpy (a view of its step's output), the
# state block of its step and its row there, and log P(the word ends after it) (the boundary mass),
# computed once per node, batched per step
_Node = tuple[np.ndarray, object, int, float]


class SuggestSession:
    """Suggestions for one text typed keystroke by keystroke.

    Every piece sequence the session has stepped (the context's pieces after BOS, then a word's pieces)
    is kept with its log-probs and state, so a keystroke steps only sequences it has not seen: a new
    word usually starts from the node the word beam reached at the previous keystroke, and typing "th"
    after "t" re-uses "▁th", "▁the", ... from the first keystroke. The answer for each text is kept too
    (at the start of a sentence, by the suggester for all sessions of a language model).

    :meth:`prefetch` is for the time between keystrokes (a keyboard waits ~100-300 ms for the next
    one): it works out the answers for the keystrokes most likely to come next, so that when one of
    them comes, :meth:`suggest` only looks its answer up. Results equal those of a fresh
    :meth:`Suggester.suggest` of the whole text, up to float rounding of differently sized batches.

    With an ``adapter`` (:mod:`~seq2seq_lstm.suggest.adapt`), every word of the text finished by a
    boundary is committed to it once, before the keystroke is answered, and the answer is the
    adapter's rescoring of the words the beam found; :meth:`finish` commits the rest of a text. An
    adapter that changes weights makes the session drop its cached steps whenever its version grows.
    """

    def __init__(
        self, suggester: Suggester, source: str | None = None, adapter: Adapter | None = None
    ) -> None:
        self.s = suggester
        self.adapter = adapter
        self._tracker = CommitTracker()
        if suggester.task == "translation":
            if source is None or not source.strip():
                raise UserError(
                    "a translation model suggests words of a translation: give the source sentence"
                )
            self._src_ids = suggester.tokenizer.encode_src([clean_word(source)])[0][: suggester.max_source]
        elif source is not None:
            raise UserError("this checkpoint is a language model; --source needs a translation model")
        self._anchor: tuple[int, ...] = ()  # context of the last text asked for: its nodes survive eviction
        self._should_stop = None  # while prefetching: says whether a keystroke is waiting
        self._windows: dict[str, tuple[int, ...]] = {}  # context text -> its window of pieces
        self._start()

    def _start(self) -> None:
        """Step BOS with the model of the adapter's current version; forget every cached step and answer."""
        self.model = self.s.model if self.adapter is None else self.adapter.model(self.s.model)
        self._version = None if self.adapter is None else self.adapter.version
        with torch.inference_mode():
            if self.s.task == "translation":
                src = torch.tensor([self._src_ids], dtype=torch.long)  # (1, S)
                state = self.model.start(src, torch.tensor([len(self._src_ids)], dtype=torch.long))
            else:
                state = self.model.start(1)
            log_probs, state, _ = self.model.step(torch.tensor([BOS_ID]), state)
        # piece sequence after BOS (the context window, then the pieces of a word) -> its node
        self._nodes: dict[tuple[int, ...], _Node] = {
            (): (_as_numpy(log_probs)[0], state, 0, self._boundary_mass(log_probs)[0])
        }
        # (context, partial word, join, k, beam settings) -> (the top k, every word the beam found)
        self._answers: dict[tuple, tuple[list[Suggestion], dict[str, float]]] = {}

    def _sync(self) -> None:
        """Re-start when the adapter's weights changed since the cached steps were computed."""
        if self.adapter is not None and self.adapter.version != self._version:
            self._start()

    def _commit(self, text: str, final: bool) -> None:
        if self.adapter is None:
            return
        stretch, start = self._tracker.stretch(text, final)
        if stretch or final:
            self.adapter.commit(stretch, start=start, end=final)

    def finish(self, text: str) -> None:
        """The user is done with ``text`` (sent, or the field left): commit all of it to the adapter."""
        self._commit(text, final=True)

    # -------------------------------------------------------------------------------------- context

    def _window(self, ids: list[int]) -> tuple[int, ...]:
        """The last pieces of the context, at most ``context``; the window start moves in steps of half
        the window, so a growing text keeps one start (and its cached states) for many words."""
        size = self.s.context
        if len(ids) <= size:
            return tuple(ids)
        half = max(1, size // 2)
        start = ((len(ids) - size) // half + 1) * half
        return tuple(ids[start:])

    def _set_context(self, ids: tuple[int, ...]) -> None:
        """Step the pieces of ``ids`` after its longest stepped prefix (usually none: the word just
        finished was stepped by the word beam already)."""
        done = len(ids)
        while ids[:done] not in self._nodes:
            done -= 1
        for n in range(done + 1, len(ids) + 1):
            self._expand([ids[:n]])

    def _boundary_mass(self, log_probs: Tensor) -> list[float]:
        """log P(the next piece ends the word) for each row of log-probs (N, V)."""
        return torch.mv(log_probs.exp(), self.s.table.boundary_weights).log().tolist()

    def _typed(self, text: str) -> tuple[Typed, tuple[int, ...]] | None:
        s = self.s
        typed = parse_typed(text, s.context * CHARS_PER_PIECE, sentence_scope=s.task == "lm")
        if typed is None:
            return None
        window = self._windows.get(typed.context)
        if window is None:  # a new context; every keystroke inside a word keeps the one it had
            ids = s.tokenizer.tgt_sp.encode(typed.context, out_type=int) if typed.context else []
            if len(self._windows) >= MAX_CACHED_ANSWERS:
                self._windows.clear()
            window = self._windows[typed.context] = self._window(ids)
        return typed, window

    # ------------------------------------------------------------------------------------------ API

    def suggest(self, text: str, k: int | None = None) -> list[Suggestion]:
        """Top-k words for the text typed so far, most probable first (empty when none fits)."""
        k = self.s.k if k is None else k
        self._commit(text, final=False)
        self._sync()
        parsed = self._typed(text)
        if parsed is None or k < 1:
            return []
        self._anchor = parsed[1]
        top, words = self._answer(*parsed, k)
        if self.adapter is None:
            return top
        adapted = self.adapter.rescore(parsed[0], words)
        ranked = sorted(adapted.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [Suggestion(w, p) for w, p in ranked]

    def prefetch(self, text: str, chars: int = 16, should_stop=None) -> int:
        """Work out the answers for the keystrokes likely to follow ``text``; returns how many.

        For the time between keystrokes, after :meth:`suggest` answered ``text``: the keystrokes tried
        are a space, a full stop and a comma after a word, and the ``chars`` likeliest next characters
        (:meth:`_next_keystrokes`). ``should_stop()`` (e.g. "is a key event waiting?") is asked before
        every model step; when it says yes the work stops there, so a keystroke waits at most one step.
        What was computed stays, within the session's cache of at most ``MAX_CACHED_SEQUENCES`` piece
        sequences. Fewer ``chars`` work less and miss more; ``benchmarks/suggest_latency.py --prefetch
        N [--gap-ms G]`` measures the trade (figures in benchmarks/RESULTS.md).
        """
        self._sync()
        parsed = self._typed(text)
        if parsed is None:
            return 0
        typed, ids = parsed
        done = 0
        self._should_stop = should_stop
        try:
            words = self._answer(typed, ids, self.s.k)[1]
            for ch in self._next_keystrokes(text, typed, ids, words, chars):
                after = self._typed(text + ch)
                if after is not None:
                    self._answer(*after, self.s.k)
                    done += 1
        except _Interrupted:
            pass
        finally:
            self._should_stop = None
        return done

    def _next_keystrokes(
        self, text: str, typed: Typed, ids: tuple[int, ...], words: dict[str, float], n: int
    ) -> list[str]:
        """The keystrokes most likely to follow ``text``: a space unless one was just typed (after a
        word it asks for the next one, whatever the word is), a full stop and a comma after a word the
        beam found, then the ``n`` likeliest next characters of the word. Inside a word those come
        from the ``words`` it may become (their probabilities); for a word's first letter the words
        the beam found are too few, so they come from the next-piece distribution (its 256 likeliest
        pieces that may start the word, by their first letter)."""
        mass: dict[str, float] = {}
        partial = typed.partial
        if partial:
            for word, p in words.items():
                if len(word) > len(partial) and word.startswith(partial):
                    mass[word[len(partial)]] = mass.get(word[len(partial)], 0.0) + p
        elif ids in self._nodes:
            table = self.s.table
            allowed = table.allowed_after(typed.join, "", False)
            if allowed.id_list:
                log_probs = torch.from_numpy(self._nodes[ids][0]).index_select(0, allowed.ids)
                top, at = log_probs.topk(min(256, len(allowed.id_list)))
                for p, a in zip(top.exp().tolist(), at.tolist(), strict=True):
                    lead = table.leads[allowed.id_list[a]]
                    if lead:  # a lone "▁" says nothing about the letter
                        mass[lead[0]] = mass.get(lead[0], 0.0) + p
        keys = [" "] if text and not text[-1].isspace() else []
        if partial and partial in words:
            keys += [".", ","]
        return keys + sorted(mass, key=lambda ch: (-mass[ch], ch))[:n]

    def word_log_prob(self, text: str, word: str) -> float:
        """log P(the next word after ``text`` is ``word``), summed over the segmentations the beam finds.

        ``text`` is what precedes the word (ending in a space, punctuation, or empty); -inf when the
        beam finds no way to spell the word. With an adapter, the adapted probability (nothing is
        committed: ``text`` is only read).
        """
        self._sync()
        parsed = self._typed(text + word)
        if parsed is None or parsed[0].partial != word or not word:
            return -math.inf
        typed, ids = parsed
        self._anchor = ids
        words = self._words(ids, word, typed.join, 1, exact=True)
        if self.adapter is not None:
            words = self.adapter.rescore(typed, words)
        p = words.get(word, 0.0)
        return math.log(p) if p > 0 else -math.inf

    def _answer(
        self, typed: Typed, ids: tuple[int, ...], k: int
    ) -> tuple[list[Suggestion], dict[str, float]]:
        """The top k for a parsed text and every word the beam found, worked out once per text."""
        s = self.s
        key = (ids, typed.partial, typed.join, k, s.beam, s.max_pieces, s.stop_ratio)
        shared = not ids and s.task == "lm" and (self.adapter is None or not self.adapter.changes_weights)
        cache = s._start_answers if shared else self._answers
        answer = cache.get(key)
        if answer is None:
            words = self._words(ids, typed.partial, typed.join, k, exact=False)
            ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            answer = ([Suggestion(w, p) for w, p in ranked], words)
            if len(cache) >= MAX_CACHED_ANSWERS:
                del cache[next(iter(cache))]  # the oldest
            cache[key] = answer
        return answer

    # -------------------------------------------------------------------------------- word beam

    def _expand(self, seqs: list[tuple[int, ...]]) -> None:
        """Step the model once on every sequence not stepped yet (their parents are), in one batch."""
        missing = [seq for seq in dict.fromkeys(seqs) if seq not in self._nodes]
        if not missing:
            return
        if self._should_stop is not None and self._should_stop():
            raise _Interrupted
        if len(self._nodes) + len(missing) > MAX_CACHED_SEQUENCES:
            self._evict(seqs, missing)
        # parents stepped in the same earlier batch are picked with one reorder; batches are concatenated
        groups: dict[int, tuple[object, list[int], list[tuple[int, ...]]]] = {}
        for seq in missing:
            _, block, row, _ = self._nodes[seq[:-1]]
            groups.setdefault(id(block), (block, [], []))
            groups[id(block)][1].append(row)
            groups[id(block)][2].append(seq)
        ordered = [seq for _, _, group in groups.values() for seq in group]
        state = _cat_states([block.reorder(_longs(rows)) for block, rows, _ in groups.values()])
        out, state, _ = self.model.step(_longs([seq[-1] for seq in ordered]), state)
        bmass = self._boundary_mass(out)
        rows = _as_numpy(out)
        for row, seq in enumerate(ordered):
            self._nodes[seq] = (rows[row], state, row, bmass[row])

    def _evict(self, seqs: list[tuple[int, ...]], missing: list[tuple[int, ...]]) -> None:
        """Make room: keep the last context asked for and what follows it (the word being typed, the
        next word), and the sequences this step needs; after a very long word, only the latter."""
        anchor = self._anchor
        needed = set(seqs) | {seq[:-1] for seq in missing} | {anchor, ()}  # () is BOS: always kept
        kept = {seq: n for seq, n in self._nodes.items() if seq in needed or seq[: len(anchor)] == anchor}
        if len(kept) + len(missing) > MAX_CACHED_SEQUENCES // 2:
            kept = {seq: node for seq, node in self._nodes.items() if seq in needed}
        self._nodes = kept

    def _words(self, ids: tuple[int, ...], partial: str, join: str, k: int, exact: bool) -> dict[str, float]:
        """Probabilities of whole words starting with ``partial`` (equal to it with ``exact``).

        A beam over piece sequences: each step finishes the hypotheses whose letters satisfy the typed
        part (their probability times the boundary mass), adds pieces that close a word inside
        themselves, then keeps the ``beam`` best open extensions and steps the model on them at once.
        """
        s, table = self.s, self.s.table
        words: dict[str, float] = {}
        steps = s.max_pieces + max(0, len(partial) - 4)
        with torch.inference_mode():
            self._set_context(ids)
            hyps = [_Hyp(ids, "", 0.0, join)]
            for depth in range(steps + 1):
                self._expand([hyp.seq for hyp in hyps])
                nodes = [self._nodes[hyp.seq] for hyp in hyps]
                # 1. words that end here: their letters satisfy the typed part, the next piece is a boundary
                for hyp, node in zip(hyps, nodes, strict=True):
                    spelled = hyp.text == partial if exact else len(hyp.text) >= len(partial)
                    if hyp.phase == WORD and spelled:
                        _add(words, hyp.text, hyp.logp + node[3])
                if depth == steps:
                    break
                # 2. pieces each hypothesis may take next, words that close inside a piece added on the way
                cands = self._candidates(hyps, nodes, partial, exact, words)
                kept = sorted(cands, reverse=True)[: s.beam]
                # 3. drop the hypotheses that cannot bring a new word into the top k (a word is at most
                # as probable as any prefix of its pieces); none left: stop
                kth = sorted(words.values(), reverse=True)[k - 1] if len(words) >= k else 0.0
                if s.stop_ratio * kth > 0.0:
                    floor = math.log(s.stop_ratio * kth)
                    kept = [c for c in kept if c[0] >= floor]
                if not kept:
                    break
                hyps = [
                    _Hyp(
                        hyps[h].seq + (v,),
                        hyps[h].text + table.leads[v],
                        t,
                        GLUED if table.bare[v] else WORD,  # after a lone "▁" come glued letters
                    )
                    for t, h, v in kept
                ]
        return words

    def _candidates(
        self, hyps: list[_Hyp], nodes: list, partial: str, exact: bool, words: dict[str, float]
    ) -> list[tuple[float, int, int]]:
        """(log-prob, hypothesis, piece) of the ``beam`` best extensions of each group of hypotheses.

        Hypotheses that share the same allowed pieces (phase, and the typed letters still to match)
        are scored at once; pieces that end the word inside themselves are words, added to ``words``
        and never extended.
        """
        s, table = self.s, self.s.table
        groups: dict[tuple[str, str], list[int]] = {}
        for h, hyp in enumerate(hyps):
            groups.setdefault((hyp.phase, partial[len(hyp.text) :]), []).append(h)
        cands: list[tuple[float, int, int]] = []
        # numpy for the picking and adding: a group is a few small array operations, and torch's
        # per-call overhead (several microseconds each) would outweigh them on a keystroke's critical path
        for (phase, rest), members in groups.items():
            allowed = table.allowed_after(phase, rest, exact)
            if not allowed.id_list:
                continue
            if len(members) == 1:  # the common case: no stacking, a scalar offset
                lp = nodes[members[0]][0][allowed.index][None]  # (1, N)
                lp += hyps[members[0]].logp
            else:
                lp = np.stack([nodes[h][0][allowed.index] for h in members])  # (G, N)
                lp += np.array([hyps[h].logp for h in members], dtype=lp.dtype)[:, None]
            if allowed.close_mask is not None:  # pieces that end the word inside themselves are words
                for g, row in enumerate(lp[:, allowed.close_at].tolist()):
                    for n, value in zip(allowed.close_at, row, strict=True):
                        word = hyps[members[g]].text + table.leads[allowed.id_list[n]]
                        if not exact or word == partial:
                            _add(words, word, value)
                lp[:, allowed.close_mask] = -math.inf
            n_ids = len(allowed.id_list)
            cands += [
                (t, members[f // n_ids], allowed.id_list[f % n_ids])
                for t, f in zip(*_best(lp.reshape(-1), s.beam), strict=True)
                if t > -math.inf
            ]
        return cands


def _add(words: dict[str, float], word: str, logp: float) -> None:
    words[word] = words.get(word, 0.0) + math.exp(logp)


def _as_numpy(log_probs: Tensor) -> np.ndarray:
    """The step's log-probs (N, V) as numpy, sharing memory (bfloat16, which numpy lacks, as float32)."""
    if log_probs.dtype not in (torch.float32, torch.float64):
        log_probs = log_probs.float()
    return log_probs.numpy()


def _longs(values: list[int]) -> Tensor:
    """``torch.tensor(values)`` (int64), through numpy: several times faster for a short list, and a step
    of the word beam makes two."""
    return torch.from_numpy(np.array(values, dtype=np.int64))


def _best(scores: np.ndarray, k: int) -> tuple[list[float], list[int]]:
    """The ``k`` highest of ``scores`` (M,) and their positions, highest first. A short row (typed letters
    leave few pieces) is sorted whole, cheaper than a top-k call; a long one goes to torch's top-k, on
    the same memory."""
    if scores.size <= SORT_WHOLE:
        at = np.argsort(-scores, kind="stable")[:k]
        return scores[at].tolist(), at.tolist()
    top, at = torch.from_numpy(scores).topk(min(k, scores.size))
    return top.tolist(), at.tolist()


def _cat_states(states: list):
    """Join decoder states (blocks of rows from earlier steps) along their rows: each state type says
    how (``cat`` of :class:`~seq2seq_lstm.decoding.protocol.ConcatState`)."""
    return states[0] if len(states) == 1 else type(states[0]).cat(states)
