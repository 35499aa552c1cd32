"""``s2s suggest`` (next words for typed text) and ``s2s suggest-eval`` (keystroke metrics)."""

from __future__ import annotations

import json
import sys

import click

from .options import (
    PathType,
    check_engine,
    checkpoint_option,
    dtype_option,
    encoding_errors_option,
    engine_option,
)

FORMATS = ("text", "json")
MAX_BOOTSTRAP = 100_000  # suggest_eval.MAX_BOOTSTRAP, repeated so that --help need not import torch
DTYPE_OPTION = dtype_option(
    "Weight type: bfloat16 or int8 (dynamic quantization) answer faster; probabilities change a little."
)


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
) -> None:
    """Suggest the next word for TEXT, or complete the word TEXT ends in.

    Without TEXT, every line read from stdin is a text to suggest for (interactively at a terminal).
    """
    import torch

    from ..files import check_text, read_lines

    for value, name in ((text, "TEXT"), (source, "--source")):
        if value is not None:
            check_text(value, name)
    torch.set_num_threads(1)  # one keystroke is a handful of small steps: threads only add overhead
    suggester = _suggester(checkpoints, engine, dtype)
    session = suggester.session(source)
    if text is not None and not interactive:
        _print_suggestions(text, session.suggest(text, k), fmt)
        return
    prompt = sys.stdin.isatty() if interactive is None else interactive
    if prompt and fmt == "text":
        click.echo(
            "Type text and press Enter (a trailing space asks for the next word); Ctrl-D ends.", err=True
        )
    for line in read_lines("-", encoding_errors):
        _print_suggestions(line, session.suggest(line, k), fmt)


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
) -> None:
    """Keystroke evaluation on FILE (one sentence a line): top-1/top-3 accuracy with 0-3 typed
    characters, MRR, keystroke savings and per-word perplexity, with 95% bootstrap intervals."""
    import torch

    from ..files import atomic_write_text, check_output
    from ..suggest.keystrokes import evaluate_suggestions
    from .streams import stdout_is_closed

    if output:
        check_output(output, "-o")
    sentences, source_lines = _sentences(file, sources, max_sentences, encoding_errors)
    torch.set_num_threads(1)
    suggester = _suggester(checkpoints, engine, dtype)
    report = evaluate_suggestions(suggester, sentences, source_lines, k=k, mrr_k=mrr_k, bootstrap=bootstrap)
    data = report.to_dict() | {"checkpoints": list(checkpoints), "file": file}
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
