"""``s2s export --format web``: the ONNX export of a language model plus a static page that suggests
words in the browser (docs/web.md).

The page's own sources (index.html and its JavaScript modules) ship with the package; the libraries it
runs on (ONNX Runtime Web and a wasm build of Google's SentencePiece) come from npm, pinned by
``package-lock.json`` beside them and installed with ``npm ci`` into ``node_modules/`` there. The
folder written holds everything the page loads, so any static file server serves it offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError
from ..files import fsync, plain_mode

WEB_DIR = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "app.js", "suggester.js", "pieces.js", "words.js", "shims.js")
# file in the folder's vendor/ -> its source under node_modules/
VENDOR_FILES = {
    "ort.wasm.min.mjs": "onnxruntime-web/dist/ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "sentencepiece.js": "@sctg/sentencepiece-js/dist/index.js",
    "LICENSE-sentencepiece-js": "@sctg/sentencepiece-js/LICENSE",
}
PIECES_FILE = "pieces.json"


def npm_files(modules: Path | None = None) -> dict[str, Path]:
    """The vendor files by name, from ``modules`` (default: node_modules/ beside the page sources);
    one line saying how to install them when any is missing."""
    modules = WEB_DIR / "node_modules" if modules is None else modules
    files = {name: modules / source for name, source in VENDOR_FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise UserError(
            f"the web page's npm files are missing ({missing[0]}); install them once with "
            f"`npm ci --prefix {WEB_DIR}` (Node.js and the npm registry needed)"
        )
    return files


def write_pieces(tokenizer_model: Path, out: Path) -> None:
    """Every piece of the SentencePiece model in id order, and the ids of its control, unknown and byte
    pieces: what the page's word builder needs and the wasm SentencePiece build does not expose."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    ids = range(sp.get_piece_size())
    special = [i for i in ids if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)]
    data = {"pieces": [sp.id_to_piece(i) for i in ids], "special": special}
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def export_web(run: str | os.PathLike, out: str | os.PathLike, int8: bool = False) -> Path:
    """Export the language model ``run`` with the page into the new folder ``out``; returns ``out``.

    Built under a temporary name beside ``out`` and renamed into place, like every export.
    """
    from ..checkpoint import load_run_config, locate_run
    from ..export.exporter import export_run

    out = Path(out)
    if os.path.lexists(out):
        raise UserError(f"--out {out} already exists; give a new folder (an export never writes over one)")
    task = load_run_config(locate_run(run)).task
    if task != "lm":
        raise UserError(f"{run} is a {task} model; the web page suggests words with a language model")
    files = npm_files()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.web."))
    try:
        folder = export_run(run, tmp / "export", int8=int8)
        for name in PAGE_FILES:
            shutil.copyfile(WEB_DIR / name, folder / name)
        write_pieces(folder / "tokenizer.model", folder / PIECES_FILE)
        (folder / "vendor").mkdir(mode=plain_mode(directory=True))
        for name, source in files.items():
            shutil.copyfile(source, folder / "vendor" / name)
        for path in folder.rglob("*"):
            fsync(path)
        os.replace(folder, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
