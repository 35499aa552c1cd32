"""The recipe search: each lever trained for the same wall time on one core, scored on the validation set.

A lever is a named set of config overrides (and optionally another data directory) applied to a base
config; ``benchmarks/levers/ding_en_de.yaml`` lists the Ding ones. Every lever trains with ``s2s train``
for ``--minutes`` on one core and one thread (as ``benchmarks/quality.py`` trains ours), then its best
validation weights translate the **validation** source with the config's generation options (beam 5),
and sacreBLEU scores that against the validation reference. The test set is never looked at here: the
winner is chosen on validation and only then measured on test by ``benchmarks/quality.py``.

    python benchmarks/recipe_search.py --levers benchmarks/levers/ding_en_de.yaml --minutes 15 \\
        --cores 0,1 --work runs/levers

``--cores`` runs one lever per core at a time (a queue; two cores, two levers at once). Each lever's
result goes to ``WORK/NAME/result.json`` and a finished lever is not trained again unless ``--rerun``
names it, so a search can grow a lever at a time; the table of every finished lever is printed and
written to ``WORK/levers.md``. Equal wall time, not equal steps, is the budget: a lever that makes a step
dearer (a bigger model, a bidirectional encoder) pays for it in steps, as a user's budget would.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _quality():
    """benchmarks/quality.py, for its commands (s2s, one thread, data overrides) and machine facts."""
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "benchmarks/quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


Q = _quality()


@dataclass(frozen=True)
class Lever:
    """One point of the search: config overrides on top of the base config, and its data directory."""

    name: str
    sets: tuple[str, ...] = ()
    data: str = ""  # "" = the search's --data
    note: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str) -> Lever:
        unknown = set(d) - {"name", "set", "data", "note"}
        if unknown or "name" not in d:
            what = f"unknown keys {sorted(unknown)}" if unknown else "no 'name'"
            raise SystemExit(
                f"{where}: a lever with {what}; a lever has 'name' and maybe 'set', 'data', 'note'"
            )
        sets = d.get("set") or []
        if not all(isinstance(s, str) and "=" in s for s in sets):
            raise SystemExit(f"{where}: lever {d['name']!r}: 'set' is a list of KEY=VALUE strings")
        return cls(str(d["name"]), tuple(sets), str(d.get("data", "")), str(d.get("note", "")))


def load_levers(path: Path) -> tuple[Path, list[Lever]]:
    """The base config and the levers of a levers file (``config:``, ``levers:`` and ``common:``, the
    overrides every lever starts from)."""
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("levers"), list) or "config" not in doc:
        raise SystemExit(f"{path}: needs 'config: BASE.yaml' and 'levers: [...]'")
    if not all(isinstance(d, dict) for d in doc["levers"]):
        raise SystemExit(f"{path}: each lever is a mapping (name, set, data, note)")
    common = doc.get("common") or []
    entries = [{**d, "set": [*common, *(d.get("set") or [])]} for d in doc["levers"]]
    levers = [Lever.from_dict(d, str(path)) for d in entries]
    names = [lv.name for lv in levers]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: lever names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    return ROOT / doc["config"], levers


@dataclass(frozen=True)
class Job:
    lever: Lever
    config: Path
    data: Path
    src: str
    tgt: str
    minutes: float
    seed: int
    work: Path

    @property
    def dir(self) -> Path:
        return self.work / self.lever.name

    def commands(self, core: int) -> list[Q.Step]:
        """Train for the budget, then translate the validation source with the run's generation options."""
        run, pin = self.dir / "run", ["taskset", "-c", str(core)]
        sets = [
            *Q.data_overrides(self.data),
            *self.lever.sets,
            f"training.max_time={self.minutes}",
            "training.num_threads=1",
            f"training.seed={self.seed}",
            f"data.seed={self.seed}",
            "training.progress_bar=false",
        ]
        train = [*pin, *Q.s2s(), "train", "--config", str(self.config), *Q._sets(sets), "--out-dir", str(run)]
        translate = [*pin, *Q.s2s(), "translate", "--checkpoint", str(run), "--threads", "1"]
        translate += ["--input", str(self.data / f"valid.{self.src}")]
        translate += ["--output", str(self.dir / "hyp.valid")]
        return [
            Q.Step("train", [*train, "--overwrite"], self.dir / "train.log", env=Q.ONE_THREAD),
            Q.Step("translate", translate, self.dir / "translate.log", env=Q.ONE_THREAD),
        ]


