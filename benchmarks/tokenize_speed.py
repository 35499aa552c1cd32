"""Tokenization throughput: sentence pairs per second through the corpus pipeline with a joint model.

    python benchmarks/tokenize_speed.py                       # Ding en-de train, joint 8k unigram
    python benchmarks/tokenize_speed.py --prefix data/x/train --src de --tgt en --num-proc 1

Trains a joint SentencePiece model on the corpus (not timed), then times `seq2seq_lstm.data.batching.tokenize`
(datasets.map, batched) with each `--num-proc` count of worker processes, caching off, best of
`--repeats`. Falls back to the embedded Bible en-es sample when the Ding files are absent.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DING = Path(__file__).resolve().parents[1] / "data" / "ding-en-de" / "train"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--prefix", default=str(DING), help="aligned text prefix (PREFIX.SRC, PREFIX.TGT) or a corpus path"
    )
    p.add_argument("--src", default="en", help="source language")
    p.add_argument("--tgt", default="de", help="target language")
    p.add_argument("--vocab-size", type=int, default=8000, help="joint SentencePiece vocabulary")
    p.add_argument(
        "--num-proc", type=int, nargs="+", default=[1, 2], help="datasets.map worker processes to compare"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    args = p.parse_args()

    prefix, src, tgt = args.prefix, args.src, args.tgt
    if prefix == str(DING) and not Path(f"{prefix}.{src}").is_file():
        prefix, src, tgt = "embedded:bible-en-es/train", "en", "es"
        print(f"{DING}.en not found; using {prefix}")

    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_DATASETS_CACHE"] = cache  # every repeat tokenizes for real, never from cache
        import datasets

        datasets.disable_progress_bars()
        from seq2seq_lstm.config import TokenizerConfig
        from seq2seq_lstm.data.batching import tokenize
        from seq2seq_lstm.data.corpus import load_parallel
        from seq2seq_lstm.data.tokenizer import Tokenizer

        ds = load_parallel(prefix, src, tgt)
        tok = Tokenizer.train(ds["src"], ds["tgt"], TokenizerConfig(vocab_size=args.vocab_size))
        pieces = sum(len(x) for x in tok.encode_src(ds["src"])) + sum(
            len(x) for x in tok.encode_tgt(ds["tgt"])
        )
        print(f"corpus: {prefix} ({src}-{tgt}), {len(ds)} pairs, {pieces} pieces")
        print(f"model: joint {args.vocab_size}-piece unigram; {os.cpu_count()} CPU cores")
        datasets.disable_caching()  # map must encode again on every run
        for num_proc in args.num_proc:
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                tokenize(ds, tok, num_proc=num_proc)
                best = min(best, time.perf_counter() - t0)
            rate = len(ds) / best
            print(f"num_proc={num_proc}: {rate:,.0f} sentence pairs/s ({best:.2f} s, best of {args.repeats})")


if __name__ == "__main__":
    main()
