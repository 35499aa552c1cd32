"""Steady training tokens/s and peak memory: ``data.streaming: true`` against the in-memory path.

Each round trains the same small model on the same corpus twice, once per path, through ``s2s train``
(a subprocess each, so the memory is that run's own), in alternating order; the table gives each
path's median over rounds. Tokens/s is the median of the ``tok_s`` the run logs (source + target
tokens per second, every ``log_every_steps``) from ``--skip`` steps on, so the in-memory path's
up-front tokenization and the workers' start-up are not in it; no validation set, so no
decoding either. Memory is the peak resident set of
the training process plus its DataLoader workers (proportional set size: shared pages counted once),
sampled every 0.2 s from ``/proc``.

    python benchmarks/streaming_speed.py --data data/ding-en-de --steps 200 --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree_pss(pid: int) -> int:
    """Proportional set size of ``pid`` and all its descendants, in bytes: forked DataLoader workers
    share the trainer's pages, and PSS counts a shared page once in all (RSS would count it per process)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(x for x in rollup.splitlines() if x.startswith("Pss:")).split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def run(args: argparse.Namespace, streaming: bool, out: Path) -> dict[str, float]:
    sets = [
        f"data.train={args.data}/train", "data.src_lang=en",
        "data.tgt_lang=de", f"data.streaming={str(streaming).lower()}",
        f"data.num_workers={args.workers if streaming else 0}", f"data.batch_tokens={args.batch_tokens}",
        "tokenizer.vocab_size=4000", "model.emb_dim=128", "model.hidden_size=256", "model.enc_layers=1",
        "model.dec_layers=1", f"training.max_steps={args.steps}", "training.max_epochs=-1",
        "training.val_every_steps=100000", "training.log_every_steps=10",
        f"training.num_threads={args.threads}",
        "training.progress_bar=false", f"training.out_dir={out}",
    ]  # fmt: skip
    config = out.parent / "base.yaml"  # the defaults; everything that matters is in ``sets``
    config.write_text("task: translation\n")
    cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--config", str(config)]
    cmd += [x for s in sets for x in ("--set", s)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"training failed: {proc.stderr.read()[-2000:]}")
    with open(next(out.glob("logs/version_*/metrics.csv"))) as f:
        rates = [
            float(r["tok_s"]) for r in csv.DictReader(f) if r.get("tok_s") and int(r["step"]) >= args.skip
        ]
    return {"tok_s": statistics.median(rates), "rss": peak / 2**20, "wall": time.monotonic() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/ding-en-de"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--skip", type=int, default=30, help="steps left out of the median (warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="data.num_workers of the streaming runs")
    ap.add_argument("--threads", type=int, default=1, help="training.num_threads")
    ap.add_argument("--batch-tokens", type=int, default=2048)
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"in-memory": [], "streaming": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["in-memory", "streaming"] if r % 2 == 0 else ["streaming", "in-memory"]
            for name in order:
                res = run(args, name == "streaming", Path(tmp) / f"{name}-{r}")
                results[name].append(res)
                print(f"round {r} {name}: {res['tok_s']:.0f} tok/s, peak PSS {res['rss']:.0f} MiB, "
                      f"{res['wall']:.0f} s", flush=True)  # fmt: skip
    print("path        tok/s (median)  peak PSS MiB (median)  rounds")
    for name, rows in results.items():
        tok = statistics.median(x["tok_s"] for x in rows)
        rss = statistics.median(x["rss"] for x in rows)
        each = ", ".join(f"{x['tok_s']:.0f}" for x in rows)
        print(f"{name:<11} {tok:>14.0f}  {rss:>21.0f}  {each}")
    ratio = statistics.median(x["tok_s"] for x in results["streaming"]) / statistics.median(
        x["tok_s"] for x in results["in-memory"]
    )
    print(f"streaming / in-memory tokens/s: {ratio:.3f}")


if __name__ == "__main__":
    main()
