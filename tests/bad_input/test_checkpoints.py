"""Damaged, foreign and hostile checkpoint files: always one CheckpointError line, never a traceback,
never a pickle run, and an honest word for what the file is.

A file torch cannot parse (random bytes, a truncated or bit-flipped checkpoint, in the zip format and
in the legacy ``_use_new_zipfile_serialization=False`` one) is "corrupt or truncated"; a complete
pickle that imports something is "holds pickled Python objects ... refusing". Torch's own errors cannot
tell these apart (its tensors-only reader raises UnpicklingError for both, and struct.error, IndexError
and the like for damaged bytes), so the tests feed both kinds in bulk and check the word each gets.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import random
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file, load_for_inference
from seq2seq_lstm.cli import main
from seq2seq_lstm.errors import CheckpointError

REFUSED = "holds pickled Python objects, not only tensors; refusing to load it (it could run code)"
CORRUPT = "is corrupt or truncated ("
SHA_MAP = "a mapping of tokenizer file name to sha256 (64 hex digits)"


def sample_checkpoint() -> dict:
    """The shapes of a Lightning checkpoint: nested dicts, lists, tuples, tensors of several dtypes."""
    g = torch.Generator().manual_seed(0)
    return {
        "epoch": 0,
        "global_step": 2,
        "pytorch-lightning_version": "2.5.0",
        "state_dict": {"model.w": torch.randn(8, 4, generator=g), "model.ids": torch.arange(5)},
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.randn(8, 4, generator=g)}},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0, 1]}],
            },
        ],  # fmt: skip
        "s2s": {
            "format": 1,
            "task": "translation",
            "src_vocab": 120,
            "rng": {"torch": torch.get_rng_state()},
        },
        "loops": {"fit_loop": {"state_dict": {}, "batch_progress": [1, 2.5, True, None]}},
    }


def saved(obj, zip_format: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def outcome(path: Path) -> str:
    """ "ok", "refused" or "corrupt"; anything but a one-line CheckpointError fails the test."""
    try:
        load_checkpoint_file(path)
    except CheckpointError as e:
        message = str(e)
        assert "\n" not in message and message.startswith(str(path)), message
        if REFUSED in message:
            return "refused"
        assert CORRUPT in message and message.endswith("); use another checkpoint"), message
        return "corrupt"
    return "ok"


def random_files(n: int, seed: int) -> list[bytes]:
    """Random bytes of many lengths; some start like a pickle, a legacy torch file or a zip archive, so
    the readers get past their first byte before the garbage."""
    rng = random.Random(seed)
    legacy_head = saved({}, zip_format=False)[:40]
    heads = [b"", b"", b"\x80\x02", b"\x80\x04\x95", legacy_head, b"PK\x03\x04", b"c", b"J", b"\x80\x02q"]
    files = []
    for _ in range(n):
        size = rng.choice([0, 1, 2, 3, 5, 8, 30, 200, 2000])
        files.append(rng.choice(heads) + rng.randbytes(size))
    return files


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_corrupt_never_a_traceback_nor_a_pickle(tmp_path, seed):
    path = tmp_path / "x.ckpt"
    for data in random_files(150, seed):
        path.write_bytes(data)
        assert outcome(path) == "corrupt", data[:40]


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_every_cut_of_a_checkpoint_is_corrupt(tmp_path, zip_format):
    data = saved(sample_checkpoint(), zip_format)
    rng = random.Random(zip_format)
    cuts = sorted({*range(0, 80), *rng.sample(range(80, len(data)), 170)})  # the headers, then anywhere
    path = tmp_path / "x.ckpt"
    for cut in cuts:
        path.write_bytes(data[:cut])
        assert outcome(path) == "corrupt", cut
    path.write_bytes(data)
    assert outcome(path) == "ok"


def global_spans(data: bytes) -> set[int]:
    """Positions of the GLOBAL instructions' bytes (opcode, module, name) in a legacy checkpoint's pickles."""
    stream, spans = io.BytesIO(data), set()
    for _ in range(5):
        for op, arg, pos in pickletools.genops(stream):
            if op.name == "GLOBAL":
                spans.update(range(pos, pos + len(arg) + 3))  # "c" module "\n" name "\n"
    return spans


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_flipped_bits_load_or_are_corrupt(tmp_path, zip_format):
    # a flip inside tensor data still loads (other numbers); one inside a class name makes a complete
    # pickle that imports something else, which is refused; anywhere else the file is corrupt
    data = saved(sample_checkpoint(), zip_format)
    names = set() if zip_format else global_spans(data)
    rng = random.Random(3)
    path = tmp_path / "x.ckpt"
    for _ in range(120):
        damaged, where = bytearray(data), rng.randrange(len(data))
        damaged[where] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        assert outcome(path) in (("ok", "corrupt", "refused") if where in names else ("ok", "corrupt")), where


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_payload_is_refused_whole_and_never_run_when_cut(tmp_path, zip_format, payload):
    marker = tmp_path / "pwned"
    data = saved({**sample_checkpoint(), "hyper_parameters": payload(marker)}, zip_format)
    path = tmp_path / "x.ckpt"
    path.write_bytes(data)
    assert outcome(path) == "refused"
    rng = random.Random(4)
    seen = set()
    for cut in sorted(rng.sample(range(len(data)), 100)):
        path.write_bytes(data[:cut])
        seen.add(outcome(path))
    assert not marker.exists()
    assert "corrupt" in seen and "ok" not in seen
    torch.load(io.BytesIO(data), weights_only=False)  # the payload really runs when loaded unsafely
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickles_refused_only_when_they_import_something(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps({"state_dict": payload(marker)}, protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol 4" warning came before the error
        assert outcome(path) == "refused"
        # numbers and strings in a pickle cannot run anything: not a checkpoint, but no attack either
        path.write_bytes(pickle.dumps({"a": 1, "b": [2.5, "c"]}, protocol=protocol))
        assert outcome(path) == "corrupt"
    assert not marker.exists()


def test_a_truncated_global_is_corrupt_and_a_complete_one_refused(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"cos\nsystem\n")  # names a function, but is no complete pickle
    assert outcome(path) == "corrupt"
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # a complete pickle that would run a command
    assert outcome(path) == "refused"


def test_the_issues_reproductions_name_the_damage(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"J\x00")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_file(path)
    assert str(e.value) == (
        f"{path} is corrupt or truncated (unreadable data: struct.error: unpack requires a buffer of 4 "
        "bytes); use another checkpoint"
    )
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"corrupt or truncated \(the data ends early\)"):
        load_checkpoint_file(path)
    path.write_bytes(saved(sample_checkpoint(), zip_format=True)[:500])
    with pytest.raises(CheckpointError) as e:  # torch's first sentence, not its paragraph of advice
        load_checkpoint_file(path)
    assert str(e.value) == (
        f"{path} is corrupt or truncated (PytorchStreamReader failed reading zip archive: failed finding "
        "central directory); use another checkpoint"
    )


# ------------------------------------------------------------------------------------------------------
# Through the commands that load checkpoints


def cli(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def one_error_line(result) -> str:
    """The error of a command that failed: exit code 1, no traceback or warning, the error one line and
    last on stderr (progress lines such as "resuming from ..." may come before it)."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("Error: "), result.output
    assert not any(word in result.output for word in ("Traceback", "Warning")), result.output
    assert not any(line.startswith("Error") for line in lines[:-1]), result.output
    return lines[-1][len("Error: ") :]


