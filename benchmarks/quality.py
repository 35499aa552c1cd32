"""Translation quality against OpenNMT-py 3.5.1 at equal training time, on one machine, side by side.

Both toolkits train on the same data and the same SentencePiece pieces for the same wall time, each
pinned to its own core with one torch thread, started at the same moment; then each decodes the test
set with beam 5 and both are scored by the library behind ``s2s evaluate --baseline``: BLEU and chrF
with sacreBLEU's signatures, sacreBLEU's paired bootstrap test, and the 95% interval of the difference
(ours minus OpenNMT-py) on the same resamples.

    python benchmarks/quality.py --data data/ding-en-de --minutes 30 --work runs/quality

The budget rule: the SentencePiece model is trained first, outside both budgets (``s2s tokenizer
train`` on the config; ``s2s train`` trains the same model again before its clock starts, and the two
are checked to be identical). Then both start together: ours stops at ``training.max_time`` (Lightning's
clock, which starts once the data are loaded; the final validation and export come after it), and
OpenNMT-py is stopped with ``timeout -s TERM`` after the same minutes (its start-up counts; it has no
time option) and its last checkpoint is decoded (``benchmarks/opennmt_baseline.sh``, which also encodes
the data with our model). Ours translates with its best validation weights, validations being inside
its budget. The peer keeps its reference model (2x512 LSTMs; a bidirectional encoder when ours has one)
unless ``--peer-model ours`` gives it our config's sizes.

``--skip-ours`` / ``--skip-peer`` reuse that side's translation from an earlier run in the same
``--work`` directory, so one side can be rerun alone. The figures and the exact commands go to
``WORK/quality.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seq2seq_lstm.config import Config, load_config
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.scoring import metrics as sm
from seq2seq_lstm.scoring import significance as sig

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "benchmarks/opennmt_baseline.sh"
PEER_OUTPUT = "pred_beam5_bs32.sp"  # the script's beam-5 translation of the test source, in pieces
BEAM = 5  # both sides, as the script's beam5_bs32
SIDES = {"ours": "seq2seq-lstm", "peer": "OpenNMT-py 3.5.1"}
METRICS = ("bleu", "chrf")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Step:
    """One command of a side's chain; its output goes to ``stdout`` (and ``stderr``, or the same file)."""

    name: str
    argv: list[str]
    stdout: Path
    stderr: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the environment

    def shell(self) -> str:
        """The command as one line a person can paste into a shell."""
        prefix = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        line = " ".join([*prefix, shlex.join(self.argv)])
        return f"{line} > {shlex.quote(str(self.stdout))}" if self.stderr else line


@dataclass(frozen=True)
class Plan:
    """The resolved arguments: what runs, where, and on which core."""

    data: Path
    src: str
    tgt: str
    config: Path
    minutes: float
    work: Path
    peer_venv: Path
    seed: int
    cores: tuple[int, int]  # (ours, peer)
    run_ours: bool
    run_peer: bool
    peer_model: dict[str, str]  # the baseline script's model variables (BRNN, ONMT_HIDDEN, ...)
    bootstrap: int

    def path(self, name: str) -> Path:
        return self.work / name

    @property
    def seconds(self) -> int:
        return max(1, round(self.minutes * 60))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/ding-en-de", help="directory with {train,valid,test}.{SRC,TGT}")
    ap.add_argument("--config", default="configs/ding_en_de.yaml", help="our config (a translation task)")
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall time of each side")
    ap.add_argument("--work", default="runs/quality", help="work directory (runs, translations, JSON)")
    ap.add_argument(
        "--peer-venv",
        default=os.environ.get("ONMT_VENV", "runs/opennmt-venv"),
        help="OpenNMT-py's virtualenv ($ONMT_VENV; made from PyPI on first use if missing)",
    )
    ap.add_argument("--seed", type=int, default=1234, help="training seed of both sides")
    ap.add_argument("--cores", default="0,1", help="CPU cores for ours and the peer, as OURS,PEER")
    ap.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    ap.add_argument(
        "--peer-model",
        choices=("reference", "ours"),
        default="reference",
        help="the peer's model: the baseline script's reference (2x512 LSTMs) or our config's sizes",
    )
    ap.add_argument("--skip-ours", action="store_true", help="reuse our translation in --work")
    ap.add_argument("--skip-peer", action="store_true", help="reuse OpenNMT-py's translation in --work")
    return ap.parse_args(argv)


