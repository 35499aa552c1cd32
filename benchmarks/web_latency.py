"""Per-keystroke time of the browser page (`s2s export --format web`) in headless Chromium.

Sentences of a text file are typed into the page one character at a time (a fresh session per
sentence, as a new text field gets), in one browser; each keystroke's time runs from the text to the
three words on screen (seq2seq_lstm/web/headless.py). Prints p50/p95/p99/max in ms, the model steps
per keystroke and their share of the time, the page's load time and the folder's size. A phone
keyboard must answer within 20 ms of a keystroke: the target is p95 <= 20 ms.

With ``--checkpoint RUN`` (the run the folder was exported from), every keystroke's words are also
compared with the Python suggester's (``s2s suggest``), and the keystrokes that differ are counted.

    s2s export runs/lm-en --format web --out exports/lm-en-web
    python benchmarks/web_latency.py --export exports/lm-en-web --text data/ding-en-de/test.en \\
        --sentences 100 --checkpoint runs/lm-en
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seq2seq_lstm.web.headless import type_in_browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="folder of s2s export --format web")
    parser.add_argument("--text", required=True, type=Path, help="sentences to type, one a line")
    parser.add_argument("--sentences", type=int, default=100, help="first N non-empty lines")
    parser.add_argument("--checkpoint", type=Path, help="run to compare the words with (s2s suggest)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the page may take")
    args = parser.parse_args()
    lines = [line.strip() for line in args.text.read_text(encoding="utf-8").splitlines()]
    sentences = [line for line in lines if line][: args.sentences]
    report = type_in_browser(args.export, sentences, timeout=args.timeout)
    results = report["results"]
    ms = np.array([r["ms"] for r in results])
    steps = np.array([r["steps"] for r in results])
    step_ms = np.array([r["stepMs"] for r in results])
    size = sum(f.stat().st_size for f in args.export.rglob("*") if f.is_file())
    print(f"browser: {report['userAgent']}")
    print(f"page: {args.export} ({size / 2**20:.1f} MiB), loaded in {report['loadMs']:.0f} ms")
    print(f"{len(sentences)} sentences, {len(results)} keystrokes")
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    print(
        f"ms per keystroke: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {ms.max():.1f}  "
        f"mean {ms.mean():.2f}"
    )
    print(
        f"model steps per keystroke: mean {steps.mean():.2f}, p95 {np.percentile(steps, 95):.0f}; "
        f"their share of the time: {step_ms.sum() / ms.sum():.0%}"
    )
    if args.checkpoint is not None:
        import torch

        from seq2seq_lstm.suggest.suggester import Suggester

        torch.set_num_threads(1)
        suggester = Suggester.from_checkpoint(args.checkpoint)
        differ = sum(r["words"] != [s.word for s in suggester.suggest(r["text"], k=3)] for r in results)
        print(f"keystrokes whose words differ from s2s suggest's: {differ} of {len(results)}")


if __name__ == "__main__":
    main()