def training_facts(run: Path) -> dict:
    """Steps, mean training tokens/s and the validation curve from the run's CSV log."""
    rows = list(csv.DictReader((run / "logs/version_0/metrics.csv").open()))
    steps = max((int(r["step"]) + 1 for r in rows if r.get("step")), default=0)
    tok_s = [float(r["tok_s"]) for r in rows if r.get("tok_s")]
    curve = [
        {
            "step": int(r["step"]) + 1,
            "bleu": round(float(r["val_bleu"]), 2),
            "chrf": round(float(r["val_chrf"]), 2),
        }
        for r in rows
        if r.get("val_bleu")
    ]
    mean_tok_s = round(sum(tok_s) / len(tok_s), 1) if tok_s else math.nan
    return {"steps": steps, "tok_s": mean_tok_s, "valid_curve": curve}


def score_valid(job: Job) -> dict:
    ref = Q.sm.read_lines(str(job.data / f"valid.{job.tgt}"), "reference")
    hyp = Q.sm.read_lines(str(job.dir / "hyp.valid"), "hypothesis")
    Q.sm.check_aligned([hyp, ref])
    results = Q.sm.corpus_scores(hyp.lines, [ref.lines], Q.sm.ScoreOptions(metrics=Q.METRICS))
    return {r.name.lower().rstrip("2"): round(r.score, 2) for r in results} | {
        "signatures": [r.text(2) for r in results]
    }


def run_job(job: Job, core: int) -> dict:
    job.dir.mkdir(parents=True, exist_ok=True)
    walls = {}
    for step in job.commands(core):
        started = time.monotonic()
        with step.stdout.open("w") as out:
            env = {**os.environ, **step.env}
            rc = subprocess.run(step.argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        walls[step.name] = round(time.monotonic() - started, 1)
        if rc:
            return {"lever": job.lever.name, "error": f"{step.name} exited {rc}: see {step.stdout}"}
    return {
        "lever": job.lever.name,
        "set": list(job.lever.sets),
        "data": str(job.data),
        "note": job.lever.note,
        "minutes": job.minutes,
        "seed": job.seed,
        "core": core,
        "wall_s": walls,
        **training_facts(job.dir / "run"),
        "valid": score_valid(job),
        "machine": Q.machine(),
        "commands": {s.name: s.shell() for s in job.commands(core)},
    }


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def run_queue(jobs: Sequence[Job], cores: Sequence[int]) -> None:
    """One worker per core takes the next lever until none is left; a lever's result is written as soon
    as it is scored."""
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)

    def worker(core: int) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            print(f"{time.strftime('%H:%M:%S')} core {core}: {job.lever.name}", flush=True)
            result = run_job(job, core)
            write_json(job.dir / "result.json", result)
            print(f"{time.strftime('%H:%M:%S')} core {core}: {job.lever.name} -> {row(result)}", flush=True)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in cores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def row(r: dict) -> str:
    if "error" in r:
        return f"| {r['lever']} | error: {r['error']} | | | | |"
    best = max((p["bleu"] for p in r["valid_curve"]), default=math.nan)
    return (
        f"| {r['lever']} | {r['steps']} | {r['tok_s']:.0f} | {best:.2f} | "
        f"{r['valid']['bleu']:.2f} | {r['valid']['chrf']:.2f} |"
    )


def table(work: Path, levers: Sequence[Lever]) -> str:
    head = [
        "| lever | steps | train tok/s | best valid BLEU (greedy, in training) | valid BLEU | valid chrF |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    found = [work / lv.name / "result.json" for lv in levers]
    return "\n".join(head + [row(json.loads(f.read_text())) for f in found if f.is_file()])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levers", default="benchmarks/levers/ding_en_de.yaml", help="levers file")
    ap.add_argument("--data", default="data/ding-en-de", help="directory with {train,valid,test}.{SRC,TGT}")
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall time of every lever")
    ap.add_argument("--cores", default="0,1", help="cores to run levers on, one lever per core at a time")
    ap.add_argument("--work", default="runs/levers", help="work directory (a folder per lever)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--only", default="", help="comma-separated lever names to run (default: all)")
    ap.add_argument("--rerun", action="store_true", help="train levers again that already have a result")
    ap.add_argument("--table", action="store_true", help="print the table of finished levers and exit")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config, levers = load_levers(ROOT / args.levers)  # an absolute --levers stays itself
    base = Q.load_config(config)
    src, tgt = base.data.src_lang, base.data.tgt_lang
    work = Path(args.work)
    only = [n for n in args.only.split(",") if n]
    missing = sorted(set(only) - {lv.name for lv in levers})
    if missing:
        raise SystemExit(f"--only names levers not in {args.levers}: {missing}")
    chosen = [lv for lv in levers if not only or lv.name in only]
    jobs = [
        Job(lv, config, Path(lv.data or args.data), src, tgt, args.minutes, args.seed, work)
        for lv in chosen
        if args.rerun or not (work / lv.name / "result.json").is_file()
    ]
    if not args.table:
        run_queue(jobs, [int(c) for c in args.cores.split(",")])
    text = table(work, levers)
    work.mkdir(parents=True, exist_ok=True)
    (work / "levers.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
