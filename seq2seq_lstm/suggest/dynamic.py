"""Dynamic evaluation: a few small gradient steps on the text the user commits (Krause et al. 2018).

The language model keeps learning inside the session: each finished sentence the user commits is a
training example, and ``steps`` plain SGD steps on its mean piece cross-entropy move a per-adapter copy
of the weights towards the user's text (with ``decay``, every step also pulls the weights that share
of the way back to the trained ones, Krause et al.'s decay to the prior). The suggester's own model is
never touched, so other sessions and :meth:`DynamicAdapter.reset` (a new document) start from the
trained weights exactly.

Why whole sentences, not words: a step re-runs the sentence forward and backward, and every weight
change invalidates the session's cached steps (the session re-steps its context from BOS). Learning
per word would pay both once per word for a few more pieces of signal; per sentence pays them once,
between sentences, when a keyboard is idle anyway. A sentence is finished at sentence-end punctuation
followed by a space or line break, or when its text is finished (``end``).

Cost is bounded: ``budget_ms`` per committed word. Before each step the adapter predicts the step's
time from recent steps' time per piece (their minimum), and skips the remaining steps of the sentence when the
prediction would take the sentence over its budget (counted in :attr:`DynamicStats.skipped`).

Only float32 language models adapt: gradient steps need float weights (int8 weights are integer
codes with per-row scales, and bfloat16's 8-bit mantissa swallows steps of this size), and a
translation model or an ensemble has no single next-piece network to train on target text alone. Such
suggesters are refused with one line (``--dtype float32``, one ``--checkpoint``, a language model).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..decoding.quantize import Int8Cell, Int8Embedding, Int8Linear
from ..errors import UserError
from ..model.seq2seq import LanguageModel
from ..vocab import BOS_ID, EOS_ID, PAD_ID
from .words import _SENTENCE_END, word_spans

TIMINGS_KEPT = 8  # recent step times the budget's prediction looks at
MAX_SENTENCES_KEPT = 2000  # committed sentences a user model keeps (replayed by load_state)
_INT8 = (Int8Linear, Int8Embedding, Int8Cell)


@dataclass(frozen=True)
class DynamicSettings:
    """How dynamic evaluation learns (``--adapt dynamic``, options ``lr``, ``steps``, ...)."""

    lr: float = 0.1  # SGD step on the mean piece cross-entropy: tuned on tuning documents (suggestion.md)
    steps: int = 1  # gradient steps per committed sentence
    output_only: bool = False  # only the output layer's bias and the projection before it learn
    decay: float = 0.0  # per step, pull the weights this share of the way back to the trained ones
    budget_ms: float = 50.0  # adaptation time per committed word; steps predicted to exceed it are skipped
    max_pieces: int = 128  # pieces of a sentence learned from (a longer one is cut)

    def __post_init__(self) -> None:
        if not (self.lr > 0.0 and math.isfinite(self.lr)):
            raise UserError(f"the dynamic evaluation lr must be a positive number; got {self.lr}")
        if self.steps != int(self.steps) or self.steps < 1:
            raise UserError(f"the dynamic evaluation steps must be a whole number >= 1; got {self.steps}")
        if not 0.0 <= self.decay < 1.0:
            raise UserError(f"the dynamic evaluation decay must be in [0, 1); got {self.decay}")
        if not self.budget_ms > 0.0:
            raise UserError(f"the dynamic evaluation budget_ms must be > 0; got {self.budget_ms}")
        if self.max_pieces < 2:
            raise UserError(f"the dynamic evaluation max_pieces must be >= 2; got {self.max_pieces}")


@dataclass
class DynamicStats:
    """What adapting cost since the adapter was made (reset does not clear it)."""

    words: int = 0  # committed words learned from
    sentences: int = 0
    steps: int = 0  # gradient steps taken
    skipped: int = 0  # steps skipped by the time budget
    seconds: float = 0.0  # time spent learning (forward, backward, update, budget checks)

    def ms_per_word(self) -> float:
        return 1000.0 * self.seconds / max(1, self.words)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "ms_per_word": round(self.ms_per_word(), 2),
        }


class DynamicAdapter:
    """Dynamic evaluation as an :class:`~seq2seq_lstm.suggest.adapt.Adapter` (module docstring)."""

    name = "dynamic"
    changes_weights = True  # sessions drop their cached steps whenever version grows

    def __init__(self, base: nn.Module, tokenizer, settings: DynamicSettings | None = None) -> None:
        _check_adaptable(base)
        self.settings = settings or DynamicSettings()
        self.base, self.sp = base, tokenizer.tgt_sp
        self._model = copy.deepcopy(base).eval()  # the adapted copy: dropout stays off
        self._model.decoder.gate_table = None  # a table of the trained embedding's gates would go stale
        pairs = list(zip(self._model.parameters(), base.parameters(), strict=True))
        learning = _learning_ids(self._model, self.settings.output_only)
        for p, _ in pairs:
            p.requires_grad_(id(p) in learning)
        self._learn_pairs = [(p, p0) for p, p0 in pairs if id(p) in learning]
        self.version = 0
        self.stats = DynamicStats()
        # seconds per piece of recent steps (not the first, warm-up step): their minimum predicts the
        # next step's time, so a busy moment of the machine does not stop learning for good
        self._timings: list[float] = []
        self._warm = False
        self.reset()

    @classmethod
    def from_suggester(cls, suggester, options: dict) -> DynamicAdapter:
        """``options``: any field of :class:`DynamicSettings` ("lr", "steps", ...), as numbers
        (``--adapt-option``: output_only=1 for True)."""
        known = {f.name for f in fields(DynamicSettings)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(
                f"dynamic evaluation has no setting {unknown[0]!r}; choose from {', '.join(sorted(known))}"
            )
        if "steps" in options:
            options = {**options, "steps": int(options["steps"])}
        if "output_only" in options:
            options = {**options, "output_only": bool(options["output_only"])}
        return cls(suggester.model, suggester.tokenizer, DynamicSettings(**options))

    # ------------------------------------------------------------------------------- the interface

    def reset(self) -> None:
        """Back to the trained weights, bit for bit; the sessions re-step (a new version)."""
        with torch.no_grad():
            for p, p0 in zip(self._model.parameters(), self.base.parameters(), strict=True):
                p.copy_(p0)
        self._pending = ""  # committed text of a sentence not finished yet
        self._learned: list[str] = []  # sentences learned since the reset (for state())
        self.version += 1

    def commit(self, text: str, *, start: bool, end: bool) -> None:
        """Buffer ``text``; learn from every sentence it finishes (and from the rest when ``end``)."""
        if start and self._pending.strip():
            self._learn([self._pending])  # a text left unfinished: what was committed of it still counts
            self._pending = ""
        self._pending += text
        cut = [m.end() for m in _SENTENCE_END.finditer(self._pending)]
        finished: list[str] = []
        if end:
            finished, self._pending = [self._pending], ""
        elif cut:
            finished, self._pending = [self._pending[: cut[-1]]], self._pending[cut[-1] :]
        sentences = [s for chunk in finished for s in _split_sentences(chunk)]
        if sentences:
            self._learn(sentences)

    def rescore(self, typed, words: dict[str, float]) -> dict[str, float]:
        return words  # the weights changed already: the beam's probabilities are the adapted ones

    def model(self, base: nn.Module) -> nn.Module:
        assert base is self.base, "a dynamic adapter serves the suggester it was made for"
        return self._model

    def cost(self) -> dict:
        """What learning cost so far: words, sentences, steps taken and skipped, seconds, ms per word."""
        return self.stats.to_dict()

    def state(self) -> dict:
        """The sentences learned since the last reset (the last MAX_SENTENCES_KEPT): megabytes of
        weight changes would not fit a user model file, a replay of the text does."""
        return {"settings": asdict(self.settings), "sentences": self._learned[-MAX_SENTENCES_KEPT:]}

    def load_state(self, state: dict) -> None:
        """Reset and learn the saved sentences again, in order (no time budget: it is not typing time)."""
        sentences = state.get("sentences") if isinstance(state, dict) else None
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise ValueError("a dynamic evaluation state needs 'sentences': a list of strings")
        self.reset()
        for sentence in sentences:
            self._learn([sentence], budget=False)

    def document_log_likelihood(self, documents, learn: bool = True) -> tuple[float, int]:
        """Summed log-probability of the pieces (EOS included) of ``documents`` read in order, each
        sentence scored before it is learned, the adapter reset before each document; and the number
        of pieces. Krause et al.'s measure, a fast one to tune ``lr`` with (no keystroke simulation);
        ``learn=False`` gives the trained model's figure on the same pieces."""
        total, pieces = 0.0, 0
        for document in documents:
            self.reset()
            for sentence in document:
                batch = self._batch([sentence])
                if batch is None:
                    continue
                with torch.inference_mode():
                    logits = self._model(batch[0])  # (1, T, V)
                    total -= float(F.cross_entropy(logits[0], batch[1][0], reduction="sum"))
                pieces += batch[1].numel()
                if learn:
                    self.commit(sentence, start=True, end=True)
        self.reset()
        return total, pieces

    # ------------------------------------------------------------------------------------ learning

    def _learn(self, sentences: list[str], budget: bool = True) -> None:
        """Up to ``steps`` SGD steps on ``sentences`` (one padded batch), within the time budget."""
        t0 = time.perf_counter()
        batch = self._batch(sentences)
        if batch is None:
            return
        tgt_in, tgt_out = batch
        pieces = int((tgt_out != PAD_ID).sum())
        words = sum(len(word_spans(s)) for s in sentences)
        allowed = self.settings.budget_ms / 1000.0 * max(1, words)
        taken = 0
        for _ in range(self.settings.steps):
            predicted = min(self._timings, default=0.0) * pieces
            if budget and time.perf_counter() - t0 + predicted > allowed:
                break
            t_step = time.perf_counter()
            self._step(tgt_in, tgt_out)
            if self._warm:
                self._timings = [*self._timings[1 - TIMINGS_KEPT :], (time.perf_counter() - t_step) / pieces]
            self._warm = True
            taken += 1
        if taken:
            self.version += 1
        self._learned += sentences
        del self._learned[:-MAX_SENTENCES_KEPT]
        stats = self.stats
        stats.words, stats.sentences = stats.words + words, stats.sentences + len(sentences)
        stats.steps, stats.skipped = stats.steps + taken, stats.skipped + self.settings.steps - taken
        stats.seconds += time.perf_counter() - t0

    def _batch(self, sentences: list[str]) -> tuple[Tensor, Tensor] | None:
        """tgt_in (B, T) = BOS + pieces, tgt_out (B, T) = pieces + EOS, padded; None when empty."""
        cap = self.settings.max_pieces - 1
        rows = [ids[:cap] for ids in self.sp.encode([s.strip() for s in sentences], out_type=int) if ids]
        if not rows:
            return None
        width = max(len(ids) for ids in rows) + 1
        tgt_in = torch.full((len(rows), width), PAD_ID, dtype=torch.long)  # (B, T)
        tgt_out = torch.full((len(rows), width), PAD_ID, dtype=torch.long)  # (B, T)
        for i, ids in enumerate(rows):
            tgt_in[i, : len(ids) + 1] = torch.tensor([BOS_ID, *ids])
            tgt_out[i, : len(ids) + 1] = torch.tensor([*ids, EOS_ID])
        return tgt_in, tgt_out

    def _step(self, tgt_in: Tensor, tgt_out: Tensor) -> None:
        """One SGD step on the mean cross-entropy of the batch's pieces, then the decay to the trained
        weights. Padding after a row's EOS is ignored (its steps run after the sentence ended)."""
        with torch.inference_mode(False), torch.enable_grad():
            self._model.zero_grad(set_to_none=True)
            logits = self._model(tgt_in)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
            loss.backward()
        decay = self.settings.decay
        with torch.no_grad():
            for p, p0 in self._learn_pairs:
                p.sub_(p.grad, alpha=self.settings.lr)
                if decay:
                    p.add_(p0 - p, alpha=decay)
                p.grad = None


