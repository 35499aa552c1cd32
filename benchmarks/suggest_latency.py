"""Per-keystroke latency of next-word suggestion on one CPU thread, fp32, bf16 and dynamic int8.

A typed transcript (sentences of a text file) is replayed one character at a time through a
:class:`~seq2seq_lstm.suggest.suggester.SuggestSession` per
sentence, as a keyboard would call it; every call's
wall time is one sample (next-word and partial-word calls alike). Reports p50/p95/p99 in ms, model
steps per keystroke and the model's size (serialized state dict). A phone keyboard must answer within
20 ms of a keystroke; the target here is p95 <= 3 ms.

``--prefetch N`` also replays the keyboard's idle time: after each answer the session works out the
answers for the next keystrokes it expects (a space and the N likeliest characters,
:meth:`~seq2seq_lstm.suggest.suggester.SuggestSession.prefetch`). That work is timed apart ("idle" columns):
it has to fit between two keystrokes (~150-300 ms on a phone), and the latency columns then count
only what a keystroke still waits for. ``--gap-ms G`` replays a typist who presses the next key G ms
after each answer: the idle-time work is cut off there (its ``should_stop``), so faster typing leaves
more keystrokes to compute when they come.

    python benchmarks/suggest_latency.py --checkpoint runs/lm-en
    python benchmarks/suggest_latency.py --checkpoint runs/lm-a --checkpoint runs/lm-b   # an ensemble
    # the torch weight types and the ONNX Runtime engine over `s2s export` folders, in one run
    python benchmarks/suggest_latency.py --checkpoint runs/lm-en --dtypes float32,int8 \
        --onnx exports/lm-en --onnx exports/lm-en-int8
    # no trained model yet: the default LM's shapes with random weights (timing only)
    python benchmarks/suggest_latency.py --config configs/lm_en.yaml --tokenizer-text data/en-mono/train.txt

``--adapt cache`` types the transcript as one user would, with adaptation
(:mod:`seq2seq_lstm.suggest.adapt`): one adapter for all sentences, each sentence committed to it when
typed in full; each keystroke's time then includes committing the words it finished and rescoring
the answer.

The weight types are those of ``s2s suggest --dtype``
(:func:`seq2seq_lstm.decoding.quantize.convert_weights`): bfloat16 converts every weight; int8
quantizes the decoder's cells, output layers and embedding (dynamic int8: a step is bound by reading
the weights, and int8 reads a quarter of fp32's bytes). ``--onnx DIR`` times `s2s suggest --engine onnx`
over an export folder (its model size: the graphs on disk), on one ONNX Runtime thread.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seq2seq_lstm.decoding.ensemble import EnsembleDecoder
from seq2seq_lstm.decoding.quantize import DTYPES, convert_weights
from seq2seq_lstm.suggest.adapt import ADAPT_CHOICES, build_adapter
from seq2seq_lstm.suggest.suggester import Suggester


def model_megabytes(model: nn.Module) -> float:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 2**20


def replay(
    suggester: Suggester,
    sentences: list[str],
    prefetch: int | None = None,
    warmup: int = 3,
    gap_ms: float | None = None,
    adapter=None,
) -> dict[str, np.ndarray]:
    """Per keystroke (the first ``warmup`` sentences not counted): milliseconds of the suggest call,
    model steps it took, and with ``prefetch`` the milliseconds of the idle-time work after it. With
    ``gap_ms`` the next keystroke comes that long after the answer: the idle-time work stops there.
    With ``adapter``, every sentence's session adapts through it and commits the sentence at its end."""
    steps = [0]
    step = suggester.model.step

    def counted(*args):
        steps[0] += 1
        return step(*args)

    suggester.model.step = counted  # an instance attribute: the model's own method is untouched
    ms, stepped, idle = [], [], []
    try:
        for n, sentence in enumerate(sentences):
            session = suggester.session(adapter=adapter)
            for i in range(len(sentence) + 1):
                before = steps[0]
                t0 = time.perf_counter()
                session.suggest(sentence[:i])
                t1 = time.perf_counter()
                took = steps[0] - before
                if prefetch is not None:
                    stop = None if gap_ms is None else lambda t1=t1: time.perf_counter() - t1 > gap_ms / 1000
                    session.prefetch(sentence[:i], chars=prefetch, should_stop=stop)
                if n >= warmup:
                    ms.append(1000 * (t1 - t0))
                    stepped.append(took)
                    idle.append(1000 * (time.perf_counter() - t1))
            session.finish(sentence)
    finally:
        del suggester.model.step
    return {"ms": np.array(ms), "steps": np.array(stepped), "idle_ms": np.array(idle)}


