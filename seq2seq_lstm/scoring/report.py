"""One evaluation report: corpus or sentence scores, paired significance tests against baselines,
and the worst sentences, as text blocks and as one JSON document (what ``s2s evaluate`` prints)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import metrics as sm
from . import significance as sig
from . import worst as sw


@dataclass(frozen=True)
class PairedOptions:
    """How HYP is tested against each baseline system."""

    test: str = "bs"  # "bs": paired bootstrap resampling; "ar": approximate randomization
    n_samples: int = 1000  # resamples (bs) or trials (ar)
    seed: int = 12345  # sacreBLEU's $SACREBLEU_SEED


@dataclass(frozen=True)
class Report:
    """The parts of an evaluation, in print order, as text and as JSON."""

    blocks: list[str] = field(default_factory=list)  # text parts, printed with a blank line between
    document: dict = field(default_factory=dict)  # "scores" or "sentences", "paired", "worst"
    scores: list[sm.MetricResult] = field(default_factory=list)  # corpus scores (not --sentence-level)
    width: int = sm.DEFAULT_WIDTH

    def text(self) -> str:
        return "\n\n".join(self.blocks)

    def json(self) -> str:
        """Corpus scores alone are exactly sacreBLEU's JSON; anything more is one document."""
        if set(self.document) == {"scores"}:
            return sm.format_scores_json(self.scores, self.width)
        return sw.to_json(self.document)


def build_report(
    hyp: sm.TextFile,
    refs: Sequence[sm.TextFile],
    options: sm.ScoreOptions,
    *,
    sentence_level: bool = False,
    baselines: Sequence[sm.TextFile] = (),
    paired: PairedOptions = PairedOptions(),
    worst: int | None = None,
    source: sm.TextFile | None = None,
    width: int = sm.DEFAULT_WIDTH,
) -> Report:
    """Score ``hyp`` against ``refs``; test it against each of ``baselines``; list the ``worst``
    sentences (with their ``source`` lines when given). The files must already be aligned."""
    references = [r.lines for r in refs]
    report = Report(width=width)
    if sentence_level:
        rows = sm.sentence_scores(hyp.lines, references, options)
        report.blocks.append("\n".join(r.text(width) for row in rows for r in row))
        report.document["sentences"] = [[json.loads(r.json(width)) for r in row] for row in rows]
    else:
        report.scores.extend(sm.corpus_scores(hyp.lines, references, options))
        report.blocks.append(sm.format_scores_text(report.scores, width))
        report.document["scores"] = [json.loads(r.json(width)) for r in report.scores]
    for other in baselines:
        result = sig.paired_test(
            (other.name, other.lines), [(hyp.name, hyp.lines)], references, options,
            paired.test, paired.n_samples, paired.seed,
        )  # fmt: skip
        report.blocks.append(sig.format_paired_text(result, width))
        report.document.setdefault("paired", []).append(result.to_dict())
    if worst is not None:
        lines = source.lines if source else None
        reports = sw.worst_sentences(hyp.lines, references, options, worst, lines)
        report.blocks.append(sw.format_worst_text(reports, len(hyp.lines), width))
        report.document["worst"] = [r.to_dict(width) for r in reports]
    return report
