"""The network's answers computed once and shared, so that adapters which only rescore them can be
compared (and their settings tuned) without stepping the model again.

A cache adapter changes what is *done* with the words the beam finds, never the beam itself: for a
language model, the words found for a text depend only on the text. :class:`SharedAnswers` is a
predictor whose sessions keep every answer in one store shared by all of them, so the plain pass of
an evaluation computes the answers and the adapted pass (or each point of a tuning grid) looks them
up; the results equal those of fresh sessions up to the float rounding that batching already allows.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UserError
from .adapt import build_adapter
from .cache import CacheAdapter, CacheSettings
from .keystrokes import AdaptationReport, _columns, _metric, evaluate_adaptation, score_documents
from .suggester import SuggestSession


class SharedAnswers:
    """A predictor over a language-model :class:`Suggester` whose sessions share one answer store."""

    def __init__(self, suggester) -> None:
        if suggester.task != "lm":
            raise UserError("shared answers need a language model (a translation's depend on its source)")
        self.suggester = suggester
        self.answers: dict[tuple, tuple] = {}  # _answer's results by (context ids, partial, join, k)
        self.exact: dict[tuple, dict[str, float]] = {}  # word_log_prob's beams by (ids, word, join)

    def session(self, source: str | None = None, adapter=None) -> SuggestSession:
        if adapter is not None and adapter.changes_weights:
            raise ValueError(f"the {adapter.name} adapter changes weights: its answers cannot be shared")
        return _SharedSession(self, source, adapter)


class _SharedSession(SuggestSession):
    def __init__(self, shared: SharedAnswers, source: str | None, adapter) -> None:
        self._shared = shared
        super().__init__(shared.suggester, source, adapter)

    def _answer(self, typed, ids, k):
        key = (ids, typed.partial, typed.join, k)
        if key not in self._shared.answers:
            self._shared.answers[key] = super()._answer(typed, ids, k)
        return self._shared.answers[key]

    def _words(self, ids, partial, join, k, exact):
        if not exact:  # asked by _answer, whose results are shared
            return super()._words(ids, partial, join, k, exact)
        key = (ids, partial, join, k)
        if key not in self._shared.exact:
            self._shared.exact[key] = super()._words(ids, partial, join, k, exact)
        return self._shared.exact[key]


def tune_cache(
    suggester, documents: Sequence[Sequence[str]], grid: Sequence[CacheSettings], *, k: int = 3
) -> list[tuple[CacheSettings, float]]:
    """Keystroke savings on ``documents`` (typed in order, the cache reset between them) for each
    settings of ``grid``, best first; the network's answers are computed once."""
    shared = SharedAnswers(suggester)
    score_documents(shared, documents, None, k=k)  # fills the store
    results = []
    for settings in grid:
        rows = [r for doc in score_documents(shared, documents, CacheAdapter(settings), k=k) for r in doc]
        metric, _ = _metric("keystroke_savings", _columns(rows), None)
        results.append((settings, metric.value))
    return sorted(results, key=lambda sv: -sv[1])


def adaptation_report(
    suggester, documents: Sequence[Sequence[str]], adapt: str, options: dict, **kwargs
) -> AdaptationReport:
    """``documents`` typed in order without and with the ``adapt`` adapter (``s2s suggest-eval
    --adapt``); an adapter that only rescores replays the plain pass's answers (:class:`SharedAnswers`).
    ``kwargs``: :func:`~seq2seq_lstm.suggest.keystrokes.evaluate_adaptation`'s k, mrr_k, bootstrap."""
    adapter = build_adapter(adapt, suggester, options)
    shared = suggester.task == "lm" and (adapter is None or not adapter.changes_weights)
    predictor = SharedAnswers(suggester) if shared else suggester
    return evaluate_adaptation(predictor, documents, adapter, **kwargs)


def tune_cache_weight(
    suggester, documents: Sequence[Sequence[str]], options: dict, weights: Sequence[float], *, k: int = 3
) -> list[tuple[CacheSettings, float]]:
    """:func:`tune_cache` over starting weights (``s2s suggest-eval --tune``), the other settings from
    ``options``; each weight tried stays inside the learned weight's range."""
    build_adapter("cache", suggester, options)  # checks the other settings once, in one line
    base = {key: value for key, value in options.items() if key != "weight"}
    grid = []
    for w in weights:
        bounds = {
            "min_weight": min(w, base.get("min_weight", CacheSettings.min_weight)),
            "max_weight": max(w, base.get("max_weight", CacheSettings.max_weight)),
        }
        grid.append(build_adapter("cache", suggester, base | bounds | {"weight": w}).settings)
    return tune_cache(suggester, documents, grid, k=k)
