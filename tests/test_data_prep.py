"""The in-memory path's preparation: corpora read a chunk at a time into the Arrow cache, tokenized a
batch at a time; the rows and ids must be exactly what line-by-line reading and SentencePiece give."""

import os
from pathlib import Path

import datasets.config
import pyarrow as pa
import pytest

from seq2seq_lstm.config import TokenizerConfig
from seq2seq_lstm.data import batching, corpus
from seq2seq_lstm.data.batching import column_lengths, tokenize
from seq2seq_lstm.data.corpus import load_monolingual, load_parallel
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.files import read_lines

TINY = Path(__file__).parent / "fixtures" / "tiny"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    # datasets read HF_DATASETS_CACHE when first imported, before conftest's environment applies: without
    # this, a cache left by an earlier run (of other code) could answer instead of the code under test
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


@pytest.fixture
def small_chunks(monkeypatch):
    # chunks of 3 lines and encode batches of 4 rows: the fixtures span many of each
    monkeypatch.setattr(corpus, "_CHUNK_LINES", 3)
    monkeypatch.setattr(batching, "_ENCODE_ROWS", 4)


def by_line(path: Path, errors: str = "strict") -> list[str]:
    """The oracle: the one-line-at-a-time UTF-8 reader, stripped as the corpus readers strip."""
    return [x.strip() for x in read_lines(path, errors)]


@pytest.mark.parametrize("path", ["train", "train.tsv", "train.jsonl", "train.jsonl.gz", "train.parquet"])
def test_chunked_reading_gives_every_format_the_same_rows(small_chunks, path):
    ds = load_parallel(str(TINY / path), "en", "es")
    assert list(ds["src"]) == by_line(TINY / "train.en")
    assert list(ds["tgt"]) == by_line(TINY / "train.es")
    assert list(ds["line"]) == list(range(len(ds)))


def test_chunks_decode_line_endings_bom_and_whitespace_as_line_by_line(small_chunks, tmp_path):
    en = b"\xef\xbb\xbfone \r\ntwo\r\r\n\n  three\t\n\xe3\x80\x80four\xe3\x80\x80\nfive\r\nsix\nseven\neight"
    de = b"\xef\xbb\xbfeins\nzwei\ndrei\nvier\n\xc2\x85\nsechs\r\nsieben\n \xef\xbb\xbfacht\nneun\n"
    (tmp_path / "c.en").write_bytes(en)
    (tmp_path / "c.de").write_bytes(de)
    ds = load_parallel(str(tmp_path / "c"), "en", "de")
    assert list(ds["src"]) == by_line(tmp_path / "c.en")
    assert list(ds["tgt"]) == by_line(tmp_path / "c.de")
    assert list(ds["src"])[:3] == ["one", "two", ""] and list(ds["tgt"])[-2] == "\ufeffacht"
    assert list(load_monolingual(str(tmp_path / "c.en"), "en")["text"]) == by_line(tmp_path / "c.en")


def test_invalid_utf8_in_a_later_chunk_names_its_line(small_chunks, tmp_path):
    (tmp_path / "c.en").write_text("".join(f"s{i}\n" for i in range(8)), encoding="utf-8")
    (tmp_path / "c.de").write_bytes(b"".join(b"t%d\n" % i for i in range(6)) + b"t\xc3(6\nt7\n")
    with pytest.raises(UserError) as e:
        load_parallel(str(tmp_path / "c"), "en", "de")
    assert str(e.value) == (
        f"{tmp_path}/c.de line 7: invalid UTF-8 (byte 0xc3 at column 2); "
        "fix the file or set data.encoding_errors=replace"
    )
    ds = load_parallel(str(tmp_path / "c"), "en", "de", encoding_errors="replace")
    assert list(ds["tgt"]) == by_line(tmp_path / "c.de", "replace") and list(ds["tgt"])[6] == "t\ufffd(6"


