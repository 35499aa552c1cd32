"""Attention heat maps: which source pieces each target piece looked at (Bahdanau et al. 2015, fig. 3).

    plot_attention(t.attention, t.source_pieces, t.pieces + ["</s>"], "attn/line-000001.png")

One PNG per sentence, source pieces on the x axis, target pieces (EOS last) on the y axis, darker =
more weight. Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so nothing here
touches the global backend or needs a display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

INCHES_PER_PIECE = 0.28  # cell size; long sentences get a bigger figure, up to MAX_INCHES per side
MIN_INCHES, MAX_INCHES = 3.0, 40.0


def plot_attention(
    attention: Tensor,
    source_pieces: Sequence[str],
    target_pieces: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Write a heat map of ``attention`` (T, S) to ``path`` (PNG, written atomically); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    T, S = attention.shape
    if (T, S) != (len(target_pieces), len(source_pieces)):
        raise ValueError(
            f"attention is {T}x{S} but there are {len(target_pieces)} target and "
            f"{len(source_pieces)} source pieces"
        )
    size = lambda n: min(MAX_INCHES, max(MIN_INCHES, 1.5 + INCHES_PER_PIECE * n))  # noqa: E731
    fig = Figure(figsize=(size(S), size(T)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(attention.float().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), list(source_pieces), rotation=90, fontsize=8)
    ax.set_yticks(range(T), list(target_pieces), fontsize=8)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("target pieces")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
