"""Options that several commands share, declared once so they read and behave the same everywhere.

Short flags have one meaning across ``s2s``: ``-c`` is ``--config``, ``-m`` is ``--checkpoint`` (the
model run). ``-c`` for a checkpoint (translate, suggest, suggest-eval, shortlist) still works for one
release, with a deprecation line on stderr. ``evaluate`` and ``bleu`` keep sacreBLEU's own short flags
(``-m`` is ``--metrics`` there, as in sacreBLEU), so their ``--checkpoint`` has no short flag.

Choices are read lazily and nothing heavy is imported here: ``s2s --help`` must start fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..files import ENCODING_ERRORS

F = TypeVar("F", bound=Callable[..., Any])

DEPRECATED_CHECKPOINT_FLAG = "-c"
DEPRECATION_LINE = "-c for --checkpoint is deprecated; use -m"


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose choices come from a function, called only when they are needed."""

    def __init__(self, load: Callable[[], Any], case_sensitive: bool = True) -> None:
        self._load = load
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._load())


class PathType(click.Path):
    """``click.Path`` whose refusals (a file where a folder belongs, the reverse, a missing input)
    are one ``Error: ...`` line with exit code 1, like every other bad input, instead of a usage
    error of three lines with exit code 2."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as e:
            name = _param_name(param)
            path = os.fsdecode(value)
            if self.exists and not os.path.lexists(path):
                raise click.ClickException(f"{name} {path} does not exist") from None
            if not self.file_okay and os.path.isfile(path):
                raise click.ClickException(f"{name} {path} is a file; give a directory") from None
            if not self.dir_okay and os.path.isdir(path):
                raise click.ClickException(f"{name} {path} is a directory; give a file") from None
            raise click.ClickException(f"{name}: {e.message}") from None


def _param_name(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return (param.human_readable_name if param else "path").upper()


# --------------------------------------------------------------------------------------------------
# The model run


class CheckpointOption(click.Option):
    """``--checkpoint/-m``; the deprecated ``-c`` spelling is parsed as a hidden option of its own
    (:func:`checkpoint_option`) and merged here, with one deprecation line on stderr."""

    def handle_parse_result(self, ctx: click.Context, opts: Any, args: list[str]) -> Any:
        old = opts.pop(_DEPRECATED_NAME, None)
        if old:
            click.echo(DEPRECATION_LINE, err=True)
            if self.multiple:
                opts[self.name] = [*opts.get(self.name, []), *old]
            elif self.name not in opts:
                opts[self.name] = old
        return super().handle_parse_result(ctx, opts, args)


_DEPRECATED_NAME = "deprecated_checkpoint_flag"


def checkpoint_option(
    *, multiple: bool = False, required: bool = True, short: bool = True, help: str | None = None
) -> Callable[[F], F]:
    """``--checkpoint``/``-m``: a run directory written by ``s2s train`` (or its model file), as
    ``checkpoints`` (a tuple) when ``multiple`` (an ensemble), else ``checkpoint``. ``short=False``
    leaves out the short flags (a command whose ``-m`` means something else)."""
    name = "checkpoints" if multiple else "checkpoint"
    help = help or "Run directory written by `s2s train` (or its model.safetensors / a .ckpt)." + (
        " Repeat for an ensemble." if multiple else ""
    )
    flags = ("--checkpoint", "-m") if short else ("--checkpoint",)

    def decorate(f: F) -> F:
        f = click.option(*flags, name, cls=CheckpointOption, multiple=multiple, required=required,
                         type=PathType(), metavar="RUN", help=help)(f)  # fmt: skip
        if short:
            f = click.option(DEPRECATED_CHECKPOINT_FLAG, _DEPRECATED_NAME, multiple=multiple,
                             type=PathType(), hidden=True, expose_value=False,
                             help="Deprecated spelling of -m.")(f)  # fmt: skip
        return f

    return decorate


# --------------------------------------------------------------------------------------------------
# Config, weights, device, threads, input text


def config_options(help: str, set_example: str) -> Callable[[F], F]:
    """``--config/-c FILE`` and repeatable ``--set KEY=VALUE``, as ``config_path`` and ``overrides``."""

    def decorate(f: F) -> F:
        example = f"Override one config value, e.g. --set {set_example} (repeatable)."
        f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=example)(f)
        return click.option("--config", "-c", "config_path", type=PathType(dir_okay=False), help=help)(f)

    return decorate


def _dtypes() -> tuple[str, ...]:
    from ..config import DTYPES  # not quantize's import: that loads torch, and --help must start fast

    return DTYPES


def dtype_option(help: str) -> Callable[[F], F]:
    """``--dtype``: the weight type (float32, bfloat16, int8)."""
    return click.option("--dtype", type=LazyChoice(_dtypes), default="float32", show_default=True, help=help)


device_option = click.option(
    "--device", default="cpu", show_default=True, help="Torch device: cpu, cuda, cuda:1, ..."
)
ENGINES = ("torch", "onnx")  # how the model runs: seq2seq_lstm.model (PyTorch) or seq2seq_lstm.export.engine
engine_option = click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="torch",
    show_default=True,
    help="torch: -m is a run directory; onnx: -m is a folder written by `s2s export` (ONNX Runtime, CPU).",
)


def check_engine(engine: str, device: str, dtype: str, members: int = 1) -> None:
    """Refuse what the ONNX engine cannot do, in one line: ensembles (``members`` > 1), GPUs, a
    --dtype (an export's precision is chosen when exporting)."""
    from ..errors import UserError

    if engine != "onnx":
        return
    if members != 1:
        raise UserError("--engine onnx takes one export folder (-m once); ensembles need --engine torch")
    if device != "cpu":
        raise UserError("--engine onnx runs on the CPU; use --device cpu (or --engine torch)")
    if dtype != "float32":
        raise UserError(f"--dtype {dtype} applies to --engine torch; export with --int8 for int8 ONNX graphs")


threads_option = click.option(
    "--threads", type=click.IntRange(0, 1024), default=0, help="CPU threads for torch (0 = torch's default)."
)


def encoding_errors_option(f: F) -> F:
    """``--encoding-errors strict|replace``: what invalid UTF-8 in the input text does."""
    return click.option(
        "--encoding-errors",
        type=click.Choice(ENCODING_ERRORS),
        default="strict",
        show_default=True,
        help="Invalid UTF-8 in the input: strict stops with its file, line and column; replace reads "
        "it as U+FFFD.",
    )(f)


def set_threads(threads: int) -> None:
    """Apply ``--threads`` (0 keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