def _split_sentences(text: str) -> list[str]:
    """The sentences of a finished stretch, at sentence-end punctuation followed by a space or line
    break (the rule the word parser uses to find a sentence's start)."""
    out, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[pos : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return [s for s in out if s.strip()]


def _check_adaptable(model: nn.Module) -> None:
    if not isinstance(model, LanguageModel):
        raise UserError(
            "--adapt dynamic trains a language model's weights: give one language model checkpoint "
            "(not a translation model or an ensemble)"
        )
    if any(isinstance(m, _INT8) for m in model.modules()) or any(
        p.dtype != torch.float32 for p in model.parameters()
    ):
        raise UserError(
            "--adapt dynamic takes gradient steps on float32 weights; use --dtype float32 (int8 and "
            "bfloat16 weights cannot take steps this small)"
        )


def _learning_ids(model: nn.Module, output_only: bool) -> set[int]:
    """ids of the parameters that learn: all, or the output side (the output layer's bias, its weight
    unless it is the tied input embedding, and the H -> E projection before it)."""
    if not output_only:
        return {id(p) for p in model.parameters()}
    dec = model.decoder
    chosen = {id(dec.generator.bias)} if dec.generator.bias is not None else set()
    if dec.generator.weight is not dec.embed.weight:
        chosen.add(id(dec.generator.weight))
    if dec.out_proj is not None:
        chosen |= {id(p) for p in dec.out_proj.parameters()}
    return chosen
