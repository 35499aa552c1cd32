"""A cache model of the user's own recent words, interpolated with the network's word distribution.

Kuhn and De Mori (1990) and Grave et al. (2017, the neural cache): a word the user has just used is
far likelier to come again than a language model trained on other text knows. The cache keeps decayed
counts of the committed words and of their word pairs, and the suggestion is the mixture

    P(w | context) = (1 - weight) * P_lm(w | context) + weight * P_cache(w | previous word)
    P_cache(w | v) = m(v) * P_pair(w | v) + (1 - m(v)) * P_word(w)

with Witten-Bell's share for the pairs, m(v) = C(v) / (C(v) + N(v)) (C(v): decayed count of pairs
after v, N(v): distinct words seen after v), so a pair history trusted more the more it has seen, and
``<s>`` as the "previous word" of a sentence's first word. Every count is decayed by ``decay`` per
committed word (a word used 100 words ago weighs 0.99**100 = 0.37 of a new one), so the cache follows
the current document and forgets what the user stopped writing about.

Words are counted case-folded (``str.lower``) and shown the way the user writes them: a word's forms
in the middle of a sentence are counted, and the most frequent one is shown ("iPhone", "NumPy");
a sentence-initial form says nothing about the casing of the word ("The" of "the") and is shown only
when no other form was seen, lowercased when the network offers the lowercase word at that position.
At a sentence start the first letter is capitalized; the letters the user typed are kept as typed.

Most of the gain on documents comes from words the beam never found: a rare name the network gives a
probability far below the k-th word. The cache *proposes* such words when they start with the typed
prefix (case-insensitively). Their network probability is taken as 0 (the beam found them less
probable than every word it kept, which is what a lower bound can say without spending model steps on
each proposal at every keystroke); ``word_log_prob`` in the evaluation computes it exactly. Proposals
are drawn from the words most recently seen after the previous word, the most recently used words,
and all cached words with the typed prefix when few enough, so that a keystroke costs no scan of the
whole cache: a word outside them has a small decayed count, and could rarely enter the top k.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, insort
from dataclasses import dataclass, fields
from itertools import islice

from ..errors import UserError
from .adapt import finished_length
from .words import _SENTENCE_END, Typed, is_word_char, word_spans

START = "<s>"  # the "previous word" of a sentence's first word (never a word: < and > are symbols)
RECENT = 32  # the most recently used words are proposed whatever the typed prefix
SUCCESSORS = 64  # so are the words most recently seen after the previous word
PREFIX_SCAN = 64  # and all cached words with the typed prefix, when at most this many
_ENDS_SENTENCE = re.compile(r"[.!?]+[\"')\]\u2019\u201d]*$")


@dataclass(frozen=True)
class CacheSettings:
    """How the cache counts and how much it weighs (``--adapt cache``, ``--cache-weight``)."""

    weight: float = 0.15  # the cache's share at a reset: tuned on held-out documents (suggestion.md)
    learn_rate: float = 0.02  # how fast the share follows the user's words (0: a fixed weight)
    min_weight: float = 0.01  # the learned share stays in [min_weight, max_weight]; above 0, it can
    max_weight: float = 0.6  # grow back when the user's words start to repeat
    decay: float = 0.995  # per committed word: a count n words old weighs decay**n
    max_words: int = 10_000  # distinct words kept; the least recently used go first
    max_pairs: int = 30_000  # distinct word pairs kept, likewise

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise UserError(f"the cache weight must be in [0, 1); got {self.weight}")
        if not 0.0 <= self.learn_rate <= 1.0:
            raise UserError(f"the cache learn_rate must be in [0, 1]; got {self.learn_rate}")
        if not 0.0 <= self.min_weight <= self.weight <= self.max_weight < 1.0:
            raise UserError(
                "the cache weights must satisfy 0 <= min_weight <= weight <= max_weight < 1; got "
                f"{self.min_weight}, {self.weight}, {self.max_weight}"
            )
        if not 0.0 < self.decay <= 1.0:
            raise UserError(f"the cache decay must be in (0, 1]; got {self.decay}")
        for name in ("max_words", "max_pairs"):
            if getattr(self, name) < 1:
                raise UserError(f"the cache's {name} must be >= 1; got {getattr(self, name)}")


@dataclass
class _Count:
    """A decayed count: ``count`` as of word ``seen`` of the clock (decayed on read)."""

    count: float
    seen: int


@dataclass
class _Word(_Count):
    forms: dict[str, int]  # surface form -> times used inside a sentence
    initial: str  # the form last used at a sentence start ("" if never)
    best: str = ""  # the most used of forms (the first to get there on ties): how it is shown


class CacheAdapter:
    """The cache model as an :class:`~seq2seq_lstm.suggest.adapt.Adapter` (module docstring)."""

    name = "cache"
    changes_weights = False  # only the word distribution changes: cached model steps stay valid
    version = 0

    def __init__(self, settings: CacheSettings | None = None) -> None:
        self.settings = settings or CacheSettings()
        self.reset()

    @classmethod
    def from_suggester(cls, suggester, options: dict) -> CacheAdapter:
        """``options``: any field of :class:`CacheSettings` ("weight", "decay", ...)."""
        known = {f.name for f in fields(CacheSettings)}
        unknown = sorted(set(options) - known)
        if unknown:
            choices = ", ".join(sorted(known))
            raise UserError(f"the cache has no setting {unknown[0]!r}; choose from {choices}")
        types = {f.name: f.type for f in fields(CacheSettings)}  # "int" or "float" (postponed annotations)
        return cls(
            CacheSettings(**{k: int(v) if types[k] == "int" else float(v) for k, v in options.items()})
        )

    def reset(self) -> None:
        self.weight = self.settings.weight  # the cache's share of the mixture, learned as words come
        self.clock = 0  # words committed so far: the decay's clock
        self.total = 0.0  # decayed count of all words, sum of words[*] at the current clock
        self.words: dict[str, _Word] = {}  # case-folded word -> counts; least recently used first
        self.pairs: dict[tuple[str, str], _Count] = {}  # (previous, word) -> count; least recent first
        self.contexts: dict[str, _Count] = {}  # previous word -> decayed count of the pairs after it
        self.after: dict[str, dict[str, None]] = {}  # previous word -> the words seen after it
        self._sorted: list[str] = []  # the keys of words, sorted: prefix search by bisection
        self._previous, self._gap = START, ""  # the last committed word; text after it
        # the last rescore: (previous word, typed prefix case-folded, the network's words); what the
        # weight learns from when the word is committed
        self._last: tuple[str, str, dict[str, float]] | None = None

    # ------------------------------------------------------------------------------------ counting

    def _decayed(self, c: _Count) -> float:
        return c.count * self.settings.decay ** (self.clock - c.seen)

    def _bump(self, c: _Count) -> None:
        c.count, c.seen = self._decayed(c) + 1.0, self.clock

    def commit(self, text: str, *, start: bool, end: bool) -> None:
        """Count the words of ``text``; sentence starts come from ``start``, sentence-end punctuation
        and line breaks."""
        if start:
            self._previous, self._gap = START, ""
        pos = 0
        for a, b in word_spans(text):
            gap = self._gap + text[pos:a]
            if _SENTENCE_END.search(gap):
                self._previous = START
            self._count(text[a:b])
            pos, self._gap = b, ""
        self._gap += text[pos:]
        if end:
            self._previous, self._gap = START, ""
        self._bound()

    def _learn_weight(self, key: str) -> None:
        """One step of online EM on the mixture weight (Neal and Hinton 1998): move it towards the
        cache's responsibility for the committed word, w P_cache / (w P_cache + (1 - w) P_lm), read
        from the last answer for this position (its network probability; 0 if the beam missed it)."""
        last, self._last = self._last, None
        rate = self.settings.learn_rate
        if last is None or rate == 0.0 or last[0] != self._previous or not key.startswith(last[1]):
            return
        p_lm = sum(p for form, p in last[2].items() if form.lower() == key)
        p_cache = self.weight * self.prob(key, self._previous)
        if p_lm + p_cache <= 0.0:
            return
        share = p_cache / (p_cache + (1.0 - self.weight) * p_lm)
        s = self.settings
        self.weight = min(s.max_weight, max(s.min_weight, (1.0 - rate) * self.weight + rate * share))

    def _count(self, word: str) -> None:
        key, initial = word.lower(), self._previous == START
        self._learn_weight(key)
        self.clock += 1
        self.total = self.total * self.settings.decay + 1.0
        entry = self.words.pop(key, None)  # popped and put back: the dict's order is recency
        if entry is None:
            entry = _Word(0.0, self.clock, {}, "")
            insort(self._sorted, key)
        self._bump(entry)
        if initial:
            entry.initial = word
        else:
            entry.forms[word] = entry.forms.get(word, 0) + 1
            if entry.forms[word] > entry.forms.get(entry.best, 0):
                entry.best = word
        self.words[key] = entry
        pair = self.pairs.pop((self._previous, key), None) or _Count(0.0, self.clock)
        self._bump(pair)
        self.pairs[self._previous, key] = pair
        self._bump(self.contexts.setdefault(self._previous, _Count(0.0, self.clock)))
        after = self.after.setdefault(self._previous, {})
        after.pop(key, None)  # put back at the end: the most recent successor last
        after[key] = None
        self._previous = key

    def _bound(self) -> None:
        """Forget the least recently used words and pairs beyond the bounds (down to 90% of them, so
        that a full cache does not prune at every word)."""
        s = self.settings
        if len(self.words) > s.max_words:
            for key in list(self.words)[: len(self.words) - int(0.9 * s.max_words)]:
                self.total -= self._decayed(self.words.pop(key))
            self.total = max(self.total, 0.0)
            self._sorted = sorted(self.words)
        if len(self.pairs) > s.max_pairs:
            for previous, key in list(self.pairs)[: len(self.pairs) - int(0.9 * s.max_pairs)]:
                del self.pairs[previous, key]
                del self.after[previous][key]
                if not self.after[previous]:
                    del self.after[previous], self.contexts[previous]

    # ---------------------------------------------------------------------------------- predicting

    def prob(self, key: str, previous: str = START) -> float:
        """P_cache(word | previous word), both case-folded (0 for a word not in the cache)."""
        return dict(self._probs(previous, [key])).get(key, 0.0)

    def _probs(self, previous: str, keys) -> list[tuple[str, float]]:
        """(word, P_cache(word | previous)) for the ``keys`` in the cache (the module's formula, its
        per-call parts computed once: this runs at every keystroke)."""
        if self.total <= 0.0:
            return []
        decay, clock, total = self.settings.decay, self.clock, self.total
        context = self.contexts.get(previous)
        share = c = 0.0
        if context is not None:
            c = self._decayed(context)
            share = c / (c + len(self.after[previous]))
        out = []
        for key in keys:
            entry = self.words.get(key)
            if entry is None:
                continue
            p = (1.0 - share) * entry.count * decay ** (clock - entry.seen) / total
            pair = self.pairs.get((previous, key)) if share else None
            if pair is not None:
                p += share * pair.count * decay ** (clock - pair.seen) / c
            out.append((key, p))
        return out

    def _proposals(self, previous: str, prefix: str) -> set[str]:
        """Cached words worth scoring for a typed ``prefix`` (case-folded): see the module docstring."""
        keys = set(islice(reversed(self.after.get(previous, {})), SUCCESSORS))
        keys.update(islice(reversed(self.words), RECENT))
        if prefix:
            lo = bisect_left(self._sorted, prefix)
            hi = bisect_left(self._sorted, prefix + "\U0010ffff")
            if hi - lo <= PREFIX_SCAN:
                keys.update(self._sorted[lo:hi])
            keys = {k for k in keys if k.startswith(prefix)}
        return keys

    def _form(self, key: str, typed: Typed, at_start: bool, words: dict[str, float]) -> str | None:
        """How the word is shown here: the user's casing, capitalized at a sentence start, the typed
        letters as typed unless the user's own form differs from them only in case ("num" ->
        "NumPy"); None when it does not fit the typed letters."""
        entry = self.words[key]
        own = bool(entry.best)
        if own:
            form = entry.best
        else:
            form = entry.initial
            if form and form[0].isupper() and form[0].lower() + form[1:] in words:
                form = form[0].lower() + form[1:]
        if not form:
            return None
        user_cased = own and form != form.lower()  # capitals of the user's own, not of a sentence start
        if at_start and form[0].islower():
            form = form[0].upper() + form[1:]
        partial = typed.partial
        if form.startswith(partial):
            return form
        if form[: len(partial)].lower() == partial.lower():
            return form if user_cased else partial + form[len(partial) :]
        return None

    def rescore(self, typed: Typed, words: dict[str, float]) -> dict[str, float]:
        """The mixture over the beam's words and the cache's proposals (module docstring)."""
        weight = self.weight
        out = {w: (1.0 - weight) * p for w, p in words.items()}
        context = typed.context
        end = len(context)
        while end and not is_word_char(context[end - 1]):
            end -= 1
        at_start = end == 0 or bool(_ENDS_SENTENCE.search(context))
        previous = START if at_start else context[finished_length(context[:end]) : end].lower()
        partial = typed.partial.lower()
        self._last = (previous, partial, words)
        if not self.words or weight == 0.0:
            return out
        for key, p in self._probs(previous, self._proposals(previous, partial)):
            form = self._form(key, typed, at_start, words) if p > 0.0 else None
            if form is not None:
                out[form] = out.get(form, 0.0) + weight * p
        return out

    # ------------------------------------------------------------------------------------- state

    def model(self, base):
        return base

    def state(self) -> dict:
        """Plain JSON values, least recently used first (docs/suggestion.md, "User models")."""
        return {
            "weight": self.weight,
            "clock": self.clock,
            "total": self.total,
            "words": [[k, e.count, e.seen, e.forms, e.initial] for k, e in self.words.items()],
            "pairs": [[v, w, c.count, c.seen] for (v, w), c in self.pairs.items()],
        }

    def load_state(self, state: dict) -> None:
        """Take back :meth:`state`; contexts and successor sets are rebuilt from the pairs. Raises
        ValueError naming the first malformed entry; over the bounds, the oldest are forgotten."""
        self.reset()
        try:
            self.clock, self.total = int(state["clock"]), float(state["total"])
            self.weight = float(state["weight"])
            if not self.settings.min_weight <= self.weight <= self.settings.max_weight:
                raise ValueError(f"weight {self.weight} outside [min_weight, max_weight]")
            for key, count, seen, forms, initial in state["words"]:
                if not isinstance(key, str) or not key or key != key.lower() or not isinstance(forms, dict):
                    raise ValueError(f"bad word entry {key!r}")
                if not 0 <= int(seen) <= self.clock:
                    raise ValueError(f"word {key!r} seen at {seen}, outside the clock 0-{self.clock}")
                clean = {str(f): int(n) for f, n in forms.items()}
                best = max(clean, key=clean.__getitem__, default="")
                self.words[key] = _Word(float(count), int(seen), clean, str(initial), best)
            for previous, key, count, seen in state["pairs"]:
                if key not in self.words or not (previous == START or previous in self.words):
                    continue  # a pair of a forgotten word
                self.pairs[previous, key] = pair = _Count(float(count), int(seen))
                ctx = self.contexts.setdefault(previous, _Count(0.0, self.clock))
                ctx.count += self._decayed(pair)
                self.after.setdefault(previous, {})[key] = None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.reset()
            raise ValueError(f"malformed cache state ({e})") from None
        if not (math.isfinite(self.total) and self.total >= 0 and self.clock >= 0):
            self.reset()
            raise ValueError("malformed cache state (negative or infinite totals)")
        self._sorted = sorted(self.words)
        self._bound()
