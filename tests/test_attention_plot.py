"""plot_attention: a PNG whose size follows the sentence lengths, labelled with the pieces, drawn
without pyplot (headless), refusing an attention matrix that does not match the pieces."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
import torch
from matplotlib.figure import Figure

from seq2seq_lstm.inference.attention_plot import plot_attention

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, from the IHDR chunk that follows the 8-byte PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def uniform(T: int, S: int) -> torch.Tensor:
    return torch.full((T, S), 1.0 / S)  # (T, S), rows sum to 1


def pieces(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures plot_attention saves, kept for a look at their axes."""
    figures, savefig = [], Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


# At 100 dpi each side is 1.5 in + 0.28 in per piece, at least 3 in and at most 40 in:
# 1 piece -> 3 in (300 px); 20 -> 7.1 in (710 px); 30 -> 9.9 in (990 px); 150 -> 43.5, capped at 4000 px.
@pytest.mark.parametrize(
    ("T", "S", "size"),
    [(1, 1, (300, 300)), (5, 20, (710, 300)), (30, 2, (300, 990)), (3, 150, (4000, 300))],
)
def test_the_png_grows_with_the_source_and_target_lengths(tmp_path, T, S, size):
    path = tmp_path / "a.png"
    assert plot_attention(uniform(T, S), pieces("s", S), pieces("t", T), path) == path
    assert png_size(path) == size


def test_axes_are_labelled_with_the_pieces_and_show_the_weights(tmp_path, drawn):
    attention = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.9, 0.1]])  # (T=2, S=3)
    source, target = ["▁Hello", "▁world", "!"], ["▁Hola", "</s>"]
    plot_attention(attention, source, target, tmp_path / "a.png", title="line 1: Hola")
    (fig,) = drawn
    ax = fig.axes[0]  # the heat map; fig.axes[1] is its colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == source
    assert [t.get_text() for t in ax.get_yticklabels()] == target
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "source pieces",
        "target pieces",
        "line 1: Hola",
    )
    (image,) = ax.images
    assert image.get_array().tolist() == attention.tolist()  # float32 both ways: exact
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)  # one scale for every sentence
    assert len(fig.axes) == 2


def test_a_one_by_one_attention_is_one_cell(tmp_path, drawn):
    path = plot_attention(torch.ones(1, 1), ["▁x"], ["</s>"], tmp_path / "one.png")
    assert png_size(path) == (300, 300)
    assert drawn[0].axes[0].images[0].get_array().shape == (1, 1)
    assert drawn[0].axes[0].get_title() == ""  # no title given


def test_bfloat16_attention_is_drawn_as_float(tmp_path, drawn):
    attention = torch.tensor([[0.25, 0.75]], dtype=torch.bfloat16)  # exact in bfloat16
    plot_attention(attention, ["a", "b"], ["</s>"], tmp_path / "bf16.png")
    assert drawn[0].axes[0].images[0].get_array().tolist() == [[0.25, 0.75]]


@pytest.mark.parametrize(
    ("shape", "T", "S", "message"),
    [
        ((2, 3), 2, 4, "attention is 2x3 but there are 2 target and 4 source pieces"),
        ((2, 3), 3, 2, "attention is 2x3 but there are 3 target and 2 source pieces"),  # transposed
        ((4, 3), 3, 3, "attention is 4x3 but there are 3 target and 3 source pieces"),  # "</s>" left out
    ],
)
def test_attention_that_does_not_match_the_pieces_is_refused_before_anything_is_written(
    tmp_path, shape, T, S, message
):
    path = tmp_path / "plots" / "a.png"
    with pytest.raises(ValueError) as e:
        plot_attention(torch.rand(shape), pieces("s", S), pieces("t", T), path)
    assert str(e.value) == message
    assert not (tmp_path / "plots").exists()


def test_parent_directories_are_made(tmp_path):
    path = plot_attention(uniform(2, 2), ["a", "b"], ["c", "</s>"], tmp_path / "x" / "y" / "line-000001.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(b"old plot")

    def half_written(self, fname, **kwargs):
        open(fname, "wb").write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="No space left"):
        plot_attention(uniform(1, 2), ["a", "b"], ["</s>"], path)
    assert path.read_bytes() == b"old plot"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


HEADLESS = """
import sys, torch
from seq2seq_lstm.inference.attention_plot import plot_attention
path = plot_attention(torch.full((2, 3), 1 / 3), ["a", "b", "c"], ["x", "</s>"], sys.argv[1])
print(open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n", "matplotlib.pyplot" in sys.modules)
"""


def test_draws_headless_without_pyplot(tmp_path):
    # no display, and an interactive backend asked for: pyplot would try to start it; the Agg canvas does not
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    done = subprocess.run(
        [sys.executable, "-c", HEADLESS, str(tmp_path / "a.png")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]  # a PNG was written; pyplot was never imported
