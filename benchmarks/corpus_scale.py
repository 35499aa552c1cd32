"""Corpus scale: the in-memory path against streaming (``data.streaming``) from 0.1M to 10M pairs.

Builds corpora of the asked sizes on disk from the real sentences of a parallel corpus (by default the
Ding en-de training split), each pair two or three random source pairs joined, with a fixed seed, so
no corpus is one sentence repeated and each size has the same length distribution. Then, for every
size and both paths, trains the same small model in a fresh process and reports:

* preparation: from ``train()`` being called to the DataModule being set up (the in-memory path
  reads and tokenizes the whole corpus here; streaming only opens it). The tokenizer is copied from a
  seed run (``training.init_from``), so its training is not in any figure;
* data setup: the DataModule's ``setup`` alone, the part of preparation that grows with the corpus
  (the rest, imports, model and Trainer, is the same at any size); the per-pair figure divides it.
  Its CPU time per pair (SentencePiece's threads included) comes after the table: the work itself,
  which a busy machine or the threads' share of the cores does not change.
  Every measurement starts from an empty ``datasets`` cache (its own ``HF_DATASETS_CACHE``), so the
  in-memory path reads and encodes for real even in later rounds;
* first batch: from ``train()`` being called to the first training batch (streaming: workers started
  and the first shuffle buffer and batching window filled);
* steady tokens/s: source + target tokens per second of wall time over the steps after ``--skip``;
  beside it the padded positions per second and the share of them that is real tokens, so a path
  whose batches pad more can be told apart from a path that is slower (the model's work grows with
  the padded positions, the figure counts the real ones);
* peak RSS: the training process and its DataLoader workers together, sampled every 0.2 s in /proc.

Targets (the issue that asked for this benchmark): streaming's peak RSS flat (within 20%) from the
smallest to the largest size and under 2 GB; streaming's steady tokens/s within 10% of the in-memory
path's; the in-memory path's data setup time per pair flat (within 25%) across sizes.

    python benchmarks/corpus_scale.py --data data/ding-en-de --work /scratch/corpus_scale \\
        --sizes 100000 1000000 10000000 --steps 60 --timeout 3600

A measurement that runs past ``--timeout`` seconds is killed (with its workers) and reported as such.

``--padding WINDOW [WINDOW ...]`` trains nothing: for every size it forms one epoch of the training
batches of each path (streaming once per ``data.window`` given) in a fresh process without workers,
and reports real and padded tokens, their ratio and the process's peak RSS (the window's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

PATHS = ("memory", "streaming")
MODEL = [
    "tokenizer.vocab_size=4000", "model.emb_dim=128", "model.hidden_size=256", "model.enc_layers=1",
    "model.dec_layers=1", "data.src_lang=en", "data.tgt_lang=de", "data.batch_tokens=2048",
    "training.max_epochs=-1", "training.progress_bar=false", "training.logger=none",
]  # fmt: skip


def build_corpus(data: Path, n_pairs: int, out: Path, seed: int = 0) -> Path:
    """``out/train.{en,de}``: ``n_pairs`` pairs, each 2 or 3 random pairs of ``data/train`` joined by a
    space (the same draw on both sides). Written once; a ``done`` file marks a finished corpus."""
    done = out / "done"
    if done.is_file() and done.read_text() == f"{n_pairs} {seed}\n":
        return out
    out.mkdir(parents=True, exist_ok=True)
    src = (data / "train.en").read_text(encoding="utf-8").splitlines()
    tgt = (data / "train.de").read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    with (
        open(out / "train.en", "w", encoding="utf-8") as fs,
        open(out / "train.de", "w", encoding="utf-8") as ft,
    ):
        for _ in range(n_pairs):
            picks = rng.sample(range(len(src)), rng.choice((2, 3)))
            fs.write(" ".join(src[i] for i in picks) + "\n")
            ft.write(" ".join(tgt[i] for i in picks) + "\n")
    done.write_text(f"{n_pairs} {seed}\n")
    return out


def seed_run(data: Path, work: Path) -> Path:
    """A one-step run on ``data`` whose tokenizer and shapes every measurement starts from."""
    run = work / "seed_run"
    if not (run / "model.safetensors").is_file():
        sets = [*MODEL, f"data.train={data}/train", "training.max_steps=1", f"training.out_dir={run}"]
        train_command(work, sets, overwrite=True)
    return run


def train_command(work: Path, sets: list[str], overwrite: bool = False) -> None:
    config = work / "base.yaml"  # the defaults; everything that matters is in ``sets``
    config.write_text("task: translation\n")
    cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--config", str(config)]
    cmd += [x for s in sets for x in ("--set", s)] + (["--overwrite"] if overwrite else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------------
# One measurement, in a fresh process (``--child``)


def batch_counts(batch: dict) -> tuple[int, int]:
    """``(real, padded)`` tokens of a collated batch, source and target together: real is what
    tokens/s counts (``src_lens`` + ``tgt_lens``), padded the positions of ``src`` (B, S) and
    ``tgt_in`` (B, T), the work the model does."""
    real, padded = int(batch["tgt_lens"].sum()), batch["tgt_in"].numel()
    if "src" in batch:
        real, padded = real + int(batch["src_lens"].sum()), padded + batch["src"].numel()
    return real, padded


def epoch_counts(cfg, tokenizer) -> tuple[int, int, int]:
    """``(batches, real, padded)`` over one epoch of the training batches ``cfg`` makes (in memory or
    streamed, as ``data.streaming`` says), formed by the DataModule the trainer uses, nothing trained."""
    from seq2seq_lstm.data.datamodule import TranslationDataModule

    dm = TranslationDataModule(cfg, tokenizer)
    dm.setup("fit")
    batches = real = padded = 0
    for batch in dm.train_dataloader():
        r, p = batch_counts(batch)
        batches, real, padded = batches + 1, real + r, padded + p
    return batches, real, padded


def padding_child(spec: dict) -> None:
    """One epoch's counts (:func:`epoch_counts`), its seconds and the peak RSS, as one JSON line."""
    from seq2seq_lstm.config import load_config
    from seq2seq_lstm.data.tokenizer import Tokenizer

    cfg = load_config(spec["config"], spec["sets"])
    start = time.perf_counter()
    batches, real, padded = epoch_counts(cfg, Tokenizer.load(spec["tokenizer"]))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"batches": batches, "real": real, "padded": padded,
                      "seconds": time.perf_counter() - start, "maxrss": rss}))  # fmt: skip


