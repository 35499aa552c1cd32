"""A user model: what the cache learned from its user, kept in one JSON file between sessions.

The file (``s2s suggest --user-model FILE``; schema in docs/suggestion.md) is plain JSON, no pickle:

    {"format": "seq2seq-lstm-user-model", "version": 1, "adapter": "cache",
     "tokenizer": "sha256:<hex>", "state": {"weight": ..., "clock": ..., "total": ...,
     "words": [[word, count, seen, {form: n}, initial], ...], "pairs": [[previous, word, count, seen], ...]}}

It is written whole or not at all (:func:`~seq2seq_lstm.files.atomic_write_text`: a temp file beside
it, then a rename), and is bounded: the cache keeps at most ``max_words`` words and ``max_pairs``
pairs and forgets the least recently used first, so the file stays under about 2 MiB. The tokenizer
fingerprint ties it to the model it was learned with; a file of another tokenizer, of another
program, or a damaged one is refused with one line that names ``--forget``, which erases it: nothing
is overwritten that the user did not ask to erase. Nothing else is written anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_text, check_output, size_text
from .cache import CacheAdapter

FORMAT = "seq2seq-lstm-user-model"
VERSION = 1
MAX_FILE_BYTES = 16 * 2**20  # far above what the bounds allow: a larger file is not one of ours
FORGET = "pass --forget to erase it and start afresh"


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the target-side SentencePiece model: the same pieces, the same fingerprint."""
    return "sha256:" + hashlib.sha256(tokenizer.tgt_sp.serialized_model_proto()).hexdigest()[:32]


class UserModel:
    """A cache adapter loaded from ``path`` (empty if there is no file yet) and saved back to it;
    with ``forget`` the file is erased instead of read (whatever it holds), and learning starts afresh.

    Raises UserError (one line) when ``path`` is a folder, cannot be written, is not a user model, is
    damaged or was learned with another tokenizer.
    """

    def __init__(
        self,
        path,
        suggester,
        options: dict | None = None,
        *,
        forget: bool = False,
        option: str = "--user-model",
    ) -> None:
        self.path, self.option = Path(path), option
        self.fingerprint = tokenizer_fingerprint(suggester.tokenizer)
        self.adapter = CacheAdapter.from_suggester(suggester, dict(options or {}))
        check_output(self.path, option)  # a read-only location is refused before any work
        self.forgotten = forget and self.forget()
        if not forget and self.path.exists():
            self._load()

    def _refuse(self, why: str) -> UserError:
        return UserError(f"{self.option} {self.path} {why}; {FORGET}")

    def _load(self) -> None:
        if not self.path.is_file():
            raise UserError(f"{self.option} {self.path} is not a file; give a file")
        size = self.path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise self._refuse(
                f"is {size_text(size)}, not a user model (at most {size_text(MAX_FILE_BYTES)})"
            )
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except OSError as e:
            raise UserError(f"{self.option} {self.path} cannot be read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise self._refuse("is not a user model (not UTF-8 text)") from None
        except json.JSONDecodeError as e:
            raise self._refuse(f"is not a user model (not JSON: {e.msg} at line {e.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self._refuse(f'is not a user model (no "format": "{FORMAT}")')
        if data.get("version") != VERSION:
            raise self._refuse(f"has format version {data.get('version')!r}; this program reads {VERSION}")
        if data.get("adapter") != self.adapter.name:
            raise self._refuse(f"holds a {data.get('adapter')!r} model, not a {self.adapter.name!r} one")
        if data.get("tokenizer") != self.fingerprint:
            raise self._refuse(
                "was learned with another tokenizer (its fingerprint differs from this model's)"
            )
        try:
            self.adapter.load_state(data.get("state"))
        except ValueError as e:
            raise self._refuse(f"is damaged: {e}") from None

    def save(self) -> None:
        """Write the file atomically: readers see the old one or the new one, never half."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "adapter": self.adapter.name,
            "tokenizer": self.fingerprint,
            "state": self.adapter.state(),
        }
        try:
            atomic_write_text(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        except OSError as e:
            raise UserError(f"{self.option} {self.path} cannot be written ({e.strerror})") from None

    def forget(self) -> bool:
        """Erase the file (if any) and everything learned; whether there was a file."""
        self.adapter.reset()
        existed = self.path.is_file()
        if existed:
            try:
                self.path.unlink()
            except OSError as e:
                raise UserError(f"{self.option} {self.path} cannot be erased ({e.strerror})") from None
        return existed
