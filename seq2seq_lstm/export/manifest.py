"""``manifest.json`` of an export folder: what the graphs are, how big, and the run's defaults.

The schema is documented for clients in other languages in docs/export.md. Reading a manifest checks
that it is whole and that its graph interfaces are exactly the ones its task and sizes call for
(:func:`expected_graphs`), so an engine never feeds a graph by guesswork.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TASKS, GenerationConfig, config_from_dict
from ..errors import CheckpointError, ConfigError
from ..vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .graphs import GraphSpec, TensorSpec, decoder_step_spec, encoder_spec, lm_step_spec

FORMAT = "seq2seq-lstm-onnx"
VERSION = 1
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE, SOURCE_TOKENIZER_FILE = "tokenizer.model", "source.model"
PRECISIONS = ("float32", "int8")
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest. ``model`` is the run's model section as plain data; ``graphs`` by name."""

    task: str  # lm or translation
    precision: str  # float32 or int8
    opset: int
    vocab_size: dict[str, int]  # source, target
    tokenizer: dict[str, str]  # source, target: file names in the folder
    model: dict[str, Any]
    layers: int  # L of the recurrent state
    hidden_size: int  # H
    generation: GenerationConfig
    graphs: dict[str, GraphSpec]
    languages: dict[str, str] | None = None  # source, target codes (sentence splitting); older exports: none

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "task": self.task,
            "precision": self.precision,
            "opset": self.opset,
            "special_ids": dict(SPECIAL_IDS),
            "vocab_size": dict(self.vocab_size),
            "tokenizer": dict(self.tokenizer),
            "model": dict(self.model),
            "state": {"layers": self.layers, "hidden_size": self.hidden_size, "start": "zeros"},
            "generation": dataclasses.asdict(self.generation),
            "graphs": {name: g.to_dict() for name, g in self.graphs.items()},
            **({"languages": dict(self.languages)} if self.languages else {}),
        }


def expected_graphs(
    task: str, layers: int, hidden: int, vocab: int, input_feeding: bool
) -> dict[str, GraphSpec]:
    """The graphs, by name, of an export of ``task`` with these sizes."""
    if task == "lm":
        return {"lm_step": lm_step_spec(layers, hidden, vocab)}
    return {
        "encoder": encoder_spec(layers, hidden),
        "decoder_step": decoder_step_spec(layers, hidden, vocab, input_feeding),
    }


def write_manifest(manifest: Manifest, directory: Path) -> Path:
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: str | Path) -> Manifest:
    """The manifest of an export folder, checked; one clear :class:`CheckpointError` otherwise."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {directory} is not a folder written by `s2s export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); export the run again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest of version {VERSION}; export the run again")
    try:
        return _parse(data, path)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        reason = f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{path}: damaged manifest ({reason}); export the run again") from None


def _parse(data: dict[str, Any], path: Path) -> Manifest:
    if data["task"] not in TASKS or data["precision"] not in PRECISIONS:
        raise CheckpointError(f"{path}: unknown task {data['task']!r} or precision {data['precision']!r}")
    if data["special_ids"] != SPECIAL_IDS:
        raise CheckpointError(f"{path}: special ids {data['special_ids']} differ from ours, {SPECIAL_IDS}")
    try:
        generation = config_from_dict({"generation": data["generation"]}).generation
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    state, model = data["state"], data["model"]
    graphs = {name: _graph(g) for name, g in data["graphs"].items()}
    languages = data.get("languages")
    manifest = Manifest(
        task=data["task"], precision=data["precision"], opset=int(data["opset"]),
        vocab_size={k: int(data["vocab_size"][k]) for k in ("source", "target")},
        tokenizer={k: str(data["tokenizer"][k]) for k in ("source", "target")},
        model=dict(model), layers=int(state["layers"]), hidden_size=int(state["hidden_size"]),
        generation=generation, graphs=graphs,
        languages={k: str(languages[k]) for k in ("source", "target")} if languages is not None else None,
    )  # fmt: skip
    _check_graphs(manifest, path)
    return manifest


def _graph(data: dict[str, Any]) -> GraphSpec:
    def tensors(items: list) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"]), t.get("what", "")) for t in items)

    return GraphSpec(str(data["file"]), tensors(data["inputs"]), tensors(data["outputs"]))


def _signature(graph: GraphSpec) -> tuple:
    """What must match: the file and each tensor's name, dtype and shape (not the descriptions)."""
    return graph.file, tuple((t.name, t.dtype, t.shape) for t in (*graph.inputs, *graph.outputs))


def _check_graphs(manifest: Manifest, path: Path) -> None:
    """The manifest's graphs are the ones its task and sizes call for."""
    want = expected_graphs(
        manifest.task, manifest.layers, manifest.hidden_size, manifest.vocab_size["target"],
        bool(manifest.model.get("input_feeding")) and manifest.task == "translation",
    )  # fmt: skip
    if sorted(manifest.graphs) != sorted(want):
        raise CheckpointError(
            f"{path}: graphs {sorted(manifest.graphs)}; a {manifest.task} export has {sorted(want)}"
        )
    for name, graph in want.items():
        if _signature(manifest.graphs[name]) != _signature(graph):
            raise CheckpointError(
                f"{path}: graph {name} is described with other inputs/outputs than a {manifest.task} export "
                f"of these sizes has ({describe(manifest.graphs[name])}; expected {describe(graph)})"
            )


def describe(graph: GraphSpec) -> str:
    """``in: tokens int64 [N], ...; out: ...`` for messages."""

    def side(tensors: tuple[TensorSpec, ...]) -> str:
        return ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in tensors)

    return f"in: {side(graph.inputs)}; out: {side(graph.outputs)}"
