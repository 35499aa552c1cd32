"""Attentive stacked-LSTM decoder with input feeding (Luong et al. 2015) and its state value.

One step, for layer outputs h_t and memory h_s::

    x_t = [E y_{t-1}; h~_{t-1}]                   input feeding: the previous attentional vector
    h_t = LSTM_L(...LSTM_1(x_t))                  stacked, dropout between layers
    a_t = softmax(score(h_t, h_s)), c_t = a_t . h_s
    h~_t = tanh(W_c [c_t; h_t])                   the attentional vector, fed to the next step
    p(y_t) = softmax(W_s h~_t + b)                 (W_s tied to E with ``tie_output``)

``forward()`` (teacher forcing) and ``step()`` (one token, for search) share ``_recur``/``_attend``/
``_logits``, so both give the same numbers. ``forward()`` does everything that does not depend on the
recurrence for all T steps at once: the embedding lookup, the embedding part of the first layer's
input projection (one GEMM over B*T rows), and the output layer after the loop (one GEMM). When it will
be differentiated on the CPU, the loop's weights are shared over the T steps (``_shared_recur``: cast
once, one weight-gradient product each). Without input feeding the standard LSTM runs as one fused
``nn.LSTM`` call and attention is batched over T.
With ``attention=None`` the decoder is a plain LSTM language model (no source, no input feeding).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..vocab import PAD_ID
from .attention import ATTENTIONS
from .cells import CELLS, Activation, LayerStates, StackedCell, run_lstm
from .shared_weight import SharedLinear, compute_dtype
from .word_dropout import drop_words

# logits per block of rows in Decoder._log_probs (CPU): about one core's L2 cache
LOGIT_BLOCK_BYTES = 2**20
# the decoder's linear layers (Decoder.projections), in the order of a step
PROJECTIONS = ("emb_gates", "attn_out", "out_proj", "generator")


@dataclass
class DecoderState:
    """Everything a decoding step needs, as a value: beam search reorders it with ``reorder``.

    With ``beams`` = K > 1 (``expand_beams``) the rows are K per sentence, adjacent, and the source side
    (memory, mask, keys) keeps one row per sentence, which attention shares among its K beams.
    """

    h: Tensor  # (L, B, H) hidden state per layer
    c: Tensor  # (L, B, H) cell state per layer
    feed: Tensor | None = None  # (B, H) previous attentional vector (input feeding), else None
    # the source side, one row per sentence: B / beams rows
    memory: Tensor | None = None  # (B', S, H) encoder outputs (attention values), None without a source
    mask: Tensor | None = None  # (B', S) bool, True on real source tokens
    keys: Tensor | None = None  # (B', S, H) attention keys, projected once per batch (``project_keys``)
    beams: int = 1  # rows per sentence

    @property
    def batch_size(self) -> int:
        return self.h.size(1)

    @classmethod
    def cat(cls, states: Sequence[DecoderState]) -> DecoderState:
        """The rows of ``states`` one after the other (one row per sentence: no beams)."""
        if any(s.beams != 1 for s in states):
            raise ValueError("cat: states with beams cannot be joined")

        def join(name: str, dim: int) -> Tensor | None:
            parts = [getattr(s, name) for s in states]
            return None if parts[0] is None else torch.cat(parts, dim)

        return cls(h=join("h", 1), c=join("c", 1), feed=join("feed", 0), memory=join("memory", 0),
                   mask=join("mask", 0), keys=join("keys", 0))  # fmt: skip

    def expand_beams(self, index: Tensor, beams: int) -> DecoderState:
        """``reorder(index)`` for ``index`` = each row repeated ``beams`` times, copies adjacent (B rows
        -> B * beams), except that the source side is not copied: beam 5 over 32 sentences then attends
        with 32 (5, S) products instead of 160 (1, S) ones, which reads each sentence's memory once per
        step instead of once per beam, and a finished sentence drops 1 row of it, not 5."""
        if self.beams != 1:
            raise ValueError("expand_beams: the state already has beams")
        rows = torch.arange(self.batch_size, device=index.device).unsqueeze(1)  # (B, 1)
        if index.numel() != self.batch_size * beams or not bool((index.view(-1, beams) == rows).all()):
            raise ValueError("expand_beams: index must repeat each row `beams` times, in order")
        return dataclasses.replace(self.reorder(index, same_source=True), beams=beams)

    def reorder(self, index: Tensor, same_source: bool = False) -> DecoderState:
        """Select (and repeat) batch entries: ``index`` (B',) long -> a state with batch size B'.

        ``same_source``: the caller vouches that every new row i comes from a row with the same source
        sentence as row i (a beam shuffle within each sentence), so the source side (memory, mask,
        keys: the bulk of the state) is kept instead of copied. With ``beams`` > 1, each group of
        ``beams`` new rows must come from one sentence (beam search's reorders do).
        """

        def pick(x: Tensor | None, dim: int, rows: Tensor = index) -> Tensor | None:
            return None if x is None else x.index_select(dim, rows)

        if same_source:
            return dataclasses.replace(self, h=pick(self.h, 1), c=pick(self.c, 1), feed=pick(self.feed, 0))
        src = index  # the source row of each new row, or with beams of each new group of rows
        if self.beams > 1 and self.memory is not None:
            src = index.view(-1, self.beams)[:, 0].div(self.beams, rounding_mode="floor")
        return DecoderState(
            h=pick(self.h, 1),
            c=pick(self.c, 1),
            feed=pick(self.feed, 0),
            memory=pick(self.memory, 0, src),
            mask=pick(self.mask, 0, src),
            keys=pick(self.keys, 0, src),
            beams=self.beams,
        )


class LinearBridge(nn.Module):
    """Decoder initial state from the encoder's final one: h0_l = tanh(W_l h_enc + b_l), likewise for c.

    Layers are aligned from the top: with more decoder than encoder layers, the lower decoder layers
    all start from the encoder's bottom layer.
    """

    def __init__(self, enc_layers: int, dec_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.source_layer = [max(0, layer + enc_layers - dec_layers) for layer in range(dec_layers)]
        self.h_layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(dec_layers))
        self.c_layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(dec_layers))

    def forward(self, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """(L_enc, B, H) each -> (L_dec, B, H) each."""
        h0 = [torch.tanh(lin(h[src])) for lin, src in zip(self.h_layers, self.source_layer, strict=True)]
        c0 = [torch.tanh(lin(c[src])) for lin, src in zip(self.c_layers, self.source_layer, strict=True)]
        return torch.stack(h0), torch.stack(c0)


class ZeroBridge(nn.Module):
    """The decoder starts from zeros and sees the source only through attention."""

    def __init__(self, enc_layers: int, dec_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.dec_layers = dec_layers

    def forward(self, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        zeros = h.new_zeros(self.dec_layers, h.size(1), h.size(2))
        return zeros, zeros


BRIDGES: dict[str, type[nn.Module]] = {"linear": LinearBridge, "zero": ZeroBridge}


class Decoder(nn.Module):
    """Stacked LSTM decoder with attention, input feeding and an attentional layer (Luong et al. 2015)."""

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        cell: str = "lstm",
        attention: str | None = "general",
        input_feeding: bool = True,
        tie_output: bool = True,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention is None and input_feeding:
            raise ValueError("input feeding needs attention: there is no attentional vector to feed")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.dropout, self.input_feeding = dropout, input_feeding
        self.word_dropout = word_dropout  # whole previous-token inputs dropped in training (drop_words)
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        # Without input feeding the standard LSTM needs no per-step Python at all: nn.LSTM's fused loop.
        self.fused = cell == "lstm" and not input_feeding
        self.emb_gates: nn.Linear | None = None
        if self.fused:
            self.rnn: nn.Module = nn.LSTM(
                emb_dim, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
            )
        else:
            # The first layer's input is [embedding; feed]. Its embedding part does not depend on the
            # recurrence, so it gets its own weight (emb_gates), applied to all T steps in one GEMM; the
            # first cell's own input is only the feed (or nothing without input feeding).
            self.rnn = StackedCell(
                cell, hidden_size if input_feeding else emb_dim, hidden_size, num_layers, dropout
            )
            if input_feeding:
                self.emb_gates = nn.Linear(emb_dim, CELLS[cell].num_gates * hidden_size, bias=False)
        self.attention = ATTENTIONS[attention](hidden_size) if attention is not None else None
        self.attn_out = (
            nn.Linear(2 * hidden_size, hidden_size, bias=False) if attention is not None else None
        )  # W_c
        # Tying the output layer to the embedding (Press & Wolf 2017; Inan et al. 2017) needs vectors of
        # the embedding's size: project H -> E first when they differ.
        self.out_proj = (
            nn.Linear(hidden_size, emb_dim, bias=False) if tie_output and emb_dim != hidden_size else None
        )
        self.gate_table: Tensor | None = None  # inference only: cache_input_gates()
        self.tanh: Activation = torch.tanh  # of the attentional vector; int8 inference: replace_tanh()
        self.generator = nn.Linear(emb_dim if self.out_proj is not None else hidden_size, vocab_size)
        if tie_output:
            self.generator.weight = self.embed.weight

    # ----------------------------------------------------------------------------------------------
    # swapping parts for inference (seq2seq_lstm.decoding.quantize): same interfaces, other weights

    def projections(self) -> dict[str, nn.Module]:
        """The decoder's linear layers by name, those it has: ``emb_gates`` (the embedding part of the
        first layer's gates), ``attn_out`` (W_c), ``out_proj`` (H -> E before a tied output layer) and
        ``generator`` (the output layer)."""
        named = {name: getattr(self, name) for name in PROJECTIONS}
        return {name: layer for name, layer in named.items() if layer is not None}

    def replace_projection(self, name: str, layer: nn.Module) -> None:
        """Use ``layer`` (same input and output sizes) for the projection ``name`` of :meth:`projections`."""
        if name not in self.projections():
            raise KeyError(f"the decoder has no projection {name!r}; it has {sorted(self.projections())}")
        setattr(self, name, layer)

    def replace_rnn(self, rnn: nn.Module) -> None:
        """Use ``rnn`` for the recurrence: a :class:`StackedCell` (stepped cell by cell) or a fused LSTM
        (an ``nn.LSTM`` or a module with its interface, such as torch's dynamic int8 LSTM)."""
        self.rnn, self.fused = rnn, not isinstance(rnn, StackedCell)

    def replace_embedding(self, embed: nn.Module) -> None:
        """Use ``embed`` (token ids (...) -> (..., E)) for the target embedding. A tied output layer
        keeps the weight it had: replace it too (:meth:`replace_projection`)."""
        self.embed = embed

    def replace_tanh(self, tanh: Activation) -> None:
        """Compute the attentional vector's tanh(W_c [c; h]) with ``tanh``."""
        self.tanh = tanh

    # ----------------------------------------------------------------------------------------------
    # state

    def init_state(
        self, h: Tensor, c: Tensor, memory: Tensor | None = None, mask: Tensor | None = None
    ) -> DecoderState:
        """Initial state from (L, B, H) h and c and, with attention, the memory (B, S, H) and mask (B, S)."""
        keys = feed = None
        if self.attention is not None:
            keys = self.attention.project_keys(memory)
        if self.input_feeding:
            feed = h.new_zeros(h.size(1), self.hidden_size)
        return DecoderState(h=h, c=c, feed=feed, memory=memory, mask=mask, keys=keys)

    # ----------------------------------------------------------------------------------------------
    # the pieces shared by forward() and step()

    def _input_gates(self, emb: Tensor) -> Tensor:
        """Embedding part of the first layer's gates, bias included: (..., E) -> (..., G*H)."""
        first = self.rnn.layers[0]
        if isinstance(self.emb_gates, nn.Linear):
            return F.linear(emb, self.emb_gates.weight, first.bias)
        if self.emb_gates is not None:  # an int8 replacement (seq2seq_lstm.decoding.quantize) has no .weight
            return self.emb_gates(emb) + first.bias
        return first.input_gates(emb)

    def _attend(
        self, top: Tensor, state: DecoderState, attn_out: SharedLinear | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Top-layer output (B, H) or (B, T, H) -> attentional vector after dropout, attention weights.
        ``attn_out``: W_c shared over a differentiated loop (``_shared_recur``) instead of the module."""
        if self.attention is None:
            return F.dropout(top, self.dropout, self.training), None
        if state.beams > 1 and top.dim() == 2:  # (B, H) rows, K per sentence: one (K, S) product each
            rows, size = top.shape
            context, weights = self.attention(
                top.view(-1, state.beams, size), state.keys, state.memory, state.mask
            )
            context, weights = context.reshape(rows, size), weights.reshape(rows, -1)
        else:
            context, weights = self.attention(top, state.keys, state.memory, state.mask)
        w_c = attn_out if attn_out is not None else self.attn_out
        out = self.tanh(w_c(torch.cat([context, top], -1)))  # h~ = tanh(W_c [c; h])
        return F.dropout(out, self.dropout, self.training), weights

    def _recur(
        self, gates: Tensor, feed: Tensor | None, hc: LayerStates, state: DecoderState
    ) -> tuple[Tensor, LayerStates, Tensor | None]:
        """One step of the cell stack and attention: gates (B, G*H) -> output (B, H), new (h, c), weights."""
        top, hc = self.rnn(feed, hc, gates)
        out, weights = self._attend(top, state)
        return out, hc, weights

    def _shared_recur(self):
        """``_recur`` for one teacher-forced loop that will be differentiated: the cells' weights and W_c
        are shared over the T steps (:mod:`seq2seq_lstm.model.shared_weight`), so each is cast once and gets
        one gradient product instead of T. Same equations as ``_recur``."""
        cells = self.rnn.shared_steps(first_input=self.input_feeding)
        w_c = None
        if self.attn_out is not None:
            w_c = SharedLinear(self.attn_out.weight, compute_dtype(self.attn_out.weight))

        def recur(gates: Tensor, feed: Tensor | None, hc: LayerStates, state: DecoderState):
            top, hc = cells(feed, hc, gates)
            out, weights = self._attend(top, state, w_c)
            return out, hc, weights

        return recur

    def _features(self, out: Tensor) -> Tensor:
        """Attentional vectors (..., H) -> the output layer's input (..., E or H)."""
        return out if self.out_proj is None else self.out_proj(out)

    def _logits(self, out: Tensor) -> Tensor:
        return self.generator(self._features(out))

    # ----------------------------------------------------------------------------------------------

    def forward(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Teacher forcing: tgt_in (B, T) long -> logits (B, T, V) and the state after step T.

        The returned state is the one after the last column, padding included: for a padded batch,
        continue decoding with ``step()`` instead.
        """
        emb = drop_words(self.embed(tgt_in), self.word_dropout, self.training)  # (B, T, E)
        emb = F.dropout(emb, self.dropout, self.training)
        if self.fused:
            top, (h, c) = run_lstm(self.rnn, emb, (state.h, state.c))  # (B, T, H)
            out, _ = self._attend(top, state)  # attention batched over all T steps
            return self._logits(out), dataclasses.replace(state, h=h, c=c)
        gates = self._input_gates(emb)  # (B, T, G*H): one GEMM for all steps
        hc = (list(state.h.unbind(0)), list(state.c.unbind(0)))
        feed, outs = state.feed, []
        weight = getattr(self.rnn.layers[0], "weight_hh", None)  # an int8 cell (quantize.py) has none
        # the CPU only, where per-step casts and thin weight-gradient products are what it saves; on a
        # GPU the loop keeps CUDA's fused LSTM gate kernel (StackedCell.forward), which the shared
        # loop's gate math would replace
        shared = (
            torch.is_grad_enabled()
            and isinstance(weight, Tensor)
            and weight.requires_grad
            and weight.device.type == "cpu"
        )
        recur = self._shared_recur() if shared else self._recur
        # unbind, not gates[:, t]: each slice's backward would write a zero-filled (B, T, G*H) gradient
        # and add them all up (quadratic in T); unbind's backward stacks the T slices once
        for gates_t in gates.unbind(1):
            out, hc, _ = recur(gates_t, feed, hc, state)
            outs.append(out)
            feed = out if self.input_feeding else None
        logits = self._logits(torch.stack(outs, 1))  # (B, T, V): one GEMM for all steps
        return logits, dataclasses.replace(state, h=torch.stack(hc[0]), c=torch.stack(hc[1]), feed=feed)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One token per sentence: tokens (B,) -> log-probs (B, V) float32, new state, attention (B, S)."""
        features, new_state, weights = self.step_features(tokens, state)
        return self._log_probs(features), new_state, weights

    def _log_probs(self, features: Tensor) -> Tensor:
        """The output layer and log-softmax of one step: (N, E or H) -> (N, V) float32.

        On the CPU in blocks of rows whose logits fill about :data:`LOGIT_BLOCK_BYTES`, so that the
        log-softmax reads them from the cache the product just wrote them to, instead of from main
        memory (a beam-5 step over 32 sentences and 8,000 pieces writes 5 MB of logits). Each row's
        numbers are its own in any block (the int8 product is exact per row; a float product may round
        differently for another row count, as it does for another batch).
        """
        rows, vocab = features.size(0), self.generator.out_features
        block = max(1, LOGIT_BLOCK_BYTES // (4 * vocab))
        if features.device.type != "cpu" or rows <= block:
            return torch.log_softmax(self.generator(features).float(), dim=-1)
        out = features.new_empty(rows, vocab, dtype=torch.float32)
        for start in range(0, rows, block):
            logits = self.generator(features[start : start + block]).float()
            torch.log_softmax(logits, 1, out=out[start : start + block])
        return out

    def step_features(
        self, tokens: Tensor, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """``step`` up to the output layer: tokens (B,) -> the generator's input (B, E or H), new state,
        attention (B, S). A vocabulary shortlist
        (:mod:`seq2seq_lstm.decoding.shortlist`) applies its own rows."""
        lookup = self.gate_table is not None and not self.fused and not self.training
        emb = None
        if not lookup:
            emb = drop_words(self.embed(tokens), self.word_dropout, self.training)  # (B, E)
            emb = F.dropout(emb, self.dropout, self.training)
        if self.fused:
            top, (h, c) = run_lstm(self.rnn, emb.unsqueeze(1), (state.h, state.c))  # (B, 1, H)
            out, weights = self._attend(top.squeeze(1), state)
            new_state = dataclasses.replace(state, h=h, c=c)
        else:
            hc = (list(state.h.unbind(0)), list(state.c.unbind(0)))
            # the table holds the same numbers as the product (cache_input_gates)
            gates = self.gate_table[tokens] if lookup else self._input_gates(emb)  # (B, G*H)
            out, hc, weights = self._recur(gates, state.feed, hc, state)
            feed = out if self.input_feeding else None
            new_state = dataclasses.replace(state, h=torch.stack(hc[0]), c=torch.stack(hc[1]), feed=feed)
        return self._features(out), new_state, weights

    @torch.no_grad()
    def cache_input_gates(self, max_bytes: int = 128 * 2**20) -> bool:
        """For inference: compute the first layer's embedding gates of every token once, (V, G*H), so a
        step looks its row up instead of multiplying (an E x G*H product per row that depends only on
        the token). Each row is computed as a step would (the int8 product is row-independent), so results
        do not change. Skipped (returns False) for the fused LSTM, which has no separate input gates, or
        when the table would exceed ``max_bytes``; ``train()`` drops it, as the weights will change."""
        if self.fused:
            return False
        device = next(itertools.chain(self.parameters(), self.buffers())).device
        tokens = torch.arange(self.embed.num_embeddings, device=device)
        probe = self._input_gates(self.embed(tokens[:1]))  # (1, G*H)
        if tokens.numel() * probe.numel() * probe.element_size() > max_bytes:
            return False
        self.gate_table = self._input_gates(self.embed(tokens))
        return True

    def train(self, mode: bool = True) -> Decoder:
        if mode:
            self.gate_table = None
        return super().train(mode)
