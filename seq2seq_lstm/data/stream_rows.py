"""A corpus read as a stream of rows: every format of :mod:`.corpus`, sharded by line, nothing held.

The rows are the in-memory path's (the same line parsers: :func:`.corpus.tsv_row`,
:func:`.corpus.jsonl_row`, the parquet column choice), so both paths train on the same pairs and a
malformed line is the same one-line error naming file and line. Here that error can instead be
skipped and counted (``data.skip_bad_lines``): a skipped line travels on as a row whose ``bad`` column
says why, so the counts come out of the same deterministic stream as the pairs.

Shard ``k`` of ``K`` holds the lines ``n`` with ``n % K == k``: every process reads the raw bytes of the
whole file but decodes and parses only its own lines, which works for gzip (no seeking) and for
aligned text pairs (no byte offsets shared by two files) alike. ``datasets`` turns the shard list into
an :class:`~datasets.IterableDataset` that :func:`~datasets.distributed.split_dataset_by_node` deals
out to ranks and DataLoader workers, and whose bounded buffer shuffles the rows.
"""

from __future__ import annotations

import gzip
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Features, IterableDataset, Value
from datasets.distributed import split_dataset_by_node

from ..config import Config
from ..errors import UserError
from ..files import decode_line
from .corpus import jsonl_row, parquet_sources, resolve_corpus, tsv_header, tsv_row
from .corpus import tokenizer_texts as corpus_tokenizer_texts

REPLACE_HINT = "set data.encoding_errors=replace, or data.skip_bad_lines=true to skip such lines"


@dataclass(frozen=True)
class StreamSource:
    """One split as files to stream: ``columns`` maps output names (``src``/``tgt``, or ``text`` for a
    language model) to the languages they hold."""

    paths: tuple[str, ...]  # text: one file per column, line-aligned; otherwise one file
    fmt: str  # text, tsv, jsonl or parquet
    columns: tuple[tuple[str, str], ...]
    errors: str = "strict"  # invalid UTF-8: strict (an error) or replace
    skip_bad_lines: bool = False

    @property
    def names(self) -> list[str]:
        return [out for out, _ in self.columns]

    def stamp(self) -> list[list]:
        """Path, size and modification time of each file: a resumed stream must read the same data."""
        return [[p, *_stat(Path(p))] for p in self.paths]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        raise UserError(f"corpus file {path} does not exist") from None
    return st.st_size, st.st_mtime_ns


def stream_source(cfg: Config, split: str = "train") -> StreamSource:
    """The files of ``data.<split>`` (checked to exist) as a :class:`StreamSource`."""
    d = cfg.data
    p, fmt = resolve_corpus(getattr(d, split), d.format)
    langs = {"text": d.tgt_lang} if cfg.task == "lm" else {"src": d.src_lang, "tgt": d.tgt_lang}
    if fmt != "text":
        paths = [p]
    elif cfg.task == "lm":
        paths = [p if p.is_file() or not Path(f"{p}.{d.tgt_lang}").is_file() else Path(f"{p}.{d.tgt_lang}")]
    else:
        paths = [Path(f"{p}.{lang}") for lang in langs.values()]
    for path in paths:
        _stat(path)
    columns = tuple(langs.items())
    return StreamSource(tuple(str(x) for x in paths), fmt, columns, d.encoding_errors, d.skip_bad_lines)


# --------------------------------------------------------------------------------------------------
# Raw lines of one shard


def _open(path: Path):
    _stat(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's byte lines; a file that vanishes or cannot be read mid-stream is one clear line."""
    n = 0
    try:
        with _open(path) as f:
            for n, raw in enumerate(f, start=1):  # noqa: B007 (n says where reading stopped)
                yield raw
    except (gzip.BadGzipFile, EOFError) as e:
        raise UserError(f"{path}: not a valid gzip file ({e})") from None
    except OSError as e:
        raise UserError(f"corpus file {path}: reading stopped after line {n} ({e.strerror or e})") from None


def _decode(raw: bytes, path: Path, n: int, errors: str) -> str:
    """Line ``n`` (0-based) as text, as :func:`~seq2seq_lstm.files.decode_lines` reads it."""
    return decode_line(raw, str(path), n + 1, errors, REPLACE_HINT, strip_bom=n == 0)


def _mine(lines: Iterator, shard: int, num_shards: int) -> Iterator[tuple[int, object]]:
    """``(n, line)`` for the lines of this shard, the others passed over unread."""
    return ((n, x) for n, x in enumerate(lines) if n % num_shards == shard)


# --------------------------------------------------------------------------------------------------
# Rows of one shard, by format


def _text_rows(src: StreamSource, shard: int, num_shards: int) -> Iterator[Callable[[], dict]]:
    paths = [Path(p) for p in src.paths]
    sentinel = object()
    aligned = itertools.zip_longest(*[_raw_lines(p) for p in paths], fillvalue=sentinel)
    for n, raws in _mine(aligned, shard, num_shards):
        if any(r is sentinel for r in raws):
            raise UserError(
                f"{' and '.join(map(str, paths))} have different line counts (one ends at line {n}); "
                "aligned files need one sentence per line in each, in the same order"
            )
        yield lambda n=n, raws=raws: {
            "line": n,
            **{
                out: _decode(r, p, n, src.errors).strip()
                for out, r, p in zip(src.names, raws, paths, strict=True)
            },
        }


def _tsv_rows(src: StreamSource, shard: int, num_shards: int) -> Iterator[Callable[[], dict]]:
    path = Path(src.paths[0])
    lines = _raw_lines(path)
    header = next(lines, None)
    if header is None:
        return
    width, pos = tsv_header(path, _decode(header, path, 0, src.errors), dict(src.columns))
    for n, raw in _mine(lines, shard, num_shards):
        yield lambda n=n, raw=raw: _blank_or(
            _decode(raw, path, n + 1, src.errors), lambda t: tsv_row(path, t, n, width, pos)
        )


def _jsonl_rows(src: StreamSource, shard: int, num_shards: int) -> Iterator[Callable[[], dict]]:
    path = Path(src.paths[0])
    for n, raw in _mine(_raw_lines(path), shard, num_shards):
        yield lambda n=n, raw=raw: _blank_or(
            _decode(raw, path, n, src.errors), lambda t: jsonl_row(path, t, n, dict(src.columns))
        )


def _blank_or(text: str, parse: Callable[[str], dict]) -> dict | None:
    return parse(text) if text.strip() else None  # blank lines are not rows, as in the in-memory readers


def _parquet_rows(src: StreamSource, shard: int, num_shards: int) -> Iterator[Callable[[], dict]]:
    import pyarrow.parquet as pq

    path = Path(src.paths[0])
    sources = parquet_sources(path, dict(src.columns))
    top = sorted({s.split(".")[0] for s in sources.values()})
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=top):
        table = batch.to_pydict()
        for i in range(batch.num_rows):
            if n % num_shards == shard:
                row = {"line": n}
                for out, lang in src.columns:
                    col, _, field = sources[lang].partition(".")
                    value = table[col][i] if not field else (table[col][i] or {}).get(field)
                    row[out] = (value or "").strip()  # nulls are empty sentences, as in the in-memory path
                yield lambda row=row: row
            n += 1