def _cores(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or parts[0].strip() == parts[1].strip():
        raise UserError(f"--cores is {text!r}; give two different core numbers, OURS,PEER (e.g. 0,1)")
    return int(parts[0]), int(parts[1])


def make_plan(args: argparse.Namespace) -> tuple[Plan, Config]:
    """Check the arguments and the config before anything runs; the config is loaded with the data
    overrides every command of ours gets.

    Raises:
        UserError: a bad option, a missing data file, or a config the peer cannot share a tokenizer with.
    """
    if not args.minutes > 0:
        raise UserError(f"--minutes is {args.minutes}; give a positive number")
    if not 1 <= args.bootstrap <= sig.MAX_PAIRED_N:
        raise UserError(f"--bootstrap is {args.bootstrap}; give 1 to {sig.MAX_PAIRED_N} resamples")
    data = Path(args.data)
    cfg = load_config(args.config, data_overrides(data))
    if cfg.task != "translation":
        raise UserError(f"{args.config} trains a {cfg.task} model; give a translation config")
    if not cfg.tokenizer.joint:
        raise UserError(
            f"{args.config}: tokenizer.joint is false; the peer reads one joint SentencePiece model"
        )
    src, tgt = cfg.data.src_lang, cfg.data.tgt_lang
    for split in ("train", "valid", "test"):
        for lang in (src, tgt):
            if not (data / f"{split}.{lang}").is_file():
                raise UserError(
                    f"{data / f'{split}.{lang}'} does not exist; --data needs train, valid and test"
                )
    plan = Plan(
        data=data, src=src, tgt=tgt, config=Path(args.config), minutes=args.minutes, work=Path(args.work),
        peer_venv=Path(args.peer_venv), seed=args.seed, cores=_cores(args.cores),
        run_ours=not args.skip_ours, run_peer=not args.skip_peer,
        peer_model=peer_model(cfg, args.peer_model), bootstrap=args.bootstrap,
    )  # fmt: skip
    for side, runs in (("ours", plan.run_ours), ("peer", plan.run_peer)):
        if not runs and not plan.path(f"hyp.{side}").is_file():
            raise UserError(f"--skip-{side}: {plan.path(f'hyp.{side}')} does not exist; run that side first")
    return plan, cfg


def peer_model(cfg: Config, which: str) -> dict[str, str]:
    """The baseline script's variables for the peer's model: a bidirectional encoder when ours has one;
    with ``which == "ours"`` also our sizes and dropout (OpenNMT-py splits a bidirectional encoder's
    hidden size between the directions, as we do)."""
    m = cfg.model
    env = {"BRNN": "1"} if m.bidirectional else {}
    if which == "ours":
        env |= {"ONMT_EMB": str(m.emb_dim), "ONMT_HIDDEN": str(m.hidden_size), "ONMT_DROPOUT": str(m.dropout),
                "ONMT_ENC_LAYERS": str(m.enc_layers), "ONMT_DEC_LAYERS": str(m.dec_layers)}  # fmt: skip
    return env


def data_overrides(data: Path) -> list[str]:
    return [f"data.{split}={data / split}" for split in ("train", "valid", "test")]


def s2s() -> list[str]:
    """Our CLI from the interpreter running this script (its virtualenv), not whichever is on PATH."""
    exe = Path(sys.executable).with_name("s2s")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "seq2seq_lstm"]


def tokenizer_step(plan: Plan) -> Step:
    argv = [*s2s(), "tokenizer", "train", "--config", str(plan.config), *_sets(data_overrides(plan.data))]
    return Step("tokenizer", [*argv, "--out", str(plan.path("tokenizer"))], plan.path("logs/tokenizer.log"))


