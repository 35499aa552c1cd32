"""The two models: an attentive encoder-decoder and a target-side language model.

``Seq2Seq`` (Sutskever et al. 2014; Luong et al. 2015) encodes the source, bridges the encoder's final
state into the decoder and decodes with attention. ``LanguageModel`` is the same decoder without a
source (no attention, no input feeding), for next-word suggestion. Both expose the interface that
training and search use::

    logits = model(src, src_lens, tgt_in)           # (B, T, V); LanguageModel: model(tgt_in)
    state = model.start(src, src_lens)              # LanguageModel: model.start(batch_size)
    log_probs, state, attn = model.step(tokens, state)

Parameters start uniform in [-0.1, 0.1] (OpenNMT's ``param_init 0.1``) with a forget-gate bias of 1
(Jozefowicz et al. 2015) and zero padding embeddings.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from ..config import Config, ModelConfig
from ..errors import ConfigError
from .cells import LSTMCell, init_lstm_forget_bias
from .decoder import BRIDGES, Decoder, DecoderState
from .encoder import Encoder

INIT_RANGE = 0.1  # OpenNMT-py's param_init
FORGET_BIAS = 1.0  # Gers et al. 2000; Jozefowicz et al. 2015


@torch.no_grad()
def init_parameters(
    module: nn.Module, init_range: float = INIT_RANGE, forget_bias: float = FORGET_BIAS
) -> None:
    """Uniform(-r, r) for every parameter, then the forget-gate biases and zero padding embeddings."""
    for p in module.parameters():
        nn.init.uniform_(p, -init_range, init_range)
    for m in module.modules():
        if isinstance(m, LSTMCell):
            m.init_forget_bias(forget_bias)
        elif isinstance(m, nn.LSTM):
            init_lstm_forget_bias(m, forget_bias)
        elif isinstance(m, nn.Embedding) and m.padding_idx is not None:
            m.weight[m.padding_idx].zero_()


def _decoder(cfg: ModelConfig, vocab: int, attention: bool) -> Decoder:
    return Decoder(
        vocab,
        cfg.emb_dim,
        cfg.hidden_size,
        cfg.dec_layers,
        dropout=cfg.dropout,
        cell=cfg.cell,
        attention=cfg.attention if attention else None,
        input_feeding=cfg.input_feeding and attention,
        tie_output=cfg.tie_output,
        word_dropout=cfg.word_dropout,
    )


class Seq2Seq(nn.Module):
    """Stacked-LSTM encoder-decoder with attention (Sutskever et al. 2014; Luong et al. 2015)."""

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        if cfg.tie_source and src_vocab != tgt_vocab:
            raise ConfigError(
                f"model.tie_source needs one vocabulary for both sides; got source {src_vocab} and "
                f"target {tgt_vocab} pieces: train a joint tokenizer (tokenizer.joint: true)"
            )
        self.cfg = cfg
        self.decoder = _decoder(cfg, tgt_vocab, attention=True)
        self.encoder = Encoder(
            src_vocab,
            cfg.emb_dim,
            cfg.hidden_size,
            cfg.enc_layers,
            dropout=cfg.dropout,
            bidirectional=cfg.bidirectional,
            cell=cfg.cell,
            embedding=self.decoder.embed if cfg.tie_source else None,
            word_dropout=cfg.word_dropout,
        )
        self.bridge = BRIDGES[cfg.bridge](cfg.enc_layers, cfg.dec_layers, cfg.hidden_size)
        init_parameters(self)

    def start(self, src: Tensor, src_lens: Tensor) -> DecoderState:
        """Encode src (B, S) with lengths (B,) -> the decoder's initial state (memory, mask, keys)."""
        memory, mask, (h, c) = self.encoder(src, src_lens)
        h0, c0 = self.bridge(h, c)
        return self.decoder.init_state(h0, c0, memory, mask)

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """src (B, S), src_lens (B,), tgt_in (B, T) -> logits (B, T, V) (teacher forcing)."""
        logits, _ = self.decoder(tgt_in, self.start(src, src_lens))
        return logits

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tokens (B,) -> log-probs (B, V) float32, new state, attention weights (B, S)."""
        return self.decoder.step(tokens, state)


class LanguageModel(nn.Module):
    """Stacked-LSTM language model (Zaremba et al. 2014): the decoder of ``Seq2Seq`` without a source."""

    def __init__(self, cfg: ModelConfig, vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = _decoder(cfg, vocab, attention=False)
        init_parameters(self)

    def start(self, batch_size: int) -> DecoderState:
        """Zero state for ``batch_size`` sentences."""
        # device and dtype of the float weights (int8 inference keeps its scales in float32)
        p = next(t for t in itertools.chain(self.parameters(), self.buffers()) if t.is_floating_point())
        zeros = p.new_zeros(self.cfg.dec_layers, batch_size, self.cfg.hidden_size)
        return self.decoder.init_state(zeros, zeros)

    def forward(self, tgt_in: Tensor) -> Tensor:
        """tgt_in (B, T) -> logits (B, T, V)."""
        logits, _ = self.decoder(tgt_in, self.start(tgt_in.size(0)))
        return logits

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, None]:
        """tokens (B,) -> log-probs (B, V) float32, new state, None (no attention)."""
        return self.decoder.step(tokens, state)


def build_model(cfg: Config, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """``Seq2Seq`` for ``task: translation``; ``LanguageModel`` on the target vocabulary for ``task: lm``."""
    if cfg.task == "lm":
        return LanguageModel(cfg.model, tgt_vocab)
    return Seq2Seq(cfg.model, src_vocab, tgt_vocab)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, each tied tensor counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def model_summary(model: nn.Module) -> str:
    """One line per top-level part and a total, e.g. ``encoder 4,204,544 | ... | total 14,170,432``."""
    parts = [f"{name} {count_parameters(child):,}" for name, child in model.named_children()]
    return " | ".join([*parts, f"total {count_parameters(model):,}"]) + f" ({type(model).__name__})"
