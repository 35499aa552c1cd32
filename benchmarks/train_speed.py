"""Training throughput of the reference model, against the CPU's GEMM peak and OpenNMT-py.

Trains the reference config (2x512 LSTMs, embeddings 256, general attention, input feeding, batches of
64 sentences) through the real ``s2s train`` path (``seq2seq_lstm.training.trainer.train``) for a
fixed number of steps and prints:

* source + target tokens per second (source pieces without BOS/EOS plus target pieces with EOS, as
  OpenNMT-py counts them), median over the timed steps, and peak resident memory;
* the model's training FLOP rate next to this machine's fp32 (and bf16) GEMM peak measured in the
  same run, i.e. how much of the CPU the training loop uses;
* with ``--onmt SECONDS``, the OpenNMT-py 3.5.1 baseline trained right after on the same data and
  SentencePiece model (``benchmarks/opennmt_baseline.sh``), and the ratio of the two.

    python benchmarks/train_speed.py --data data/ding-en-de --steps 150 --precision bf16-mixed --onmt 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from seq2seq_lstm.config import load_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.model.cells import cpu_supports_bf16
from seq2seq_lstm.training.trainer import train
from seq2seq_lstm.vocab import PAD_ID

ROOT = Path(__file__).resolve().parent.parent


def gemm_peak(dtype: torch.dtype, device: str = "cpu", n: int = 2048, reps: int = 10) -> float:
    """Best FLOP/s of an n x n matrix product on the current torch threads (or the GPU)."""
    n = n if device == "cpu" else 8192  # a GPU needs a larger product to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    torch.mm(a, b)  # warm-up
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_flops(cfg, src_tokens: int, tgt_tokens: int, mean_src_len: float, vocab: int) -> float:
    """Matrix FLOPs of one training step: 3 x forward (backward costs about twice the forward).

    Forward FLOPs are 2 per multiply-add of every weight matrix a token passes through, plus the
    attention's score and context products (2 * S * H each per target token).
    """
    m = cfg.model
    h, e = m.hidden_size, m.emb_dim
    enc = 0
    for layer in range(m.enc_layers):
        d_in = e if layer == 0 else h
        enc += 4 * h * (d_in + h)
    enc += h * h  # attention key projection (general)
    dec = 0
    for layer in range(m.dec_layers):
        d_in = (e + h if m.input_feeding else e) if layer == 0 else h
        dec += 4 * h * (d_in + h)
    dec += 2 * mean_src_len * h  # scores and context
    dec += 2 * h * h  # attentional layer W_c [c; h]
    dec += (h * e if m.tie_output and e != h else 0) + vocab * (e if m.tie_output else h)
    return 3 * 2 * (src_tokens * enc + tgt_tokens * dec)


class StepTimer(Callback):
    """Wall time and token counts of every training step.

    A step's time runs from the end of the previous step to the end of this one, so data loading and
    everything Lightning does between steps is counted, as in OpenNMT-py's wall-clock figure.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[float, int, int, float]] = []  # (seconds, src tokens, tgt tokens, mean S)
        self._last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._last is None:  # the first step starts here
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        src = int(batch["src_lens"].sum())
        tgt = int((batch["tgt_out"] != PAD_ID).sum())
        self.rows.append((dt, src, tgt, float(batch["src_lens"].float().mean())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs/ding_en_de_reference.yaml"))
    ap.add_argument(
        "--data", default=str(ROOT / "data/ding-en-de"), help="directory with train/valid/test.{en,de}"
    )
    ap.add_argument("--src", default="en")
    ap.add_argument("--tgt", default="de")
    ap.add_argument(
        "--steps", type=int, default=150, help="training steps (the first --warmup are not timed)"
    )
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", default="bf16-mixed", help="32-true or bf16-mixed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"), help="where to train")
    ap.add_argument("--onmt", type=int, default=0, help="also train OpenNMT-py for this many seconds")
    ap.add_argument("--out", default="", help="run directory (default: a temporary one)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="train_speed_"))
    prefix = f"{args.data}/"
    cfg = load_config(
        args.config,
        [
            f"data.train={prefix}train",
            "data.valid=''",  # no validation: only training steps are timed
            f"data.src_lang={args.src}",
            f"data.tgt_lang={args.tgt}",
            # 64 sentences a batch, as the OpenNMT-py reference: the token budget never binds first
            "data.max_sentences=64",
            f"data.batch_tokens={64 * 101}",
            f"training.out_dir={out}",
            f"training.max_steps={args.steps}",
            "training.max_time=0",
            "training.val_every_steps=0",
            "training.max_epochs=-1",
            f"training.precision={args.precision}",
            "training.progress_bar=false",
            "training.logger=none",
            f"training.num_threads={args.threads}",
            f"training.accelerator={args.accelerator}",
        ],
    )
    timer = StepTimer()
    train(cfg, overwrite=True, callbacks=[timer])
    rows = timer.rows[args.warmup :]
    tok_s = [(s + t) / dt for dt, s, t, _ in rows]
    step_s = [dt for dt, *_ in rows]
    total = sum(s + t for _, s, t, _ in rows) / sum(step_s)
    vocab = Tokenizer.load(out / "tokenizer").tgt_vocab_size
    flops = sum(train_flops(cfg, s, t, m, vocab) for _, s, t, m in rows) / sum(dt for dt, *_ in rows)
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    peak32 = gemm_peak(torch.float32, device)
    # without bf16 kernels (AVX2-only CPUs) bf16 products are emulated: timing them takes many minutes
    # and says nothing about training, which falls back to float32 there
    peak16 = gemm_peak(torch.bfloat16, device) if device == "cuda" or cpu_supports_bf16() else None
    res = {
        "toolkit": "seq2seq-lstm",
        "precision": args.precision,
        "accelerator": args.accelerator,
        "threads": torch.get_num_threads(),
        "steps_timed": len(rows),
        "train_tok_per_s_median": round(statistics.median(tok_s), 1),
        "train_tok_per_s_total": round(total, 1),
        "step_seconds_median_max": [round(statistics.median(step_s), 3), round(max(step_s), 3)],
        "train_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        **({"train_peak_gpu_mib": torch.cuda.max_memory_allocated() // 2**20} if device == "cuda" else {}),
        "model_gflop_per_s": round(flops / 1e9, 2),
        "gemm_peak_fp32_gflop_per_s": round(peak32 / 1e9, 1),
        "gemm_peak_bf16_gflop_per_s": None if peak16 is None else round(peak16 / 1e9, 1),
        "share_of_fp32_peak": round(flops / peak32, 3),
    }
    print(json.dumps(res))
    if args.onmt:
        script = ROOT / "benchmarks/opennmt_baseline.sh"
        spm = out / "tokenizer/spm.model"
        env = dict(os.environ, SKIP_BS1="1")
        line = subprocess.run(
            ["bash", str(script), args.data, args.src, args.tgt, str(spm), str(args.onmt)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        onmt = json.loads(line)
        print(json.dumps(onmt))
        ratio = res["train_tok_per_s_total"] / onmt["train_tok_per_s"]
        ours, theirs = res["train_tok_per_s_total"], onmt["train_tok_per_s"]
        mem = f"{res['train_peak_rss_mib']} vs {onmt['train_peak_rss_mib']} MiB"
        print(f"seq2seq-lstm {ours:.0f} tok/s vs OpenNMT-py {theirs:.0f} tok/s: {ratio:.2f}x; memory {mem}")
    print(
        f"{res['train_tok_per_s_total']:.0f} tok/s ({args.precision}, {res['threads']} threads); "
        f"{res['model_gflop_per_s']} GFLOP/s = {res['share_of_fp32_peak']:.1%} of the fp32 GEMM peak "
        f"({res['gemm_peak_fp32_gflop_per_s']} GFLOP/s; "
        f"bf16 peak {res['gemm_peak_bf16_gflop_per_s'] or 'not measured'})"
    )


if __name__ == "__main__":
    main()
