"""Corpora from local files, length filtering, token-budget batches and the Lightning DataModules.

Pipeline (each step a function, so tools and tests can use any part):

    ds = load_parallel("data/ding/train", "en", "de")        # datasets.Dataset: line, src, tgt
    ds = tokenize(ds, tokenizer, num_proc=2)                 # + src_ids, tgt_ids (cached by fingerprint)
    ds, report = filter_by_length(ds, 1, 100, 3.0)           # report says how many pairs each rule dropped
    sampler = TokenBatchSampler(ds_lengths..., batch_tokens=4096)   # length-bucketed, shuffled, sharded
    DataLoader(TokenDataset(ds), batch_sampler=sampler, collate_fn=Collator())

Formats (``data.format: auto`` picks by extension; see :data:`FORMAT_BY_SUFFIX`):

* ``text``: a prefix ``PATH`` naming two aligned files ``PATH.{src_lang}`` and ``PATH.{tgt_lang}``;
* ``tsv``: a header row naming the language columns, one pair per row, no quoting (``.tsv``, ``.tsv.gz``);
* ``jsonl``: ``{"translation": {"en": ..., "de": ...}}`` (or the language keys at top level) per line;
* ``parquet``: language columns, or a ``translation`` struct column;
* ``embedded:NAME/SPLIT``: ``seq2seq_lstm/corpora/NAME/SPLIT.tsv.gz`` shipped inside the package.

Monolingual text (language models) is one sentence per line; a TSV/JSONL/parquet/embedded corpus can
serve as well, and then its ``data.tgt_lang`` side is read (the LM is the target-side decoder).

Text-like files are read and checked by our own readers (line counts, UTF-8, fields) so that a bad
file gives one clear line naming the file and line; ``datasets`` then stores the rows as Arrow in its
cache, keyed by the files' size and modification time, and caches tokenization by fingerprint.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from datasets import Dataset, Features, Value
from datasets.exceptions import DatasetGenerationError
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler

from .config import Config, DataConfig
from .errors import UserError
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
FORMAT_BY_SUFFIX = {  # longest suffix first wins
    ".tsv.gz": "tsv",
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
_READER_VERSION = "1"  # bump when a reader changes what it yields, to invalidate cached Arrow files

# --------------------------------------------------------------------------------------------------
# Paths and formats


def _corpora_root() -> Path:
    # a real directory for an installed (or editable) package; zip imports are not supported
    return Path(str(importlib.resources.files("seq2seq_lstm") / "corpora"))


def embedded_corpus(name_split: str) -> Path:
    """Path of ``seq2seq_lstm/corpora/NAME/SPLIT.tsv.gz`` for ``embedded:NAME/SPLIT``."""
    root = _corpora_root()
    name, _, split = name_split.partition("/")
    path = root / name / f"{split}.tsv.gz"
    if not (name and split) or not path.is_file():
        available = sorted(
            f"{EMBEDDED_PREFIX}{p.parent.name}/{p.name.removesuffix('.tsv.gz')}"
            for p in root.glob("*/*.tsv.gz")
        )
        hint = f"available: {', '.join(available)}" if available else "this installation ships none"
        raise UserError(f"no embedded corpus {EMBEDDED_PREFIX}{name_split}; {hint}")
    return path


def detect_format(path: str | os.PathLike) -> str:
    """The format of a corpus path by its extension; anything else is a ``text`` prefix."""
    name = str(path).lower()
    return next((fmt for suffix, fmt in FORMAT_BY_SUFFIX.items() if name.endswith(suffix)), "text")


def resolve_corpus(path: str, fmt: str = "auto") -> tuple[Path, str]:
    """``(file or prefix, format)`` for a split path from the config (``embedded:`` resolved)."""
    if not path:
        raise UserError("empty corpus path; set data.train (and data.valid) to a file or prefix")
    if path.startswith(EMBEDDED_PREFIX):
        return embedded_corpus(path[len(EMBEDDED_PREFIX) :]), "tsv"
    p = Path(path).expanduser()
    return p, detect_format(p) if fmt == "auto" else fmt


# --------------------------------------------------------------------------------------------------
# Readers: validate while streaming, yield rows with the 0-based line (row) number


def _open_binary(path: Path):
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _lines(path: Path, errors: str) -> Iterator[str]:
    """Decoded lines without their line ending; invalid UTF-8 is an error naming file, line and byte."""
    try:
        with _open_binary(path) as f:
            for n, raw in enumerate(f, start=1):
                raw = raw.rstrip(b"\r\n")
                if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte-order mark is not part of the first sentence
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if errors == "replace":
                        yield raw.decode("utf-8", errors="replace")
                    else:
                        raise UserError(
                            f"{path} line {n}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                            f"{e.start + 1}); fix the file or set data.encoding_errors=replace"
                        ) from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise UserError(f"{path}: not a valid gzip file ({e})") from None


def _read_aligned_text(paths: Sequence[Path], names: Sequence[str], errors: str) -> Iterator[dict]:
    """Rows from line-aligned files, one column per file; different line counts are an error."""
    for p in paths:
        if not p.is_file():
            raise UserError(f"corpus file {p} does not exist")
    streams = [_lines(p, errors) for p in paths]
    n = 0
    while True:
        row = [next(s, None) for s in streams]
        if all(x is None for x in row):
            return
        if any(x is None for x in row):
            counts = [n + (x is not None) + sum(1 for _ in s) for x, s in zip(row, streams, strict=True)]
            detail = " but ".join(
                f"{p} has {c} line{'' if c == 1 else 's'}" for p, c in zip(paths, counts, strict=True)
            )
            raise UserError(f"{detail}; aligned files need one sentence per line in each, in the same order")
        yield {"line": n, **{k: x.strip() for k, x in zip(names, row, strict=True)}}
        n += 1


def _read_tsv(path: Path, columns: dict[str, str], errors: str) -> Iterator[dict]:
    """Rows of a TSV whose header names the languages; fields are split on tabs only (no quoting)."""
    lines = _lines(path, errors)
    header = next(lines, None)
    if header is None:
        return
    names = header.split("\t")
    missing = [lang for lang in columns.values() if lang not in names]
    if missing:
        raise UserError(
            f"{path} line 1: the header has columns {', '.join(names)} but no {' or '.join(missing)}; "
            "the header must name the languages, or set data.src_lang / data.tgt_lang to its columns"
        )
    pos = {out: names.index(lang) for out, lang in columns.items()}
    for n, text in enumerate(lines):
        if not text.strip():
            continue  # blank lines (a trailing one, say) are not rows
        fields = text.split("\t")
        if len(fields) != len(names):
            raise UserError(
                f"{path} line {n + 2}: {len(fields)} tab-separated fields but the header has {len(names)}; "
                "sentences may not contain tabs"
            )
        yield {"line": n, **{out: fields[i].strip() for out, i in pos.items()}}


def _read_jsonl(path: Path, columns: dict[str, str], errors: str) -> Iterator[dict]:
    """Rows of JSON lines ``{"translation": {"en": ..., "de": ...}}`` or ``{"en": ..., "de": ...}``."""
    for n, text in enumerate(_lines(path, errors)):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {n + 1}: not valid JSON ({e.msg} at column {e.colno})") from None
        pair = obj.get("translation", obj) if isinstance(obj, dict) else None
        row = {"line": n}
        for out, lang in columns.items():
            value = pair.get(lang) if isinstance(pair, dict) else None
            if not isinstance(value, str):
                example = ", ".join(f'"{x}": "..."' for x in columns.values())
                raise UserError(
                    f'{path} line {n + 1}: no text for "{lang}"; expected {{"translation": {{{example}}}}}'
                )
            row[out] = value.strip()
        yield row


_READERS: dict[str, Callable[..., Iterator[dict]]] = {"tsv": _read_tsv, "jsonl": _read_jsonl}


def _generate(
    reader: str, paths: list[str], columns: dict[str, str], errors: str, stamp: str
) -> Iterator[dict]:
    # module-level so datasets can pickle it; `stamp` only keys the cache (size and mtime of the files)
    del stamp
    if reader == "text":
        rows = _read_aligned_text([Path(p) for p in paths], list(columns), errors)
    else:
        rows = _READERS[reader](Path(paths[0]), columns, errors)
    n = 0
    for n, row in enumerate(rows, start=1):  # noqa: B007 (n counts the rows)
        yield row
    if n == 0:
        # raised here because datasets cannot build a dataset from a generator that yields nothing
        raise UserError(f"corpus {' / '.join(paths)} is empty: it has no sentences")


def _stamp(paths: Sequence[Path]) -> str:
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _from_reader(reader: str, paths: list[Path], columns: dict[str, str], errors: str) -> Dataset:
    for p in paths:
        if not p.is_file():
            raise UserError(f"corpus file {p} does not exist")
    stamp = _stamp(paths)
    key = json.dumps([_READER_VERSION, reader, stamp, columns, errors])
    features = Features({"line": Value("int64"), **{out: Value("string") for out in columns}})
    try:
        ds = Dataset.from_generator(
            _generate,
            features=features,
            gen_kwargs={
                "reader": reader,
                "paths": tuple(str(p) for p in paths),
                "columns": columns,
                "errors": errors,
                "stamp": stamp,
            },
            fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
        )
    except DatasetGenerationError as e:
        # datasets wraps our readers' errors; the user needs our line, not its wrapper
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise
    return ds


def _from_parquet(path: Path, columns: dict[str, str]) -> Dataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a parquet file ({e})") from None
    langs = list(columns.values())
    if all(lang in schema.names for lang in langs):
        sources = {lang: lang for lang in langs}
    elif "translation" in schema.names and all(
        isinstance(schema.field("translation").type, pa.StructType)
        and schema.field("translation").type.get_field_index(lang) >= 0
        for lang in langs
    ):
        sources = {lang: f"translation.{lang}" for lang in langs}
    else:
        raise UserError(
            f"{path}: parquet columns are {', '.join(schema.names)}; expected columns "
            f"{' and '.join(langs)} or a translation struct with those fields"
        )
    ds = Dataset.from_parquet(str(path))
    if any("." in s for s in sources.values()):
        ds = ds.flatten()
    ds = ds.select_columns(list(sources.values()))
    ds = ds.rename_columns({sources[lang]: out for out, lang in columns.items()})
    if len(ds) == 0:
        raise UserError(f"corpus {path} is empty: it has no sentences")

    def clean(batch: dict, rows: list[int]) -> dict:
        # nulls become empty sentences (dropped by the length filter); whitespace as in the other readers
        return {"line": rows, **{out: [(x or "").strip() for x in batch[out]] for out in columns}}

    ds = ds.map(clean, batched=True, with_indices=True, desc="Reading parquet")
    return ds.select_columns(["line", *columns])


def load_parallel(
    path: str, src_lang: str, tgt_lang: str, fmt: str = "auto", encoding_errors: str = "strict"
) -> Dataset:
    """A parallel corpus as a Dataset with columns ``line`` (row in the file), ``src``, ``tgt``."""
    p, fmt = resolve_corpus(path, fmt)
    columns = {"src": src_lang, "tgt": tgt_lang}
    if fmt == "text":
        files = [Path(f"{p}.{src_lang}"), Path(f"{p}.{tgt_lang}")]
        return _from_reader("text", files, columns, encoding_errors)
    if fmt == "parquet":
        return _from_parquet(p, columns)
    return _from_reader(fmt, [p], columns, encoding_errors)


def load_monolingual(path: str, lang: str, fmt: str = "auto", encoding_errors: str = "strict") -> Dataset:
    """Monolingual sentences as a Dataset with columns ``line`` and ``text``.

    A text file is read whole (one sentence per line); a text prefix ``PATH`` whose file does not exist
    reads ``PATH.{lang}``; TSV/JSONL/parquet/embedded corpora give their ``lang`` column.
    """
    p, fmt = resolve_corpus(path, fmt)
    columns = {"text": lang}
    if fmt == "text":
        if not p.is_file() and Path(f"{p}.{lang}").is_file():
            p = Path(f"{p}.{lang}")
        return _from_reader("text", [p], columns, encoding_errors)
    if fmt == "parquet":
        return _from_parquet(p, columns)
    return _from_reader(fmt, [p], columns, encoding_errors)


def read_sentences(path: str | os.PathLike, encoding_errors: str = "strict") -> list[str]:
    """All lines of a plain-text file (stripped), validated like the corpora (for tokenizer training)."""
    return [row["text"] for row in _read_aligned_text([Path(path)], ["text"], encoding_errors)]


# --------------------------------------------------------------------------------------------------
# Tokenization and length filter


class _Encode:
    """``datasets.map`` function: text columns -> piece ids (picklable for ``num_proc`` workers)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if "text" in batch:
            return {"tgt_ids": self.tokenizer.encode_tgt(batch["text"])}
        return {
            "src_ids": self.tokenizer.encode_src(batch["src"]),
            "tgt_ids": self.tokenizer.encode_tgt(batch["tgt"]),
        }


