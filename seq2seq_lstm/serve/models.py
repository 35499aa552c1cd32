"""The models a server holds: each run directory loaded once, by id, with its worker.

A translation run serves ``/translate`` and, given a source, ``/suggest`` (the Suggester shares the
Translator's modules, so the weights are in memory once); a language-model run serves ``/suggest``.
Ids are the positions of the ``--checkpoint`` options (0, 1, ...), as OpenNMT-py's model ids are
integers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..checkpoint import load_run_config, locate_run
from ..inference.translator import Translator
from ..suggest.suggester import Suggester
from .batcher import ModelWorker
from .limits import Limits


@dataclass(frozen=True)
class ServedModel:
    """One loaded run: its id, where it came from, its task and the worker that runs it."""

    model_id: int
    path: str
    task: str  # "translation" or "lm"
    worker: ModelWorker
    settings: Mapping[str, Any]  # dtype and the generation overrides it was loaded with

    @property
    def translator(self) -> Translator | None:
        return self.worker.translator

    def describe(self) -> dict[str, Any]:
        """OpenNMT-py's ``/models`` entry (``model_id``, ``opt``, ``models``, ``loaded``, ``timeout``),
        with ``task`` added."""
        return {"model_id": self.model_id, "opt": dict(self.settings), "models": [self.path],
                "loaded": True, "timeout": -1, "task": self.task}  # fmt: skip


def load_model(
    model_id: int,
    path: str | os.PathLike,
    limits: Limits,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    threads: int = 0,
    engine: str = "torch",
) -> ServedModel:
    """Load the run at ``path`` for serving; ``overrides`` replace ``generation`` fields of a
    translation run (as `s2s translate`'s options do); ``threads``: torch threads of its worker
    (0: torch's default); ``engine`` "onnx": ``path`` is a folder written by `s2s export`."""
    overrides = dict(overrides or {})
    if engine == "onnx":
        task, translator, suggester = _onnx_model(path, overrides, threads)
    else:
        task, translator, suggester = _torch_model(path, overrides, dtype, device)
    worker = ModelWorker(translator, suggester, limits, name=str(model_id), threads=threads)
    settings = {"engine": engine, "dtype": dtype, "device": device, **overrides}
    return ServedModel(model_id, os.fspath(path), task, worker, settings)


def _torch_model(path, overrides: dict[str, Any], dtype: str, device: str):
    """(task, Translator or None, Suggester) of a run directory."""
    cfg = load_run_config(locate_run(path))
    if cfg.task == "translation":
        translator = Translator.from_checkpoint(path, device=device, dtype=dtype, **overrides)
        suggester = Suggester.from_config(translator.decoder, translator.tokenizer, cfg)
    else:
        translator, suggester = None, Suggester.from_checkpoint(path, dtype=dtype)
    return cfg.task, translator, suggester


def _onnx_model(path, overrides: dict[str, Any], threads: int):
    """(task, Translator or None, Suggester) of an export folder, on the ONNX Runtime engine."""
    from ..export.manifest import read_manifest

    manifest = read_manifest(path)
    if manifest.task == "translation":
        translator = Translator.from_export(path, threads=threads or None, **overrides)
        suggester = Suggester.from_config(translator.decoder, translator.tokenizer, manifest)
        return manifest.task, translator, suggester
    return manifest.task, None, Suggester.from_export(path, threads=threads or None)


def load_models(paths: Sequence[str | os.PathLike], limits: Limits, **kwargs: Any) -> list[ServedModel]:
    """Every run of ``paths``, ids in order."""
    return [load_model(i, path, limits, **kwargs) for i, path in enumerate(paths)]
