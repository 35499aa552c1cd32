"""Baseline for next-word suggestion: an interpolated Kneser-Ney word n-gram model (nltk.lm).

Trained on the same text as the language model (words split by the suggester's own rule,
:func:`seq2seq_lstm.suggest.words.word_spans`, case kept, punctuation dropped) and scored by the same
code, :func:`seq2seq_lstm.suggest.keystrokes.evaluate_suggestions`, through the same interface:
``session()`` -> ``suggest(text, k)`` / ``word_log_prob(text, word)``.

    python benchmarks/kneser_ney_baseline.py --train data/en-mono/train.txt --test data/en-mono/test.txt \
        --order 5 --output runs/kn5-suggest.json

The model is nltk's ``KneserNeyInterpolated`` (Kneser & Ney 1995; interpolated as in Chen & Goodman
1998), with two changes that do not change a single probability, only the speed:

- nltk recomputes every continuation count N1+(. context word) by scanning all n-grams of the next
  order on each call (seconds per word on a million-word corpus); :class:`IndexedKneserNey` builds
  those counts once after training. ``test_kneser_ney_matches_nltk`` checks the scores are equal.
- Ranking the whole vocabulary on every keystroke is out of reach for nltk's Python scoring, so the
  candidates are, for each context suffix (the last n-1 words, n-2, ..., none), its ``per_context``
  most frequent continuations that start with the typed characters (continuation counts for the empty
  context, as Kneser-Ney's unigram level uses). Every word that ranks high under interpolation is
  frequent after one of those suffixes, so the top 3 are found; the scores are nltk's exact ones.

A word never seen in training has probability 0 (nltk maps it to <UNK>, which has no counts); the
evaluation floors it and reports the share of such words.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path

from nltk.lm.models import InterpolatedLanguageModel
from nltk.lm.preprocessing import padded_everygram_pipeline
from nltk.lm.smoothing import KneserNey

from seq2seq_lstm.suggest.keystrokes import evaluate_suggestions
from seq2seq_lstm.suggest.suggester import Suggestion
from seq2seq_lstm.suggest.words import parse_typed, word_spans

logger = logging.getLogger("kneser_ney_baseline")
SPECIAL = frozenset({"<s>", "</s>", "<UNK>"})


def words_of(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


class IndexedKneserNey(KneserNey):
    """nltk's KneserNey smoothing with continuation counts indexed once instead of scanned per call."""

    def __init__(self, vocabulary, counter, order, discount=0.1, **kwargs):
        super().__init__(vocabulary, counter, order, discount=discount, **kwargs)
        self._cont: dict[tuple, Counter] | None = None
        self._cont_total: dict[tuple, int] = {}
        self._types_after: dict[tuple, int] = {}

    def _index(self) -> None:
        # N1+(. ctx w): distinct left extensions u with count(u ctx w) > 0; N1+(. ctx .) their total
        self._cont = {}
        for m in range(2, self._order + 1):
            for prefix, dist in self.counts[m].items():
                ctx = prefix[1:]
                cont = self._cont.setdefault(ctx, Counter())
                n = 0
                for word, count in dist.items():
                    if count > 0:
                        cont[word] += 1
                        n += 1
                self._cont_total[ctx] = self._cont_total.get(ctx, 0) + n

    def continuations(self, context: tuple = ()) -> Counter:
        """word -> N1+(. context word), the counts Kneser-Ney's lower orders use."""
        if self._cont is None:
            self._index()
        return self._cont.get(context, Counter())

    def _continuation_counts(self, word, context=tuple()):
        if self._cont is None:
            self._index()
        return self.continuations(context)[word], self._cont_total.get(context, 0)

    def alpha_gamma(self, word, context):
        # nltk's formula; only N1+(context .) is cached (nltk counts it again on every call)
        prefix_counts = self.counts[context]
        if len(context) + 1 == self._order:
            word_count, total = prefix_counts[word], prefix_counts.N()
        else:
            word_count, total = self._continuation_counts(word, context)
        if context not in self._types_after:
            self._types_after[context] = sum(1 for c in prefix_counts.values() if c > 0)
        alpha = max(word_count - self.discount, 0.0) / total
        gamma = self.discount * self._types_after[context] / total
        return alpha, gamma


