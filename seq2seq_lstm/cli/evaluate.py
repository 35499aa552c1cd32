"""``s2s evaluate`` and ``s2s bleu``: sacreBLEU's scores, signatures and significance tests.

Options carry sacreBLEU's own names. sacrebleu and our evaluate module are imported inside the
commands (and inside the choice lists, which are read only when an option is parsed or help is shown),
so ``s2s --help`` stays fast.
"""

from __future__ import annotations

import math

import click

from .options import LazyChoice, checkpoint_option, encoding_errors_option

# the library's bounds (seq2seq_lstm.scoring.metrics), repeated here so that --help need not import sacrebleu
MAX_PAIRED_N = 100_000
MAX_CHRF_ORDER = 100


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
@checkpoint_option(
    short=False,  # -m is --metrics here, as in sacreBLEU
    required=False,
    help="Translate --source with this trained model and score the translation (no HYP then).",
)
@encoding_errors_option
def evaluate(files, metrics, fmt, baselines, paired_bs, paired_ar, paired_bs_n, paired_ar_n, seed, worst,
             source_path, checkpoint, sentence_level, width, encoding_errors,
             **metric_kw) -> None:  # fmt: skip
    """Score HYP against one or more REF files with sacreBLEU, printing each score with its signature.

    HYP may be - to read standard input. With --checkpoint DIR --source SRC give only REF files:
    the model's translation of SRC is scored.
    """
    from ..errors import UserError
    from ..scoring.report import PairedOptions, build_report

    if paired_bs and paired_ar:
        raise UserError("--paired-bs and --paired-ar are two different tests; pass one of them")
    if sentence_level and baselines:
        raise UserError("significance tests need corpus scores; drop --sentence-level or --baseline")
    _check_paired_options(baselines)
    test = "ar" if paired_ar else "bs"
    paired = PairedOptions(test, paired_bs_n if test == "bs" else paired_ar_n, seed)
    options = _options(metrics, metric_kw)  # checked before the files are read (or translated)
    hyp, refs, source, others = _read_inputs(files, baselines, source_path, checkpoint, encoding_errors)
    report = build_report(
        hyp, refs, options, sentence_level=sentence_level, baselines=others,
        paired=paired, worst=worst, source=source, width=width,
    )  # fmt: skip
    click.echo(report.text() if fmt == "text" else report.json())


def _check_paired_options(baselines: tuple[str, ...]) -> None:
    """A paired test option given without --baseline is refused, as sacreBLEU refuses it."""
    from ..errors import UserError

    ctx = click.get_current_context()
    paired_options = ("paired_bs", "paired_ar", "paired_bs_n", "paired_ar_n")
    asked = [f"--{name.replace('_', '-')}" for name in paired_options
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]  # fmt: skip
    if asked and not baselines:  # a paired test compares two systems
        raise UserError(
            f"{' and '.join(asked)}: a paired significance test compares HYP with a baseline system; "
            "add --baseline OTHER_HYP"
        )


def _read_inputs(files, baselines, source_path, checkpoint, errors: str):
    """``(hyp, refs, source or None, baselines)`` as aligned :class:`TextFile` s; with ``checkpoint``
    HYP is the model's translation of the source."""
    from ..errors import UserError
    from ..inference.translator import translate_source
    from ..scoring import metrics as sm

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
    source = sm.read_lines(source_path, "source", errors) if source_path else None
    refs = [sm.read_lines(p, "reference", errors) for p in ref_paths]
    if hyp_path is None:
        sm.check_aligned([source, *refs])
        lines = translate_source(checkpoint, source.lines)
        hyp = sm.TextFile("hypothesis", f"translation of {source.name}", lines)
    else:
        hyp = sm.read_lines(hyp_path, "hypothesis", errors)
    others = [sm.read_lines(p, "baseline", errors) for p in baselines]
    sm.check_aligned([hyp, *refs, *([source] if source else []), *others])
    return hyp, refs, source, others


@click.command("bleu")
@click.argument("hyp", metavar="HYP")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@bleu_options
@encoding_errors_option
def bleu(hyp, refs, width, encoding_errors, **metric_kw) -> None:
    """Print corpus BLEU of HYP (- for standard input) against REF files: sacreBLEU's BLEU line."""
    from ..scoring import metrics as sm

    hyp_file = sm.read_lines(hyp, "hypothesis", encoding_errors)
    ref_files = [sm.read_lines(p, "reference", encoding_errors) for p in refs]
    sm.check_aligned([hyp_file, *ref_files])
    (result,) = sm.corpus_scores(hyp_file.lines, [r.lines for r in ref_files], _options(("bleu",), metric_kw))
    click.echo(result.text(width))
