"""Translating text with trained models: the ``Translator`` behind `s2s translate` and `s2s evaluate`.

    translator = Translator.from_checkpoint("runs/ding-en-de", beam_size=5)   # or a list: an ensemble
    translator.translate(["All life depends ultimately on oxygen."])           # ["..."]
    best = translator.translate_full(lines)[i][0]                              # Translation of line i

What happens to a list of lines
- With sentence splitting on (``split_sentences``: the source language's code), a line that holds
  two or more sentences (:mod:`seq2seq_lstm.inference.sentences`) is cut into them, each encoded on
  its own; a line of one sentence stays whole, so it translates exactly as without splitting.
- Each line (or sentence) is cut into source pieces. An empty line (or one with no pieces) gives an empty
  translation without touching the model. A line longer than ``generation.max_input_len`` pieces is
  split into chunks of at most that many pieces, at the last sentence end (``. ! ?``) inside the limit,
  else at the last clause mark (``, ; :``), else before the last word start, else hard; the chunks are
  translated independently and their translations joined with a space, so a 10,000-piece input
  costs about as much memory as ``max_input_len`` pieces do. A line's sentences are chunks the same
  way: joined with a space, one output line per input line.
- Chunks are sorted by length (longest first) and grouped into batches of at most
  ``generation.batch_tokens`` source pieces, padding included (and ``batch_sentences`` sentences when
  set); the results come back in the input order. A sentence gets the same translation whatever batch
  it lands in: the encoder packs its sequences and the searches keep every sentence's beams apart.
- The search: beam search (``beam_size`` > 1), greedy search (``beam_size`` 1) or sampling (``sampling``
  given; ``n_best`` samples per sentence), with ``max_len = floor(max_len_a * source pieces +
  max_len_b)`` per chunk and every other option of ``generation`` (see :mod:`seq2seq_lstm.decoding.search`).
  The maximum wins over ``min_len``: a chunk whose ``max_len`` is below ``min_len`` ends at ``max_len``
  with pieces the model predicts while EOS is banned, and a warning says how many lines that hit.
- A forced target prefix (interactive translation: continue what a translator typed) applies to the
  first chunk (the first sentence) of its line; the returned text starts with it.

Scores are the search's: ``sum(token_log_probs) / lp(|Y|)`` with EOS counted in ``|Y|``. A chunked line
scores the sum of its chunks' scores, and its ``token_log_probs`` hold one EOS log-prob per chunk.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TASK_NAMES, GenerationConfig
from ..data.tokenizer import Tokenizer
from ..decoding.ensemble import EnsembleDecoder
from ..decoding.options import Sampling, SearchOptions
from ..decoding.protocol import StepDecoder
from ..decoding.quantize import convert_weights
from ..decoding.search import Hypothesis, generate, pad_ids
from ..decoding.shortlist import Shortlist, ShortlistDecoder
from ..errors import CheckpointError, UserError
from ..files import size_text
from ..vocab import PAD_ID, WORD_BOUNDARY

logger = logging.getLogger(__name__)

SENTENCE_ENDS = frozenset(".!?…。！？")  # a chunk preferably ends after a piece ending with one of these
CLAUSE_ENDS = frozenset(",;:，；：")  # second choice
# A search step holds a few (rows, V) float32 tensors at once (logits, log-probs, a masked or expanded
# copy), rows = sentences x beam (or samples per sentence), and with attention each row keeps (steps,
# S) weights. Batches are cut to stay under the limit; a beam that alone would pass it is refused.
STEP_MEMORY_LIMIT = 2 * 2**30
STEP_COPIES = 4  # per model


@dataclass(frozen=True)
class Translation:
    """One hypothesis for one input line.

    ``tokens``/``pieces``: target pieces without BOS/EOS; ``token_log_probs``: one per piece and one
    per EOS (one EOS per chunk); ``score``: as the search defines it (summed over chunks);
    ``attention``: (T, S) float32 with T = len(tokens) + 1 (EOS last) over the ``source_pieces``, or
    None when not asked for or the line was chunked (split into sentences counts); ``alignment``: for
    each target piece the index of the source piece it attended to most (chunk offsets included), empty
    when attention was not asked for; ``chunks``: how many searches the line took (sentences, and
    chunks of over-long ones).
    An empty line has no chunk and runs no model: an empty text, or the forced prefix as typed, score 0
    and no log-probs.
    """

    text: str
    score: float
    tokens: list[int]
    pieces: list[str]
    token_log_probs: list[float]
    source_pieces: list[str]
    attention: Tensor | None = None
    alignment: list[int] = dataclasses.field(default_factory=list)
    chunks: int = 1


@dataclass(frozen=True)
class _Segment:
    """A chunk of one line to decode: ``line`` and ``chunk`` say where its hypotheses go."""

    line: int
    chunk: int
    ids: list[int]
    offset: int  # position of its first piece in the line's pieces
    prefix: list[int]


def split_long(ids: list[int], limit: int, piece: Callable[[int], str]) -> list[list[int]]:
    """Cut ``ids`` into chunks of at most ``limit`` pieces, each ending at the best boundary found
    inside the limit: a sentence end, else a clause mark, else before a word start, else anywhere."""
    chunks, start = [], 0
    while len(ids) - start > limit:
        window = range(start + limit - 1, start, -1)  # candidate last pieces of the chunk, last first
        texts = {i: piece(ids[i]) for i in window}
        end = next((i + 1 for i in window if texts[i][-1:] in SENTENCE_ENDS), None)
        end = end or next((i + 1 for i in window if texts[i][-1:] in CLAUSE_ENDS), None)
        end = end or next((i for i in window if texts[i].startswith(WORD_BOUNDARY)), None)
        end = end or start + limit
        chunks.append(ids[start:end])
        start = end
    chunks.append(ids[start:])
    return chunks


def _pad(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Lists of ids -> src (B, S) padded with PAD_ID, src_lens (B,)."""
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return pad_ids(rows, PAD_ID).to(device), lens.to(device)