def test_misaligned_files_across_chunks_count_every_line(small_chunks, tmp_path):
    (tmp_path / "c.en").write_text("".join(f"s{i}\n" for i in range(7)), encoding="utf-8")
    (tmp_path / "c.de").write_text("".join(f"t{i}\n" for i in range(5)), encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_parallel(str(tmp_path / "c"), "en", "de")
    assert str(e.value).startswith(f"{tmp_path}/c.en has 7 lines but {tmp_path}/c.de has 5 lines;")


@pytest.fixture(scope="module")
def separate_tok():
    # separate source and target models, so a side mixed up would give other ids
    en, es = by_line(TINY / "train.en"), by_line(TINY / "train.es")
    tok = Tokenizer.train(en, es, TokenizerConfig(vocab_size=120, joint=False, byte_fallback=False))
    assert tok.src_sp.encode("Hello world") != tok.tgt_sp.encode("Hello world")
    return tok


@pytest.mark.parametrize("num_proc", [1, 2])
def test_cached_ids_are_sentencepieces_own(small_chunks, separate_tok, num_proc):
    tok, en, es = separate_tok, by_line(TINY / "train.en"), by_line(TINY / "train.es")
    ds = tokenize(load_parallel(str(TINY / "train"), "en", "es"), tok, num_proc=num_proc)
    assert list(ds["src_ids"]) == [tok.src_sp.encode(s, out_type=int) for s in en]
    assert list(ds["tgt_ids"]) == [tok.tgt_sp.encode(s, out_type=int) for s in es]
    assert ds.features["src_ids"].feature.dtype == "int64"  # as datasets inferred from Python ints before
    mono = tokenize(load_monolingual(str(TINY / "train"), "es"), tok, num_proc=num_proc)
    assert mono.column_names == ["line", "text", "tgt_ids"]
    assert list(mono["tgt_ids"]) == list(ds["tgt_ids"])


def test_encode_array_matches_encode_and_keeps_empty_sentences(tok):
    texts = ["Hello world.", "", "¿Dónde está la biblioteca?"]
    ids = tok.encode_array(texts, "src")
    assert ids.type == pa.list_(pa.int64()) and ids.to_pylist() == tok.encode_src(texts)
    assert ids.to_pylist()[1] == [] and tok.encode_array([], "tgt").to_pylist() == []


def test_the_cache_is_reused_and_renewed_when_a_file_changes(tmp_path, tok):
    (tmp_path / "c.en").write_text("a b\nc d\n", encoding="utf-8")
    (tmp_path / "c.es").write_text("x y\nz w\n", encoding="utf-8")
    first = load_parallel(str(tmp_path / "c"), "en", "es")
    again = load_parallel(str(tmp_path / "c"), "en", "es")
    assert again.cache_files == first.cache_files and again._fingerprint == first._fingerprint
    ids = tokenize(first, tok)
    assert tokenize(again, tok).cache_files == ids.cache_files  # ids read back, not encoded again

    (tmp_path / "c.es").write_text("x y\nz v\n", encoding="utf-8")  # same size: the mtime tells
    st = (tmp_path / "c.es").stat()
    os.utime(tmp_path / "c.es", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load_parallel(str(tmp_path / "c"), "en", "es")
    assert changed._fingerprint != first._fingerprint and list(changed["tgt"]) == ["x y", "z v"]
    new_ids = tokenize(changed, tok)
    assert new_ids.cache_files != ids.cache_files
    assert list(new_ids["tgt_ids"]) == tok.encode_tgt(["x y", "z v"])


def test_a_failed_read_leaves_no_cache_behind(tmp_path):
    (tmp_path / "c.en").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "c.de").write_bytes(b"x\n\xff\n")
    for _ in range(2):  # the second read fails the same way: nothing half-written was cached
        with pytest.raises(UserError, match="line 2: invalid UTF-8"):
            load_parallel(str(tmp_path / "c"), "en", "de")


def test_column_lengths_follow_a_row_selection(tok):
    ds = tokenize(load_parallel(str(TINY / "train"), "en", "es"), tok)
    for picked in (ds, ds.select([7, 2, 30, 2]), ds.select(range(10, 20)).select([9, 0])):
        for column in ("src_ids", "tgt_ids"):
            assert column_lengths(picked, column).tolist() == [len(x) for x in picked[column]]
