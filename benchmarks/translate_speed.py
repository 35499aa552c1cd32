"""Decoding speed of `s2s translate`: sentences/s and target pieces/s, beam 5 and greedy, batch 32 and 1.

    python benchmarks/translate_speed.py runs/ding-en-de                       # a trained run directory
    python benchmarks/translate_speed.py --random-reference runs/random-ref     # no trained model yet
    python benchmarks/translate_speed.py runs/ding-en-de --onmt-json onmt.json  # ratios to OpenNMT-py
    # torch float32 and int8 and the ONNX Runtime engine over `s2s export` folders, alternating
    python benchmarks/translate_speed.py runs/ding-en-de --dtypes float32,int8 \
        --onnx exports/ding-en-de --onnx exports/ding-en-de-int8 --rounds 3

Decodes the Ding test source (data/ding-en-de/test.en) through the public ``Translator`` API (the
time covers tokenization, batching, search and detokenization, not loading), in the four modes
OpenNMT-py's baseline uses (``benchmarks/opennmt_baseline.sh``: beam5_bs32, beam5_bs1,
greedy_bs32, greedy_bs1; batches of N sentences), and reports sentences/s, target pieces/s (EOS
included), mean output length (an undertrained model runs to the maximum length, which distorts
sentences/s), BLEU when the reference exists, and peak RSS (the process's peak so far: modes run in
order). It also checks that batch 1 and batch 32 give identical translations. Batch-1 modes decode
the first ``--bs1-limit`` sentences (slow); batch 32 is compared on the same sentences.

Several variants in one run (``--dtypes``, ``--onnx DIR`` for `s2s translate --engine onnx` over an
export folder) take turns within each mode, ``--rounds`` times; the figures are each variant's
median round (by sentences/s), and each variant's translations are compared with the first one's.

``--random-reference DIR`` builds the reference-size model (embeddings 256, 2+2 LSTM layers of 512,
Luong general attention with input feeding, joint 8,000-piece SentencePiece model trained on the Ding
training source and target) with random weights into DIR (once) and benchmarks that.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODES = {  # OpenNMT-py baseline's names -> (beam size, sentences per batch)
    "beam5_bs32": (5, 32),
    "beam5_bs1": (5, 1),
    "greedy_bs32": (1, 32),
    "greedy_bs1": (1, 1),
}


def build_random_reference(out: Path) -> Path:
    """The reference config's model with random weights, as a run directory (reused when present)."""
    from seq2seq_lstm.checkpoint import RunDir, export_weights, save_checkpoint_info
    from seq2seq_lstm.config import load_config, save_config
    from seq2seq_lstm.data.tokenizer import Tokenizer
    from seq2seq_lstm.model.seq2seq import Seq2Seq

    run = RunDir(out)
    if run.weights.is_file():
        return out
    data = ROOT / "data/ding-en-de"
    cfg = load_config(
        ROOT / "configs/ding_en_de_reference.yaml", [f"training.out_dir={out}", "model.dropout=0.0"]
    )
    src = (data / "train.en").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.de").read_text(encoding="utf-8").splitlines()
    tokenizer = Tokenizer.train(src, tgt, cfg.tokenizer, out_dir=run.tokenizer)
    save_config(cfg, run.config)
    torch.manual_seed(cfg.training.seed)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    export_weights(model, run, save_checkpoint_info(cfg, tokenizer))
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def translator_for(variant: tuple[str, str, Path, str], beam: int, batch: int, device: str, shortlist: int):
    """The Translator of a variant (label, engine, path, dtype) in one mode."""
    from seq2seq_lstm.inference.translator import Translator

    _, engine, path, dtype = variant
    settings = {"beam_size": beam, "n_best": 1, "batch_sentences": batch, "batch_tokens": 1_000_000}
    if engine == "onnx":
        return Translator.from_export(path, **settings)
    return Translator.from_checkpoint(path, dtype=dtype, device=device, shortlist=shortlist, **settings)


