"""Scoring translations with sacreBLEU: BLEU, chrF/chrF++, TER, paired significance, worst sentences.

Every number comes from sacrebleu's API (Post, 2018, "A Call for Clarity in Reporting BLEU Scores");
this module only reads and checks files, builds sacrebleu metric objects from options that carry
sacreBLEU's own names and defaults, and formats the results the way sacreBLEU's command line prints
them. A line printed by ``s2s evaluate`` can be set next to one printed by ``sacrebleu`` and compared
digit for digit, signature included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric, Score
from sacrebleu.metrics.bleu import MAX_NGRAM_ORDER
from sacrebleu.significance import PairedTest
from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
from sacrebleu.utils import SACREBLEU_DIR
from tabulate import tabulate  # a sacrebleu dependency; it draws sacreBLEU's significance table

from .errors import UserError

log = logging.getLogger(__name__)

STDIN = "-"  # a path of "-" reads standard input

# sacreBLEU's own defaults, repeated here only where its CLI (not its API) sets them
DEFAULT_WIDTH = 1  # decimal places (sacreBLEU's --width)
DEFAULT_SEED = 12345  # sacreBLEU's $SACREBLEU_SEED default for the significance tests
PAIRED_TESTS = {"bs": "bootstrap resampling", "ar": "approximate randomization"}
DEFAULT_PAIRED_N = {"bs": 1000, "ar": 10000}  # resamples (bs) or trials (ar), as sacreBLEU's CLI
# sacreBLEU bounds none of these; we do, so that a typo cannot run for hours or exhaust memory
MAX_PAIRED_N = 100_000  # resamples or trials: 100x / 10x sacreBLEU's defaults, about 7 s per 10 sentences
PAIRED_MEMORY_LIMIT = 4 * 2**30  # bytes a paired test may take: it holds every resample at once
MAX_CHRF_ORDER = 100  # chrF counts every n-gram order up to this, for each sentence


# ---------------------------------------------------------------------------------------------- options


def tokenizer_names() -> tuple[str, ...]:
    """The names sacreBLEU accepts for ``--tokenize``, from its own table (``BLEU.TOKENIZERS``)."""
    return tuple(BLEU.TOKENIZERS)


@dataclass(frozen=True)
class ScoreOptions:
    """How to score: the knobs of sacreBLEU's command line, with its option names and defaults."""

    metrics: tuple[str, ...] = ("bleu",)  # sacreBLEU's -m; --worst ranks by the first one
    tokenize: str = BLEU.TOKENIZER_DEFAULT  # BLEU tokenizer ("13a", mteval's), one of tokenizer_names()
    lowercase: bool = False  # case-insensitive BLEU (sacreBLEU's --lowercase is BLEU's only)
    smooth_method: str = "exp"  # BLEU smoothing: one of BLEU.SMOOTH_DEFAULTS
    smooth_value: float | None = None  # for floor / add-k; None takes sacreBLEU's default value
    chrf_char_order: int = CHRF.CHAR_ORDER  # character n-gram order (6)
    chrf_word_order: int = CHRF.WORD_ORDER  # word n-gram order (0); 2 gives chrF++ (Popovic, 2017)
    chrf_beta: int = CHRF.BETA  # weight of recall against precision (2)
    chrf_lowercase: bool = False  # case-insensitive chrF
    ter_case_sensitive: bool = False  # TERCOM lowercases unless asked not to
    ter_normalized: bool = False  # TERCOM's basic normalisation and tokenisation
    ter_no_punct: bool = False  # remove punctuation before TER
    ter_asian_support: bool = False  # split Asian characters for TER

    def __post_init__(self) -> None:
        if not self.metrics:
            raise UserError(f"`metrics` is empty; choose from {', '.join(METRICS)}")
        for name in self.metrics:
            if name not in METRICS:
                raise UserError(f"`metrics` has unknown metric {name!r}; choose from {', '.join(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise UserError(f"`metrics` names a metric twice: {','.join(self.metrics)}")
        if self.tokenize not in tokenizer_names():
            raise UserError(f"`tokenize` is {self.tokenize!r}; choose from {', '.join(tokenizer_names())}")
        if self.smooth_method not in BLEU.SMOOTH_DEFAULTS:
            raise UserError(
                f"`smooth_method` is {self.smooth_method!r}; choose from {', '.join(BLEU.SMOOTH_DEFAULTS)}"
            )
        if self.smooth_value is not None and not (
            math.isfinite(self.smooth_value) and self.smooth_value >= 0
        ):
            # floor and add-k add it to n-gram counts: a negative count has no logarithm, nan and inf no score
            raise UserError(f"`smooth_value` is {self.smooth_value}; give a finite number >= 0")
        if not (1 <= self.chrf_char_order <= MAX_CHRF_ORDER and 0 <= self.chrf_word_order <= MAX_CHRF_ORDER):
            raise UserError(
                f"`chrf_char_order` must be 1 to {MAX_CHRF_ORDER} and `chrf_word_order` 0 to "
                f"{MAX_CHRF_ORDER}, got {self.chrf_char_order} and {self.chrf_word_order}"
            )
        if self.chrf_beta < 0:
            raise UserError(f"`chrf_beta` must be >= 0, got {self.chrf_beta}")


@dataclass(frozen=True)
class MetricSpec:
    """How to build one sacrebleu metric from :class:`ScoreOptions`."""

    build: Callable[[ScoreOptions, bool], Metric]  # (options, sentence_level) -> metric
    higher_is_better: bool  # TER counts edits, so its worst sentences are its highest


def _bleu(o: ScoreOptions, sentence_level: bool) -> BLEU:
    # sacreBLEU's CLI turns effective order on for sentence BLEU: without it one missing 4-gram zeroes
    # a whole sentence's score
    return BLEU(
        lowercase=o.lowercase,
        tokenize=o.tokenize,
        smooth_method=o.smooth_method,
        smooth_value=o.smooth_value,
        effective_order=sentence_level,
    )


def _chrf(o: ScoreOptions, sentence_level: bool) -> CHRF:
    return CHRF(
        char_order=o.chrf_char_order,
        word_order=o.chrf_word_order,
        beta=o.chrf_beta,
        lowercase=o.chrf_lowercase,
    )


def _ter(o: ScoreOptions, sentence_level: bool) -> TER:
    return TER(
        normalized=o.ter_normalized,
        no_punct=o.ter_no_punct,
        asian_support=o.ter_asian_support,
        case_sensitive=o.ter_case_sensitive,
    )


# sacreBLEU's -m names (its METRICS table, lowercased) -> how to build each
METRICS: dict[str, MetricSpec] = {
    "bleu": MetricSpec(_bleu, higher_is_better=True),
    "chrf": MetricSpec(_chrf, higher_is_better=True),
    "ter": MetricSpec(_ter, higher_is_better=False),
}


@cache
def tokenizer_problem(name: str) -> str | None:
    """Why sacreBLEU's tokenizer ``name`` cannot run on this machine, or None when it can.

    The SentencePiece tokenizers (flores101, flores200, spBLEU-1K, spm) would download their model on
    first use; we never download at run time, so a model missing from sacreBLEU's cache is reported
    instead. The MeCab tokenizers need ``sacrebleu[ja]`` / ``sacrebleu[ko]``.
    """
    if name in SPM_MODELS:
        path = Path(SACREBLEU_DIR) / "models" / os.path.basename(SPM_MODELS[name]["url"])
        if not path.is_file():
            return (
                f"tokenizer {name!r} needs sacreBLEU's SentencePiece model {path}, which is not there; "
                f"download {SPM_MODELS[name]['url']} to that path"
            )
    try:
        BLEU(tokenize=name)
    except (ImportError, RuntimeError, AssertionError) as e:
        detail = " ".join(str(e).split())
        return f"tokenizer {name!r} cannot be loaded: {detail}"
    return None


def _build_metrics(options: ScoreOptions, sentence_level: bool) -> dict[str, Metric]:
    """sacrebleu metric objects keyed by -m name, in sacreBLEU's print order (sorted by name)."""
    if "bleu" in options.metrics:
        problem = tokenizer_problem(options.tokenize)
        if problem:
            raise UserError(problem)
    return {name: METRICS[name].build(options, sentence_level) for name in sorted(options.metrics)}


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TextFile:
    """The lines of one text file, named as the user named it."""

    role: str  # "hypothesis", "reference", "source", "baseline": for error messages
    name: str  # the path as given, or "<stdin>"
    lines: list[str]


def parse_lines(data: bytes, name: str, role: str) -> list[str]:
    """Split UTF-8 bytes into lines exactly as sacreBLEU reads a file: on ``\\n`` only, then ``rstrip()``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(
            f"{role} file {name!r} line {line} is not valid UTF-8 (byte 0x{data[e.start]:02x} at column "
            f"{column}); save the file as UTF-8"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    if not lines:
        raise UserError(f"{role} file {name!r} is empty; it needs one line per sentence")
    return [line.rstrip() for line in lines]


def read_lines(path: str, role: str) -> TextFile:
    """Read a UTF-8 text file (``-`` for standard input) into a :class:`TextFile`.

    Raises:
        UserError: the file is missing, unreadable, empty or not UTF-8 (naming the file and line).
    """
    if path == STDIN:
        import sys

        return TextFile(role, "<stdin>", parse_lines(sys.stdin.buffer.read(), "<stdin>", role))
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{role} file {path!r} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{role} file {path!r} is a directory; give a text file") from None
    except OSError as e:
        raise UserError(f"cannot read {role} file {path!r}: {e.strerror}") from None
    return TextFile(role, path, parse_lines(data, path, role))


def check_aligned(files: Sequence[TextFile]) -> None:
    """Every file must have as many lines as the first (one line per sentence).

    Raises:
        UserError: one line naming the first mismatching pair of files and both line counts.
    """
    first = files[0]
    for other in files[1:]:
        if len(other.lines) != len(first.lines):
            raise UserError(
                f"{first.role} file {first.name!r} has {_lines(len(first.lines))} but {other.role} file "
                f"{other.name!r} has {_lines(len(other.lines))}; each file needs one line per sentence"
            )


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def translate_source(checkpoint: str, sources: Sequence[str]) -> list[str]:
    """Translate ``sources`` with the trained model in ``checkpoint`` (a run directory or weights file)."""
    from .translate import Translator  # torch is imported only when a model is used

    hypotheses = Translator.from_checkpoint(checkpoint).translate(list(sources))
    assert len(hypotheses) == len(sources), "the translator must return one line per source line"
    return hypotheses


# ---------------------------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class MetricResult:
    """One score as sacreBLEU reports it: its name, value and signature."""

    name: str  # sacreBLEU's display name: "BLEU", "chrF2", "chrF2++", "TER"
    score: float
    signature: str  # e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    raw: Score = field(repr=False, compare=False)  # sacrebleu's Score, which formats itself

    @classmethod
    def from_metric(cls, score: Score, metric: Metric) -> MetricResult:
        # the signature is read after scoring: sacrebleu learns the number of references while scoring
        return cls(score.name, float(score.score), metric.get_signature().format(), score)

    def text(self, width: int = DEFAULT_WIDTH, signature: bool = True) -> str:
        """sacreBLEU's text line, e.g. ``BLEU|nrefs:1|...|version:2.6.0 = 34.2 65.0/40.0/...``."""
        return self.raw.format(width, signature=self.signature if signature else "")

    def json(self, width: int = DEFAULT_WIDTH) -> str:
        """sacreBLEU's JSON object for this score, as the text it prints."""
        return self.raw.format(width, signature=self.signature, is_json=True)


def _as_streams(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
    """Check a corpus in sacrebleu's layout: references[k][i] is reference k of sentence i."""
    if not hypotheses:
        raise UserError("there are no hypotheses to score")
    if not references:
        raise UserError("there are no references to score against")
    for k, stream in enumerate(references, 1):
        if len(stream) != len(hypotheses):
            raise UserError(f"{len(hypotheses)} hypotheses but reference {k} has {len(stream)} lines")
    return [list(stream) for stream in references]


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], options: ScoreOptions
) -> list[MetricResult]:
    """Corpus-level scores, one per metric, in sacreBLEU's order (BLEU, chrF, TER)."""
    references = _as_streams(hypotheses, references)
    results = []
    for metric in _build_metrics(options, sentence_level=False).values():
        score = metric.corpus_score(list(hypotheses), references)
        results.append(MetricResult.from_metric(score, metric))
    return results


