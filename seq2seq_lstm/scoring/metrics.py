"""sacreBLEU metrics: options, reading hypothesis and reference files, corpus and sentence scores."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric, Score
from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
from sacrebleu.utils import SACREBLEU_DIR

from ..errors import UserError
from ..files import STDIN, decode_lines

log = logging.getLogger(__name__)


# sacreBLEU's own defaults, repeated here only where its CLI (not its API) sets them
DEFAULT_WIDTH = 1  # decimal places (sacreBLEU's --width)
# sacreBLEU bounds none of this; we do, so that a typo cannot run for hours or exhaust memory
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


def build_metrics(options: ScoreOptions, sentence_level: bool) -> dict[str, Metric]:
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


def parse_lines(data: bytes, name: str, role: str, errors: str = "strict") -> list[str]:
    """Split UTF-8 bytes into lines exactly as sacreBLEU reads a file: on ``\\n`` only, then ``rstrip()``
    (a byte-order mark stays, as sacreBLEU keeps it). Invalid UTF-8 is :func:`files.decode_lines`'s error."""
    raw = data.split(b"\n")
    if raw[-1] == b"":
        raw.pop()  # the newline that ends the last line does not start another
    if not raw:
        raise UserError(f"{role} file {name!r} is empty; it needs one line per sentence")
    return [line.rstrip() for line in decode_lines(raw, f"{role} file {name!r}", errors, strip_bom=False)]


def read_lines(path: str, role: str, errors: str = "strict") -> TextFile:
    """Read a UTF-8 text file (``-`` for standard input) into a :class:`TextFile`.

    Raises:
        UserError: the file is missing, unreadable, empty or not UTF-8 (naming the file and line).
    """
    if path == STDIN:
        import sys

        return TextFile(role, "<stdin>", parse_lines(sys.stdin.buffer.read(), "<stdin>", role, errors))
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{role} file {path!r} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{role} file {path!r} is a directory; give a text file") from None
    except OSError as e:
        raise UserError(f"cannot read {role} file {path!r}: {e.strerror}") from None
    return TextFile(role, path, parse_lines(data, path, role, errors))


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


def as_streams(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[str]]:
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
    references = as_streams(hypotheses, references)
    results = []
    for metric in build_metrics(options, sentence_level=False).values():
        score = metric.corpus_score(list(hypotheses), references)
        results.append(MetricResult.from_metric(score, metric))
    return results


def sentence_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], options: ScoreOptions
) -> list[list[MetricResult]]:
    """Sentence-level scores as sacreBLEU's ``--sentence-level``: one list (one per metric) per sentence."""
    references = as_streams(hypotheses, references)
    metrics = build_metrics(options, sentence_level=True)
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
