"""Tune dynamic evaluation (``--adapt dynamic``) on tuning documents by per-piece perplexity.

Each document is read in order, every sentence scored before the adapter learns it and the adapter
reset between documents (Krause et al. 2018's dynamic-evaluation perplexity): a forward pass and a
learning step per sentence, far cheaper than a keystroke simulation per setting. The grid's best
setting is then measured with ``s2s suggest-eval --adapt dynamic --documents`` on the test documents.

    python benchmarks/tune_dynamic.py --checkpoint RUN data/en-mono/documents/bible-tune.txt \\
        data/en-mono/documents/pydoc-tune.txt --lr 0.003,0.01,0.03,0.1 --output-only 0,1
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import torch

from seq2seq_lstm.files import read_lines
from seq2seq_lstm.suggest.dynamic import DynamicAdapter, DynamicSettings
from seq2seq_lstm.suggest.keystrokes import split_documents
from seq2seq_lstm.suggest.suggester import Suggester


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="documents files (a blank line between documents)")
    parser.add_argument("--checkpoint", required=True, help="run directory of a language model")
    parser.add_argument("--lr", default="0.01,0.03,0.1", help="comma-separated learning rates")
    parser.add_argument("--steps", default="1", help="comma-separated steps per sentence")
    parser.add_argument("--output-only", default="0", help="comma-separated: 0 (all weights learn), 1")
    parser.add_argument("--decay", default="0", help="comma-separated decays to the trained weights")
    parser.add_argument(
        "--max-documents", type=int, default=0, help="first N documents of each file (0 = all)"
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    suggester = Suggester.from_checkpoint(args.checkpoint)
    sets = {}
    for file in args.files:
        docs = split_documents(read_lines(file, "strict"))
        sets[file] = docs[: args.max_documents] if args.max_documents else docs
    grid = itertools.product(
        args.lr.split(","), args.steps.split(","), args.output_only.split(","), args.decay.split(",")
    )
    base = DynamicAdapter(suggester.model, suggester.tokenizer)
    plain = {f: base.document_log_likelihood(d, learn=False) for f, d in sets.items()}
    print("setting\t" + "\t".join(f"ppl {f}" for f in sets) + "\tms/word")
    print("none\t" + "\t".join(f"{math.exp(-ll / n):.2f}" for ll, n in plain.values()) + "\t-")
    for lr, steps, output_only, decay in grid:
        settings = DynamicSettings(
            lr=float(lr), steps=int(steps), output_only=output_only == "1", decay=float(decay)
        )
        adapter = DynamicAdapter(suggester.model, suggester.tokenizer, settings)
        t0 = time.perf_counter()
        ppl = [math.exp(-ll / n) for ll, n in (adapter.document_log_likelihood(d) for d in sets.values())]
        name = f"lr={lr} steps={steps} output_only={output_only} decay={decay}"
        stats = adapter.stats
        cost = f"{stats.ms_per_word():.1f} (skipped {stats.skipped}/{stats.steps + stats.skipped})"
        print(
            f"{name}\t" + "\t".join(f"{p:.2f}" for p in ppl) + f"\t{cost}\t{time.perf_counter() - t0:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