def test_damaged_checkpoints_through_every_command_that_loads_one(runs, tmp_path):
    run, lm = RunDir(runs["run"]), RunDir(runs["lm"])
    lm.weights.unlink()  # the LM run is loaded from checkpoints/best.ckpt
    (tmp_path / "src.txt").write_text("Hello\n", encoding="utf-8")
    garbage = [b"J\x00", b"\x80\x02q\x00", saved(sample_checkpoint(), zip_format=False)[:300]]
    for ckpt, data in zip((run.best_ckpt, run.last_ckpt, lm.best_ckpt), garbage, strict=True):
        ckpt.write_bytes(data)
    for result, path in [
        (cli("translate", "--checkpoint", str(run.best_ckpt), stdin="Hello\n"), run.best_ckpt),
        (cli("train", "--resume", "--out-dir", str(run.root)), run.last_ckpt),
        (cli("evaluate", str(tmp_path / "src.txt"), str(tmp_path / "src.txt"), "--source",
             str(tmp_path / "src.txt"), "--checkpoint", str(run.best_ckpt)), run.best_ckpt),
        (cli("suggest", "--checkpoint", str(lm.root), "I like"), lm.best_ckpt),
        (cli("suggest-eval", "--checkpoint", str(lm.root), str(tmp_path / "src.txt")), lm.best_ckpt),
    ]:  # fmt: skip
        line = one_error_line(result)
        assert line.startswith(f"{path} is corrupt or truncated ("), line