class KneserNeySuggester:
    """A word n-gram model behind the suggestion interface that ``evaluate_suggestions`` scores."""

    def __init__(
        self, order: int = 5, discount: float = 0.75, per_context: int = 50, context_chars: int = 1024
    ):
        self.order, self.per_context, self.context_chars = order, per_context, context_chars
        self.model = InterpolatedLanguageModel(
            IndexedKneserNey, order, params={"discount": discount, "order": order}
        )
        self._ranked: dict[tuple, list[str]] = {}

    def fit(self, sentences) -> KneserNeySuggester:
        train, vocab = padded_everygram_pipeline(self.order, [words_of(s) for s in sentences])
        self.model.fit(train, vocab)
        self.model.estimator.continuations()  # build the index now, not on the first keystroke
        return self

    # ---------------------------------------------------------------------------- the interface

    def session(self, source: str | None = None) -> KneserNeySuggester:
        if source is not None:
            raise ValueError("the n-gram baseline has no source side")
        return self  # nothing to cache between keystrokes

    def _context(self, text: str) -> tuple[tuple[str, ...], str] | None:
        typed = parse_typed(text, self.context_chars)
        if typed is None:
            return None
        history = ["<s>"] * (self.order - 1) + words_of(typed.context)
        return tuple(history[-(self.order - 1) :]) if self.order > 1 else (), typed.partial

    def _ranked_after(self, context: tuple) -> list[str]:
        """Words seen after ``context`` (continuation counts for the empty one), most frequent first."""
        if context not in self._ranked:
            counts = self.model.counts[context] if context else self.model.estimator.continuations()
            self._ranked[context] = [
                w for w, _ in sorted(counts.items(), key=lambda x: -x[1]) if w not in SPECIAL
            ]
        return self._ranked[context]

    def suggest(self, text: str, k: int | None = None) -> list[Suggestion]:
        parsed = self._context(text)
        k = 3 if k is None else k
        if parsed is None:
            return []
        context, partial = parsed
        candidates: set[str] = set()
        for i in range(len(context) + 1):
            taken = 0
            for word in self._ranked_after(context[i:]):
                if word.startswith(partial):
                    candidates.add(word)
                    taken += 1
                    if taken == self.per_context:
                        break
        scored = [(self.model.score(w, context), w) for w in candidates]
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [Suggestion(w, p) for p, w in scored[:k] if p > 0]

    def word_log_prob(self, text: str, word: str) -> float:
        parsed = self._context(text)
        if parsed is None:
            return -math.inf
        p = self.model.score(word, parsed[0])
        return math.log(p) if p > 0 else -math.inf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="training text, one sentence a line")
    parser.add_argument("--test", required=True, help="test text, one sentence a line")
    parser.add_argument("--order", type=int, default=5, help="n-gram order (default 5)")
    parser.add_argument("--discount", type=float, default=0.75, help="absolute discount (default 0.75)")
    parser.add_argument(
        "--per-context", type=int, default=50, help="candidates per context suffix (default 50)"
    )
    parser.add_argument("--max-sentences", type=int, default=0, help="score only the first N test sentences")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--output", help="write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    train = Path(args.train).read_text(encoding="utf-8").splitlines()
    test = [s for s in Path(args.test).read_text(encoding="utf-8").splitlines() if s.strip()]
    if args.max_sentences:
        test = test[: args.max_sentences]
    t0 = time.perf_counter()
    model = KneserNeySuggester(args.order, args.discount, args.per_context).fit(train)
    logger.info(
        "trained a %d-gram model on %d sentences in %.0f s", args.order, len(train), time.perf_counter() - t0
    )
    report = evaluate_suggestions(model, test, bootstrap=args.bootstrap)
    data = report.to_dict() | {
        "model": f"kneser-ney {args.order}-gram (nltk.lm), discount {args.discount}",
        "train": args.train,
        "test": args.test,
    }
    print(report.format_table())
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.output + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