def tokenize(ds: Dataset, tokenizer: Tokenizer, num_proc: int = 1) -> Dataset:
    """Add ``src_ids``/``tgt_ids`` (monolingual ``text`` -> ``tgt_ids``); no BOS/EOS.

    The result is cached under a fingerprint of the corpus and the tokenizer model, so a second run
    with the same files and model reads the ids from disk instead of encoding again.
    """
    fingerprint = hashlib.sha256(f"{ds._fingerprint}:{tokenizer.fingerprint()}:tok1".encode()).hexdigest()[
        :16
    ]
    return ds.map(
        _Encode(tokenizer),
        batched=True,
        batch_size=1000,
        num_proc=num_proc if num_proc > 1 and len(ds) >= 2 * num_proc else None,
        new_fingerprint=fingerprint,
        desc="Tokenizing",
    )


def column_lengths(ds: Dataset, column: str) -> np.ndarray:
    """Length of each list in ``column`` (pieces per sentence), via Arrow without Python loops."""
    import pyarrow.compute as pc

    table = ds.select_columns([column]).with_format("arrow")[:]
    return pc.list_value_length(table[column]).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class FilterReport:
    """How many pairs the length filter saw and dropped, by the first rule each pair broke."""

    total: int
    too_short: int = 0
    too_long: int = 0
    bad_ratio: int = 0

    @property
    def kept(self) -> int:
        return self.total - self.too_short - self.too_long - self.bad_ratio

    def __str__(self) -> str:
        return (
            f"kept {self.kept} of {self.total} (dropped {self.too_short} too short, "
            f"{self.too_long} too long, {self.bad_ratio} over the length ratio)"
        )


