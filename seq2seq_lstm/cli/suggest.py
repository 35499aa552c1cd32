"""``s2s suggest`` (next words for typed text) and ``s2s suggest-eval`` (keystroke metrics)."""

from __future__ import annotations

import json
import sys

import click

from ..suggest.adapt import ADAPT_CHOICES
from .options import (
    PathType,
    check_engine,
    checkpoint_option,
    dtype_option,
    encoding_errors_option,
    engine_option,
)

FORMATS = ("text", "json")
ADAPT_OPTION = click.option(
    "--adapt-option",
    "adapt_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the adaptation method, e.g. weight=0.2 for the cache (docs/suggestion.md); "
    "repeatable.",
)
MAX_BOOTSTRAP = 100_000  # suggest_eval.MAX_BOOTSTRAP, repeated so that --help need not import torch
DTYPE_OPTION = dtype_option(
    "Weight type: bfloat16 or int8 (dynamic quantization) answer faster; probabilities change a little."
)


def _adapt_options(pairs: tuple[str, ...]) -> dict[str, float]:
    """``--adapt-option KEY=VALUE`` pairs as numbers; a malformed one is a one-line error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise click.ClickException(f"--adapt-option {pair!r}: give KEY=NUMBER, e.g. weight=0.2")
    return out


def _print_suggestions(text: str, suggestions: list, fmt: str) -> None:
    if fmt == "json":
        items = [{"word": s.word, "prob": round(s.prob, 6)} for s in suggestions]
        click.echo(json.dumps({"text": text, "suggestions": items}, ensure_ascii=False))
    elif suggestions:
        click.echo("\n".join(f"{s.word}\t{s.prob:.4f}" for s in suggestions))
    else:
        click.echo("(no suggestions)")


@click.command()
@checkpoint_option(
    multiple=True,
    help="Run directory of a trained language model (or translation model, with --source); repeat the "
    "option for an ensemble.",
)
@click.argument("text", required=False)
@click.option(
    "-k",
    type=click.IntRange(min=1),
    default=None,
    help="Suggestions to show [default: generation.suggest_k].",
)
@click.option(
    "--source", default=None, help="Source sentence whose translation is being typed (translation models)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: one 'word<TAB>probability' a line; json: one JSON object per input.",
)
@engine_option
@DTYPE_OPTION
@encoding_errors_option
@click.option(
    "--interactive/--no-interactive",
    default=None,
    help="Read one text a line and show suggestions after each [default: when TEXT is not given "
    "and stdin is a terminal]. End a line with a space for the next word.",
)
@click.option(
    "--user-model",
    type=PathType(dir_okay=False),
    default=None,
    help="JSON file of what the suggestions learned from your words (created if missing, updated after "
    "each text): words you use come back. Nothing else is written.",
)
@click.option("--forget", is_flag=True, help="Erase the --user-model file first (alone: erase it and exit).")
@ADAPT_OPTION
def suggest(
    checkpoints: tuple[str, ...],
    text: str | None,
    k: int | None,
    source: str | None,
    fmt: str,
    engine: str,
    dtype: str,
    encoding_errors: str,
    interactive: bool | None,
    user_model: str | None,
    forget: bool,
    adapt_options: tuple[str, ...],
) -> None:
    """Suggest the next word for TEXT, or complete the word TEXT ends in.

    Without TEXT, every line read from stdin is a text to suggest for (interactively at a terminal).
    With --user-model, the words of each text that a space or punctuation ends are learned and saved.
    """
    import torch

    from ..files import check_text, read_lines
    from ..suggest.user_model import UserModel

    for value, name in ((text, "TEXT"), (source, "--source")):
        if value is not None:
            check_text(value, name)
    if (forget or adapt_options) and not user_model:
        raise click.ClickException(f"{'--forget' if forget else '--adapt-option'} needs --user-model FILE")
    options = _adapt_options(adapt_options)
    torch.set_num_threads(1)  # one keystroke is a handful of small steps: threads only add overhead
    suggester = _suggester(checkpoints, engine, dtype)
    user = UserModel(user_model, suggester, options, forget=forget) if user_model else None
    if user and forget and text is None and not interactive:
        click.echo(
            f"{user_model}: {'erased' if user.forgotten else 'no such file, nothing to erase'}", err=True
        )
        return
    session = suggester.session(source, adapter=user.adapter if user else None)
    if text is not None and not interactive:
        _print_suggestions(text, session.suggest(text, k), fmt)
        if user:
            user.save()
        return
    prompt = sys.stdin.isatty() if interactive is None else interactive
    if prompt and fmt == "text":
        click.echo(
            "Type text and press Enter (a trailing space asks for the next word); Ctrl-D ends.", err=True
        )
    for line in read_lines("-", encoding_errors):
        _print_suggestions(line, session.suggest(line, k), fmt)
        if user and prompt:
            user.save()  # after each line: an interrupted session keeps what it learned
    if user:
        user.save()


@click.command("suggest-eval")
@checkpoint_option(
    multiple=True,
    help="Run directory of a trained language model (or translation model, with --sources); repeat the "
    "option for an ensemble.",
)
@click.argument("file", type=PathType(exists=True, dir_okay=False))
@click.option(
    "--sources",
    type=PathType(exists=True, dir_okay=False),
    default=None,
    help="Source sentences, one a line aligned with FILE (translation models).",
)
@click.option(
    "-k",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Suggestions the simulated user sees (top-k accuracy, keystroke savings).",
)
@click.option(
    "--mrr-k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="List length for mean reciprocal rank.",
)
@click.option(
    "--max-sentences",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Score only the first N sentences (0 = all).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(0, MAX_BOOTSTRAP),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the 95% confidence intervals (0 = none).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: a table; json: the metrics with their intervals.",
)
@engine_option
@DTYPE_OPTION
@encoding_errors_option
@click.option(
    "--output",
    "-o",
    type=PathType(dir_okay=False),
    default=None,
    help="Also write the JSON report to this file.",
)
@click.option(
    "--adapt",
    type=click.Choice(ADAPT_CHOICES),
    default="none",
    show_default=True,
    help="Adapt to the text as it is typed: FILE's sentences are typed in order and every metric is "
    "reported without and with adaptation, with paired bootstrap intervals of the difference.",
)
@click.option(
    "--documents",
    is_flag=True,
    help="FILE holds documents: one sentence a line, a blank line between documents; adaptation is "
    "reset between them and the bootstrap resamples documents.",
)
@ADAPT_OPTION
@click.option(
    "--tune",
    default=None,
    metavar="W1,W2,...",
    help="With --adapt cache: keystroke savings on FILE for each starting cache weight, best first "
    "(the network's answers computed once), instead of the report.",
)
def suggest_eval(
    checkpoints: tuple[str, ...],
    file: str,
    sources: str | None,
    k: int,
    mrr_k: int,
    max_sentences: int,
    bootstrap: int,
    fmt: str,
    engine: str,
    dtype: str,
    encoding_errors: str,
    output: str | None,
    adapt: str,
    documents: bool,
    adapt_options: tuple[str, ...],
    tune: str | None,
) -> None:
    """Keystroke evaluation on FILE (one sentence a line): top-1/top-3 accuracy with 0-3 typed
    characters, MRR, keystroke savings and per-word perplexity, with 95% bootstrap intervals.

    With --adapt, FILE is typed in order (with --documents: document by document) with and without
    adaptation."""
    import torch

    from ..files import atomic_write_text, check_output
    from ..suggest.keystrokes import evaluate_suggestions
    from ..suggest.tune import adaptation_report
    from .streams import stdout_is_closed

    if output:
        check_output(output, "-o")
    adapting = adapt != "none" or documents or adapt_options or tune
    if adapting and sources:
        raise click.ClickException(
            "--adapt, --documents and --tune work with language models; drop --sources"
        )
    if tune and adapt != "cache":
        raise click.ClickException("--tune tunes the cache's weight: give --adapt cache")
    options = _adapt_options(adapt_options)
    sentences, source_lines = _sentences(file, sources, max_sentences, encoding_errors)
    torch.set_num_threads(1)
    suggester = _suggester(checkpoints, engine, dtype)
    if tune:
        _tune(suggester, _documents(sentences, documents), options, tune, k)
        return
    if adapting:
        docs = _documents(sentences, documents)
        report = adaptation_report(suggester, docs, adapt, options, k=k, mrr_k=mrr_k, bootstrap=bootstrap)
    else:
        report = evaluate_suggestions(
            suggester, sentences, source_lines, k=k, mrr_k=mrr_k, bootstrap=bootstrap
        )
    data = report.to_dict() | {"checkpoints": list(checkpoints), "file": file}
    if adapting:
        data["adapt_options"] = options
    if output:
        atomic_write_text(output, json.dumps(data, indent=2) + "\n")
        if stdout_is_closed():
            return  # the report is in the file; the table has nowhere to go and is not missed
    click.echo(json.dumps(data, indent=2) if fmt == "json" else report.format_table())


def _suggester(checkpoints: tuple[str, ...], engine: str, dtype: str):
    """The Suggester of ``--engine``: run directories (torch) or one export folder (onnx, one thread)."""
    from ..suggest.suggester import Suggester

    check_engine(engine, "cpu", dtype, len(checkpoints))
    if engine == "onnx":
        return Suggester.from_export(checkpoints[0], threads=1)
    return Suggester.from_checkpoint(list(checkpoints), dtype=dtype)


def _documents(lines: list[str], documents: bool) -> list[list[str]]:
    """FILE as documents (``--documents``: split at blank lines) or as one document."""
    from ..suggest.keystrokes import split_documents

    return split_documents(lines) if documents else [[line for line in lines if line.strip()]]


def _tune(suggester, docs, options: dict, tune: str, k: int) -> None:
    """``--tune``: keystroke savings for each starting cache weight, best first."""
    from ..suggest.tune import tune_cache_weight

    try:
        weights = [float(w) for w in tune.split(",")]
    except ValueError:
        raise click.ClickException(
            f"--tune {tune!r}: give comma-separated weights, e.g. 0.05,0.1,0.2"
        ) from None
    for settings, savings in tune_cache_weight(suggester, docs, options, weights, k=k):
        click.echo(f"weight {settings.weight:g}\tkeystroke_savings {100 * savings:.2f}%")


def _sentences(
    file: str, sources: str | None, max_sentences: int, errors: str
) -> tuple[list[str], list[str] | None]:
    """The sentences to score and their sources (translation models), each file checked."""
    from ..errors import UserError
    from ..files import read_lines
    from ..suggest.words import word_spans

    sentences = list(read_lines(file, errors))
    if not any(word_spans(line) for line in sentences):
        raise UserError(
            f"{file} has no words to score (an empty file, blank lines or only punctuation); "
            "give one sentence a line"
        )
    source_lines = list(read_lines(sources, errors)) if sources else None
    if source_lines is not None and len(source_lines) != len(sentences):
        raise UserError(
            f"{sources} has {len(source_lines)} lines but {file} has {len(sentences)}; "
            "give one source per sentence"
        )
    if max_sentences:
        sentences = sentences[:max_sentences]
        source_lines = source_lines[:max_sentences] if source_lines is not None else None
        if not any(word_spans(line) for line in sentences):
            raise UserError(f"the first {max_sentences} lines of {file} have no words; raise --max-sentences")
    return sentences, source_lines
