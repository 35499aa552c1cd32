"""Reading corpora from local files: text pairs, TSV, JSONL, parquet, embedded samples.

Formats (``data.format: auto`` picks by extension; see :data:`FORMAT_BY_SUFFIX`):

* ``text``: a prefix ``PATH`` naming two aligned files ``PATH.{src_lang}`` and ``PATH.{tgt_lang}``;
* ``tsv``: a header row naming the language columns, one pair per row, no quoting (``.tsv``, ``.tsv.gz``);
* ``jsonl``: ``{"translation": {"en": ..., "de": ...}}`` (or the language keys at top level) per line;
* ``parquet``: language columns, or a ``translation`` struct column;
* ``embedded:NAME/SPLIT``: ``seq2seq_lstm/corpora/NAME/SPLIT.tsv.gz`` shipped inside the package.

Monolingual text (language models) is one sentence per line; a TSV/JSONL/parquet/embedded corpus can
serve as well, and then its ``data.tgt_lang`` side is read (the LM is the target-side decoder).

Text-like files are read and checked by our own readers (line counts, UTF-8, fields) so that a bad
file gives one clear line naming the file and line; the rows are written as Arrow into the
``datasets`` cache, keyed by the files' size and modification time, and memory-mapped from there
(tokenization is cached beside them by fingerprint, see :func:`.batching.tokenize`).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets.config
import pyarrow as pa
from datasets import Dataset, Features, Value
from datasets.table import MemoryMappedTable

from ..config import Config
from ..errors import ConfigError, UserError
from ..files import ENCODING_ERRORS, atomic_write, decode_chunk

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
_CHUNK_LINES = 10_000  # lines decoded per call and rows per Arrow record batch: per-chunk costs vanish
_REPLACE_HINT = "set data.encoding_errors=replace"

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
    """Decoded lines without their line ending; invalid UTF-8 is an error naming file, line and column."""
    for chunk in _line_chunks(path, errors):
        yield from chunk


def _line_chunks(path: Path, errors: str) -> Iterator[list[str]]:
    """The lines of :func:`_lines`, ``_CHUNK_LINES`` at a time, each chunk decoded in one call
    (:func:`.files.decode_chunk`)."""
    if errors not in ENCODING_ERRORS:
        raise ValueError(f"errors must be one of {', '.join(ENCODING_ERRORS)}; got {errors!r}")
    try:
        with _open_binary(path) as f:
            first = 0
            while raw := list(itertools.islice(f, _CHUNK_LINES)):
                yield decode_chunk(raw, str(path), first, errors, _REPLACE_HINT)
                first += len(raw)
    except (gzip.BadGzipFile, EOFError) as e:
        raise UserError(f"{path}: not a valid gzip file ({e})") from None


def _text_batches(paths: Sequence[Path], names: Sequence[str], errors: str) -> Iterator[dict[str, list]]:
    """Column batches ``{"line": [...], name: [...]}`` of line-aligned files, one column per file,
    sentences stripped; different line counts are an error naming every file's count."""
    for p in paths:
        if not p.is_file():
            raise UserError(f"corpus file {p} does not exist")
    streams = [_line_chunks(p, errors) for p in paths]
    n = 0
    while True:
        chunks = [next(s, []) for s in streams]
        size = len(chunks[0])
        if any(len(c) != size for c in chunks):
            counts = [n + len(c) + sum(len(rest) for rest in s) for c, s in zip(chunks, streams, strict=True)]
            detail = " but ".join(
                f"{p} has {c} line{'' if c == 1 else 's'}" for p, c in zip(paths, counts, strict=True)
            )
            raise UserError(f"{detail}; aligned files need one sentence per line in each, in the same order")
        if size == 0:
            return
        text = {k: [x.strip() for x in c] for k, c in zip(names, chunks, strict=True)}
        yield {"line": list(range(n, n + size)), **text}
        n += size


def _read_aligned_text(paths: Sequence[Path], names: Sequence[str], errors: str) -> Iterator[dict]:
    """Rows from line-aligned files, one column per file; different line counts are an error."""
    for batch in _text_batches(paths, names, errors):
        for i, line in enumerate(batch["line"]):
            yield {"line": line, **{k: batch[k][i] for k in names}}


def _read_tsv(path: Path, columns: dict[str, str], errors: str) -> Iterator[dict]:
    """Rows of a TSV whose header names the languages; fields are split on tabs only (no quoting)."""
    lines = _lines(path, errors)
    header = next(lines, None)
    if header is None:
        return
    width, pos = tsv_header(path, header, columns)
    for n, text in enumerate(lines):
        if text.strip():  # blank lines (a trailing one, say) are not rows
            yield tsv_row(path, text, n, width, pos)


def tsv_header(path: Path, header: str, columns: dict[str, str]) -> tuple[int, dict[str, int]]:
    """``(fields per row, output column -> field index)`` from a TSV header naming the languages."""
    names = header.split("\t")
    missing = [lang for lang in columns.values() if lang not in names]
    if missing:
        raise UserError(
            f"{path} line 1: the header has columns {', '.join(names)} but no {' or '.join(missing)}; "
            "the header must name the languages, or set data.src_lang / data.tgt_lang to its columns"
        )
    return len(names), {out: names.index(lang) for out, lang in columns.items()}