def filter_by_length(
    ds: Dataset, min_len: int, max_len: int | None, max_ratio: float | None = None
) -> tuple[Dataset, FilterReport]:
    """Keep pairs with ``min_len <= pieces <= max_len`` on both sides and ``longer / shorter <= max_ratio``.

    Monolingual datasets (only ``tgt_ids``) are filtered on their one side. The ratio uses the shorter
    side's length floored at 1.
    """
    sides = [column_lengths(ds, c) for c in ("src_ids", "tgt_ids") if c in ds.column_names]
    lens = np.stack(sides)  # (sides, N)
    short = (lens < min_len).any(axis=0)
    long = ~short & ((lens > max_len).any(axis=0) if max_len is not None else False)
    ratio = np.zeros_like(short)
    if max_ratio is not None and len(sides) == 2:
        r = lens.max(axis=0) / np.maximum(lens.min(axis=0), 1)
        ratio = ~short & ~long & (r > max_ratio)
    keep = ~(short | long | ratio)
    report = FilterReport(len(ds), int(short.sum()), int(long.sum()), int(ratio.sum()))
    if not keep.all():
        ds = ds.select(np.flatnonzero(keep))
    return ds, report


# --------------------------------------------------------------------------------------------------
# Token-budget batches


def pack_batches(
    order: Sequence[int], widths: np.ndarray, batch_tokens: int, max_sentences: int = 0
) -> list[list[int]]:
    """Cut ``order`` greedily into batches with ``max(width) * len(batch) <= batch_tokens``.

    ``widths[i]`` is the padded length example ``i`` forces on its batch. An example wider than the
    budget on its own gets a batch by itself (the budget cannot be met; the length filter prevents it).
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        w = int(widths[i])
        new_width = max(width, w)
        if cur and (
            new_width * (len(cur) + 1) > batch_tokens or (max_sentences and len(cur) >= max_sentences)
        ):
            batches.append(cur)
            cur, new_width = [], w
        cur.append(int(i))
        width = new_width
    if cur:
        batches.append(cur)
    return batches


def padding_ratio(
    batches: Sequence[Sequence[int]], tgt_lens: np.ndarray, src_lens: np.ndarray | None = None
) -> float:
    """Share of padding among all positions of the padded batches (source and target sides together).

    Target positions are ``len + 1`` (``tgt_in`` = BOS + ids, ``tgt_out`` = ids + EOS).
    """
    pad = real = 0
    for b in batches:
        idx = np.asarray(b)
        for lens in [tgt_lens[idx] + 1] + ([src_lens[idx]] if src_lens is not None else []):
            pad += int(lens.max()) * len(idx) - int(lens.sum())
            real += int(lens.sum())
    return pad / (pad + real) if pad + real else 0.0


class TokenBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices under a token budget, from length buckets (fairseq-style).

    * Cost of a batch = ``max(padded source length, padded target length + 1) * sentences`` and stays
      ``<= batch_tokens`` (and ``<= max_sentences`` sentences when that is > 0).
    * Examples are sorted by that width; with ``bucket_width`` w > 1 examples whose widths fall in the
      same bucket of w pieces are shuffled among themselves (more variety, a little more padding).
      Ties are broken at random per epoch, then the batch order is shuffled by ``(seed, epoch)``;
      every rank computes the same list, so nothing needs to be communicated.
    * DDP: rank r takes batches ``r, r + world, ...``. Every rank gets the same number of batches, so
      collective ops never wait on a rank that ran out: by default the list is padded by repeating
      its first batches (those examples are seen twice in that epoch); ``drop_last=True`` drops the
      remainder instead (those examples are skipped in that epoch). The ``index`` of each example
      lets evaluation remove the repeats.
    * ``state_dict()`` / ``load_state_dict()`` hold the epoch and the number of batches already
      consumed, so a resumed run continues with exactly the remaining batches of that epoch.

    Lightning calls ``set_epoch`` on ``batch_sampler.sampler``; ``sampler`` is this object for that.
    """

    def __init__(
        self,
        tgt_lens: Sequence[int] | np.ndarray,
        batch_tokens: int,
        *,
        src_lens: Sequence[int] | np.ndarray | None = None,
        max_sentences: int = 0,
        bucket_width: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}); got {rank}")
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int64)
        self.src_lens = None if src_lens is None else np.asarray(src_lens, dtype=np.int64)
        if self.src_lens is not None and len(self.src_lens) != len(self.tgt_lens):
            raise ValueError("src_lens and tgt_lens must have the same length")
        # the padded width an example forces on its batch: source S, or target T = len + 1 (BOS/EOS)
        self.widths = (
            self.tgt_lens + 1 if self.src_lens is None else np.maximum(self.src_lens, self.tgt_lens + 1)
        )
        self.batch_tokens, self.max_sentences, self.bucket_width = batch_tokens, max_sentences, bucket_width
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.position = 0  # batches of this rank's epoch already consumed
        self._cache: tuple[int, list[list[int]]] | None = None
        oversize = int((self.widths > batch_tokens).sum())
        if oversize:
            logger.warning(
                "%d examples are wider than batch_tokens=%d; each goes alone in a batch",
                oversize,
                batch_tokens,
            )

    @property
    def sampler(self) -> TokenBatchSampler:
        return self

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of an epoch, in order, before sharding (the same on every rank)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.widths)
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket_width == 1:
            keys = (
                [tie] + ([self.src_lens] if self.src_lens is not None else []) + [self.tgt_lens, self.widths]
            )
        else:
            keys = [tie, self.widths // self.bucket_width]
        order = np.lexsort(keys)  # last key is the primary one
        batches = pack_batches(order, self.widths, self.batch_tokens, self.max_sentences)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of an epoch (see the class docstring for how uneven counts are handled)."""
        batches = self.epoch_batches(epoch)
        if self.world_size == 1:
            return batches
        n = len(batches)
        if self.drop_last:
            total = n // self.world_size * self.world_size
        else:
            total = math.ceil(n / self.world_size) * self.world_size
        padded = [batches[i % n] for i in range(total)] if n else []
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        if self.position >= len(batches):
            self.position = 0  # iterating a finished epoch again (no set_epoch in between) replays it
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch

    def __len__(self) -> int:
        return len(self.rank_batches())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``; the same epoch again keeps the resume position (Lightning calls it on resume)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def padding_ratio(self, epoch: int | None = None) -> float:
        """Share of padding positions in this epoch's batches (all ranks)."""
        return padding_ratio(self.epoch_batches(epoch), self.tgt_lens, self.src_lens)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Resume state; ``consumed`` overrides the batches counted as used (when a loader prefetches)."""
        return {
            "epoch": self.epoch,
            "position": self.position if consumed is None else consumed,
            "seed": self.seed,
            "num_examples": len(self.widths),
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "num_examples", "world_size"):
            if state[key] != mine[key]:
                raise UserError(
                    f"cannot resume the batch order: the checkpoint has {key}={state[key]} but this run has "
                    f"{mine[key]}; resume with the same data, data.seed and number of devices"
                )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


# --------------------------------------------------------------------------------------------------
# Batches as tensors


class TokenDataset(torch.utils.data.Dataset):
    """A tokenized Dataset seen by a DataLoader: rows ``{"src_ids", "tgt_ids", "index"}``.

    ``__getitems__`` fetches a whole batch with one Arrow read instead of one per row.
    """

    def __init__(self, ds: Dataset) -> None:
        self.columns = [c for c in ("src_ids", "tgt_ids") if c in ds.column_names]
        self.ds = ds.select_columns(self.columns)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.ds[int(i)], "index": int(i)}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        cols = self.ds[list(indices)]
        return [{**{c: cols[c][k] for c in self.columns}, "index": int(i)} for k, i in enumerate(indices)]


class Collator:
    """Rows -> the batch dict of the contract.

    ``src`` (B, S) and ``src_lens`` (B,) when rows have ``src_ids`` (the source carries no BOS/EOS);
    ``tgt_in`` (B, T) = BOS + ids, ``tgt_out`` (B, T) = ids + EOS, ``tgt_lens`` (B,) = len + 1;
    ``index`` (B,) the row of each example in its dataset. Padding is ``PAD_ID``.
    """

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        if "src_ids" in rows[0]:
            src = [torch.tensor(r["src_ids"], dtype=torch.long) for r in rows]
            batch["src"] = pad_sequence(src, batch_first=True, padding_value=PAD_ID)  # (B, S)
            batch["src_lens"] = torch.tensor([len(s) for s in src], dtype=torch.long)
        tgt_in = [torch.tensor([BOS_ID, *r["tgt_ids"]], dtype=torch.long) for r in rows]
        tgt_out = [torch.tensor([*r["tgt_ids"], EOS_ID], dtype=torch.long) for r in rows]
        batch["tgt_in"] = pad_sequence(tgt_in, batch_first=True, padding_value=PAD_ID)  # (B, T)
        batch["tgt_out"] = pad_sequence(tgt_out, batch_first=True, padding_value=PAD_ID)  # (B, T)
        batch["tgt_lens"] = torch.tensor([len(t) for t in tgt_in], dtype=torch.long)
        batch["index"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
        return batch


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`TokenBatchSampler` that Lightning can checkpoint mid-epoch.

    Lightning saves ``state_dict()`` of stateful train loaders in each checkpoint and restores it
    on resume. The loader prefetches, so the sampler has usually handed out one batch more than was
    trained on; ``consumed`` (when given) returns the number of batches actually trained on.
    """

    def __init__(
        self,
        dataset,
        batch_sampler: TokenBatchSampler,
        consumed: Callable[[], int | None] | None = None,
        **kw,
    ):
        super().__init__(dataset, batch_sampler=batch_sampler, **kw)
        self._consumed = consumed

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict(consumed=self._consumed() if self._consumed else None)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)


