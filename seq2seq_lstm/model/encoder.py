"""Source encoder: embeddings -> dropout -> stacked (bi)LSTM over packed sequences.

Sutskever et al. (2014) stacked encoder; bidirectional as in Bahdanau et al. (2015), each direction
with half the hidden size so that the memory is (B, S, H) whatever the direction count::

    memory, mask, (h, c) = encoder(src, src_lens)   # (B, S, H), (B, S) bool, (L, B, H) each

Padding never reaches the recurrence: the fused ``nn.LSTM`` runs on packed sequences, and the cell
variants (peephole, CIFG) mask their state updates, so a sentence gets the same memory and final
state alone or in a padded batch. Padded memory positions are zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..vocab import PAD_ID
from .cells import CELLS, run_lstm
from .word_dropout import drop_words

State = tuple[Tensor, Tensor]


@contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """Switch torch's oneDNN (mkldnn) CPU kernels on or off for a block (a process-wide flag)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _merge_directions(state: Tensor, num_layers: int, num_directions: int) -> Tensor:
    """(L * D, B, H/D) as returned by nn.LSTM -> (L, B, H), the directions of a layer side by side."""
    _, B, Hd = state.shape
    state = state.view(num_layers, num_directions, B, Hd).transpose(1, 2)  # (L, B, D, H/D)
    return state.reshape(num_layers, B, num_directions * Hd)  # (L, B, H)


class PackedLSTM(nn.Module):
    """``nn.LSTM`` (fused kernels) over packed sequences: (B, S, E), lengths -> (B, S, H), (h, c)."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool
    ):
        super().__init__()
        self.num_directions = 2 if bidirectional else 1
        self.lstm = nn.LSTM(
            input_size,
            hidden_size // self.num_directions,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )

    def forward(self, x: Tensor, lengths: Tensor, mask: Tensor) -> tuple[Tensor, State]:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if self.training or x.device.type != "cpu":
            out, (h, c) = run_lstm(self.lstm, packed)
        else:
            # Decoding: oneDNN (used for a batch of equal lengths, e.g. one sentence) builds a new LSTM
            # primitive for every new length, which costs more than encoding a short sentence; ATen's
            # own LSTM, which packed batches of mixed lengths use anyway, builds nothing
            with _onednn(False):
                out, (h, c) = run_lstm(self.lstm, packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, S, H)
        L, D = self.lstm.num_layers, self.num_directions
        return out, (_merge_directions(h, L, D), _merge_directions(c, L, D))


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` (B, S, ...) within its length; padding stays at the end."""
    S = x.size(1)
    steps = torch.arange(S, device=x.device).unsqueeze(0)  # (1, S)
    index = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)  # (B, S)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class CellLSTM(nn.Module):
    """Stacked (bi)LSTM built from a cell of ``cells.py``, with the same interface as ``PackedLSTM``.

    Each layer projects its whole input sequence in one GEMM; the time loop adds the recurrent part.
    Updates on padded steps are masked out, so the final state is the one at each sentence's last token.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool,
    ):
        super().__init__()
        self.num_directions = 2 if bidirectional else 1
        Hd = hidden_size // self.num_directions
        sizes = [input_size] + [Hd * self.num_directions] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.ModuleList(CELLS[cell](size, Hd) for _ in range(self.num_directions)) for size in sizes
        )
        self.dropout = dropout

    def _run(self, cell: nn.Module, x: Tensor, steps: list[Tensor]) -> tuple[Tensor, State]:
        """One direction of one layer: x (B, S, I), per-step masks (B, 1) -> outputs (B, S, H/D), (h, c)."""
        gates = cell.input_gates(x)  # (B, S, G*H/D)
        h = c = x.new_zeros(x.size(0), cell.hidden_size)
        outputs = []
        # unbind, not gates[:, t]: the backward of one slice per step would write a zero-filled (B, S, G*H/D)
        # gradient per step and add them all up; unbind's backward stacks the S slices once
        for gates_t, real in zip(gates.unbind(1), steps, strict=True):
            h_t, c_t = cell(None, (h, c), gates_t)
            h, c = torch.where(real, h_t, h), torch.where(real, c_t, c)
            outputs.append(h_t.masked_fill(~real, 0.0))
        return torch.stack(outputs, 1), (h, c)  # (B, S, H/D)

    def forward(self, x: Tensor, lengths: Tensor, mask: Tensor) -> tuple[Tensor, State]:
        steps = list(mask.unsqueeze(-1).unbind(1))  # S x (B, 1)
        hs, cs = [], []
        for layer, directions in enumerate(self.layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)
            outs, h_dirs, c_dirs = [], [], []
            for d, cell in enumerate(directions):
                inp = x if d == 0 else reverse_padded(x, lengths)
                out, (h, c) = self._run(cell, inp, steps)
                outs.append(out if d == 0 else reverse_padded(out, lengths))
                h_dirs.append(h)
                c_dirs.append(c)
            x = torch.cat(outs, -1)  # (B, S, H)
            hs.append(torch.cat(h_dirs, -1))
            cs.append(torch.cat(c_dirs, -1))
        return x, (torch.stack(hs), torch.stack(cs))  # (L, B, H) each


class Encoder(nn.Module):
    """Embeddings -> dropout -> stacked (bi)LSTM (Sutskever et al. 2014; Luong et al. 2015).

    ``word_dropout`` drops whole source tokens in training (:func:`.word_dropout.drop_words`)."""

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        bidirectional: bool = False,
        cell: str = "lstm",
        embedding: nn.Embedding | None = None,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if bidirectional and hidden_size % 2:
            raise ValueError(f"a bidirectional encoder needs an even hidden_size; got {hidden_size}")
        self.embed = (
            embedding if embedding is not None else nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        )
        self.dropout, self.word_dropout = dropout, word_dropout
        self.hidden_size, self.num_layers = hidden_size, num_layers
        if cell == "lstm":
            self.rnn: nn.Module = PackedLSTM(emb_dim, hidden_size, num_layers, dropout, bidirectional)
        else:
            self.rnn = CellLSTM(cell, emb_dim, hidden_size, num_layers, dropout, bidirectional)

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor, State]:
        """src (B, S) long, src_lens (B,) -> memory (B, S, H), mask (B, S) bool, (h, c) (L, B, H) each."""
        S = src.size(1)
        mask = torch.arange(S, device=src.device).unsqueeze(0) < src_lens.to(src.device).unsqueeze(
            1
        )  # (B, S)
        x = drop_words(self.embed(src), self.word_dropout, self.training)  # (B, S, E)
        x = F.dropout(x, self.dropout, self.training)
        memory, state = self.rnn(x, src_lens, mask)
        return memory, mask, state
