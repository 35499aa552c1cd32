"""``s2s export``: a trained run as ONNX graphs, tokenizer and manifest (a thin layer over
:func:`seq2seq_lstm.export.exporter.export_run`; the folder's layout is in docs/export.md)."""

from __future__ import annotations

import click

from .options import PathType


@click.command("export")
@click.argument("run", type=PathType())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("onnx", "web")),
    default="onnx",
    show_default=True,
    help="onnx: graphs, tokenizer and manifest; web: the same with a page that suggests words in a "
    "browser (language models; docs/web.md).",
)
@click.option("--out", required=True, type=PathType(), help="New folder to write (must not exist).")
@click.option(
    "--int8", is_flag=True, help="Quantize the weights to int8 (ONNX Runtime dynamic quantization)."
)
def export(run: str, fmt: str, out: str, int8: bool) -> None:
    """Export RUN (a run directory written by `s2s train`) for ONNX Runtime: the graphs (a language
    model's step; a translation model's encoder and decoder step), its SentencePiece model and
    manifest.json. Run it with `--engine onnx -m OUT` (translate, suggest) or any ONNX Runtime."""
    from ..export.exporter import export_run
    from ..files import size_text
    from ..web.build import export_web

    folder = {"onnx": export_run, "web": export_web}[fmt](run, out, int8=int8)
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    click.echo(f"wrote {folder} ({', '.join(sorted(f.name for f in folder.iterdir()))}; {size_text(total)})")