def _sets(overrides: Sequence[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def ours_steps(plan: Plan) -> list[Step]:
    """``s2s train`` for ``plan.minutes`` on one core and one thread, then ``s2s translate`` of the test
    source with beam 5. The config's own ``max_steps`` still applies (a schedule may be sized by it)."""
    sets = [
        *data_overrides(plan.data),
        f"training.max_time={plan.minutes}",
        "training.num_threads=1",
        f"training.seed={plan.seed}",
        f"data.seed={plan.seed}",
        "training.progress_bar=false",
    ]
    run, pin = plan.path("ours"), ["taskset", "-c", str(plan.cores[0])]
    train = [*pin, *s2s(), "train", "--config", str(plan.config), *_sets(sets), "--out-dir", str(run)]
    train.append("--overwrite")
    translate = [*pin, *s2s(), "translate", "--checkpoint", str(run)]
    translate += ["--input", str(plan.data / f"test.{plan.src}"), "--output", str(plan.path("hyp.ours"))]
    translate += ["--beam-size", str(BEAM), "--threads", "1"]
    return [
        Step("ours_train", train, plan.path("logs/ours_train.log"), env=ONE_THREAD),
        Step("ours_translate", translate, plan.path("logs/ours_translate.log"), env=ONE_THREAD),
    ]


def peer_steps(plan: Plan) -> list[Step]:
    """The baseline script (encode with our model, train for the same seconds, decode), then its
    beam-5 pieces joined back into text by our tokenizer (``s2s tokenizer decode``)."""
    env = {**ONE_THREAD, "ONMT_VENV": str(plan.peer_venv), "ONMT_SEED": str(plan.seed), "SKIP_BS1": "1"}
    env |= plan.peer_model
    spm = plan.path("tokenizer/spm.model")
    script = ["taskset", "-c", str(plan.cores[1]), "bash", str(PEER_SCRIPT), str(plan.data), plan.src]
    script += [plan.tgt, str(spm), str(plan.seconds), str(plan.path("peer"))]
    decode = [*s2s(), "tokenizer", "decode", "--model", str(plan.path("tokenizer"))]
    decode.append(str(plan.path(f"peer/{PEER_OUTPUT}")))
    return [
        Step("peer", script, plan.path("peer.json"), plan.path("logs/peer.log"), env=env),
        Step("peer_detokenize", decode, plan.path("hyp.peer"), plan.path("logs/peer_detokenize.log")),
    ]


def evaluate_command(plan: Plan) -> str:
    """The ``s2s evaluate`` line that gives the same scores and paired test (without the interval of
    the difference, which only this script prints)."""
    argv = [*s2s(), "evaluate", str(plan.path("hyp.ours")), str(plan.data / f"test.{plan.tgt}")]
    argv += ["--metrics", ",".join(METRICS), "--baseline", str(plan.path("hyp.peer"))]
    argv += ["--paired-bs", "--paired-bs-n", str(plan.bootstrap)]
    return shlex.join(argv)


class Runner:
    """Runs chains of steps side by side. The first failure stops every other step (each runs in a
    process group of its own, so the peer's training under ``timeout`` stops too): the comparison is
    lost, and the other side may have half an hour to go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen] = []
        self._stopped = False

    def step(self, step: Step) -> float:
        """Run ``step``; returns its wall seconds. Raises UserError naming the log when it fails."""
        step.stdout.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(step.stdout, "w") as out, open(step.stderr or os.devnull, "w") as err:
            with self._lock:
                if self._stopped:
                    raise _Stopped(step.name)
                proc = subprocess.Popen(
                    step.argv, stdout=out, stderr=err if step.stderr else subprocess.STDOUT,
                    env={**os.environ, **step.env}, start_new_session=True,
                )  # fmt: skip
                self._running.append(proc)
            rc = proc.wait()
            with self._lock:
                self._running.remove(proc)
                if self._stopped:
                    raise _Stopped(step.name)
        if rc != 0:
            self.stop()
            raise UserError(f"{step.name} failed (exit {rc}); see {step.stderr or step.stdout}")
        return time.perf_counter() - t0

    def chain(self, steps: Sequence[Step]) -> dict[str, float]:
        return {step.name: round(self.step(step), 1) for step in steps}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for proc in self._running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # ours saves and exits, like after Ctrl-C


class _Stopped(Exception):
    """A step stopped (or never started) because another one failed."""


def run_sides(chains: Sequence[Sequence[Step]]) -> dict[str, float]:
    """Start every chain at the same moment (one thread each waits on its processes); wall seconds
    of every step. Ctrl-C or a failure stops them all."""
    runner = Runner()
    with ThreadPoolExecutor(max_workers=max(1, len(chains))) as pool:
        futures = [pool.submit(runner.chain, chain) for chain in chains]
        walls: dict[str, float] = {}
        errors = []
        try:
            for future in futures:
                try:
                    walls.update(future.result())
                except UserError as e:
                    errors.append(e)
                except _Stopped:
                    pass
        except BaseException:
            runner.stop()
            raise
    if errors:
        raise errors[0]
    return walls


def difference_intervals(
    ours: Sequence[str],
    peer: Sequence[str],
    references: Sequence[Sequence[str]],
    options: sm.ScoreOptions,
    n_samples: int,
    seed: int = sig.DEFAULT_SEED,
) -> dict[str, dict[str, float]]:
    """Each metric's difference ours - peer, with the 95% interval of the difference over the paired
    bootstrap resamples, and each side's bootstrap mean.

    sacreBLEU's paired test (what ``sig.paired_test`` runs) reports each system's mean, interval and
    p-value, not the interval of the difference. It draws one set of resamples for both systems with
    ``np.random.default_rng(seed).choice(n, (n_samples, n))``; drawing them the same way here scores the
    very same resamples, from sacreBLEU's own sentence statistics (the methods its significance module
    calls). The bounds are the resamples at 1/40 from either end, as its ``estimate_ci`` takes them.
    """
    n = len(ours)
    streams = sm.as_streams(ours, references)
    draws = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    low = n_samples // 40
    out = {}
    for key, metric in sm.build_metrics(options, sentence_level=False).items():
        full, resampled = [], []
        for hyps in (ours, peer):
            stats = metric._extract_corpus_statistics(hyps, streams)
            full.append(metric._aggregate_and_compute(stats).score)
            stats = np.array(stats, dtype="float32")
            resampled.append(
                np.array([metric._compute_score_from_stats(s.sum(0)).score for s in stats[draws]])
            )
        diffs = np.sort(resampled[0] - resampled[1])
        out[key] = {
            "difference": float(full[0] - full[1]),
            "low": float(diffs[low]),
            "high": float(diffs[n_samples - low - 1]),
            "ours_mean": float(resampled[0].mean()),
            "peer_mean": float(resampled[1].mean()),
        }
    return out


def score(plan: Plan) -> dict:
    """Corpus scores of both translations, sacreBLEU's paired bootstrap test (the peer as baseline,
    as ``s2s evaluate --baseline`` runs it) and the interval of the difference."""
    ref = sm.read_lines(str(plan.data / f"test.{plan.tgt}"), "reference")
    hyps = {side: sm.read_lines(str(plan.path(f"hyp.{side}")), "hypothesis") for side in SIDES}
    sm.check_aligned([hyps["ours"], hyps["peer"], ref])
    options = sm.ScoreOptions(metrics=METRICS)
    refs = [ref.lines]
    paired = sig.paired_test(
        (SIDES["peer"], hyps["peer"].lines), [(SIDES["ours"], hyps["ours"].lines)], refs, options,
        "bs", plan.bootstrap,
    )  # fmt: skip
    scores = {
        side: [
            {**json.loads(r.json(2)), "line": r.text(2)}
            for r in sm.corpus_scores(hyps[side].lines, refs, options)
        ]
        for side in SIDES
    }
    return {
        "test_sentences": len(ref.lines),
        "scores": scores,
        "difference": difference_intervals(
            hyps["ours"].lines, hyps["peer"].lines, refs, options, plan.bootstrap
        ),
        "paired": paired.to_dict(),
    }


def side_facts(plan: Plan, walls: dict[str, float], previous: dict) -> dict[str, dict]:
    """Steps and wall seconds of each side: read from this run's logs, or kept from the earlier
    ``quality.json`` for a side that was not rerun."""
    facts = {}
    for side, toolkit in SIDES.items():
        ran = plan.run_ours if side == "ours" else plan.run_peer
        if not ran:
            facts[side] = {**previous.get("sides", {}).get(side, {"toolkit": toolkit}), "reused": True}
            continue
        facts[side] = {"toolkit": toolkit, "reused": False, "minutes": plan.minutes, "steps": None,
                       "wall_s": {k: v for k, v in walls.items() if k.startswith(side)}}  # fmt: skip
        if side == "ours":
            found = re.search(r"trained (\d+) steps", plan.path("logs/ours_train.log").read_text())
            facts[side]["steps"] = int(found.group(1)) if found else None
        else:
            peer = json.loads(plan.path("peer.json").read_text().strip().splitlines()[-1])
            facts[side].update(steps=peer["steps"], baseline_script=peer)
    return facts


def check_same_tokenizer(plan: Plan) -> None:
    """Our run's SentencePiece model must be the one the peer was given (both from one config)."""
    ours, shared = plan.path("ours/tokenizer/spm.model"), plan.path("tokenizer/spm.model")
    if ours.is_file() and shared.is_file() and ours.read_bytes() != shared.read_bytes():
        raise UserError(
            f"{ours} differs from {shared}, the model the peer was given: the config changed since "
            "the tokenizer was trained; use a fresh --work"
        )


