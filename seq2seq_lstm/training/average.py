"""Checkpoint averaging: the element-wise mean of the parameters of several validation checkpoints of
one run, written as a run directory of its own (`s2s average`).

    summary = average_run("runs/ding", last=5)  # -> runs/ding-avg5, loads like any run
    summary.out, summary.members

The mean of the last few checkpoints of a run smooths the noise of the final steps (Junczys-Dowmunt et
al. 2016; OpenNMT-py, fairseq, Marian and JoeyNMT all offer it). The checkpoints are the ones
``training.keep_checkpoints`` keeps (``checkpoints/step-NNNNNN.ckpt``), each read without unpickling
code (:func:`~seq2seq_lstm.checkpoint.load_checkpoint_file`); they must share the tokenizer and every
parameter's shape, or one line says which differs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import (
    CKPT_KEY,
    RunDir,
    check_run_info,
    check_state_dict,
    check_tokenizer,
    export_weights,
    load_checkpoint_file,
    load_run_config,
    model_state_from_checkpoint,
)
from ..errors import CheckpointError, UserError


@dataclass(frozen=True)
class Member:
    """One checkpoint taken into an average."""

    path: Path
    step: int
    val: dict[str, float]  # its validation scores (val_bleu, val_chrf, val_ppl, ...)


@dataclass(frozen=True)
class AverageSummary:
    """What `s2s average` wrote."""

    out: Path  # the new run directory
    members: tuple[Member, ...]  # oldest first


def default_out(run: str | os.PathLike, last: int | None = None, best: int | None = None) -> Path:
    """``RUN-avgN`` for the last N checkpoints, ``RUN-bestN`` for the best N, beside the run."""
    root = Path(run)
    return root.with_name(f"{root.name}-avg{last}" if last else f"{root.name}-best{best}")


def _info(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    info = ckpt.get(CKPT_KEY)
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} was not written by `s2s train` (no {CKPT_KEY!r} entry)")
    check_run_info(info, f"{path} ({CKPT_KEY!r} entry)")
    return info


def _member(path: Path) -> Member:
    ckpt = load_checkpoint_file(path)
    val = _info(ckpt, path).get("val", {})
    scores = {k: float(v) for k, v in val.items()} if isinstance(val, dict) else {}
    return Member(path, int(ckpt.get("global_step", 0)), scores)


def _count(last: int | None, best: int | None) -> int:
    """N of ``--last N`` or ``--best N``, exactly one of which is given."""
    if (last is None) == (best is None):
        raise UserError("pass one of --last N or --best N")
    count = last if last is not None else best
    if count < 1:
        raise UserError(f"--{'last' if last is not None else 'best'} must be at least 1; got {count}")
    return count


def select_checkpoints(run: RunDir, last: int | None = None, best: int | None = None) -> list[Member]:
    """The last ``last`` kept validation checkpoints of ``run``, or the ``best`` of them by the score
    that picks the run's best checkpoint (ties: the later one); oldest first."""
    from .system import SYSTEMS

    count = _count(last, best)
    kept = run.step_ckpts()
    if len(kept) < count:
        raise UserError(
            f"{run.root} keeps {len(kept)} validation checkpoint(s) ({run.checkpoints.name}/step-*.ckpt), "
            f"fewer than the {count} asked for; average fewer, or train with training.keep_checkpoints: "
            f"{count} or more"
        )
    if last is not None:
        return [_member(path) for path in list(kept.values())[-last:]]
    system = SYSTEMS[load_run_config(run).task]
    members = [_member(path) for path in kept.values()]
    for m in members:
        if system.monitor not in m.val:
            raise CheckpointError(f"{m.path} holds no validation {system.monitor}; average with --last")
    sign = 1.0 if system.monitor_mode == "max" else -1.0
    chosen = sorted(members, key=lambda m: (sign * m.val[system.monitor], m.step))[-count:]
    return sorted(chosen, key=lambda m: m.step)


