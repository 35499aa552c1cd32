"""The run directory, safe checkpoint loading and the exported inference weights.

A training run writes one directory (``training.out_dir``)::

    runs/x/config.yaml          the resolved config (written atomically)
    runs/x/tokenizer/           spm.model, or src.model + tgt.model
    runs/x/checkpoints/         best.ckpt (best validation score) and last.ckpt (for --resume);
                                step-000600.ckpt, ... (the last training.keep_checkpoints validations)
    runs/x/logs/version_N/      metrics.csv (or TensorBoard events)
    runs/x/model.safetensors    the best weights, for translate / suggest / evaluate
    runs/x/model.json           task, vocabulary sizes, sha256 of each tokenizer file, step, val scores
    runs/x/shortlist.safetensors  optional, `s2s shortlist`: per-sentence output vocabularies

Nothing here ever unpickles arbitrary objects: ``.ckpt``/``.pt`` files are read with
``torch.load(weights_only=True)`` (a checkpoint carrying a pickle payload is refused, never run) and the
exported weights are safetensors. Every mismatch (tokenizer, config, shapes) is a :class:`CheckpointError`
with one line naming what differs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import TASKS, Config, config_from_dict, load_config
from .data.tokenizer import Tokenizer
from .errors import CheckpointError, ConfigError, UnsafeCheckpointError, UserError
from .files import atomic_write, atomic_write_text

FORMAT_VERSION = 1  # of model.json and of the "s2s" entry in Lightning checkpoints
CKPT_KEY = "s2s"  # our entry in a Lightning checkpoint: config, tokenizer hashes, RNG, validation scores
MODEL_PREFIX = "model."  # the system holds the nn.Module as ``self.model``
STEP_CKPT = re.compile(r"step-(\d+)\.ckpt")  # a kept validation checkpoint (RunDir.step_ckpt)


@dataclass(frozen=True)
class RunDir:
    """Paths inside a run directory (see the module docstring)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    def step_ckpt(self, step: int) -> Path:
        """The checkpoint of the validation at ``step`` (kept by ``training.keep_checkpoints``)."""
        return self.checkpoints / f"step-{step:06d}.ckpt"

    def step_ckpts(self) -> dict[int, Path]:
        """step -> checkpoint of each kept validation checkpoint, oldest first."""
        found = self.checkpoints.glob("step-*.ckpt") if self.checkpoints.is_dir() else []
        steps = {int(m[1]): p for p in found if (m := STEP_CKPT.fullmatch(p.name)) and p.is_file()}
        return dict(sorted(steps.items()))

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def shortlist(self) -> Path:
        return self.root / "shortlist.safetensors"

    @property
    def meta(self) -> Path:
        return self.root / "model.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def tokenizer_sha256(tokenizer: Tokenizer) -> dict[str, str]:
    """File name -> sha256 of each SentencePiece model, as saved in the run's ``tokenizer/``."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in tokenizer.model_files().items()}


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_sha256_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
        for k, v in value.items()
    )


# what model.json (and the same fields of a checkpoint's "s2s" entry) may hold: field -> (check, wording)
RUN_INFO_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: v in TASKS, f"one of {', '.join(TASKS)}"),
    "src_vocab": (lambda v: _is_count(v, 1), "a whole number >= 1"),
    "tgt_vocab": (lambda v: _is_count(v, 1), "a whole number >= 1"),
    "tokenizer_sha256": (_is_sha256_map, "a mapping of tokenizer file name to sha256 (64 hex digits)"),
    "step": (lambda v: _is_count(v, 0), "a whole number >= 0"),
    "checkpoint": (lambda v: isinstance(v, str), "a file name"),
}


def check_run_info(info: Mapping[str, Any], where: str) -> None:
    """Each field of ``info`` that a load reads has the type it must have, or one line naming ``where``
    and the field (a hand-edited or damaged model.json otherwise fails deep in a comparison).

    Fields it does not know are left alone: the file is written by `s2s train`, not by hand, so an extra
    field is a newer writer's, not a typo. ``val_*`` fields are validation scores: numbers.
    """
    for name, value in info.items():
        if name in RUN_INFO_FIELDS:
            ok, want = RUN_INFO_FIELDS[name]
        elif name.startswith("val_"):
            ok, want = _is_number, "a number"
        else:
            continue
        if not ok(value):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise CheckpointError(f"{where}: {name} must be {want}; got {shown} ({type(value).__name__})")


def check_tokenizer(
    tokenizer: Tokenizer, expected: Mapping[str, Any], tok_where: str, weights_where: str
) -> None:
    """The tokenizer must be the one the weights were trained with: same files, hashes and vocab sizes."""
    check_run_info(expected, weights_where)
    got = tokenizer_sha256(tokenizer)
    want = dict(expected.get("tokenizer_sha256", {}))
    if set(got) != set(want):
        raise CheckpointError(
            f"{tok_where} does not match {weights_where}: it holds {', '.join(sorted(got))} but the "
            f"weights were trained with {', '.join(sorted(want)) or 'no recorded tokenizer'}; "
            "use the run's own tokenizer"
        )
    for name in sorted(want):
        if got[name] != want[name]:
            raise CheckpointError(
                f"{tok_where}/{name} does not match {weights_where}: its sha256 is {got[name][:12]}… but the "
                f"weights were trained with {want[name][:12]}…; use the run's own tokenizer"
            )
    for side, size in (("src", tokenizer.src_vocab_size), ("tgt", tokenizer.tgt_vocab_size)):
        want_size = expected.get(f"{side}_vocab")
        if want_size is not None and int(want_size) != size:
            raise CheckpointError(
                f"{tok_where} does not match {weights_where}: the {side} vocabulary has {size} pieces "
                f"but the weights expect {want_size}"
            )


# --------------------------------------------------------------------------------------------------
# Reading files without running pickles


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning ``.ckpt`` or torch ``.pt`` as a dict, loaded with ``weights_only=True``.

    Files carrying pickled Python objects (anything but tensors, containers and primitives) are refused
    before any of their code runs; files torch cannot parse (corrupt, truncated, not a checkpoint) are a
    different one-line error, so a damaged file is not mistaken for an attack or the reverse.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:  # unreadable is not corrupt: say why (permissions, I/O)
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():
            # torch warns about a pickle protocol other than 2 before it refuses such a file: the refusal
            # below is the message, the warning only pushed it off the one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's readers fail on damaged bytes with whatever the byte they stopped at
        # raises (struct.error, IndexError, KeyError, TypeError, ...): none of it is a bug of ours
        raise _unloadable(path, e) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    return ckpt


def _unloadable(path: Path, e: Exception) -> CheckpointError:
    """The one-line error for a checkpoint file ``torch.load`` failed on with ``e``.

    A refused pickle is told apart from damage by what the file holds, not by torch's wording: torch's
    tensors-only reader raises UnpicklingError both for a class it will not import and for bytes that are
    no pickle at all (random bytes that happen to start with a pickle opcode).
    """
    if isinstance(e, pickle.UnpicklingError) and _pickle_imports(path):
        return UnsafeCheckpointError(
            f"{path} holds pickled Python objects, not only tensors; refusing to load it (it could run "
            "code): load only checkpoints written by `s2s train`"
        )
    return CheckpointError(f"{path} is corrupt or truncated ({_reason(e)}); use another checkpoint")


# pickle opcodes that import a class or function by name: the only way a pickle gets code to run
_IMPORTING_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})


def _pickle_imports(path: Path) -> bool:
    """Whether the pickle data of ``path`` parses completely and names something to import: a real
    pickle (not damaged bytes) that could run code, which is why the tensors-only reader refused it.

    ``pickletools.dis`` checks every opcode, argument, the stack and the memo without building or importing
    anything. The pickle data is ``data.pkl`` in torch's zip format; in its legacy format the five pickles
    before the raw tensor bytes (magic number, protocol, system info, the object, its storage keys); in
    any other file (a plain ``pickle.dump``) the pickle it starts with.
    """
    opcodes: set[str] = set()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl")
                stream, count = io.BytesIO(archive.read(name)), 1
        else:
            stream, count = open(path, "rb"), 5  # read pickle by pickle: a legacy file may be gigabytes
        with stream:
            for index in range(count):
                start = stream.tell()
                pickletools.dis(stream, out=io.StringIO())
                stream.seek(start)
                ops = list(pickletools.genops(stream))  # the same pickle again, now known to be whole
                opcodes |= {op.name for op, _, _ in ops}
                if index == 0 and torch.serialization.MAGIC_NUMBER not in [arg for _, arg, _ in ops]:
                    break  # not torch's legacy format (whose first pickle is its magic number): one pickle
    except Exception:  # whatever the parser stopped at (ValueError, EOFError, a bad zip member, ...)
        return False
    return bool(opcodes & _IMPORTING_OPCODES)


def _reason(e: BaseException) -> str:
    """What went wrong, for the parenthesis of the corrupt-file error: torch's own words where it has
    some (without its advice on loading unsafely), else the exception that the damaged bytes raised."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.rsplit("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(e, EOFError):
        return "the data ends early"
    if isinstance(e, (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile)) and lines:
        return lines[0].split(". ")[0]  # the first sentence: torch goes on with paragraphs of advice
    kind, module = type(e).__name__, type(e).__module__
    kind = kind if module == "builtins" else f"{module}.{kind}"  # struct.error, not a bare "error"
    return f"unreadable data: {kind}" + (f": {lines[0]}" if lines else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def model_state_from_checkpoint(ckpt: Mapping[str, Any], where: str) -> dict[str, Tensor]:
    """The model's parameters from a Lightning checkpoint (``state_dict`` with the ``model.`` prefix)."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} has no state_dict; it is not a checkpoint written by `s2s train`")
    return {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}


def check_state_dict(
    model: nn.Module, state: Mapping[str, Tensor], weights_where: str, config_where: str
) -> None:
    """Every tensor in ``state`` exists in ``model`` with the same shape, and nothing is missing.

    Tied parameters (one tensor under several names) need only one of their names in ``state``:
    safetensors stores a shared tensor once.
    """
    expected = model.state_dict()
    for name, tensor in state.items():
        if name not in expected:
            raise CheckpointError(
                f"{weights_where} does not match {config_where}: it has parameter {name}, which the model "
                "built from the config lacks; use the config the weights were trained with"
            )
        want = tuple(expected[name].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(
                f"{weights_where} does not match {config_where}: parameter {name} has shape "
                f"{tuple(tensor.shape)} in the weights but {want} in the model built from the config"
            )
    aliases: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        aliases.setdefault(tensor.data_ptr(), []).append(name)
    for names in aliases.values():
        if not any(n in state for n in names):
            raise CheckpointError(
                f"{weights_where} does not match {config_where}: parameter {names[0]} of the model built "
                "from the config is missing from the weights; use the config the weights were trained with"
            )


# --------------------------------------------------------------------------------------------------
# Export and load for inference


def export_weights(model: nn.Module, run: RunDir, meta: Mapping[str, Any]) -> Path:
    """Write ``model.safetensors`` (tied tensors stored once) and ``model.json``, each atomically."""
    from safetensors.torch import save_model

    metadata = {"format": "pt", "s2s_format": str(FORMAT_VERSION)}
    atomic_write(run.weights, lambda tmp: save_model(model, str(tmp), metadata=metadata))
    atomic_write_text(run.meta, json.dumps({"format": FORMAT_VERSION, **meta}, indent=2) + "\n")
    return run.weights


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({_first_line(e)}); export it again") from None


def _read_meta(run: RunDir) -> dict[str, Any]:
    if not run.meta.is_file():
        raise CheckpointError(
            f"{run.meta} is missing; it is written next to {run.weights.name} by `s2s train`"
        )
    try:
        meta = json.loads(run.meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{run.meta} is not valid JSON ({e}); export the weights again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{run.meta}: unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    check_run_info(meta, str(run.meta))
    return meta


def locate_run(path: str | os.PathLike) -> RunDir:
    """The run directory of a run directory, a ``.safetensors`` file or a ``.ckpt``/``.pt``."""
    return _locate(Path(path))[0]


def _locate(path: Path) -> tuple[RunDir, Path]:
    """(run directory, weights file) for a run directory, a ``.safetensors`` file or a ``.ckpt``/``.pt``."""
    if path.is_dir():
        run = RunDir(path)
        for candidate in (run.weights, run.best_ckpt, run.last_ckpt):
            if candidate.is_file():
                return run, candidate
        raise CheckpointError(
            f"{path} holds no model: expected {run.weights.name} or checkpoints/best.ckpt; "
            "train one with `s2s train`"
        )
    if not path.exists():
        raise CheckpointError(f"model {path} does not exist; pass a run directory written by `s2s train`")
    if path.suffix == ".safetensors":
        return RunDir(path.parent), path
    if path.suffix in (".ckpt", ".pt"):
        root = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return RunDir(root), path
    raise CheckpointError(f"{path}: expected a run directory, a .safetensors file or a .ckpt checkpoint")


def inference_device(device: str | torch.device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", ...) as a torch device that exists on this machine, or one
    clear error naming what is missing (instead of torch's traceback on the first tensor moved there)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UserError(f"device {device} asked for, but no CUDA device is available; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise UserError(
                f"device {device} asked for, but this machine has {count} CUDA device(s): cuda:0 to "
                f"cuda:{count - 1}"
            )
    elif dev.type != "cpu":  # the CPU and CUDA paths are the tested ones (tests/test_cuda.py)
        raise UserError(f"device {device} is not supported; use cpu, cuda or cuda:N")
    return dev


def load_for_inference(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Config, Tokenizer]:
    """``(model in eval mode, config, tokenizer)`` from a run directory or one of its weight files.

    Checks that the tokenizer on disk is the one the weights were trained with (file hashes, vocabulary
    sizes) and that the config builds a model of exactly the weights' shapes.
    """
    from .model.seq2seq import build_model

    device = inference_device(device)

    run, weights = _locate(Path(path))
    ckpt: dict[str, Any] | None = None
    if weights.suffix == ".safetensors":
        info = _read_meta(run)
        cfg = load_run_config(run)
    else:
        ckpt = load_checkpoint_file(weights)
        info = ckpt.get(CKPT_KEY)
        if not isinstance(info, dict):
            raise CheckpointError(f"{weights} was not written by `s2s train` (no {CKPT_KEY!r} entry)")
        check_run_info(info, f"{weights} ({CKPT_KEY!r} entry)")
        try:
            cfg = config_from_dict(info["config"])
        except (ConfigError, KeyError) as e:
            raise CheckpointError(f"{weights}: its stored config is invalid ({e})") from None
    if info.get("task", cfg.task) != cfg.task:
        raise CheckpointError(
            f"{weights} holds a {info['task']} model but {run.config} says task: {cfg.task}; "
            "use the run's config"
        )
    try:
        tokenizer = Tokenizer.load(run.tokenizer)
    except UserError as e:
        raise CheckpointError(str(e)) from None
    check_tokenizer(tokenizer, info, str(run.tokenizer), str(weights))
    try:
        model = build_model(cfg, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    except ConfigError as e:
        raise CheckpointError(f"{run.config}: {e}") from None
    state = _read_safetensors(weights) if ckpt is None else model_state_from_checkpoint(ckpt, str(weights))
    check_state_dict(model, state, str(weights), str(run.config))
    model.load_state_dict(state, strict=False)  # tied names absent from safetensors load via their alias
    return model.to(device).eval(), cfg, tokenizer


def load_ensemble(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    device: str | torch.device = "cpu",
    check: Callable[[str | os.PathLike, Config, tuple[str | os.PathLike, Config] | None], None] | None = None,
) -> tuple[list[nn.Module], Config, Tokenizer]:
    """:func:`load_for_inference` for one run directory (or weight file) or several (an ensemble):
    ``(models, the first one's config, the shared tokenizer)``.

    ``check(path, cfg, first)`` vets each member as it is loaded (``first``: the first member's path and
    config, None for the first itself); then every member must share the first one's tokenizer.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise UserError("pass at least one checkpoint (a run directory written by `s2s train`)")
    models: list[nn.Module] = []
    first: tuple[Config, Tokenizer] | None = None
    for path in paths:
        model, cfg, tokenizer = load_for_inference(path, device=device)
        if check is not None:
            check(path, cfg, None if first is None else (paths[0], first[0]))
        if first is None:
            first = (cfg, tokenizer)
        elif tokenizer.fingerprint() != first[1].fingerprint():
            raise CheckpointError(
                f"{path} was trained with another tokenizer than {paths[0]}; the members of an ensemble "
                "must share one vocabulary"
            )
        models.append(model)
    return models, first[0], first[1]


def load_run_config(run: RunDir) -> Config:
    """The resolved config a run directory holds (``config.yaml``), or one clear error."""
    if not run.config.is_file():
        raise CheckpointError(
            f"{run.config} is missing; {run.root} is not a run directory written by `s2s train`"
        )
    try:
        return load_config(run.config)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def save_checkpoint_info(cfg: Config, tokenizer: Tokenizer) -> dict[str, Any]:
    """What a Lightning checkpoint carries about its run, to check a resume or a load against."""
    return {
        "format": FORMAT_VERSION,
        "task": cfg.task,
        "config": cfg.to_dict(),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "src_vocab": tokenizer.src_vocab_size,
        "tgt_vocab": tokenizer.tgt_vocab_size,
    }