def machine() -> dict:
    """What RESULTS.md notes beside a figure: the CPU, its vector extensions and the commit ("-dirty"
    when the working tree had changes)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    found = re.search(r"model name\s*:\s*(.+)", info)
    isa = "AVX-512" if " avx512f" in info else "AVX2" if " avx2" in info else "no AVX2"
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return {
        "cpu": found.group(1).strip() if found else platform.processor(),
        "isa": isa,
        "cores": os.cpu_count(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def recorded_commands(plan: Plan, previous: dict, tokenizer_trained: bool) -> dict[str, str]:
    """Every command as a shell line; the tokenizer or a side reused from an earlier run keeps the
    line that made it (when the earlier ``quality.json`` has it)."""
    old = previous.get("commands", {})
    steps = [tokenizer_step(plan), *ours_steps(plan), *peer_steps(plan)]
    keep = {"tokenizer": not tokenizer_trained, "ours": not plan.run_ours, "peer": not plan.run_peer}
    lines = {s.name: old.get(s.name, s.shell()) if keep[s.name.split("_")[0]] else s.shell() for s in steps}
    return {**lines, "evaluate": evaluate_command(plan)}


def format_table(result: dict) -> str:
    """The short table: each side's steps and scores, the difference with its interval and p-value,
    and sacreBLEU's line (with the signature) for every score."""
    names = [s["name"] for s in result["scores"]["ours"]]
    sides = result["sides"]
    minutes = [sides[side].get("minutes") for side in SIDES]
    budget = (
        f"{minutes[0]:g} min of training each"
        if minutes[0] == minutes[1] and minutes[0] is not None
        else f"UNEQUAL training times: ours {minutes[0]} min, peer {minutes[1]} min"
    )
    lines = [
        f"{result['test_sentences']} test sentences of {result['data']}, beam {result['beam']}; "
        f"{budget}, one thread on one core ({result['machine']['isa']})",
        f"{'system':<18} {'steps':>6} " + " ".join(f"{n:>7}" for n in names),
    ]
    for side in SIDES:
        steps = sides[side].get("steps")
        scores = " ".join(f"{s['score']:>7.2f}" for s in result["scores"][side])
        lines.append(f"{sides[side]['toolkit']:<18} {'?' if steps is None else steps:>6} {scores}")
    paired = result["paired"]
    resamples = f"{paired['n_samples']} paired bootstrap resamples (seed {paired['seed']})"
    lines.append(f"ours - peer, with its 95% interval over {resamples}, and the p-value:")
    ours_row = paired["systems"][1]
    for name, key in zip(names, METRICS, strict=True):
        d = result["difference"][key]
        p = ours_row[name]["p_value"]  # sacreBLEU's display names key the paired test
        lines.append(f"  {name:<6} {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]  p = {p:.4f}")
    lines.append("sacreBLEU:")
    for side in SIDES:
        lines += [f"  {sides[side]['toolkit']:<18} {s['line']}" for s in result["scores"][side]]
    return "\n".join(lines)


