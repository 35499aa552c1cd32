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

Adaptation (:func:`evaluate_adaptation`): documents are typed in order, sentence by sentence, each
sentence twice: in a plain session and in one with the adapter (:mod:`~seq2seq_lstm.suggest.adapt`),
which learns each word as it is committed and the whole sentence when it is finished, and is reset
between documents. Each metric is reported without and with adaptation and their difference, with
paired bootstrap intervals: both are computed on the same resamples of documents (of sentences when
the text is one document), so the interval of the difference excludes the variation between
documents that both share. Resampling whole documents keeps the dependence between a document's
sentences, which the adapter feeds on, inside each resample.
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


def _columns(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Each statistic as a column over the rows (sentences or documents), (N,)."""
    table = np.array([[r[s] for s in STATS] for r in rows], dtype=np.float64).reshape(len(rows), len(STATS))
    return {s: table[:, j] for j, s in enumerate(STATS)}


def _resample(n: int, bootstrap: int, seed: int) -> np.ndarray | None:
    """Row indices of every bootstrap resample, (bootstrap, n); None without resampling."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(bootstrap, n)) if n and bootstrap else None


def _metric(
    name: str, col: dict[str, np.ndarray], resample: np.ndarray | None
) -> tuple[Metric, np.ndarray | None]:
    """The metric over all rows with its 95% percentile interval, and its value on each resample."""
    num, den = METRICS[name]
    value = float(_ratio(name, col[num].sum(keepdims=True), col[den].sum(keepdims=True))[0])
    if resample is None:
        return Metric(value, value, value), None
    dist = _ratio(name, col[num][resample].sum(1), col[den][resample].sum(1))
    lo, hi = (float(x) for x in np.percentile(dist, [2.5, 97.5]))
    return Metric(value, lo, hi), dist


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
    col = _columns(rows)
    resample = _resample(len(rows), bootstrap, seed)
    metrics = {name: _metric(name, col, resample)[0] for name in METRICS}
    return SuggestReport(
        metrics=metrics,
        sentences=len(rows),
        words=int(col["words"].sum()),
        settings={"k": k, "mrr_k": mrr_k, "floor": floor, "bootstrap": bootstrap, "seed": seed},
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------------------------
# Adaptation: documents typed in order, with and without an adapter


def split_documents(lines: Iterable[str]) -> list[list[str]]:
    """Documents of a ``--documents`` file: one sentence a line, one or more blank lines between
    documents (a file without blank lines is one document)."""
    documents: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            documents[-1].append(line.strip())
        elif documents[-1]:
            documents.append([])
    return [d for d in documents if d]


def score_documents(
    predictor,
    documents: Sequence[Sequence[str]],
    adapter,
    *,
    k: int = 3,
    mrr_k: int = 10,
    floor: float = 1e-6,
) -> list[list[dict[str, float]]]:
    """Statistics of each sentence of each document typed in order (``adapter`` None: plain sessions).

    The adapter is reset before each document, learns every word once it is committed and each
    sentence once it is typed in full (``SuggestSession.finish``).
    """
    out = []
    for document in documents:
        if adapter is not None:
            adapter.reset()
        rows = []
        for sentence in document:
            session = predictor.session() if adapter is None else predictor.session(adapter=adapter)
            rows.append(_score_sentence(session, sentence, k, mrr_k, floor))
            if adapter is not None:
                session.finish(sentence)
        out.append(rows)
    return out


@dataclass
class AdaptationReport:
    """Each metric without and with adaptation, and the difference (with minus without)."""

    adapter: str
    metrics: dict[str, tuple[Metric, Metric, Metric]]  # name -> (without, with, difference)
    documents: int
    sentences: int
    words: int
    unit: str  # what the bootstrap resampled: "documents" or "sentences"
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        def d(m: Metric) -> dict:
            return {"value": m.value, "lo": m.lo, "hi": m.hi}

        return {
            "adapt": self.adapter,
            "documents": self.documents,
            "sentences": self.sentences,
            "words": self.words,
            "bootstrap_unit": self.unit,
            "metrics": {
                k: {"without": d(a), "with": d(b), "difference": d(c)}
                for k, (a, b, c) in self.metrics.items()
            },
            "settings": self.settings,
            "seconds": round(self.seconds, 1),
        }

    def format_table(self) -> str:
        """One metric a line: without, with, and the difference with its paired 95% interval."""
        lines = [
            f"{self.documents} documents, {self.sentences} sentences, {self.words} words; --adapt "
            f"{self.adapter}; paired bootstrap over {self.unit} ({self.settings})",
            f"{'metric':<18} {'without':>9} {'with':>9} {'difference':>11}   95% interval",
        ]
        for name, (a, b, c) in self.metrics.items():
            if name == "word_perplexity":
                lines.append(
                    f"{name:<18} {a.value:9.2f} {b.value:9.2f} {c.value:+11.2f}   [{c.lo:+.2f}, {c.hi:+.2f}]"
                )
            else:
                lines.append(
                    f"{name:<18} {100 * a.value:8.2f}% {100 * b.value:8.2f}% {100 * c.value:+10.2f}%   "
                    f"[{100 * c.lo:+.2f}, {100 * c.hi:+.2f}]"
                )
        return "\n".join(lines)


def _units(documents_rows: list[list[dict[str, float]]]) -> tuple[list[dict[str, float]], str]:
    """Rows to resample: one per document (statistics summed), or per sentence for a single document."""
    if len(documents_rows) > 1:
        return [{s: sum(r[s] for r in rows) for s in STATS} for rows in documents_rows], "documents"
    return list(documents_rows[0]) if documents_rows else [], "sentences"


def evaluate_adaptation(
    predictor,
    documents: Sequence[Sequence[str]],
    adapter,
    *,
    k: int = 3,
    mrr_k: int = 10,
    floor: float = 1e-6,
    bootstrap: int = 1000,
    seed: int = 1234,
) -> AdaptationReport:
    """Score ``documents`` typed in order without and with ``adapter`` (module docstring).

    Raises:
        UserError: no sentence has a word to score, or ``bootstrap`` is out of range.
    """
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap is {bootstrap}; give 0 to {MAX_BOOTSTRAP} resamples")
    documents = [[s for s in (line.strip() for line in d) if s] for d in documents]
    documents = [d for d in documents if d]
    if not any(word_spans(s) for d in documents for s in d):
        raise UserError("there are no words to score: every sentence is empty or only punctuation")
    t0 = time.perf_counter()
    plain = score_documents(predictor, documents, None, k=k, mrr_k=mrr_k, floor=floor)
    adapted = score_documents(predictor, documents, adapter, k=k, mrr_k=mrr_k, floor=floor)
    (rows_a, unit), (rows_b, _) = _units(plain), _units(adapted)
    _check_bootstrap_size(bootstrap, len(rows_a))
    col_a, col_b = _columns(rows_a), _columns(rows_b)
    resample = _resample(len(rows_a), bootstrap, seed)
    metrics = {}
    for name in METRICS:
        (a, dist_a), (b, dist_b) = _metric(name, col_a, resample), _metric(name, col_b, resample)
        lo = hi = b.value - a.value
        if resample is not None:
            lo, hi = (float(x) for x in np.percentile(dist_b - dist_a, [2.5, 97.5]))
        metrics[name] = (a, b, Metric(b.value - a.value, lo, hi))
    return AdaptationReport(
        adapter=getattr(adapter, "name", "none"),
        metrics=metrics,
        documents=len(documents),
        sentences=sum(len(d) for d in documents),
        words=int(col_a["words"].sum()),
        unit=unit,
        settings={"k": k, "mrr_k": mrr_k, "floor": floor, "bootstrap": bootstrap, "seed": seed}
        | ({"adapter_cost": adapter.cost()} if hasattr(adapter, "cost") else {}),  # dynamic: ms per word
        seconds=time.perf_counter() - t0,
    )
