"""What ``s2s translate`` reads and writes: blocks of input lines, ``SOURCE<TAB>PREFIX`` lines, and
translations as text, Moses n-best lists or JSON lines.

Input is read in blocks so that a huge file is sorted and batched a block at a time (memory stays
bounded) while the output keeps the input's order; a terminal is read one line a block.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import UserError
from ..files import STDIN, read_lines

if TYPE_CHECKING:
    from ..decoding.search import Hypothesis

FORMATS = ("text", "jsonl")


def input_name(path: str | os.PathLike) -> str:
    """How messages name an input: its path, or ``stdin``."""
    return "stdin" if str(path) == STDIN else str(path)


def read_blocks(
    path: str | os.PathLike, size: int, encoding_errors: str = "strict"
) -> Iterator[tuple[int, list[str]]]:
    """``(1-based number of the block's first line, its lines)`` for blocks of ``size`` lines of a
    UTF-8 file (``-``: standard input); invalid UTF-8 is one error naming the line and column."""
    block: list[str] = []
    start = 1
    for number, line in enumerate(read_lines(path, encoding_errors, name=input_name(path)), start=1):
        block.append(line)
        if len(block) >= size:
            yield start, block
            start, block = number + 1, []
    if block:
        yield start, block


def split_prefixes(
    lines: Sequence[str], prefix: str | None, prefix_tab: bool, name: str, start: int
) -> tuple[list[str], list[str | None] | None]:
    """Sources and forced target prefixes (None: no prefix) of a block whose first line is line
    ``start`` of input ``name``: every line gets ``prefix``, or with ``prefix_tab`` each line is
    ``SOURCE<TAB>PREFIX`` (``SOURCE<TAB>``: no prefix; an empty line stays an empty translation)."""
    if not prefix_tab:
        return list(lines), None if prefix is None else [prefix] * len(lines)
    parts = [line.split("\t", 1) for line in lines]
    missing = next((start + i for i, p in enumerate(parts) if len(p) == 1 and p[0]), None)
    if missing is not None:
        raise UserError(
            f"{name} line {missing}: no tab; --prefix-tab expects SOURCE<TAB>PREFIX "
            "(SOURCE<TAB> for no prefix)"
        )
    return [p[0] for p in parts], [p[1] if len(p) > 1 else None for p in parts]


def format_translation(number: int, source: str, hyps: Sequence[Hypothesis], fmt: str, n_best: int) -> str:
    """The output of input line ``number`` (1-based): with ``fmt="text"`` the best translation, or
    with ``n_best`` > 1 a Moses n-best list (``N ||| text ||| score``, N 0-based); with ``"jsonl"``
    one JSON object with every hypothesis, its scores, pieces, alignment and attention."""
    if fmt == "jsonl":
        return json.dumps(_record(number, source, hyps), ensure_ascii=False) + "\n"
    if fmt != "text":
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if n_best == 1:
        return hyps[0].text + "\n"
    return "".join(f"{number - 1} ||| {h.text} ||| {h.score:.4f}\n" for h in hyps)


def _record(number: int, source: str, hyps: Sequence[Hypothesis]) -> dict:
    best = hyps[0]
    return {
        "line": number,
        "source": source,
        "translation": best.text,
        "score": best.score,
        "source_pieces": best.source_pieces,
        "nbest": [
            {
                "text": h.text,
                "score": h.score,
                "pieces": h.pieces,
                "ids": h.tokens,
                "token_log_probs": [round(x, 6) for x in h.token_log_probs],
                "alignment": h.alignment,
                "attention": None
                if h.attention is None
                else [[round(x, 4) for x in row] for row in h.attention.tolist()],
            }
            for h in hyps
        ],
    }
