"""``s2s evaluate`` and ``s2s bleu``: sacreBLEU's scores, signatures and significance tests.

Options carry sacreBLEU's own names. sacrebleu and our evaluate module are imported inside the
commands (and inside the choice lists, which are read only when an option is parsed or help is shown),
so ``s2s --help`` stays fast.
"""

from __future__ import annotations

import json
import math

import click

# the library's bounds (seq2seq_lstm.scoring.metrics), repeated here so that --help need not import sacrebleu
MAX_PAIRED_N = 100_000
MAX_CHRF_ORDER = 100


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose choices come from a function, called only when they are needed."""

    def __init__(self, load, case_sensitive: bool = True) -> None:
        self._load = load
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._load())


def _tokenizers() -> tuple[str, ...]:
    from ..scoring.metrics import tokenizer_names

    return tokenizer_names()


def _smooth_methods() -> tuple[str, ...]:
    from sacrebleu.metrics import BLEU

    return tuple(BLEU.SMOOTH_DEFAULTS)


def _parse_metrics(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from ..scoring.metrics import METRICS

    names = tuple(v.strip().lower() for v in value.split(",") if v.strip())
    for name in names:
        if name not in METRICS:
            raise click.BadParameter(f"{name!r} is not one of {', '.join(METRICS)}.")
    if not names or len(set(names)) != len(names):
        raise click.BadParameter(f"give each of {', '.join(METRICS)} at most once, comma-separated.")
    return names


def _smooth_value(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # floor and add-k add the value to n-gram counts: a negative count has no logarithm (sacreBLEU stops
    # with "math domain error"), and nan or inf give no score
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not a finite number >= 0.")
    return value


def bleu_options(f):
    """BLEU's options (sacreBLEU's names), shared by ``evaluate`` and ``bleu``."""
    f = click.option(
        "--width",
        "-w",
        type=click.IntRange(0, 16),
        default=1,
        show_default=True,
        help="Decimal places of the printed scores (sacreBLEU's --width).",
    )(f)
    f = click.option(
        "--smooth-value",
        "-sv",
        type=float,
        default=None,
        callback=_smooth_value,
        help="BLEU smoothing value (>= 0) for floor (default 0.1) and add-k (default 1).",
    )(f)
    f = click.option(
        "--smooth-method",
        "-s",
        type=LazyChoice(_smooth_methods),
        default="exp",
        show_default=True,
        help="BLEU smoothing (Chen and Cherry, 2014).",
    )(f)
    f = click.option("--lowercase", "-lc", is_flag=True, help="Case-insensitive BLEU.")(f)
    f = click.option(
        "--tokenize",
        "-tok",
        type=LazyChoice(_tokenizers),
        default="13a",
        show_default=True,
        help="BLEU tokenizer, from sacreBLEU's table; 13a is mteval-v13a's (the WMT standard).",
    )(f)
    return f


def _options(metrics: tuple[str, ...], kw: dict):
    from ..scoring.metrics import ScoreOptions

    return ScoreOptions(metrics=metrics, **kw)


@click.command("evaluate")
@click.argument("files", nargs=-1, required=True, metavar="HYP REF...")
@click.option(
    "--metrics",
    "-m",
    default="bleu",
    show_default=True,
    callback=_parse_metrics,
    help="Comma-separated metrics: bleu, chrf, ter (sacreBLEU's -m). --worst ranks by the first.",
)
@bleu_options
@click.option(
    "--chrf-char-order",
    "-cc",
    type=click.IntRange(1, MAX_CHRF_ORDER),
    default=6,
    show_default=True,
    help="chrF character n-gram order.",
)
@click.option(
    "--chrf-word-order",
    "-cw",
    type=click.IntRange(0, MAX_CHRF_ORDER),
    default=0,
    show_default=True,
    help="chrF word n-gram order; 2 gives chrF++.",
)
@click.option(
    "--chrf-beta",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="chrF weight of recall against precision.",
)
@click.option("--chrf-lowercase", is_flag=True, help="Case-insensitive chrF.")
@click.option("--ter-case-sensitive", is_flag=True, help="Case-sensitive TER (TERCOM lowercases).")
@click.option("--ter-normalized", is_flag=True, help="TERCOM's normalisation and tokenisation for TER.")
@click.option("--ter-no-punct", is_flag=True, help="Remove punctuation before TER.")
@click.option("--ter-asian-support", is_flag=True, help="Split Asian characters for TER.")
@click.option("--sentence-level", "-sl", is_flag=True, help="Print a score for every sentence instead.")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format; json is sacreBLEU's JSON.",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    metavar="OTHER_HYP",
    help="A baseline system's output: test HYP against it for significance (repeatable).",
)
@click.option(
    "--paired-bs",
    is_flag=True,
    help="Significance by paired bootstrap resampling, with 95% CIs (default).",
)
@click.option("--paired-ar", is_flag=True, help="Significance by approximate randomization.")
@click.option(
    "--paired-bs-n",
    type=click.IntRange(1, MAX_PAIRED_N),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for --paired-bs (memory grows with resamples x sentences).",
)
@click.option(
    "--paired-ar-n",
    type=click.IntRange(1, MAX_PAIRED_N),
    default=10000,
    show_default=True,
    help="Trials for --paired-ar.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=1),
    default=12345,
    show_default=True,
    help="Random seed of the significance tests (sacreBLEU's $SACREBLEU_SEED).",
)
@click.option(
    "--worst",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Also show the N sentences with the worst sentence score.",
)
@click.option(
    "--source",
    "source_path",
    default=None,
    metavar="SRC",
    help="Source file: shown by --worst, and translated by --checkpoint.",
)
@click.option(
    "--checkpoint",
    default=None,
    metavar="DIR",
    help="Translate --source with this trained model and score the translation (no HYP then).",
)
def evaluate(files, metrics, fmt, baselines, paired_bs, paired_ar, paired_bs_n, paired_ar_n, seed, worst,
             source_path, checkpoint, sentence_level, width, **metric_kw) -> None:  # fmt: skip
    """Score HYP against one or more REF files with sacreBLEU, printing each score with its signature.

    HYP may be - to read standard input. With --checkpoint DIR --source SRC give only REF files:
    the model's translation of SRC is scored.
    """
    from ..errors import UserError
    from ..inference.translator import translate_source
    from ..scoring import metrics as sm
    from ..scoring import significance as sig
    from ..scoring import worst as sw

    if paired_bs and paired_ar:
        raise UserError("--paired-bs and --paired-ar are two different tests; pass one of them")
    paired = "ar" if paired_ar else "bs"
    options = _options(metrics, metric_kw)
    if checkpoint is not None:
        if source_path is None:
            raise UserError("--checkpoint needs --source SRC: the file to translate")
        hyp_path, ref_paths = None, list(files)
    else:
        if len(files) < 2:
            raise UserError("give HYP and at least one REF file (or --checkpoint DIR --source SRC and REF)")
        hyp_path, ref_paths = files[0], list(files[1:])
    if sm.STDIN in ref_paths + list(baselines) + [source_path]:
        raise UserError("only HYP may be - (standard input)")
    if sentence_level and baselines:
        raise UserError("significance tests need corpus scores; drop --sentence-level or --baseline")
    ctx = click.get_current_context()
    paired_options = ("paired_bs", "paired_ar", "paired_bs_n", "paired_ar_n")
    asked = [f"--{name.replace('_', '-')}" for name in paired_options
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]  # fmt: skip
    if asked and not baselines:  # as in sacreBLEU: a paired test needs a second system
        raise UserError(
            f"{' and '.join(asked)}: a paired significance test compares HYP with a baseline system; "
            "add --baseline OTHER_HYP"
        )

    source = sm.read_lines(source_path, "source") if source_path else None
    refs = [sm.read_lines(p, "reference") for p in ref_paths]
    if hyp_path is None:
        sm.check_aligned([source, *refs])
        hyp = sm.TextFile(
            "hypothesis", f"translation of {source.name}", translate_source(checkpoint, source.lines)
        )
    else:
        hyp = sm.read_lines(hyp_path, "hypothesis")
    others = [sm.read_lines(p, "baseline") for p in baselines]
    sm.check_aligned([hyp, *refs, *([source] if source else []), *others])
    references = [r.lines for r in refs]

    blocks: list[str] = []
    document: dict = {}
    if sentence_level:
        rows = sm.sentence_scores(hyp.lines, references, options)
        blocks.append("\n".join(r.text(width) for row in rows for r in row))
        document["sentences"] = [[json.loads(r.json(width)) for r in row] for row in rows]
    else:
        results = sm.corpus_scores(hyp.lines, references, options)
        blocks.append(sm.format_scores_text(results, width))
        document["scores"] = [json.loads(r.json(width)) for r in results]
    n_samples = paired_bs_n if paired == "bs" else paired_ar_n
    for other in others:
        report = sig.paired_test(
            (other.name, other.lines), [(hyp.name, hyp.lines)], references, options, paired, n_samples, seed
        )
        blocks.append(sig.format_paired_text(report, width))
        document.setdefault("paired", []).append(report.to_dict())
    if worst is not None:
        reports = sw.worst_sentences(hyp.lines, references, options, worst, source.lines if source else None)
        blocks.append(sw.format_worst_text(reports, len(hyp.lines), width))
        document["worst"] = [r.to_dict(width) for r in reports]

    if fmt == "text":
        click.echo("\n\n".join(blocks))
    elif set(document) == {"scores"}:
        click.echo(sm.format_scores_json(results, width))  # exactly sacreBLEU's JSON
    else:
        click.echo(sw.to_json(document))


@click.command("bleu")
@click.argument("hyp", metavar="HYP")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@bleu_options
def bleu(hyp, refs, width, **metric_kw) -> None:
    """Print corpus BLEU of HYP (- for standard input) against REF files: sacreBLEU's BLEU line."""
    from ..scoring import metrics as sm

    hyp_file = sm.read_lines(hyp, "hypothesis")
    ref_files = [sm.read_lines(p, "reference") for p in refs]
    sm.check_aligned([hyp_file, *ref_files])
    (result,) = sm.corpus_scores(hyp_file.lines, [r.lines for r in ref_files], _options(("bleu",), metric_kw))
    click.echo(result.text(width))
