"""The package's imports go down the layers only, so the tree reads as the architecture.

Every ``import``/``from ... import`` of the package is read with ``ast`` (module level and inside
functions alike: a lazy import is still a dependency) and checked against :data:`LAYERS`: a module may
import its own room and any room of a lower layer, never a room of its own layer or above. The model
must not import Lightning or SentencePiece, and no import cycle may exist between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq_lstm"

# Lowest first. A "room" is a subpackage or a top-level module of seq2seq_lstm.
LAYERS: list[set[str]] = [
    {"errors"},  # the user-error classes: everything may raise them
    {"vocab", "files"},  # leaves: special ids; atomic writes, the UTF-8 line reader, sizes
    {"config"},
    {"model", "data", "scoring"},  # networks; text to batches; sacreBLEU scores
    {"checkpoint"},  # a run directory: config + tokenizer + weights
    {"runs"},  # reading run directories: curves, their pictures, listings (below training, which plots)
    {"decoding"},  # search over any step decoder, ensembles, shortlists, int8 weights
    {"export"},  # ONNX export and the ONNX Runtime engine (a step decoder for inference/ and suggest/)
    {"inference", "suggest", "training"},
    {"serve", "web"},  # HTTP over inference/ and suggest/; the browser page over an ONNX export
    {"cli", "__init__"},
    {"__main__"},  # `python -m seq2seq_lstm`
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
FORBIDDEN = {"model": {"lightning", "sentencepiece", "datasets", "click"}}


def _modules() -> dict[str, Path]:
    """Dotted module name under the package ("model.cells", "config") -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for each import in the file: ours as a dotted name under the package
    (``"model.cells"``), others as ``"ext:<top-level name>"``."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        here = []
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                found.append((node.lineno, rest if top == PACKAGE.name else f"ext:{top}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top, _, rest = (node.module or "").partition(".")
                if top != PACKAGE.name:
                    found.append((node.lineno, f"ext:{top}"))
                    continue
                base = rest.split(".") if rest else []
            else:
                base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            base_name = ".".join(base)
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{base_name}.{alias.name}" if base_name else alias.name
                found.append((node.lineno, sub if sub in MODULES else base_name))
    return found


MODULES = _modules()


def _room(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


def test_every_room_has_a_layer():
    rooms = {_room(m) for m in MODULES}
    assert rooms <= set(LAYER_OF), f"rooms without a layer in LAYERS: {sorted(rooms - set(LAYER_OF))}"


def layer_breaks(name: str, path: Path) -> list[str]:
    """What in module ``name`` (read from ``path``) imports sideways, upwards or a forbidden library."""
    room = _room(name)
    breaks = []
    for line, target in _imports(name, path):
        if target.startswith("ext:"):
            if target[4:] in FORBIDDEN.get(room, ()):
                breaks.append(f"line {line}: {room}/ must not import {target[4:]}")
            continue
        other = _room(target)
        if other != room and LAYER_OF[other] >= LAYER_OF[room]:
            breaks.append(
                f"line {line}: {room} (layer {LAYER_OF[room]}) imports {target} (layer {LAYER_OF[other]})"
            )
    return breaks


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    breaks = layer_breaks(name, MODULES[name])
    assert not breaks, f"{name}: " + "; ".join(breaks)


def test_no_import_cycles():
    graph = {
        name: {t for _, t in _imports(name, path) if not t.startswith("ext:") and t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, stack + [node])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]) :])


def test_the_checker_sees_a_break(tmp_path):
    """The checker itself: upward, sideways and forbidden imports in a model module are all reported,
    a downward one is not."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "from ..config import Config\n"  # down: fine
        "from .cells import LSTMCell\n"  # own room: fine
        "def f():\n    from ..decoding.search import beam_search\n"  # up, even when lazy
        "from ..data import tokenizer\n"  # sideways (same layer)
        "import lightning\n"
    )
    breaks = layer_breaks("model.fake", fake)
    assert sorted(b.split(":")[0] for b in breaks) == ["line 4", "line 5", "line 6"], breaks
