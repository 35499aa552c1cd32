"""Paired significance tests (bootstrap resampling, approximate randomization) through sacreBLEU."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sacrebleu.metrics.bleu import MAX_NGRAM_ORDER
from sacrebleu.significance import PairedTest
from tabulate import tabulate  # a sacrebleu dependency; it draws sacreBLEU's significance table

from ..errors import UserError
from ..files import size_text
from .metrics import (
    DEFAULT_WIDTH,
    ScoreOptions,
    as_streams,
    build_metrics,
)

# sacreBLEU's CLI defaults; the two bounds are ours (sacreBLEU sets none), so that a typo cannot run
# for hours or exhaust memory
DEFAULT_SEED = 12345  # sacreBLEU's $SACREBLEU_SEED default for the significance tests
PAIRED_TESTS = {"bs": "bootstrap resampling", "ar": "approximate randomization"}
DEFAULT_PAIRED_N = {"bs": 1000, "ar": 10000}  # resamples (bs) or trials (ar), as sacreBLEU's CLI
MAX_PAIRED_N = 100_000  # resamples or trials: 100x / 10x sacreBLEU's defaults, about 7 s per 10 sentences
PAIRED_MEMORY_LIMIT = 4 * 2**30  # bytes a paired test may take: it holds every resample at once


@dataclass(frozen=True)
class PairedScore:
    """One system's result for one metric in a paired test (sacrebleu's ``significance.Result``)."""

    score: float
    p_value: float | None  # None for the baseline
    mean: float | None  # bootstrap estimate of the true mean (paired bootstrap only)
    ci: float | None  # half-width of the 95% confidence interval around ``mean``


@dataclass(frozen=True)
class PairedReport:
    """A paired significance test of systems against one baseline (baseline first everywhere)."""

    test: str  # "bs" (paired bootstrap resampling) or "ar" (approximate randomization)
    n_samples: int  # resamples (bs) or trials (ar)
    seed: int
    systems: list[str]  # display names; systems[0] is "Baseline: <name>" as sacreBLEU writes it
    scores: dict[str, list[PairedScore]]  # metric display name -> one per system
    signatures: dict[str, str]  # metric display name -> signature (with bs/ar and seed)

    def to_dict(self) -> dict:
        return {
            "test": self.test,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "systems": [
                {"system": name, **{m: vars(self.scores[m][i]) for m in self.scores}}
                for i, name in enumerate(self.systems)
            ],
            "signatures": self.signatures,
        }


@contextlib.contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    # sacrebleu takes its significance seed only from $SACREBLEU_SEED (its CLI has no flag for it), read
    # in PairedTest and its bootstrap helper; set it for the test and give the caller's value back
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = old


def _opt_float(x) -> float | None:
    return None if x is None else float(x)  # numpy floats -> plain floats (JSON, equality)


def _n_stats(name: str, options: ScoreOptions) -> int:
    """How many sufficient statistics sacrebleu keeps per sentence for metric ``name``."""
    if name == "bleu":
        return 2 + 2 * MAX_NGRAM_ORDER  # lengths, then matches and totals per n-gram order
    if name == "chrf":
        return 3 * (options.chrf_char_order + options.chrf_word_order)  # hyp, ref, matches per order
    return 2  # TER: edits and reference length


def paired_memory(test: str, n_samples: int, n_sentences: int, options: ScoreOptions) -> int:
    """About how many bytes sacrebleu's paired test takes at its peak (measured with sacrebleu 2.6).

    Bootstrap draws every resample's sentence indices at once (int64) and gathers their float32
    statistics; approximate randomization draws a bool per sentence and trial and multiplies them out.
    Each sample also keeps a score object.
    """
    if test == "bs":
        stats = max(_n_stats(name, options) for name in options.metrics)
        return n_samples * (n_sentences * (8 + 4 * stats) + 1500)
    return n_samples * (n_sentences * 14 + 600)


def _check_paired_size(test: str, n_samples: int, n_sentences: int, options: ScoreOptions) -> None:
    what = "resamples" if test == "bs" else "trials"
    option = f"--paired-{test}-n"
    if not 1 <= n_samples <= MAX_PAIRED_N:
        raise UserError(f"{option} is {n_samples}; give 1 to {MAX_PAIRED_N} {what}")
    need = paired_memory(test, n_samples, n_sentences, options)
    if need > PAIRED_MEMORY_LIMIT:
        most = PAIRED_MEMORY_LIMIT // paired_memory(test, 1, n_sentences, options)
        sentences = f"{n_sentences} sentence{'s' if n_sentences != 1 else ''}"
        raise UserError(
            f"{option} {n_samples} on {sentences} would take about {size_text(need)} of memory "
            f"(the limit is {size_text(PAIRED_MEMORY_LIMIT)}); "
            + (f"give at most {most} {what}" if most else "the corpus is too large for a paired test")
        )


def paired_test(
    baseline: tuple[str, Sequence[str]],
    systems: Sequence[tuple[str, Sequence[str]]],
    references: Sequence[Sequence[str]],
    options: ScoreOptions,
    test: str = "bs",
    n_samples: int | None = None,
    seed: int = DEFAULT_SEED,
) -> PairedReport:
    """Paired significance of each system against ``baseline``, by sacrebleu's ``PairedTest``.

    ``test`` is "bs" (paired bootstrap resampling, Koehn 2004, with 95% confidence intervals) or "ar"
    (approximate randomization, Riezler and Maxwell 2005). Names are (name, hypotheses) pairs; the
    result equals ``sacrebleu -i BASELINE SYSTEM... --paired-bs`` with ``SACREBLEU_SEED=seed``.

    Raises:
        UserError: ``n_samples`` is above :data:`MAX_PAIRED_N`, or the test would take more memory than
            :data:`PAIRED_MEMORY_LIMIT` (sacrebleu holds every resample at once).
    """
    if test not in PAIRED_TESTS:
        raise UserError(f"paired test {test!r} is unknown; choose from {', '.join(PAIRED_TESTS)}")
    if seed < 1:
        # sacrebleu seeds each comparison with `seed or None`: 0 would silently mean "unseeded"
        raise UserError(f"the significance seed must be a positive integer, got {seed}")
    n_samples = n_samples or DEFAULT_PAIRED_N[test]
    references = as_streams(baseline[1], references)
    _check_paired_size(test, n_samples, len(baseline[1]), options)
    named = [(f"Baseline: {baseline[0]}", list(baseline[1]))]
    for name, hyps in systems:
        as_streams(hyps, references)
        named.append((name, list(hyps)))
    metrics = {name.upper(): m for name, m in build_metrics(options, sentence_level=False).items()}
    with _sacrebleu_seed(seed):
        signatures, table = PairedTest(
            named, metrics, references=references, test_type=test, n_samples=n_samples
        )()
    names = table.pop("System")
    scores = {
        metric: [
            PairedScore(float(r.score), _opt_float(r.p_value), _opt_float(r.mean), _opt_float(r.ci))
            for r in rs
        ]
        for metric, rs in table.items()
    }
    return PairedReport(test, n_samples, seed, names, scores, {k: v.format() for k, v in signatures.items()})


def _paired_cell(r: PairedScore, width: int) -> str:
    # sacreBLEU's cell: score, then "(mean ± ci)" for bootstrap, then the p-value on its own line with
    # "*" when p <= 0.05
    cell = f"{r.score:.{width}f}"
    if r.mean is not None:
        cell += f" ({r.mean:.{width}f} ± {r.ci:.{width}f})"
    if r.p_value is not None:
        cell += f"\n(p = {r.p_value:.4f})" + ("*" if r.p_value <= 0.05 else "")
    return cell


def format_paired_text(report: PairedReport, width: int = DEFAULT_WIDTH) -> str:
    """sacreBLEU's significance table (as ``--no-color`` prints it), a short legend and the signatures."""
    columns: dict[str, list[str]] = {"System": list(report.systems)}
    for metric, results in report.scores.items():
        title = f"{metric} (μ ± 95% CI)" if results[0].mean is not None else metric
        columns[title] = [_paired_cell(r, width) for r in results]
    table = tabulate(
        columns,
        headers="keys",
        tablefmt="fancy_grid",
        colalign=("right",),
        stralign="center",
        numalign="center",
        floatfmt=f".{width}f",
    )
    unit = "resampling trials" if report.test == "bs" else "trials"
    shown = "score (bootstrap mean ± 95% CI)" if report.test == "bs" else "score"
    lines = [
        f"Paired {PAIRED_TESTS[report.test]} test with {report.n_samples} {unit} (seed {report.seed}): "
        f"each system against {report.systems[0]}",
        table,
        f"Each cell: {shown}, then p: the chance of a difference at least this large",
        "if both systems came from the same process; * marks p <= 0.05.",
        "Significance says that the systems differ, not which one is better.",
        "Metric signatures:",
        *(f" - {name:<10} {sig}" for name, sig in report.signatures.items()),
    ]
    return "\n".join(lines)
