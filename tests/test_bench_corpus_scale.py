"""benchmarks/corpus_scale.py's padding counts, against an example worked out by hand.

The training measurements themselves (minutes each) are not run here."""

from pathlib import Path

import pyarrow as pa
import pytest
from benchmark_module import load_benchmark, unload_benchmark

from seq2seq_lstm.config import load_config
from seq2seq_lstm.data.batching import Collator

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def scale():
    yield load_benchmark("corpus_scale")
    unload_benchmark("corpus_scale")


class Words:
    """A stand-in tokenizer: one piece per word, so every length can be read off the text."""

    def fingerprint(self) -> str:
        return "words"

    def encode_src(self, texts):
        return [[7] * len(t.split()) for t in texts]

    encode_tgt = encode_src

    def encode_array(self, texts, side, num_threads=-1):
        return pa.array(self.encode_src(texts), pa.list_(pa.int64()))


def test_a_batch_counts_real_tokens_and_padded_positions_on_both_sides(scale):
    # sources of 3 and 1 pieces: 4 real, padded to (2, 3) = 6; targets of 1 and 2 pieces become
    # tgt_in of 2 and 3 (BOS + ids): 5 real, padded to (2, 3) = 6
    batch = Collator()([{"src_ids": [5, 6, 7], "tgt_ids": [9], "index": 0},
                        {"src_ids": [8], "tgt_ids": [10, 11], "index": 1}])  # fmt: skip
    assert scale.batch_counts(batch) == (9, 12)


def test_a_small_window_pads_more_than_sorting_the_whole_corpus(scale, tmp_path):
    # pairs (source words, target words): (1, 1) (3, 1) (1, 1) (3, 1); widths max(S, T + 1) = 2 3 2 3.
    # In memory, sorted over the corpus, a budget of 6 gives [1, 3] (2 x 2 = 4 <= 6; the third would
    # be 3 x 3) and [2, 4]: no padding, 2 x (1 + 2) + 2 x (3 + 2) = 16 real tokens.
    # Streamed in order (a shuffle buffer of one) through windows of 2 pairs, each window is one
    # batch of a short and a long pair (width 3, 2 x 3 = 6): sources 1 + 3 real, 2 x 3 padded,
    # targets 2 + 2 real, 2 x 2 padded, so 8 real of 10 per window.
    (tmp_path / "c.en").write_text("a\nb c d\ne\nf g h\n")
    (tmp_path / "c.de").write_text("u\nv\nw\nx\n")
    sets = [f"data.train={tmp_path / 'c'}", "data.batch_tokens=6", "data.max_len=5", "data.shuffle_buffer=1",
            "data.window=2"]  # fmt: skip
    memory = load_config(None, sets)
    streamed = load_config(None, [*sets, "data.streaming=true"])
    assert scale.epoch_counts(memory, Words()) == (2, 16, 16)
    assert scale.epoch_counts(streamed, Words()) == (2, 16, 20)


def test_the_report_sets_padded_beside_real_tokens_per_second_and_cpu_beside_wall_setup(scale):
    run = {
        "prepare_s": 1.0,
        "data_setup_s": 1.0,
        "data_setup_cpu_s": 0.5,
        "first_batch_s": 2.0,
        "peak_rss": 2**30,
    }
    results = {
        (1000, "memory"): [{**run, "tok_s": 900.0, "padded_s": 1000.0}],
        (1000, "streaming"): [{**run, "tok_s": 810.0, "padded_s": 950.0}],
        (4000, "memory"): [
            {**run, "data_setup_s": 2.0, "data_setup_cpu_s": 3.0, "tok_s": 1.0, "padded_s": 1.0}
        ],
    }
    text = scale.report(results)
    assert "| 1,000 | memory | 1.0 | 1.0 | 1000.0 | 2.0 | 900 | 1,000 | 0.900 | 1,024 |" in text
    assert (
        "1,000 pairs: streaming tok/s -10.0% against in-memory (target within 10%); padded tok/s -5.0%"
        in text
    )
    assert "in-memory data setup per pair: +100% spread (target within 25%)" in text  # 1000 and 500 µs
    assert "the cores): 500.0 / 750.0 µs, +50% spread" in text