def average_states(named_states: Iterable[tuple[str, Mapping[str, Tensor]]]) -> dict[str, Tensor]:
    """The element-wise mean of the states (accumulated in float64, returned in each tensor's dtype),
    read one at a time so that N checkpoints need the memory of two.

    Tensors that are not floating point (counters, masks) cannot be averaged: the last state's are
    kept. Every state must hold the same names with the same shapes and dtypes; each comes with a name
    (its file) for the error that says which differs.
    """
    first: Mapping[str, Tensor] | None = None
    total: dict[str, Tensor] = {}
    count = 0
    for name, state in named_states:
        if first is None:
            first, first_name = state, name
        else:
            _check_same_shapes(first, state, first_name, name)
        for key, value in state.items():
            if not value.is_floating_point():
                total[key] = value.clone()
            elif key in total:
                total[key] += value.to(torch.float64)
            else:
                total[key] = value.to(torch.float64, copy=True)  # the sum never writes into a state
        count += 1
    if first is None:
        raise UserError("nothing to average: no checkpoints given")
    return {
        key: (value / count).to(first[key].dtype) if first[key].is_floating_point() else value
        for key, value in total.items()
    }


def _check_same_shapes(a: Mapping[str, Tensor], b: Mapping[str, Tensor], a_name: str, b_name: str) -> None:
    unshared = sorted(set(a) ^ set(b))
    if unshared:
        key = unshared[0]
        has, lacks = (a_name, b_name) if key in a else (b_name, a_name)
        raise CheckpointError(
            f"{has} has parameter {key} but {lacks} does not; average checkpoints of one model"
        )
    for key in a:
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            raise CheckpointError(
                f"{b_name}: parameter {key} is {tuple(b[key].shape)} {b[key].dtype} but "
                f"{tuple(a[key].shape)} {a[key].dtype} in {a_name}; average checkpoints of one model"
            )


def _states(
    members: Sequence[Member], infos: list[dict[str, Any]]
) -> Iterator[tuple[str, dict[str, Tensor]]]:
    """Each member's model state, loaded when the average needs it; its run info appended to ``infos``
    and checked to name the first member's tokenizer."""
    for member in members:
        where = str(member.path)
        ckpt = load_checkpoint_file(member.path)
        infos.append(_info(ckpt, member.path))
        for key in ("tokenizer_sha256", "src_vocab", "tgt_vocab"):
            if infos[-1].get(key) != infos[0].get(key):
                raise CheckpointError(
                    f"{where} was trained with another tokenizer than {members[0].path} ({key} differs); "
                    "average checkpoints that share one vocabulary"
                )
        yield where, model_state_from_checkpoint(ckpt, where)


def average_run(
    run: str | os.PathLike,
    last: int | None = None,
    best: int | None = None,
    out: str | os.PathLike | None = None,
) -> AverageSummary:
    """Average the ``last`` (or ``best``) N kept validation checkpoints of ``run`` into the run directory
    ``out`` (default :func:`default_out`): its config, tokenizer and shortlist, the mean weights as
    model.safetensors, and a model.json whose ``averaged_from`` names the checkpoints and their scores."""
    from ..data.tokenizer import Tokenizer
    from ..model.seq2seq import build_model

    _count(last, best)
    source = RunDir(run)
    target = Path(out) if out is not None else default_out(source.root, last, best)
    if target.exists() or target.is_symlink():
        raise UserError(f"--out {target} already exists; choose another --out or remove it")
    cfg = load_run_config(source)
    try:
        tokenizer = Tokenizer.load(source.tokenizer)
    except UserError as e:
        raise CheckpointError(str(e)) from None
    members = select_checkpoints(source, last, best)
    infos: list[dict[str, Any]] = []
    state = average_states(_states(members, infos))
    check_tokenizer(tokenizer, infos[0], str(source.tokenizer), str(members[0].path))
    model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    check_state_dict(model, state, str(members[0].path), str(source.config))
    model.load_state_dict(state)
    meta = {key: infos[-1][key] for key in ("task", "src_vocab", "tgt_vocab", "tokenizer_sha256")}
    meta["step"] = members[-1].step
    meta["averaged_from"] = {
        "run": str(source.root),
        "checkpoints": [{"checkpoint": m.path.name, "step": m.step, **m.val} for m in members],
    }
    _write_run(source, target, model, meta)
    return AverageSummary(target, tuple(members))


def _write_run(source: RunDir, target: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """The run directory ``target``, built in a temp folder beside it and renamed into place: it is
    whole or absent, whenever the process stops."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        made = RunDir(tmp)
        shutil.copyfile(source.config, made.config)
        shutil.copytree(source.tokenizer, made.tokenizer)
        if source.shortlist.is_file():  # built from the training data, not the weights: it still fits
            shutil.copyfile(source.shortlist, made.shortlist)
        export_weights(model, made, meta)
        try:
            os.rename(tmp, target)
        except OSError as e:
            raise UserError(f"cannot write --out {target}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