_ROWS = {"text": _text_rows, "tsv": _tsv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}


def shard_rows(src: StreamSource, shard: int = 0, num_shards: int = 1) -> Iterator[dict]:
    """Rows ``{"line", <columns>, "bad"}`` of one shard; ``bad`` is "" or, with ``skip_bad_lines``,
    the error of a line that was skipped (its text columns then empty)."""
    empty = {out: "" for out in src.names}
    for parse in _ROWS[src.fmt](src, shard, num_shards):
        try:
            row = parse()
        except UserError as e:
            if not src.skip_bad_lines:
                raise
            yield {"line": -1, **empty, "bad": str(e)}
            continue
        if row is not None:
            yield {**row, "bad": ""}


def _generate(shards: list[tuple], source: StreamSource) -> Iterator[dict]:
    # module level so datasets can pickle it; one (shard, num_shards) per shard
    for shard, num_shards in shards:
        yield from shard_rows(source, shard, num_shards)


def node_rows(
    source: StreamSource, node: int, num_nodes: int, *, seed: int, epoch: int, buffer: int
) -> IterableDataset:
    """The rows of one node (rank x DataLoader worker) as a ``datasets`` stream shuffled through a
    bounded buffer of ``buffer`` rows by ``seed`` and ``epoch``."""
    features = Features(
        {"line": Value("int64"), **{out: Value("string") for out in source.names}, "bad": Value("string")}
    )
    rows = IterableDataset.from_generator(
        _generate,
        features=features,
        gen_kwargs={"shards": [(k, num_nodes) for k in range(num_nodes)], "source": source},
    )
    rows = split_dataset_by_node(rows, rank=node, world_size=num_nodes)
    # one seed for every node: datasets also permutes the shard list with it, and the nodes must agree
    # on that permutation to stay disjoint. One input shard per node: datasets' multi-shard
    # interleaving runs a thread per row (10x slower)
    rows = rows.shuffle(seed=seed, buffer_size=buffer, max_buffer_input_shards=1)
    rows.set_epoch(epoch)
    return rows


def sample_texts(source: StreamSource, n: int, seed: int) -> dict[str, Iterable[str]]:
    """Texts a tokenizer trains on without the corpus in memory, by column: a seeded reservoir sample
    (Vitter's algorithm R) of ``n`` rows, or with ``n`` 0 every row, each column read as its own pass."""
    if not n:
        return {out: _column(source, out) for out in source.names}
    rng = np.random.default_rng(seed)
    picked: list[dict] = []
    for i, row in enumerate(r for r in shard_rows(source) if not r["bad"]):
        if i < n:
            picked.append(row)
        elif (j := int(rng.integers(0, i + 1))) < n:
            picked[j] = row
    if not picked:
        raise UserError(f"corpus {' / '.join(source.paths)} is empty: it has no sentences")
    return {out: [r[out] for r in picked] for out in source.names}


def _column(source: StreamSource, out: str) -> Iterator[str]:
    return (r[out] for r in shard_rows(source) if not r["bad"])


def tokenizer_texts(cfg: Config, inputs: Sequence[str | os.PathLike] = ()) -> tuple[Any, Any | None]:
    """:func:`.corpus.tokenizer_texts`, except that the training split is streamed (never loaded whole)
    when ``data.streaming`` is on or ``tokenizer.sample_sentences`` asks for a sample of it."""
    n = cfg.tokenizer.sample_sentences
    if inputs or not cfg.data.train or not (cfg.data.streaming or n):
        return corpus_tokenizer_texts(cfg, inputs)
    texts = sample_texts(stream_source(cfg, "train"), n, cfg.tokenizer.seed)
    if cfg.task == "lm":
        return texts["text"], None
    return texts["src"], texts["tgt"]