class Translator:
    """Translates lists of lines with one model or an ensemble (mean of the members' probabilities).

    ``models``: ``Seq2Seq`` modules over ``tokenizer``'s vocabularies (put in eval mode here), or other
    step decoders of them such as the ONNX Runtime engine (:meth:`from_export`);
    ``generation``: batching, chunking and shortlist settings, and the search options unless
    ``options`` are given (``SearchOptions.from_generation(generation, sampling=sampling)``);
    ``sampling``: sample instead of searching; ``batch_sentences``: a cap on sentences per batch on
    top of ``generation.batch_tokens`` (0 = none); ``dtype``: a key of
    :data:`seq2seq_lstm.decoding.quantize.DTYPES` for the weights; ``split_sentences``: the source
    language code whose rules cut lines into sentences, or None to translate lines whole.
    """

    def __init__(
        self,
        models: Sequence[nn.Module | StepDecoder],
        tokenizer: Tokenizer,
        generation: GenerationConfig,
        *,
        sampling: Sampling | None = None,
        options: SearchOptions | None = None,
        batch_sentences: int = 0,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        shortlist: Shortlist | None = None,
        split_sentences: str | None = None,
    ) -> None:
        if not models:
            raise ValueError("a Translator needs at least one model")
        if batch_sentences < 0:
            raise UserError(f"batch_sentences must be >= 0 (0 = no cap); got {batch_sentences}")
        from ..checkpoint import inference_device

        self.device = inference_device(device)
        self.models = [_prepare(m, self.device, dtype) for m in models]
        self.decoder = self.models[0] if len(self.models) == 1 else EnsembleDecoder(self.models)
        if options is None:
            options = SearchOptions.from_generation(generation, sampling=sampling)
        elif sampling is not None and sampling != options.sampling:
            raise ValueError("sampling contradicts options.sampling: pass it in the options only")
        self.tokenizer, self.generation, self.options = tokenizer, generation, options
        self.sampling = options.sampling
        self.batch_sentences = batch_sentences
        self.split_sentences = split_sentences
        if generation.shortlist and shortlist is None:
            raise UserError("generation.shortlist is set but no shortlist was given (see `s2s shortlist`)")
        self.shortlist = shortlist if generation.shortlist else None

    @classmethod
    def from_checkpoint(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        sampling: Sampling | None = None,
        batch_sentences: int = 0,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        split_sentences: bool = False,
        **overrides: Any,
    ) -> Translator:
        """Load a run directory (or weight file) written by `s2s train`, or several for an ensemble.

        ``overrides`` replace fields of the first run's ``generation`` section (``beam_size=1``, ...);
        an ensemble's members must share the first one's tokenizer. ``split_sentences``: cut lines
        into sentences by the rules of the run's ``data.src_lang``.
        """
        from ..checkpoint import load_ensemble, locate_run

        def translation_model(path, cfg, first) -> None:
            if cfg.task != "translation":
                raise CheckpointError(
                    f"{path} holds a {TASK_NAMES[cfg.task]}; `s2s translate` needs a translation model "
                    "(use `s2s suggest` for language models)"
                )

        models, cfg, tokenizer = load_ensemble(paths, device=device, check=translation_model)
        generation, options = _search_options(cfg.generation, sampling, overrides)
        shortlist = None
        if generation.shortlist:
            first = paths if isinstance(paths, (str, os.PathLike)) else paths[0]
            shortlist = Shortlist.load(
                locate_run(first).shortlist, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size
            )
        return cls(models, tokenizer, generation, options=options, batch_sentences=batch_sentences,
                   device=device, dtype=dtype, shortlist=shortlist,
                   split_sentences=cfg.data.src_lang if split_sentences else None)  # fmt: skip

    @classmethod
    def from_export(
        cls,
        directory: str | os.PathLike,
        *,
        sampling: Sampling | None = None,
        batch_sentences: int = 0,
        threads: int | None = None,
        split_sentences: bool = False,
        **overrides: Any,
    ) -> Translator:
        """Translate with the ONNX Runtime engine over a folder written by `s2s export` (CPU, the
        precision it was exported in); ``overrides`` as in :meth:`from_checkpoint`, on the run's
        generation settings that the export keeps. ``threads``: ONNX Runtime intra-op threads.
        ``split_sentences``: by the source language the export records (an export made before it
        recorded one translates lines whole)."""
        from ..export.engine import load_export

        export = load_export(directory, threads)
        if export.manifest.task != "translation":
            raise CheckpointError(
                f"{directory} holds a {TASK_NAMES[export.manifest.task]}; `s2s translate` needs a "
                "translation model (use `s2s suggest` for language models)"
            )
        generation, options = _search_options(export.manifest.generation, sampling, overrides)
        if generation.shortlist:
            raise UserError("a vocabulary shortlist needs --engine torch; pass --shortlist 0 for onnx")
        languages = export.manifest.languages
        language = languages["source"] if split_sentences and languages else None
        return cls([export.engine], export.tokenizer, generation, options=options,
                   batch_sentences=batch_sentences, split_sentences=language)  # fmt: skip

    # ------------------------------------------------------------------------------------------------

    def translate(self, lines: Sequence[str], prefixes: Sequence[str | None] | None = None) -> list[str]:
        """The best translation of each line, in order (empty lines give empty strings)."""
        return [hyps[0].text for hyps in self.translate_full(lines, prefixes, attention=False)]

    def translate_full(
        self, lines: Sequence[str], prefixes: Sequence[str | None] | None = None, attention: bool = True
    ) -> list[list[Translation]]:
        """The ``n_best`` hypotheses of each line, best first, as :class:`Translation` objects.

        ``prefixes``: one forced target prefix per line (None or "" for none). ``attention``: keep the
        attention weights (needed for ``attention``/``alignment``; off is a little faster).
        """
        lines = list(lines)
        if prefixes is not None and len(prefixes) != len(lines):
            raise UserError(f"prefixes needs one entry per line ({len(lines)}); got {len(prefixes)}")
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                raise UserError(f"line {i + 1} is a {type(line).__name__}, not a string")
        sentences = self._sentences(lines)
        forced = self._encode_prefixes(prefixes, len(lines))
        segments = self._segments(sentences, forced)
        self._warn_min_len(segments, len(lines))
        results: dict[tuple[int, int], list[Hypothesis]] = {}
        generator = None
        if self.sampling is not None and self.sampling.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(self.sampling.seed)
        with torch.inference_mode():
            for batch in self._batches(segments, attention):
                for seg, hyps in zip(batch, self._decode(batch, attention, generator), strict=True):
                    results[seg.line, seg.chunk] = hyps
        by_line: dict[int, list[_Segment]] = {}
        for seg in segments:
            by_line.setdefault(seg.line, []).append(seg)
        return [
            self._assemble([i for ids in parts for i in ids], by_line.get(line, []), results, forced[line])
            for line, parts in enumerate(sentences)
        ]

    # ------------------------------------------------------------------------------------------------

    def _encode_prefixes(self, prefixes: Sequence[str | None] | None, n: int) -> list[list[int]]:
        if prefixes is None:
            return [[] for _ in range(n)]
        return self.tokenizer.encode_tgt([p or "" for p in prefixes])  # "" encodes to []

    def _sentences(self, lines: list[str]) -> list[list[list[int]]]:
        """Each line's source ids: one list per sentence (one for the whole line without splitting)."""
        if not lines:
            return []
        if self.split_sentences is None:
            return [[ids] for ids in self.tokenizer.encode_src(lines)]
        from .sentences import split_sentences

        parts = [split_sentences(line, self.split_sentences) for line in lines]
        flat = iter(self.tokenizer.encode_src([s for p in parts for s in p]))
        return [[next(flat) for _ in p] for p in parts]

    def _segments(self, sentences: list[list[list[int]]], forced: list[list[int]]) -> list[_Segment]:
        """Every non-empty sentence of every line as one or more chunks of at most ``max_input_len``
        pieces, numbered through the line; the line's prefix goes to its first chunk."""
        limit, piece = self.generation.max_input_len, self.tokenizer.src_sp.id_to_piece
        segments: list[_Segment] = []
        for line, parts in enumerate(sentences):
            chunk, offset = 0, 0
            for part in (p for ids in parts if ids for p in split_long(ids, limit, piece)):
                segments.append(_Segment(line, chunk, part, offset, forced[line] if chunk == 0 else []))
                chunk, offset = chunk + 1, offset + len(part)
        return segments

    def _warn_min_len(self, segments: list[_Segment], lines: int) -> None:
        """The maximum length wins over ``min_len`` (see :mod:`seq2seq_lstm.decoding.search`): say
        so when it does."""
        g = self.options
        if not g.min_len or not segments:
            return
        limits = g.max_lengths(torch.tensor([len(s.ids) for s in segments]))
        short = {s.line for s, limit in zip(segments, limits.tolist(), strict=True)
                 if max(limit, len(s.prefix)) < g.min_len}  # fmt: skip
        if short:
            logger.warning(
                "min_len %d is above the maximum length floor(%g * source pieces + %g) of %d of %d lines: "
                "the maximum wins, so they run to it with EOS banned (their end may be filler); lower "
                "--min-len or raise --max-len-a/--max-len-b",
                g.min_len, g.max_len_a, g.max_len_b, len(short), lines,
            )  # fmt: skip

    def _batches(self, segments: list[_Segment], attention: bool) -> Iterator[list[_Segment]]:
        """Longest first, each batch within the token budget (max length x sentences, padding included)
        and within :data:`STEP_MEMORY_LIMIT` for its search rows."""
        budget, cap = self.generation.batch_tokens, self.batch_sentences
        batch: list[_Segment] = []
        fits = 0  # sentences whose search rows fit the memory limit, for the batch's width
        for seg in sorted(segments, key=lambda s: -len(s.ids)):  # stable: ties keep input order
            width = len(batch[0].ids) if batch else len(seg.ids)  # the first is the longest
            if batch and (
                width * (len(batch) + 1) > budget or (cap and len(batch) >= cap) or len(batch) >= fits
            ):
                yield batch
                batch = []
            if not batch:
                fits = self._sentences_that_fit(len(seg.ids), attention)
            batch.append(seg)
        if batch:
            yield batch

    def _sentences_that_fit(self, width: int, attention: bool) -> int:
        """How many sentences of ``width`` source pieces one search step can hold within
        :data:`STEP_MEMORY_LIMIT`; :class:`UserError` when not even one fits."""
        g, vocab = self.options, self.tokenizer.tgt_vocab_size
        rows = g.n_best if g.sampling is not None else g.beam_size  # search rows per sentence
        # an ensemble holds each member's log-probs and their stack besides
        row_bytes = STEP_COPIES * len(self.models) * 4 * vocab
        if attention:  # each row's attention weights, one (S,) row per step up to the maximum length
            steps = int(g.max_lengths(torch.tensor([width]))) + 1  # EOS too
            row_bytes += 4 * width * steps
        fits = STEP_MEMORY_LIMIT // (rows * row_bytes)
        if fits == 0:
            what = f"--n-best {rows} with --sampling" if self.sampling is not None else f"--beam-size {rows}"
            most = STEP_MEMORY_LIMIT // row_bytes
            raise UserError(
                f"{what} is too large: one search step would hold about {size_text(rows * row_bytes)} "
                f"for one sentence ({rows:,} rows over {vocab:,} target pieces"
                + (f", with attention over {width} source pieces" if attention else "")
                + f"); the limit is {size_text(STEP_MEMORY_LIMIT)}: "
                + (f"use at most {most:,}" if most else "lower --max-len-a / --max-len-b, or drop attention")
            )
        return fits

    def _decode(
        self, batch: list[_Segment], attention: bool, generator: torch.Generator | None
    ) -> list[list[Hypothesis]]:
        """Search one batch: per segment, its hypotheses best first."""
        prefix = [s.prefix for s in batch]
        if self.shortlist is None:
            return self._search(self.decoder, batch, prefix, attention, generator)
        # search over each sentence's shortlist (ids into its row of `pieces`), then back to piece ids
        pieces = self.shortlist.pieces([s.ids for s in batch], self.generation.shortlist, prefix)
        members = [ShortlistDecoder(m, pieces.to(self.device)) for m in self.models]
        decoder = members[0] if len(members) == 1 else EnsembleDecoder(members)
        local = [torch.searchsorted(row, torch.tensor(p, dtype=torch.long)).tolist() for row, p in
                 zip(pieces, prefix, strict=True)]  # fmt: skip
        results = self._search(decoder, batch, local, attention, generator)
        return [
            [dataclasses.replace(h, tokens=row[h.tokens].tolist()) for h in hyps]
            for row, hyps in zip(pieces, results, strict=True)
        ]

    def _search(
        self,
        decoder: StepDecoder,
        batch: list[_Segment],
        prefix: list[list[int]],
        attention: bool,
        generator: torch.Generator | None,
    ) -> list[list[Hypothesis]]:
        """The search of ``self.options`` over one batch (``attention``: keep it or not)."""
        src, src_lens = _pad([s.ids for s in batch], self.device)
        options = dataclasses.replace(self.options, return_attention=attention)
        return generate(decoder, decoder.start(src, src_lens), options, batch_size=len(batch),
                        max_len=options.max_lengths(src_lens), prefix=prefix, src_lens=src_lens,
                        generator=generator, device=self.device)  # fmt: skip

    def _assemble(
        self,
        ids: list[int],
        chunks: list[_Segment],
        results: dict[tuple[int, int], list[Hypothesis]],
        prefix: list[int],
    ) -> list[Translation]:
        """A line's Translations from its chunks' hypotheses: the k-th joins each chunk's k-th best."""
        if not chunks:  # an empty line: no model run; a typed prefix stays what it is (unscored)
            text = self.tokenizer.decode_tgt([prefix])[0] if prefix else ""
            pieces = [self.tokenizer.tgt_sp.id_to_piece(t) for t in prefix]
            return [Translation(text, 0.0, list(prefix), pieces, [], [], chunks=0)]
        source_pieces = [self.tokenizer.src_sp.id_to_piece(i) for i in ids]
        per_chunk = [results[s.line, s.chunk] for s in chunks]
        offsets = [s.offset for s in chunks]
        return [
            self._translation([h[min(k, len(h) - 1)] for h in per_chunk], offsets, source_pieces)
            for k in range(max(len(h) for h in per_chunk))
        ]

    def _translation(
        self, hyps: list[Hypothesis], offsets: list[int], source_pieces: list[str]
    ) -> Translation:
        tokens = [t for h in hyps for t in h.tokens]
        texts = [t for t in self.tokenizer.decode_tgt([h.tokens for h in hyps]) if t]
        alignment = []
        for h, offset in zip(hyps, offsets, strict=True):
            if h.attention is not None:
                alignment.extend((h.attention[: len(h.tokens)].argmax(dim=1) + offset).tolist())
        return Translation(
            text=" ".join(texts),
            score=sum(h.score for h in hyps),
            tokens=tokens,
            pieces=[self.tokenizer.tgt_sp.id_to_piece(t) for t in tokens],
            token_log_probs=[lp for h in hyps for lp in h.token_log_probs],
            source_pieces=source_pieces,
            attention=hyps[0].attention if len(hyps) == 1 else None,
            alignment=alignment,
            chunks=len(hyps),
        )


