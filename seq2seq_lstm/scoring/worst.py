"""The sentences that score worst, for error analysis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import UserError
from .metrics import DEFAULT_WIDTH, METRICS, MetricResult, ScoreOptions, as_streams, build_metrics

# ---------------------------------------------------------------------------------------------- worst


@dataclass(frozen=True)
class SentenceReport:
    """One sentence with its sentence-level score, for reading where a system fails."""

    line: int  # 1-based line number in the files
    result: MetricResult
    hypothesis: str
    references: list[str]
    source: str | None

    def to_dict(self, width: int = DEFAULT_WIDTH) -> dict:
        return {
            "line": self.line,
            "name": self.result.name,
            "score": float(f"{self.result.score:.{width}f}"),  # rounded as sacreBLEU's JSON rounds
            "source": self.source,
            "hypothesis": self.hypothesis,
            "references": self.references,
        }


def worst_sentences(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    options: ScoreOptions,
    n: int,
    sources: Sequence[str] | None = None,
) -> list[SentenceReport]:
    """The ``n`` sentences with the worst sentence score under the first of ``options.metrics``.

    Lowest BLEU / chrF, highest TER; ties keep file order.
    """
    name = options.metrics[0]
    references = as_streams(hypotheses, references)
    if sources is not None and len(sources) != len(hypotheses):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(sources)} source lines")
    metric = build_metrics(replace(options, metrics=(name,)), sentence_level=True)[name]
    reports = []
    for i, (hypothesis, *refs) in enumerate(zip(hypotheses, *references, strict=True)):
        result = MetricResult.from_metric(metric.sentence_score(hypothesis, refs), metric)
        reports.append(SentenceReport(i + 1, result, hypothesis, refs, sources[i] if sources else None))
    sign = 1 if METRICS[name].higher_is_better else -1
    reports.sort(key=lambda r: (sign * r.result.score, r.line))
    return reports[:n]


def format_worst_text(reports: Sequence[SentenceReport], total: int, width: int = DEFAULT_WIDTH) -> str:
    """A readable block: a header with the signature, then each sentence's line, score and texts."""
    first = reports[0].result
    lines = [f"Worst {len(reports)} of {total} sentences by sentence {first.name} ({first.signature}):"]
    for r in reports:
        lines.append(f"line {r.line}: {r.result.text(width, signature=False)}")
        if r.source is not None:
            lines.append(f"  SRC: {r.source}")
        lines.append(f"  HYP: {r.hypothesis}")
        for k, ref in enumerate(r.references, 1):
            lines.append(f"  REF{k if len(r.references) > 1 else ''}: {ref}")
    return "\n".join(lines)


def to_json(document: object) -> str:
    """JSON as sacreBLEU writes it (indent 1, UTF-8 kept)."""
    return json.dumps(document, indent=1, ensure_ascii=False)