def sentence_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], options: ScoreOptions
) -> list[list[MetricResult]]:
    """Sentence-level scores as sacreBLEU's ``--sentence-level``: one list (one per metric) per sentence."""
    references = _as_streams(hypotheses, references)
    metrics = _build_metrics(options, sentence_level=True)
    results = []
    for hypothesis, *refs in zip(hypotheses, *references, strict=True):
        row = []
        for metric in metrics.values():
            row.append(MetricResult.from_metric(metric.sentence_score(hypothesis, refs), metric))
        results.append(row)
    return results


def format_scores_text(results: Sequence[MetricResult], width: int = DEFAULT_WIDTH) -> str:
    """Score lines aligned on ``=`` as sacreBLEU prints several metrics of one system."""
    lines = [r.text(width) for r in results]
    # right-align what comes before " = " so the scores line up (sacreBLEU's print_single_results)
    w = max(line.index("=") - 1 for line in lines)
    return "\n".join(f"{line[: line.index('=') - 1]:>{w}}{line[line.index('=') - 1 :]}" for line in lines)


def format_scores_json(results: Sequence[MetricResult], width: int = DEFAULT_WIDTH) -> str:
    """sacreBLEU's JSON: one object, or a list of objects for several metrics."""
    if len(results) == 1:
        return results[0].json(width)
    return "[\n" + ",\n".join(r.json(width) for r in results) + "\n]"


# ---------------------------------------------------------------------------------------------- significance


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


def memory_size(n_bytes: int) -> str:
    """``n_bytes`` for a message: "37.3 GiB", "512 MiB"."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


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
            f"{option} {n_samples} on {sentences} would take about {memory_size(need)} of memory "
            f"(the limit is {memory_size(PAIRED_MEMORY_LIMIT)}); "
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
    references = _as_streams(baseline[1], references)
    _check_paired_size(test, n_samples, len(baseline[1]), options)
    named = [(f"Baseline: {baseline[0]}", list(baseline[1]))]
    for name, hyps in systems:
        _as_streams(hyps, references)
        named.append((name, list(hyps)))
    metrics = {name.upper(): m for name, m in _build_metrics(options, sentence_level=False).items()}
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
    references = _as_streams(hypotheses, references)
    if sources is not None and len(sources) != len(hypotheses):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(sources)} source lines")
    metric = _build_metrics(replace(options, metrics=(name,)), sentence_level=True)[name]
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
