"""Suggestion lists of the torch engine and the ONNX engine, at 0-3 typed characters of every word.

    python benchmarks/onnx_suggest_parity.py runs/lm-en exports/lm-en --text data/ding-en-de/test.en

Types each sentence of ``--text`` word by word into one session per engine: before each word, and
with its first 1, 2 and 3 characters typed, both engines are asked for their suggestions. Prints how
many calls returned different word lists and the largest relative difference of a probability where
they agreed (float rounding: the two runtimes order their sums differently). Translation parity is
counted by ``translate_speed.py --onnx``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from seq2seq_lstm.suggest.suggester import Suggester


def compare(a: Suggester, b: Suggester, sentence: str, counts: dict) -> None:
    """Ask both suggesters at every word of ``sentence`` with 0-3 of its characters typed."""
    session_a, session_b = a.session(), b.session()
    words = sentence.split()
    for i, word in enumerate(words):
        done = " ".join(words[:i]) + (" " if i else "")
        for typed in range(min(3, len(word)) + 1):
            x, y = session_a.suggest(done + word[:typed]), session_b.suggest(done + word[:typed])
            counts["calls"] += 1
            if [s.word for s in x] != [s.word for s in y]:
                counts["lists_differ"] += 1
                continue
            for p, q in zip(x, y, strict=True):
                rel = abs(p.prob - q.prob) / max(p.prob, 1e-12)
                counts["max_rel_prob_diff"] = max(counts["max_rel_prob_diff"], rel)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="run directory of a language model (torch engine)")
    p.add_argument("export", help="its `s2s export` folder (ONNX engine)")
    p.add_argument("--text", default="data/ding-en-de/test.en", help="sentences to type, one a line")
    p.add_argument("--sentences", type=int, default=0, help="type only the first N (0 = all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    sentences = [s for s in open(args.text, encoding="utf-8").read().splitlines() if s.strip()]
    sentences = sentences[: args.sentences] if args.sentences else sentences
    a, b = Suggester.from_checkpoint(args.run), Suggester.from_export(args.export, threads=1)
    counts = {"sentences": len(sentences), "calls": 0, "lists_differ": 0, "max_rel_prob_diff": 0.0}
    start = time.perf_counter()
    for sentence in sentences:
        compare(a, b, sentence, counts)
    print(json.dumps({**counts, "seconds": round(time.perf_counter() - start)}))


if __name__ == "__main__":
    main()