def _prepare(model: StepDecoder, device: torch.device, dtype: str) -> StepDecoder:
    """A torch model on ``device`` in eval mode with ``dtype`` weights and its gate table (a lookup per
    step instead of a product); another step decoder (the ONNX engine) as it is, in its own precision."""
    if not isinstance(model, nn.Module):
        if dtype != "float32":
            raise UserError(
                f"--dtype {dtype} applies to the torch engine; an ONNX export's precision is chosen when "
                "exporting (s2s export --int8)"
            )
        return model
    model = convert_weights(model.to(device).eval(), dtype)
    model.decoder.cache_input_gates()
    return model


def _search_options(
    generation: GenerationConfig, sampling: Sampling | None, overrides: dict[str, Any]
) -> tuple[GenerationConfig, SearchOptions]:
    """``generation`` with ``overrides`` (generation field names) and the search options from it."""
    fields = {f.name for f in dataclasses.fields(GenerationConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"unknown generation option {unknown[0]}; allowed: {', '.join(sorted(fields))}")
    # sampling has no beam, and its n_best counts samples: those two go to the search options alone
    # (SearchOptions checks them), the config's n_best <= beam_size check is not theirs
    overrides = dict(overrides)
    held = {k: overrides.pop(k) for k in ("beam_size", "n_best") if sampling is not None and k in overrides}
    generation = dataclasses.replace(generation, **overrides)  # its checks raise ConfigError
    return generation, SearchOptions.from_generation(generation, sampling=sampling, **held)


def translate_source(checkpoint: str, sources: Sequence[str]) -> list[str]:
    """Translate ``sources`` with the trained model in ``checkpoint`` (a run directory or weights file)
    as `s2s translate` does by default (sentence splitting included)."""
    hypotheses = Translator.from_checkpoint(checkpoint, split_sentences=True).translate(list(sources))
    assert len(hypotheses) == len(sources), "the translator must return one line per source line"
    return hypotheses