@pytest.mark.parametrize("kind", ["struct.error", "plain pickle"])
def test_one_line_in_a_real_process(tmp_path, payload, kind):
    # a real interpreter: a traceback, or torch's "Detected pickle protocol 4" warning, would show
    marker, path = tmp_path / "pwned", tmp_path / "x.ckpt"
    if kind == "plain pickle":
        path.write_bytes(pickle.dumps({"state_dict": payload(marker)}, protocol=4))
        want = f"Error: {path} {REFUSED}: load only checkpoints written by `s2s train`"
    else:
        path.write_bytes(b"J\x00")  # the report's reproduction
        want = (
            f"Error: {path} is corrupt or truncated (unreadable data: struct.error: unpack requires a buffer "
        )
        want += "of 4 bytes); use another checkpoint"
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq_lstm", "translate", "--checkpoint", str(path)],
        input="hi\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [want])
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------------
# model.json and the "s2s" entry of a checkpoint


@pytest.mark.parametrize(
    ("field", "value", "want"),
    [
        ("tokenizer_sha256", "abc", f"{SHA_MAP}; got 'abc' (str)"),
        ("tokenizer_sha256", {"spm.model": 5}, f"{SHA_MAP}; got {{'spm.model': 5}} (dict)"),
        ("src_vocab", "many", "a whole number >= 1; got 'many' (str)"),
        ("tgt_vocab", 0, "a whole number >= 1; got 0 (int)"),
        ("src_vocab", True, "a whole number >= 1; got True (bool)"),
        ("task", ["lm"], "one of translation, lm; got ['lm'] (list)"),
        ("step", -1, "a whole number >= 0; got -1 (int)"),
        ("checkpoint", None, "a file name; got None (NoneType)"),
        ("val_bleu", "high", "a number; got 'high' (str)"),
    ],
)  # fmt: skip
def test_malformed_model_json_is_one_line_naming_the_file_and_field(runs, field, value, want):
    run = RunDir(runs["run"])
    meta = json.loads(run.meta.read_text(encoding="utf-8"))
    run.meta.write_text(json.dumps({**meta, field: value}), encoding="utf-8")
    with pytest.raises(CheckpointError) as e:
        load_for_inference(run.root)
    assert str(e.value).startswith(f"{run.meta}: {field} must be {want}")
    assert one_error_line(cli("translate", "--checkpoint", str(run.root), stdin="Hello\n")) == str(e.value)


def test_a_checkpoints_own_record_is_checked_the_same_way(runs):
    run = RunDir(runs["run"])
    for path in (run.best_ckpt, run.last_ckpt):
        ckpt = load_checkpoint_file(path)
        ckpt["s2s"]["src_vocab"] = "many"
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        load_for_inference(run.best_ckpt)
    assert (
        str(e.value)
        == f"{run.best_ckpt} ('s2s' entry): src_vocab must be a whole number >= 1; got 'many' (str)"
    )
    line = one_error_line(cli("train", "--resume", "--out-dir", str(run.root)))
    assert line.startswith(f"{run.last_ckpt}") and "src_vocab must be a whole number >= 1" in line


def test_extra_fields_in_model_json_are_not_an_error(runs):
    # written by `s2s train`, not by hand: an unknown field is a newer writer's, not a typo
    run = RunDir(runs["run"])
    meta = json.loads(run.meta.read_text(encoding="utf-8"))
    run.meta.write_text(json.dumps({**meta, "trained_on": "tiny"}), encoding="utf-8")
    assert load_for_inference(run.root)[1].task == "translation"


def test_the_zip_archives_own_errors_are_corrupt_too(tmp_path):
    # a zip that is not torch's (no data.pkl), and torch's zip with data.pkl replaced by garbage
    path = tmp_path / "x.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert outcome(path) == "corrupt"
    good = saved(sample_checkpoint(), zip_format=True)
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"\x80\x02q\x00" if item.filename.endswith("data.pkl") else src.read(item))
    assert outcome(path) == "corrupt"
