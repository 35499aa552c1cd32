"""Long inputs: lines of several sentences translated whole and sentence by sentence (``--split-sentences``).

A model trained on single sentences tends to stop early on a line that holds several. This builds a
visible proxy from a test split, its sentences shuffled with a fixed seed and joined in twos and in
threes (sources and references alike), translates each set with and without sentence splitting, and
prints BLEU, chrF, the output/reference length ratio (sacreBLEU's sys_len / ref_len) and seconds:

    python benchmarks/long_inputs.py --checkpoint runs/ding-en-de --data data/ding-en-de/test

``--extra NAME SRC REF`` adds a set of your own (say multi-sentence Bible verses over a model of that
language pair); ``--limit N`` uses the first N shuffled test sentences (all by default).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path


def proxy(src: list[str], ref: list[str], group: int, seed: int) -> tuple[list[str], list[str]]:
    """Sources and references of ``group`` shuffled sentences joined by a space (the last, shorter
    group dropped), the same draw on both sides."""
    order = list(range(len(src)))
    random.Random(seed).shuffle(order)
    groups = [order[i : i + group] for i in range(0, len(order) - group + 1, group)]
    return [" ".join(src[i] for i in g) for g in groups], [" ".join(ref[i] for i in g) for g in groups]


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"bleu": bleu.score, "chrf": chrf.score, "ratio": bleu.sys_len / max(bleu.ref_len, 1)}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--checkpoint", required=True, help="a translation run directory")
    parser.add_argument("--data", default="data/ding-en-de/test", help="PREFIX of PREFIX.{src,tgt}")
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="de")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="use this many test sentences (0: all)")
    parser.add_argument("--beam-size", type=int, help="default: the run's generation.beam_size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra", nargs=3, action="append", default=[], metavar=("NAME", "SRC", "REF"))
    args = parser.parse_args()

    import sacrebleu
    import torch

    from seq2seq_lstm.inference.sentences import split_sentences
    from seq2seq_lstm.inference.translator import Translator

    torch.set_num_threads(args.threads)
    read = lambda p: Path(p).read_text(encoding="utf-8").splitlines()  # noqa: E731
    src, ref = read(f"{args.data}.{args.src}"), read(f"{args.data}.{args.tgt}")
    if args.limit:
        order = list(range(len(src)))
        random.Random(args.seed).shuffle(order)
        src, ref = [src[i] for i in order[: args.limit]], [ref[i] for i in order[: args.limit]]
    sets = {f"x{n}": proxy(src, ref, n, args.seed) for n in (1, 2, 3)}
    sets.update({name: (read(s), read(r)) for name, s, r in args.extra})
    overrides = {"beam_size": args.beam_size} if args.beam_size else {}
    translators = {
        mode: Translator.from_checkpoint(args.checkpoint, split_sentences=mode == "split", **overrides)
        for mode in ("whole", "split")
    }
    language = translators["split"].split_sentences
    print(f"checkpoint {args.checkpoint}; beam {translators['whole'].options.beam_size}; seed {args.seed}; "
          f"{len(src)} test sentences; {torch.get_num_threads()} thread(s)")  # fmt: skip
    print("| set | lines | words/line | lines split | mode | BLEU | chrF | out/ref length | seconds |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, (sources, refs) in sets.items():
        words = sum(len(s.split()) for s in sources) / len(sources)
        split = sum(len(split_sentences(s, language)) > 1 for s in sources)
        for mode, translator in translators.items():
            start = time.perf_counter()
            hyps = translator.translate(sources)
            seconds = time.perf_counter() - start
            s = score(hyps, refs)
            print(f"| {name} | {len(sources)} | {words:.1f} | {split} | {mode} | {s['bleu']:.1f} | "
                  f"{s['chrf']:.1f} | {s['ratio']:.2f} | {seconds:.0f} |")  # fmt: skip
    print(f"sacreBLEU {sacrebleu.__version__}: BLEU nrefs:1|case:mixed|tok:13a|smooth:exp, chrF2 defaults")


if __name__ == "__main__":
    main()