def child(spec: dict) -> None:
    """Train as ``spec`` says with a timing callback; print the timings as one JSON line."""
    if spec.get("padding"):
        padding_child(spec)
        return
    from lightning.pytorch.callbacks import Callback

    from seq2seq_lstm.config import load_config
    from seq2seq_lstm.data import datamodule
    from seq2seq_lstm.training.trainer import train

    class Probe(Callback):
        def __init__(self) -> None:
            self.prepared: float | None = None
            self.data_setup = self.data_setup_cpu = 0.0  # seconds in the DataModule's setup: wall, CPU
            self.steps: list[tuple[float, int, int]] = []  # (end of the step, real, padded tokens)

        def setup(self, trainer, pl_module, stage: str) -> None:
            self.prepared = time.perf_counter()  # after the DataModule's setup (Lightning calls it first)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.steps.append((time.perf_counter(), *batch_counts(batch)))

    probe = Probe()
    setup = datamodule.TranslationDataModule.setup  # LMDataModule inherits it

    def timed_setup(self, stage: str | None = None) -> None:
        t, cpu = time.perf_counter(), time.process_time()
        setup(self, stage)
        probe.data_setup += time.perf_counter() - t
        probe.data_setup_cpu += time.process_time() - cpu

    datamodule.TranslationDataModule.setup = timed_setup
    cfg = load_config(spec["config"], spec["sets"])
    start = time.perf_counter()
    train(cfg, callbacks=[probe])
    skip = spec["skip"]
    t0, steady = probe.steps[skip - 1][0], probe.steps[skip:]
    seconds = steady[-1][0] - t0
    first = probe.steps[0][0] - start  # the first step's end: its batch arrived just before
    own, workers = (
        resource.getrusage(r).ru_maxrss * 1024 for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    print(json.dumps({
        "prepare_s": probe.prepared - start, "data_setup_s": probe.data_setup, "first_batch_s": first,
        "data_setup_cpu_s": probe.data_setup_cpu,
        "tok_s": sum(r for _, r, _ in steady) / seconds, "padded_s": sum(p for *_, p in steady) / seconds,
        "steps": len(probe.steps),
        "maxrss_self": own, "maxrss_workers": workers,
    }))  # fmt: skip


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def empty_cache(work: Path) -> tuple[Path, dict[str, str]]:
    """A ``datasets`` cache emptied for one measurement (nothing prepared earlier is read back) and the
    environment that points the measured process at it."""
    cache = work / "hf_cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    return cache, env


def measure(work: Path, corpus: Path, streaming: bool, args: argparse.Namespace) -> dict:
    """One fresh process training on ``corpus``; its timings and sampled peak RSS, or ``timed_out``."""
    out = work / "runs" / f"{corpus.name}-{'stream' if streaming else 'memory'}"
    sets = [
        *MODEL, f"data.train={corpus}/train", f"data.streaming={str(streaming).lower()}",
        f"data.num_workers={args.workers if streaming else 0}", f"training.max_steps={args.steps}",
        f"training.num_threads={args.threads}", f"training.init_from={work / 'seed_run'}",
        f"training.out_dir={out}",
    ]  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    spec = {"config": str(work / "base.yaml"), "sets": sets, "skip": args.skip}
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    cache, env = empty_cache(work)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, env=env)  # fmt: skip
    peak, deadline = 0, time.monotonic() + args.timeout
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    timed_out = proc.poll() is None
    if timed_out:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers are in its session
        proc.wait()
    shutil.rmtree(cache, ignore_errors=True)  # GBs at 10M pairs
    if timed_out:
        return {"timed_out": True, "peak_rss": peak}
    lines = proc.stdout.read().strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"failed": proc.returncode, "peak_rss": peak}
    return {**json.loads(lines[-1]), "peak_rss": peak}