# --------------------------------------------------------------------------------------------------
# DataModules


def load_split(
    cfg: Config, split: str, tokenizer: Tokenizer, train_filter: bool | None = None
) -> tuple[Dataset, FilterReport]:
    """Load, tokenize and filter one split of the config (``"train"``, ``"valid"`` or ``"test"``).

    The training split gets the full length filter. Evaluation splits only lose pairs with an empty
    side (nothing to encode or score), so their scores stay comparable with `s2s evaluate`.
    """
    d: DataConfig = cfg.data
    path = getattr(d, split)
    if not path:
        raise UserError(f"data.{split} is not set; set it to a corpus path (see `s2s data stats --help`)")
    if cfg.task == "lm":
        ds = load_monolingual(path, d.tgt_lang, d.format, d.encoding_errors)
    else:
        ds = load_parallel(path, d.src_lang, d.tgt_lang, d.format, d.encoding_errors)
    ds = tokenize(ds, tokenizer, d.num_proc)
    full = split == "train" if train_filter is None else train_filter
    if full:
        ds, report = filter_by_length(ds, d.min_len, d.max_len, d.max_ratio)
    else:
        ds, report = filter_by_length(ds, 1, None, None)
    logger.info("%s (%s): %s", split, path, report)
    if len(ds) == 0:
        raise UserError(
            f"data.{split} ({path}): no sentences left after the length filter ({report}); "
            "check data.min_len, data.max_len and data.max_ratio"
        )
    return ds, report


