"""Keystroke evaluation of next-word suggestion, for any predictor with the suggestion interface.

A *predictor* has ``session(source=None)``; a session has ``suggest(text, k) -> list[Suggestion]``
(words, most probable first) and ``word_log_prob(text, word) -> float``. :class:`Suggester` is one;
the Kneser-Ney baseline in ``benchmarks/kneser_ney_baseline.py`` is another, scored by this same code.

Each test sentence is typed from its first character; its words are the spans of
:func:`~seq2seq_lstm.suggest.words.word_spans` (punctuation is not a word). For every word:

- accuracy with ``c`` characters of the word typed (c = 0, 1, 2, 3): top-1 and top-3 hits of the word
  in the suggestions for ``sentence[:start + c]``, over the words longer than ``c`` (a word already
  typed in full needs no suggestion);
- reciprocal rank of the word in the top-``mrr_k`` list with nothing typed (0 when absent): MRR;
- keystrokes of a simulated user who sees ``k`` = 3 suggestions: before each character of the word
  the user looks at the suggestions and, when the word is among them, selects it (1 keystroke) and
  the space after it comes free; otherwise types the next character (1 keystroke). A word never
  offered is typed in full. Spaces and punctuation between words cost one keystroke each, except
  that free space. Keystroke savings = 1 - keystrokes / characters of the sentences;
- log P(word | text before it), for per-*word* perplexity exp(-mean log P) (not per piece). A
  probability below ``floor`` (an out-of-vocabulary word, or one the beam cannot spell) counts as
  ``floor``; the share of such words is reported.

Every metric is a ratio of sums over sentences, with a 95% bootstrap confidence interval from
resampling sentences (percentile method, fixed seed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..files import size_text
from .words import word_spans

logger = logging.getLogger(__name__)

MAX_BOOTSTRAP = 100_000  # resamples: 100x the default; more only narrows the intervals' own noise
BOOTSTRAP_MEMORY_LIMIT = 4 * 2**30  # bytes: every resample is drawn at once, 16 bytes per sentence in each
TYPED = (0, 1, 2, 3)  # characters of the word typed before the suggestions are scored
STATS = (
    *(f"{name}@{c}" for c in TYPED for name in ("hit1", "hit3", "n")),
    "rr",
    "words",
    "keys",
    "chars",
    "logp",
    "floored",
)
# metric -> (numerator stat, denominator stat); ratios of sums, so the bootstrap resamples sentences
METRICS = {
    **{f"top1@{c}": (f"hit1@{c}", f"n@{c}") for c in TYPED},
    **{f"top3@{c}": (f"hit3@{c}", f"n@{c}") for c in TYPED},
    "mrr": ("rr", "words"),
    "keystroke_savings": ("keys", "chars"),  # 1 - ratio
    "word_perplexity": ("logp", "words"),  # exp(-ratio)
    "floored_words": ("floored", "words"),
}


@dataclass(frozen=True)
class Metric:
    value: float
    lo: float  # 95% bootstrap confidence interval
    hi: float


@dataclass
class SuggestReport:
    """Evaluation results: metrics with confidence intervals, counts and the settings used."""

    metrics: dict[str, Metric]
    sentences: int
    words: int
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "sentences": self.sentences,
            "words": self.words,
            "metrics": {k: {"value": m.value, "lo": m.lo, "hi": m.hi} for k, m in self.metrics.items()},
            "settings": self.settings,
            "seconds": round(self.seconds, 1),
        }

    def format_table(self) -> str:
        """A plain-text table: one metric a line with its 95% confidence interval."""
        lines = [f"{self.sentences} sentences, {self.words} words ({self.settings})"]
        for name, m in self.metrics.items():
            if name == "word_perplexity":
                lines.append(f"{name:<18} {m.value:9.2f}   [{m.lo:.2f}, {m.hi:.2f}]")
            else:
                lines.append(f"{name:<18} {100 * m.value:8.2f}%   [{100 * m.lo:.2f}, {100 * m.hi:.2f}]")
        return "\n".join(lines)


def simulate_keystrokes(
    sentence: str, spans: Sequence[tuple[int, int]], offered: Sequence[int | None]
) -> int:
    """Keystrokes to type ``sentence`` when word i is offered after ``offered[i]`` typed characters.

    ``offered[i]`` is None when the word is never offered before it is typed in full. Taking a
    suggestion costs one keystroke and the space right after the word comes free; every other
    character costs one.
    """
    keys, pos = 0, 0
    for (start, end), c in zip(spans, offered, strict=True):
        keys += start - pos  # spaces and punctuation before the word
        if c is None or c >= end - start:
            keys += end - start
            pos = end
        else:
            keys += c + 1  # typed characters + the selection
            pos = end + (end < len(sentence) and sentence[end] == " ")
    return keys + len(sentence) - pos


def _score_sentence(session, sentence: str, k: int, mrr_k: int, floor: float) -> dict[str, float]:
    stats = dict.fromkeys(STATS, 0.0)
    spans = word_spans(sentence)
    offered: list[int | None] = []
    for start, end in spans:
        word = sentence[start:end]
        found = None
        for c in range(end - start):
            if c > TYPED[-1] and found is not None:
                break
            suggestions = [s.word for s in session.suggest(sentence[: start + c], mrr_k if c == 0 else k)]
            if c == 0:
                stats["rr"] += 1.0 / (suggestions.index(word) + 1) if word in suggestions else 0.0
            top = suggestions[:k]
            if found is None and word in top:
                found = c
            if c in TYPED:
                stats[f"n@{c}"] += 1
                stats[f"hit1@{c}"] += bool(top) and top[0] == word
                stats[f"hit3@{c}"] += word in top
        offered.append(found)
        logp = session.word_log_prob(sentence[:start], word)
        stats["floored"] += logp < math.log(floor)
        stats["logp"] += max(logp, math.log(floor))
    stats["words"] = len(spans)
    stats["keys"] = simulate_keystrokes(sentence, spans, offered)
    stats["chars"] = len(sentence)
    return stats


def _ratio(name: str, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    r = num / np.maximum(den, 1e-12)
    if name == "keystroke_savings":
        return 1.0 - r
    if name == "word_perplexity":
        return np.exp(-r)
    return r


def _check_bootstrap_size(bootstrap: int, n_sentences: int) -> None:
    # the resampled sentence indices (int64) and one gathered column (float64) are held at once
    need = 16 * bootstrap * n_sentences
    if need > BOOTSTRAP_MEMORY_LIMIT:
        raise UserError(
            f"--bootstrap {bootstrap} on {n_sentences} sentences would take about {size_text(need)} of "
            f"memory (the limit is {size_text(BOOTSTRAP_MEMORY_LIMIT)}); give at most "
            f"{BOOTSTRAP_MEMORY_LIMIT // (16 * n_sentences)} resamples"
        )


def evaluate_suggestions(
    predictor,
    sentences: Iterable[str],
    sources: Sequence[str] | None = None,
    *,
    k: int = 3,
    mrr_k: int = 10,
    floor: float = 1e-6,
    bootstrap: int = 1000,
    seed: int = 1234,
    log_every: int = 200,
) -> SuggestReport:
    """Score ``predictor`` on ``sentences`` (one fresh session each; with ``sources``, translations).

    Empty lines are skipped. See the module docstring for what each metric counts.

    Raises:
        UserError: no sentence has a word to score, or ``bootstrap`` is negative, above
            :data:`MAX_BOOTSTRAP` or would take more memory than :data:`BOOTSTRAP_MEMORY_LIMIT`.
    """
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap is {bootstrap}; give 0 to {MAX_BOOTSTRAP} resamples")
    t0 = time.perf_counter()
    rows = []
    sentences = [s.strip() for s in sentences]
    if not any(word_spans(s) for s in sentences):
        raise UserError("there are no words to score: every sentence is empty or only punctuation")
    _check_bootstrap_size(bootstrap, sum(1 for s in sentences if s))
    for i, sentence in enumerate(sentences):
        if not sentence:
            continue
        session = predictor.session(sources[i]) if sources is not None else predictor.session()
        rows.append(_score_sentence(session, sentence, k, mrr_k, floor))
        if log_every and len(rows) % log_every == 0:
            logger.info("suggest-eval: %d sentences scored (%.0f s)", len(rows), time.perf_counter() - t0)
    table = np.array([[r[s] for s in STATS] for r in rows], dtype=np.float64).reshape(len(rows), len(STATS))
    col = {s: table[:, j] for j, s in enumerate(STATS)}
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, len(rows), size=(bootstrap, len(rows))) if rows and bootstrap else None
    metrics = {}
    for name, (num, den) in METRICS.items():
        value = float(_ratio(name, col[num].sum(keepdims=True), col[den].sum(keepdims=True))[0])
        lo = hi = value
        if resample is not None:
            dist = _ratio(name, col[num][resample].sum(1), col[den][resample].sum(1))
            lo, hi = (float(x) for x in np.percentile(dist, [2.5, 97.5]))
        metrics[name] = Metric(value, lo, hi)
    return SuggestReport(
        metrics=metrics,
        sentences=len(rows),
        words=int(col["words"].sum()),
        settings={"k": k, "mrr_k": mrr_k, "floor": floor, "bootstrap": bootstrap, "seed": seed},
        seconds=time.perf_counter() - t0,
    )