def tsv_row(path: Path, text: str, n: int, width: int, pos: dict[str, int]) -> dict:
    """The row of data line ``n`` (0-based, after the header) of a TSV; a wrong field count is an error."""
    fields = text.split("\t")
    if len(fields) != width:
        raise UserError(
            f"{path} line {n + 2}: {len(fields)} tab-separated fields but the header has {width}; "
            "sentences may not contain tabs"
        )
    return {"line": n, **{out: fields[i].strip() for out, i in pos.items()}}


def _read_jsonl(path: Path, columns: dict[str, str], errors: str) -> Iterator[dict]:
    """Rows of JSON lines ``{"translation": {"en": ..., "de": ...}}`` or ``{"en": ..., "de": ...}``."""
    for n, text in enumerate(_lines(path, errors)):
        if text.strip():
            yield jsonl_row(path, text, n, columns)


def jsonl_row(path: Path, text: str, n: int, columns: dict[str, str]) -> dict:
    """The row of line ``n`` (0-based) of a JSONL corpus; bad JSON or a missing language is an error."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # json's own message can end in "at" ("Unterminated string starting at"): the column follows
        where = f"{e.msg} column {e.colno}" if e.msg.endswith(" at") else f"{e.msg} at column {e.colno}"
        raise UserError(f"{path} line {n + 1}: not valid JSON ({where})") from None
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
    return row


_READERS: dict[str, Callable[..., Iterator[dict]]] = {"tsv": _read_tsv, "jsonl": _read_jsonl}


def _batches(reader: str, paths: list[Path], columns: dict[str, str], errors: str) -> Iterator[dict]:
    """Column batches ``{"line": [...], column: [...]}`` of a text, TSV or JSONL corpus."""
    if reader == "text":
        yield from _text_batches(paths, list(columns), errors)
        return
    rows = _READERS[reader](paths[0], columns, errors)
    while chunk := list(itertools.islice(rows, _CHUNK_LINES)):
        yield {k: [row[k] for row in chunk] for k in ("line", *columns)}


def _write_rows(out: Path, batches: Iterator[dict], schema: pa.Schema, what: str) -> None:
    """Write ``batches`` as one Arrow stream file (the format ``datasets`` memory-maps), atomically."""

    def write(tmp: Path) -> None:
        rows = 0
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(pa.record_batch(batch, schema=schema))
                rows += len(batch["line"])
        if rows == 0:
            raise UserError(f"corpus {what} is empty: it has no sentences")

    atomic_write(out, write)


def _stamp(paths: Sequence[Path]) -> str:
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _from_reader(reader: str, paths: list[Path], columns: dict[str, str], errors: str) -> Dataset:
    """The rows of a text/TSV/JSONL corpus as a memory-mapped Dataset, read once into the ``datasets``
    cache (keyed by the files' size and modification time) and reused while the files are unchanged.

    The rows are written a chunk at a time as Arrow record batches, not one example at a time through
    ``Dataset.from_generator``, whose per-example feature encoding cost several times the reading.
    """
    for p in paths:
        if not p.is_file():
            raise UserError(f"corpus file {p} does not exist")
    key = json.dumps([_READER_VERSION, reader, _stamp(paths), columns, errors])
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    features = Features({"line": Value("int64"), **{out: Value("string") for out in columns}})
    out = Path(datasets.config.HF_DATASETS_CACHE) / "s2s_corpora" / fingerprint / "rows.arrow"
    if not out.is_file():
        batches = _batches(reader, paths, columns, errors)
        _write_rows(out, batches, features.arrow_schema, " / ".join(str(p) for p in paths))
    return Dataset(MemoryMappedTable.from_file(str(out)), fingerprint=fingerprint)


def parquet_sources(path: Path, columns: dict[str, str]) -> dict[str, str]:
    """Language -> the parquet column that holds it (``en``, or ``translation.en`` in a struct)."""
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
        return {lang: lang for lang in langs}
    if "translation" in schema.names and all(
        isinstance(schema.field("translation").type, pa.StructType)
        and schema.field("translation").type.get_field_index(lang) >= 0
        for lang in langs
    ):
        return {lang: f"translation.{lang}" for lang in langs}
    raise UserError(
        f"{path}: parquet columns are {', '.join(schema.names)}; expected columns "
        f"{' and '.join(langs)} or a translation struct with those fields"
    )


def _from_parquet(path: Path, columns: dict[str, str]) -> Dataset:
    sources = parquet_sources(path, columns)
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


def tokenizer_texts(cfg: Config, inputs: Sequence[str | os.PathLike] = ()) -> tuple[Any, Any | None]:
    """``(source texts, target texts or None)`` a tokenizer is trained on: the ``inputs`` files
    (one: one language or a language model; two: source then target), else the config's training
    split (source and target, or the language model's text)."""
    d = cfg.data
    if len(inputs) > 2:
        raise UserError(
            f"--input takes one file (one language or LM) or two (source, target); got {len(inputs)}"
        )
    if inputs:
        texts = [read_sentences(p, d.encoding_errors) for p in inputs]
        return texts[0], (texts[1] if len(texts) == 2 else None)
    if not d.train:
        raise ConfigError("data.train is not set; set it to the training corpus")
    if cfg.task == "lm":
        return load_monolingual(d.train, d.tgt_lang, d.format, d.encoding_errors)["text"], None
    ds = load_parallel(d.train, d.src_lang, d.tgt_lang, d.format, d.encoding_errors)
    return ds["src"], ds["tgt"]