def build(args) -> tuple[list[nn.Module], object, object]:
    """The model(s) to time (several: an ensemble), the first one's config, the tokenizer."""
    if args.checkpoint:
        from seq2seq_lstm.checkpoint import load_ensemble

        return load_ensemble(args.checkpoint)
    from seq2seq_lstm.config import load_config
    from seq2seq_lstm.data.tokenizer import Tokenizer
    from seq2seq_lstm.model.seq2seq import build_model

    cfg = load_config(args.config)
    lines = Path(args.tokenizer_text).read_text(encoding="utf-8").splitlines()[: args.tokenizer_lines]
    tokenizer = Tokenizer.train(lines, None, cfg.tokenizer)
    torch.manual_seed(0)
    return [build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval()], cfg, tokenizer


def suggesters(args, models: list[nn.Module], cfg, tokenizer):
    """(name, Suggester, model MB) per torch weight type of ``--dtypes``, then per ``--onnx`` folder."""
    for name in args.dtypes.split(","):
        variants = [convert_weights(copy.deepcopy(model), name) for model in models]
        variant = variants[0] if len(variants) == 1 else EnsembleDecoder(variants)
        yield name, Suggester.from_config(variant, tokenizer, cfg), sum(model_megabytes(v) for v in variants)
    for folder in args.onnx:
        graphs = sum(f.stat().st_size for f in Path(folder).glob("*.onnx")) / 2**20
        yield f"onnx-{Path(folder).name}", Suggester.from_export(folder, threads=1), graphs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--checkpoint", action="append", help="run directory of a trained language model (repeat: ensemble)"
    )
    what.add_argument("--config", help="config whose model shapes to time with random weights")
    parser.add_argument("--tokenizer-text", help="text to train the tokenizer on (with --config)")
    parser.add_argument("--tokenizer-lines", type=int, default=50_000, help="lines of it to use")
    parser.add_argument("--transcript", default="data/en-mono/test.txt", help="sentences to type")
    parser.add_argument("--sentences", type=int, default=100, help="sentences of the transcript to type")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated weight types to time")
    parser.add_argument(
        "--onnx", action="append", default=[], help="also time --engine onnx over this export folder (repeat)"
    )
    parser.add_argument(
        "--prefetch",
        default="off",
        help="comma-separated: off (no idle-time work) and/or N (prefetch a space and N characters)",
    )
    parser.add_argument(
        "--gap-ms",
        type=float,
        help="with prefetch: a typist's time between keystrokes; the idle-time work stops when it is up",
    )
    parser.add_argument(
        "--adapt", choices=ADAPT_CHOICES, default="none", help="adaptation while the transcript is typed"
    )
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.config and not args.tokenizer_text:
        parser.error("--config needs --tokenizer-text")
    unknown = sorted(set(args.dtypes.split(",")) - set(DTYPES))
    if unknown:
        parser.error(f"--dtypes: unknown weight type {unknown[0]}; choose from {', '.join(DTYPES)}")
    try:
        prefetches = [None if v == "off" else int(v) for v in args.prefetch.split(",")]
    except ValueError:
        parser.error(f"--prefetch: expected off or whole numbers, got {args.prefetch!r}")
    torch.set_num_threads(1)

    models, cfg, tokenizer = build(args)
    sentences = [s for s in Path(args.transcript).read_text(encoding="utf-8").splitlines() if s.strip()]
    sentences = sentences[: args.sentences]
    results = {"transcript": args.transcript, "sentences": len(sentences), "threads": 1, "variants": {}}
    for name, suggester, megabytes in suggesters(args, models, cfg, tokenizer):
        for chars in prefetches:
            adapter = build_adapter(args.adapt, suggester)  # a fresh user for each variant
            got = replay(suggester, sentences, chars, gap_ms=args.gap_ms, adapter=adapter)
            ms, steps = got["ms"], got["steps"]
            row = {
                "keystrokes": int(ms.size),
                **{f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)},
                "mean_ms": round(float(ms.mean()), 3),
                "steps_mean": round(float(steps.mean()), 2),
                "no_step": round(float((steps == 0).mean()), 3),  # share of keystrokes with no model step
                "model_mb": round(megabytes, 2),
            }
            if chars is not None:
                idle = got["idle_ms"]
                row.update({f"idle_p{q}_ms": round(float(np.percentile(idle, q)), 1) for q in (50, 95, 99)})
            label = name if chars is None else f"{name}+prefetch{chars}"
            if chars is not None and args.gap_ms is not None:
                label += f"/{args.gap_ms:g}ms"
            if adapter is not None:
                label += f"+{args.adapt}"
            results["variants"][label] = row
            print(f"{label:>17}: " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    results["settings"] = {
        "stop_ratio": suggester.stop_ratio,
        "suggest_k": cfg.generation.suggest_k,
        "suggest_beam": cfg.generation.suggest_beam,
        "suggest_context": cfg.generation.suggest_context,
        "vocab": tokenizer.tgt_vocab_size,
        "ensemble_members": len(models),
        "model": {k: getattr(cfg.model, k) for k in ("emb_dim", "hidden_size", "dec_layers", "cell")},
    }
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