def measure_padding(work: Path, corpus: Path, window: int | None) -> dict:
    """:func:`padding_child` in a fresh process: the in-memory path (``window`` None) or streaming with
    ``data.window`` = ``window``, no DataLoader workers (the window lives in the measured process)."""
    sets = [*MODEL, f"data.train={corpus}/train", f"data.streaming={str(window is not None).lower()}",
            "data.num_workers=0", "training.max_steps=1"]  # fmt: skip
    sets += [f"data.window={window}"] if window else []
    spec = {"padding": True, "config": str(work / "base.yaml"), "sets": sets,
            "tokenizer": str(work / "seed_run" / "tokenizer")}  # fmt: skip
    cache, env = empty_cache(work)
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    shutil.rmtree(cache, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# Report


def padding_report(results: dict[tuple[int, str], dict]) -> str:
    """A Markdown table of :func:`measure_padding`'s counts, keyed by (pairs, path)."""
    rows = ["| pairs | path | batches | real tokens | padded tokens | real / padded | epoch s "
            "| peak RSS MB |", "|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for (n, path), r in results.items():
        cells = [f"{n:,}", path, f"{r['batches']:,}", f"{r['real']:,}", f"{r['padded']:,}"]
        cells += [f"{r['real'] / r['padded']:.3f}", f"{r['seconds']:.1f}", f"{r['maxrss'] / 2**20:,.0f}"]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(["", *rows])


def report(results: dict[tuple[int, str], list[dict]]) -> str:
    """A Markdown table of medians over rounds, then the targets checked."""
    rows = ["| pairs | path | preparation s | data setup s | per pair µs | first batch s | steady tok/s "
            "| padded tok/s | real / padded | peak RSS MB |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    med: dict[tuple[int, str], dict[str, float]] = {}
    for (n, path), runs in sorted(results.items()):
        ok = [r for r in runs if "tok_s" in r]
        if not ok:
            rows.append(
                f"| {n:,} | {path} | {'timed out' if runs[0].get('timed_out') else 'failed'} ||||||||"
            )
            continue
        m = {
            k: statistics.median(r[k] for r in ok)
            for k in (
                "prepare_s",
                "data_setup_s",
                "data_setup_cpu_s",
                "first_batch_s",
                "tok_s",
                "padded_s",
                "peak_rss",
            )
        }
        med[n, path] = m
        cells = [f"{n:,}", path, f"{m['prepare_s']:.1f}", f"{m['data_setup_s']:.1f}"]
        cells += [f"{m['data_setup_s'] / n * 1e6:.1f}"]
        cells += [f"{m['first_batch_s']:.1f}", f"{m['tok_s']:,.0f}", f"{m['padded_s']:,.0f}"]
        cells += [f"{m['tok_s'] / m['padded_s']:.3f}", f"{m['peak_rss'] / 2**20:,.0f}"]
        rows.append(f"| {' | '.join(cells)} |")
    sizes = sorted({n for n, _ in med})
    lines = ["", *rows, ""]
    stream = [med[n, "streaming"]["peak_rss"] for n in sizes if (n, "streaming") in med]
    if len(stream) > 1:
        lines.append(f"streaming peak RSS: {max(stream) / min(stream) - 1:+.0%} from smallest to largest "
                     f"(target within 20%), max {max(stream) / 2**30:.2f} GB (target < 2 GB)")  # fmt: skip
    for n in sizes:
        if (n, "streaming") in med and (n, "memory") in med:
            ratio, padded = (med[n, "streaming"][k] / med[n, "memory"][k] - 1 for k in ("tok_s", "padded_s"))
            lines.append(f"{n:,} pairs: streaming tok/s {ratio:+.1%} against in-memory (target within 10%); "
                         f"padded tok/s {padded:+.1%}")  # fmt: skip
    per_pair = [med[n, "memory"]["data_setup_s"] / n for n in sizes if (n, "memory") in med]
    if len(per_pair) > 1:
        lines.append(f"in-memory data setup per pair: {max(per_pair) / min(per_pair) - 1:+.0%} spread "
                     "(target within 25%)")  # fmt: skip
        cpu = [med[n, "memory"]["data_setup_cpu_s"] / n * 1e6 for n in sizes if (n, "memory") in med]
        each = " / ".join(f"{x:.1f}" for x in cpu)
        lines.append(f"in-memory data setup CPU per pair (all threads; the work, apart from waiting for "
                     f"the cores): {each} µs, {max(cpu) / min(cpu) - 1:+.0%} spread")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/ding-en-de"), help="folder with train.en/.de")
    ap.add_argument("--work", type=Path, help="folder for the corpora and runs (GBs at 10M); required")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    ap.add_argument("--skip", type=int, default=10, help="steps left out of the steady tokens/s")
    ap.add_argument("--rounds", type=int, default=1, help="measurements per size and path (medians)")
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="which paths to measure")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers of the streaming path")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a measurement is killed")
    ap.add_argument("--padding", type=int, nargs="+", metavar="WINDOW",
                    help="train nothing: count the padding of each path's batches, streaming at these "
                    "data.window sizes")  # fmt: skip
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.work is None:
        ap.error("--work is required")
    args.work.mkdir(parents=True, exist_ok=True)
    seed_run(args.data, args.work)
    results: dict[tuple[int, str], list[dict]] = {}
    padding: dict[tuple[int, str], dict] = {}
    for n in args.sizes:
        start = time.perf_counter()
        corpus = build_corpus(args.data, n, args.work / f"corpus-{n}")
        print(f"corpus of {n:,} pairs ready ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        if args.padding:
            for window in [None, *args.padding]:
                path = "memory" if window is None else f"streaming, window {window:,}"
                padding[n, path] = measure_padding(args.work, corpus, window)
                print(f"{n:,} {path}: {padding[n, path]}", file=sys.stderr)
            continue
        for r in range(args.rounds):  # alternate which path goes first: the machine drifts
            for path in args.paths if r % 2 == 0 else reversed(args.paths):
                results.setdefault((n, path), []).append(
                    measure(args.work, corpus, path == "streaming", args)
                )
                print(f"{n:,} {path}: {results[n, path][-1]}", file=sys.stderr)
    print(padding_report(padding) if args.padding else report(results))


if __name__ == "__main__":
    main()