def build_result(plan: Plan, commands: dict[str, str], facts: dict, scored: dict) -> dict:
    return {
        "benchmark": "quality",
        "data": str(plan.data),
        "config": str(plan.config),
        "beam": BEAM,
        "seed": plan.seed,
        "cores": {"ours": plan.cores[0], "peer": plan.cores[1]},
        "machine": machine(),
        "sides": facts,
        **scored,
        "commands": commands,
    }


def run(plan: Plan) -> dict:
    """Tokenizer, both sides side by side, scores; writes and returns ``WORK/quality.json``."""
    for tool in ("taskset", "bash"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not on PATH; this benchmark pins each side to a core with it")
    plan.work.mkdir(parents=True, exist_ok=True)
    out = plan.path("quality.json")
    previous = json.loads(out.read_text()) if out.is_file() else {}
    train_tokenizer = not plan.path("tokenizer/spm.model").is_file()  # kept for a side rerun alone
    if train_tokenizer:
        Runner().step(tokenizer_step(plan))
    chains = [ours_steps(plan)] if plan.run_ours else []
    chains += [peer_steps(plan)] if plan.run_peer else []
    walls = run_sides(chains)
    check_same_tokenizer(plan)
    commands = recorded_commands(plan, previous, train_tokenizer)
    result = build_result(plan, commands, side_facts(plan, walls, previous), score(plan))
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    try:
        plan, _ = make_plan(parse_args(argv))
        result = run(plan)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"figures and commands: {plan.path('quality.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