def run_mode(
    variant: tuple[str, str, Path, str],
    lines: list[str],
    beam: int,
    batch: int,
    device: str,
    shortlist: int = 0,
) -> tuple[dict, list[str]]:
    translator = translator_for(variant, beam, batch, device, shortlist)
    translator.translate(lines[:2])  # warm-up: first-call allocations and kernel choices
    start = time.perf_counter()
    results = translator.translate_full(lines, attention=False)
    seconds = time.perf_counter() - start
    pieces = sum(len(r[0].tokens) + r[0].chunks for r in results)  # EOS included
    texts = [r[0].text for r in results]
    return {
        "sentences": len(lines),
        "seconds": round(seconds, 2),
        "sent_per_s": round(len(lines) / seconds, 1),
        "tgt_tok_per_s": round(pieces / seconds, 1),
        "mean_out_len": round(sum(len(r[0].tokens) for r in results) / len(lines), 1),
        "peak_rss_mib": round(peak_rss_mib()),
        **({"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)} if device != "cpu" else {}),
    }, texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", nargs="?", type=Path, help="run directory written by `s2s train`")
    p.add_argument("--random-reference", type=Path, help="build/use a random-weight reference model in DIR")
    p.add_argument("--source", type=Path, default=ROOT / "data/ding-en-de/test.en")
    p.add_argument("--reference", type=Path, default=ROOT / "data/ding-en-de/test.de")
    p.add_argument("--limit", type=int, default=0, help="decode only the first N sentences (0 = all)")
    p.add_argument("--bs1-limit", type=int, default=200, help="sentences decoded in the batch-1 modes")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "int8"), help="weight type")
    p.add_argument("--dtypes", help="comma-separated torch weight types to time in turn (default: --dtype)")
    p.add_argument("--onnx", type=Path, action="append", default=[],
                   help="also time --engine onnx over this `s2s export` folder (repeatable)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="turns per variant and mode (medians reported)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (int8 is CPU-only)")
    p.add_argument("--onmt-json", type=Path, help="OpenNMT-py baseline's JSON line, for ratios")
    p.add_argument("--shortlist", type=int, default=0, help="pieces per sentence (`s2s shortlist`); 0 = all")
    args = p.parse_args()
    if (args.checkpoint is None) == (args.random_reference is None):
        p.error("pass a checkpoint directory or --random-reference DIR")
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or build_random_reference(args.random_reference)
    lines = args.source.read_text(encoding="utf-8").splitlines()
    if args.limit:
        lines = lines[: args.limit]
    refs = None
    if args.reference.is_file():
        refs = args.reference.read_text(encoding="utf-8").splitlines()[: len(lines)]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode {unknown[0]}; choose from {', '.join(MODES)}")

    dtypes = (args.dtypes or args.dtype).split(",")
    variants = [(f"torch-{d}", "torch", checkpoint, d) for d in dtypes]
    variants += [(f"onnx-{folder.name}", "onnx", folder, "") for folder in args.onnx]
    results, texts = run_all(variants, modes, lines, refs, args)
    # the same sentences must get the same translations in batches of 32 and alone
    identical = {}
    for key in results:
        if key.endswith("_bs1") and key.replace("_bs1", "_bs32") in texts:
            big, one = texts[key.replace("_bs1", "_bs32")], texts[key]
            identical[key[: -len("_bs1")]] = {
                "compared": len(one),
                "differ": sum(a != b for a, b in zip(big, one, strict=False)),
            }
    agreement = compare_variants(variants, modes, texts)

    onmt = json.loads(args.onmt_json.read_text()) if args.onmt_json else {}
    width = max(12, *(len(k) for k in results))
    header = f"{'mode':<{width}} {'sent/s':>8} {'tok/s':>9} {'mean len':>9} {'BLEU':>6} {'RSS MiB':>8}"
    header += f" {'ONMT sent/s':>12} {'ratio':>6}" if onmt else ""
    print(header)
    for mode, r in results.items():
        row = f"{mode:<{width}} {r['sent_per_s']:>8.1f} {r['tgt_tok_per_s']:>9.1f} {r['mean_out_len']:>9.1f} "
        row += f"{r.get('bleu', float('nan')):>6.2f} {r['peak_rss_mib']:>8}"
        if onmt and mode in onmt:
            theirs = onmt[mode]["sent_per_s"]
            r["onmt_sent_per_s"], r["ratio"] = theirs, round(r["sent_per_s"] / theirs, 2)
            row += f" {theirs:>12.1f} {r['ratio']:>6.2f}"
        print(row)
    for search, d in identical.items():
        verdict = "identical" if d["differ"] == 0 else f"{d['differ']} differ"
        print(f"{search}: batch 1 vs batch 32 on {d['compared']} sentences: {verdict}")
    for key, d in agreement.items():
        print(f"{key}: {d['differ']} of {d['compared']} translations differ from {variants[0][0]}'s")
    print(json.dumps({"checkpoint": str(checkpoint), "threads": args.threads, "dtype": args.dtype,
                      "device": args.device, "shortlist": args.shortlist, "modes": results,
                      "batch1_vs_batch32": identical, "variants": [v[0] for v in variants],
                      "onnx": [str(f) for f in args.onnx], "rounds": args.rounds,
                      "vs_first_variant": agreement}))  # fmt: skip


def run_all(variants, modes, lines, refs, args) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Every mode for every variant, variants taking turns ``args.rounds`` times; per result key
    (the mode, prefixed by the variant when there are several) the median round and its texts."""
    results: dict[str, dict] = {}
    texts: dict[str, list[str]] = {}
    for mode in modes:
        beam, batch = MODES[mode]
        subset = lines[: args.bs1_limit] if batch == 1 and args.bs1_limit else lines
        rounds: dict[str, list[tuple[dict, list[str]]]] = {}
        for _ in range(args.rounds):
            for variant in variants:
                key = mode if len(variants) == 1 else f"{variant[0]}/{mode}"
                rounds.setdefault(key, []).append(run_mode(variant, subset, beam, batch, args.device,
                                                           args.shortlist))  # fmt: skip
        for key, runs in rounds.items():
            runs.sort(key=lambda r: r[0]["sent_per_s"])
            results[key], texts[key] = runs[len(runs) // 2]
            if refs is not None and len(subset) == len(lines):
                import sacrebleu

                results[key]["bleu"] = round(sacrebleu.corpus_bleu(texts[key], [refs]).score, 2)
            print(f"{key}: {results[key]}", file=sys.stderr, flush=True)
    return results, texts


def compare_variants(variants, modes, texts) -> dict[str, dict]:
    """Per later variant and mode: how many translations differ from the first variant's."""
    out = {}
    for variant in variants[1:]:
        for mode in modes:
            mine, first = texts[f"{variant[0]}/{mode}"], texts[f"{variants[0][0]}/{mode}"]
            out[f"{variant[0]}/{mode}"] = {
                "compared": len(mine),
                "differ": sum(a != b for a, b in zip(mine, first, strict=True)),
            }
    return out


if __name__ == "__main__":
    main()
