"""Decoders for testing the searches without a trained model (reused by translate/suggest tests).

- ``ScriptedDecoder``: next-token probabilities written out as a table keyed by the tokens produced so
  far, so every beam and score can be worked out on paper.
- ``ToyDecoder``: a fixed random GRU with dot attention over a random source memory (or none: a language
  model), with a reorderable state; deterministic per row, for invariant tests over many sentences.

Both follow the search's protocols (seq2seq_lstm.decoding.protocol): ``step(tokens (N,), state) ->
(log_probs (N, V), state, attn (N, S) | None)``, and a state with ``batch_size``, ``reorder`` and
``expand_beams`` (here plain reorders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the tokenizer's special ids


@dataclass(frozen=True)
class HistoryState:
    """Tokens each row has received, BOS first: (N, t)."""

    history: Tensor

    @property
    def batch_size(self) -> int:
        return self.history.size(0)

    def reorder(self, index: Tensor, same_source: bool = False) -> HistoryState:
        return HistoryState(self.history.index_select(0, index))

    def expand_beams(self, index: Tensor, beams: int) -> HistoryState:
        return self.reorder(index)


class ScriptedDecoder:
    """p(next | tokens so far) from ``table``: {tuple of produced tokens: {token: probability}}.

    Tokens missing from a row's entry have probability 0 (log-prob -inf); a history missing from the
    table gives EOS probability 1 (only paths with probability 0 reach one).
    """

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int = 6) -> None:
        self.table, self.vocab = table, vocab

    def start(self, batch_size: int) -> HistoryState:
        return HistoryState(torch.empty(batch_size, 0, dtype=torch.long))

    def step(self, tokens: Tensor, state: HistoryState) -> tuple[Tensor, HistoryState, None]:
        history = torch.cat([state.history, tokens.unsqueeze(1)], dim=1)  # (N, t+1)
        log_probs = torch.full((tokens.size(0), self.vocab), float("-inf"))
        for row, produced in enumerate(history[:, 1:].tolist()):
            for token, p in self.table.get(tuple(produced), {EOS: 1.0}).items():
                log_probs[row, token] = math.log(p)
        return log_probs, HistoryState(history), None


@dataclass(frozen=True)
class ToyState:
    """h (N, H); memory (N, S, H) and mask (N, S) for the seq2seq case, None for the LM case."""

    h: Tensor
    memory: Tensor | None = None
    mask: Tensor | None = None
    steps: int = 0  # tokens read so far (BOS included); the same for every row

    @property
    def batch_size(self) -> int:
        return self.h.size(0)

    def reorder(self, index: Tensor, same_source: bool = False) -> ToyState:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        if same_source:
            return ToyState(pick(self.h), self.memory, self.mask, self.steps)
        return ToyState(pick(self.h), pick(self.memory), pick(self.mask), self.steps)

    def expand_beams(self, index: Tensor, beams: int) -> ToyState:
        return self.reorder(index)


class ToyDecoder(nn.Module):
    """A fixed random decoder: GRU cell over the previous token's embedding, dot attention over a source
    memory (tanh of random source embeddings), output layer over [h; context].

    The EOS logit gets ``eos_bias + eos_slope * step``, so outputs end after a few tokens with varied
    lengths, as a trained model's do; ``unk_bias`` shifts the UNK logit.
    """

    def __init__(
        self,
        vocab: int = 12,
        hidden: int = 16,
        seed: int = 1,
        scale: float = 0.7,
        eos_bias: float = -3.0,
        eos_slope: float = 0.4,
        unk_bias: float = -1.0,
    ) -> None:
        super().__init__()
        self.vocab, self.eos_slope = vocab, eos_slope
        self.embed = nn.Embedding(vocab, hidden)
        self.src_embed = nn.Embedding(vocab, hidden)
        self.cell = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(2 * hidden, vocab)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * scale)
            self.out.bias[EOS] += eos_bias
            self.out.bias[UNK] += unk_bias
            self.out.bias[PAD] = -1e4  # never produced, as in a trained model
            self.out.bias[BOS] = -1e4
        self.eval()

    @torch.no_grad()
    def start(
        self, src: Tensor | None = None, src_lens: Tensor | None = None, batch_size: int = 1
    ) -> ToyState:
        """src (B, S) padded, src_lens (B,) -> state; no source: an LM state for ``batch_size`` rows."""
        if src is None:
            return ToyState(torch.zeros(batch_size, self.cell.hidden_size))
        mask = torch.arange(src.size(1)).unsqueeze(0) < src_lens.unsqueeze(1)  # (B, S)
        memory = torch.tanh(self.src_embed(src)) * mask.unsqueeze(2)  # (B, S, H)
        h = memory.sum(dim=1) / src_lens.unsqueeze(1)  # (B, H) mean of the real positions
        return ToyState(h, memory, mask)

    @torch.no_grad()
    def step(self, tokens: Tensor, state: ToyState) -> tuple[Tensor, ToyState, Tensor | None]:
        h = self.cell(self.embed(tokens), state.h)  # (N, H)
        attn = None
        context = torch.zeros_like(h)
        if state.memory is not None:
            scores = (state.memory * h.unsqueeze(1)).sum(dim=2)  # (N, S) row-wise, no batched matmul
            attn = scores.masked_fill(~state.mask, float("-inf")).softmax(dim=1)
            context = (attn.unsqueeze(2) * state.memory).sum(dim=1)  # (N, H)
        logits = self.out(torch.cat([h, context], dim=1))  # (N, V)
        logits[:, EOS] += self.eos_slope * state.steps
        return logits.log_softmax(dim=1), ToyState(h, state.memory, state.mask, state.steps + 1), attn


class RowCounter:
    """Wraps a decoder and records how many rows each step call received (to see finished rows leave)."""

    def __init__(self, decoder) -> None:
        self.decoder, self.rows_seen = decoder, []

    def step(self, tokens: Tensor, state):
        self.rows_seen.append(tokens.size(0))
        return self.decoder.step(tokens, state)


def random_sources(n: int, vocab: int = 12, min_len: int = 1, max_len: int = 9, seed: int = 0):
    """n random source sentences of content tokens (ids >= 4) with mixed lengths -> list[list[int]]."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator).tolist()
    return [torch.randint(4, vocab, (k,), generator=generator).tolist() for k in lengths]


def pad(sources: list[list[int]]) -> tuple[Tensor, Tensor]:
    """list of id lists -> src (B, S) padded with PAD, src_lens (B,)."""
    lens = torch.tensor([len(s) for s in sources])
    src = torch.full((len(sources), int(lens.max())), PAD, dtype=torch.long)
    for i, s in enumerate(sources):
        src[i, : len(s)] = torch.tensor(s)
    return src, lens
