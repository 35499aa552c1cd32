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
) -> ServedModel:
    """Load the run at ``path`` for serving; ``overrides`` replace ``generation`` fields of a
    translation run (as `s2s translate`'s options do); ``threads``: torch threads of its worker
    (0: torch's default)."""
    overrides = dict(overrides or {})
    cfg = load_run_config(locate_run(path))
    if cfg.task == "translation":
        translator = Translator.from_checkpoint(path, device=device, dtype=dtype, **overrides)
        suggester = Suggester.from_config(translator.decoder, translator.tokenizer, cfg)
    else:
        translator, suggester = None, Suggester.from_checkpoint(path, dtype=dtype)
    worker = ModelWorker(translator, suggester, limits, name=str(model_id), threads=threads)
    settings = {"dtype": dtype, "device": device, **overrides}
    return ServedModel(model_id, os.fspath(path), cfg.task, worker, settings)


def load_models(paths: Sequence[str | os.PathLike], limits: Limits, **kwargs: Any) -> list[ServedModel]:
    """Every run of ``paths``, ids in order."""
    return [load_model(i, path, limits, **kwargs) for i, path in enumerate(paths)]