def make_sampler(
    ds: Dataset, d: DataConfig, *, shuffle: bool, rank: int = 0, world_size: int = 1
) -> TokenBatchSampler:
    """The :class:`TokenBatchSampler` for a tokenized split with the config's budget and seed."""
    src = column_lengths(ds, "src_ids") if "src_ids" in ds.column_names else None
    return TokenBatchSampler(
        column_lengths(ds, "tgt_ids"),
        d.batch_tokens,
        src_lens=src,
        max_sentences=d.max_sentences,
        bucket_width=d.bucket_width,
        shuffle=shuffle,
        seed=d.seed,
        rank=rank,
        world_size=world_size,
    )


class TranslationDataModule(L.LightningDataModule):
    """Parallel corpora from ``cfg.data`` as token-budget batches for Seq2Seq training.

    Train batches are shuffled by ``data.seed`` + epoch and sharded across DDP ranks by the sampler
    itself, so the Trainer needs ``use_distributed_sampler=False``. Validation/test batches are sorted
    by length, not shuffled. ``num_workers`` stays 0: tokenization is done once up front, and the
    collate step is cheap next to an LSTM step.
    """

    def __init__(self, cfg: Config, tokenizer: Tokenizer, num_workers: int = 0) -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.num_workers = cfg, tokenizer, num_workers
        self.datasets: dict[str, Dataset] = {}
        self.reports: dict[str, FilterReport] = {}
        self.train_sampler: TokenBatchSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "valid", "test")):
            if split in self.datasets or (split != "train" and not getattr(self.cfg.data, split)):
                continue
            self.datasets[split], self.reports[split] = load_split(self.cfg, split, self.tokenizer)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return trainer.global_rank, trainer.world_size
        return 0, 1

    def _consumed(self) -> int | None:
        # batches whose training step has run in this epoch (at on_train_batch_end, or after validation)
        trainer = self.trainer
        if trainer is None:
            return None
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> ResumableDataLoader:
        rank, world = self._rank_world()
        ds = self.datasets["train"]
        self.train_sampler = make_sampler(ds, self.cfg.data, shuffle=True, rank=rank, world_size=world)
        return ResumableDataLoader(
            TokenDataset(ds),
            self.train_sampler,
            consumed=self._consumed,
            collate_fn=Collator(),
            num_workers=self.num_workers,
        )

    def _eval_loader(self, split: str) -> DataLoader | list:
        if split not in self.datasets:
            return []
        rank, world = self._rank_world()
        sampler = make_sampler(
            self.datasets[split], self.cfg.data, shuffle=False, rank=rank, world_size=world
        )
        return DataLoader(
            TokenDataset(self.datasets[split]),
            batch_sampler=sampler,
            collate_fn=Collator(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("valid")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")


class LMDataModule(TranslationDataModule):
    """Monolingual text (``task: lm``; the ``data.tgt_lang`` side) as batches of ``tgt_in``/``tgt_out``."""

    def __init__(self, cfg: Config, tokenizer: Tokenizer, num_workers: int = 0) -> None:
        if cfg.task != "lm":
            cfg = cfg.replace(task="lm")
        super().__init__(cfg, tokenizer, num_workers)


# --------------------------------------------------------------------------------------------------
# Statistics for `s2s data stats`


@dataclass
class SplitStats:
    """What one split looks like after loading, filtering and batching."""

    split: str
    path: str
    report: FilterReport
    src_pieces: tuple[float, int] | None  # (mean, max) pieces per source sentence
    tgt_pieces: tuple[float, int]  # (mean, max) pieces per target sentence
    batches: int
    sentences_per_batch: float
    padding: float  # share of padding positions with length buckets
    padding_random: float  # the same budget with examples in random order (no buckets), for comparison


def corpus_stats(cfg: Config, tokenizer: Tokenizer, splits: Sequence[str] | None = None) -> list[SplitStats]:
    """Counts, pieces per sentence and padding of token-budget batches for each configured split."""
    splits = splits or [s for s in ("train", "valid", "test") if getattr(cfg.data, s)]
    if not splits:
        raise UserError("no corpus configured; set data.train (and data.valid, data.test)")
    out = []
    for split in splits:
        ds, report = load_split(cfg, split, tokenizer)
        sampler = make_sampler(ds, cfg.data, shuffle=False)
        batches = sampler.epoch_batches(0)
        tgt = sampler.tgt_lens
        src = sampler.src_lens
        rng = np.random.default_rng(cfg.data.seed)
        random_batches = pack_batches(
            rng.permutation(len(tgt)), sampler.widths, cfg.data.batch_tokens, cfg.data.max_sentences
        )
        out.append(
            SplitStats(
                split=split,
                path=getattr(cfg.data, split),
                report=report,
                src_pieces=None if src is None else (float(src.mean()), int(src.max())),
                tgt_pieces=(float(tgt.mean()), int(tgt.max())),
                batches=len(batches),
                sentences_per_batch=len(tgt) / max(len(batches), 1),
                padding=padding_ratio(batches, tgt, src),
                padding_random=padding_ratio(random_batches, tgt, src),
            )
        )
    return out
