"""SentencePiece subword tokenizer (Kudo & Richardson 2018) with fixed special ids.

One model is shared by source and target (``joint``, also used for language models) or each side
has its own. Special ids are the same in every model we train, so the rest of the toolkit can rely
on them: ``<pad>`` = 0, ``<unk>`` = 1, ``<s>`` = 2, ``</s>`` = 3. With ``byte_fallback`` a character
that no piece covers is spelled as UTF-8 byte pieces (``<0xF0>`` ...), so no input is unrepresentable
and ``decode(encode(x)) == x`` for any normalized text.

    tok = Tokenizer.train(src_texts, tgt_texts, cfg.tokenizer, out_dir="runs/x/tokenizer")
    tok = Tokenizer.load("runs/x/tokenizer")          # spm.model, or src.model + tgt.model
    ids = tok.encode_src(["Hello world"])              # [[...]], no BOS/EOS
    tok.decode_tgt(ids)

Encoded ids never contain BOS/EOS: the data pipeline and the decoders add them where they belong.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import sentencepiece as spm

from ..config import TokenizerConfig
from ..errors import UserError
from ..files import atomic_write, plain_mode
from ..vocab import BOS_ID, EOS_ID, PAD_ID, SPECIAL_PIECES, UNK_ID, WORD_BOUNDARY

logger = logging.getLogger(__name__)


JOINT_FILE = "spm.model"
SRC_FILE, TGT_FILE = "src.model", "tgt.model"
SIDES = ("src", "tgt")

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
# a UserError raised by the sentence iterator (a streamed corpus's bad line) comes back through C++ as text
_FROM_ITERATOR = re.compile(r"UserError: (.*)")
_IDS_TYPE = pa.list_(pa.int64())  # what datasets infers from lists of Python ints: cached ids keep it


def _sp_log_level() -> int:
    # SentencePiece logs every training step to stderr; show it only when we are debugging
    return 0 if logger.isEnabledFor(logging.DEBUG) else 2


def train_sentencepiece(texts: Iterable[str], cfg: TokenizerConfig, what: str = "corpus") -> bytes:
    """Train one SentencePiece model on ``texts`` and return the serialized model (nothing on disk).

    ``hard_vocab_limit`` stays on: the model then has exactly ``cfg.vocab_size`` pieces (embedding
    sizes in configs and checkpoints can be read off the config), and a size the data cannot fill is
    a clear error instead of a silently smaller vocabulary.
    """
    texts = (t for t in texts if t)  # empty lines carry no pieces and SentencePiece would skip them anyway
    first = list(itertools.islice(texts, 1))
    if not first:
        raise UserError(f"cannot train a tokenizer on an empty {what}: it has no non-empty sentences")
    spm.set_random_generator_seed(cfg.seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.chain(first, texts),
            model_writer=model,
            model_type=cfg.model_type,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            byte_fallback=cfg.byte_fallback,
            input_sentence_size=cfg.input_sentence_size,
            shuffle_input_sentence=True,
            hard_vocab_limit=True,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_piece=SPECIAL_PIECES[PAD_ID],
            unk_piece=SPECIAL_PIECES[UNK_ID],
            bos_piece=SPECIAL_PIECES[BOS_ID],
            eos_piece=SPECIAL_PIECES[EOS_ID],
            num_threads=cfg.num_threads,
            minloglevel=_sp_log_level(),
        )
    except RuntimeError as e:
        raise _user_error(str(e), cfg, what) from None
    return model.getvalue()


def _user_error(message: str, cfg: TokenizerConfig, what: str) -> Exception:
    """Turn SentencePiece's RuntimeErrors about the vocabulary size, and our own errors from the
    sentence iterator, into one actionable line."""
    if m := _FROM_ITERATOR.search(message):
        return UserError(m.group(1).strip())
    if m := _TOO_HIGH.search(message):
        return UserError(
            f"tokenizer.vocab_size={m.group(1)} is too large for the {what}: SentencePiece can build at "
            f"most {m.group(2)} pieces from it; lower tokenizer.vocab_size to {m.group(2)} or less"
        )
    if m := _TOO_SMALL.search(message):
        extra = " (256 of them byte pieces for byte_fallback)" if cfg.byte_fallback else ""
        return UserError(
            f"tokenizer.vocab_size={m.group(1)} is too small for the {what}: it needs at least {m.group(2)} "
            f"pieces for the special pieces and the characters it must cover{extra}; "
            "raise tokenizer.vocab_size or lower tokenizer.character_coverage"
        )
    return RuntimeError(f"SentencePiece training failed on the {what}: {message}")


def _processor(model_proto: bytes) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model_proto)
    return sp


def _check_specials(sp: spm.SentencePieceProcessor, where: str) -> None:
    got = tuple(sp.id_to_piece(i) for i in range(min(4, sp.get_piece_size())))
    if got != SPECIAL_PIECES or sp.pad_id() != PAD_ID:
        raise UserError(
            f"{where}: special pieces must be {', '.join(SPECIAL_PIECES)} with ids 0-3, got "
            f"{', '.join(got)}; train the model with `s2s tokenizer train`"
        )


class Tokenizer:
    """One SentencePiece model (joint, or LM) or two (source and target).

    ``src_sp``/``tgt_sp`` are the :class:`sentencepiece.SentencePieceProcessor` objects; they are the
    same object when ``joint``. Word-boundary helpers (:meth:`starts_word`, :meth:`word_start_ids`,
    :meth:`byte_ids`, :meth:`control_ids`) serve whole-word next-word suggestion.
    """

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None, where: str = "tokenizer") -> None:
        self._protos = {"src": src_model, "tgt": tgt_model if tgt_model is not None else src_model}
        self.joint = tgt_model is None or tgt_model == src_model
        try:
            self.src_sp = _processor(src_model)
            self.tgt_sp = self.src_sp if self.joint else _processor(self._protos["tgt"])
        except (RuntimeError, OSError) as e:
            raise UserError(f"{where}: not a SentencePiece model ({e})") from None
        _check_specials(self.src_sp, where)
        _check_specials(self.tgt_sp, where)

    # ---------------------------------------------------------------------------------------- building

    @classmethod
    def train(
        cls,
        src_texts: Iterable[str],
        tgt_texts: Iterable[str] | None,
        cfg: TokenizerConfig,
        out_dir: str | os.PathLike | None = None,
    ) -> Tokenizer:
        """Train on source (and target) sentences; ``tgt_texts=None`` trains one model (LM or one language).

        With ``cfg.joint`` both sides feed one model. Nothing is written until every model has trained;
        then, when ``out_dir`` is given, the model files are saved there atomically.
        """
        if tgt_texts is None:
            tok = cls(train_sentencepiece(src_texts, cfg, "corpus"))
        elif cfg.joint:
            tok = cls(train_sentencepiece(itertools.chain(src_texts, tgt_texts), cfg, "joint corpus"))
        else:
            src = train_sentencepiece(src_texts, cfg, "source corpus")
            tgt = train_sentencepiece(tgt_texts, cfg, "target corpus")
            tok = cls(src, tgt)
        if out_dir is not None:
            tok.save(out_dir)
        return tok

    @classmethod
    def from_model_files(
        cls, src_path: str | os.PathLike, tgt_path: str | os.PathLike | None = None
    ) -> Tokenizer:
        """Load from model files anywhere on disk (one file: joint; two: source and target)."""
        protos = []
        for p in (src_path, tgt_path):
            if p is None:
                continue
            p = Path(p)
            if not p.is_file():
                raise UserError(f"tokenizer model {p} does not exist; train one with `s2s tokenizer train`")
            protos.append(p.read_bytes())
        return cls(*protos, where=str(src_path))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Load ``spm.model`` or ``src.model`` + ``tgt.model`` from a directory."""
        d = Path(directory)
        if (d / JOINT_FILE).is_file():
            return cls.from_model_files(d / JOINT_FILE)
        if (d / SRC_FILE).is_file() and (d / TGT_FILE).is_file():
            return cls.from_model_files(d / SRC_FILE, d / TGT_FILE)
        raise UserError(
            f"no tokenizer in {d}: expected {JOINT_FILE}, or {SRC_FILE} and {TGT_FILE}; "
            "train one with `s2s tokenizer train --out DIR`"
        )

    def model_files(self) -> dict[str, bytes]:
        """File name -> serialized model, as :meth:`save` writes them."""
        if self.joint:
            return {JOINT_FILE: self._protos["src"]}
        return {SRC_FILE: self._protos["src"], TGT_FILE: self._protos["tgt"]}

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write the model file(s) into ``directory``; returns the paths written.

        A new directory is built under a temporary name and renamed into place; in an existing
        directory (a run directory with other files) each file is replaced atomically, and model files
        of the other layout are removed so :meth:`load` cannot pick up a stale model.
        """
        d = Path(directory)
        files = self.model_files()
        if not d.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}."))
            except OSError as e:  # name the directory asked for, not the temp directory beside it
                raise OSError(e.errno, e.strerror, str(d)) from None
            try:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                tmp.chmod(plain_mode(directory=True))  # mkdtemp's 0700 would hide the model from others
                os.replace(tmp, d)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        else:
            for name, data in files.items():
                atomic_write(d / name, lambda tmp, data=data: tmp.write_bytes(data))
            for stale in {JOINT_FILE, SRC_FILE, TGT_FILE} - set(files):
                (d / stale).unlink(missing_ok=True)
        return [d / name for name in files]

    # -------------------------------------------------------------------------------- encode / decode

    @property
    def src_vocab_size(self) -> int:
        return self.src_sp.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_sp.get_piece_size()

    def sp(self, side: str) -> spm.SentencePieceProcessor:
        """The processor of one side: ``"src"`` or ``"tgt"``."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}; got {side!r}")
        return self.src_sp if side == "src" else self.tgt_sp

    def encode_src(self, texts: Sequence[str]) -> list[list[int]]:
        """Piece ids of each source sentence (no BOS/EOS)."""
        return self.src_sp.encode(list(texts), out_type=int)

    def encode_tgt(self, texts: Sequence[str]) -> list[list[int]]:
        """Piece ids of each target sentence (no BOS/EOS)."""
        return self.tgt_sp.encode(list(texts), out_type=int)

    def encode_array(self, texts: Sequence[str], side: str, num_threads: int = -1) -> pa.ListArray:
        """Piece ids of each sentence of one side as an Arrow ``list<int64>`` array (no BOS/EOS): the
        same ids as :meth:`encode_src` / :meth:`encode_tgt`, for caching a corpus.

        SentencePiece encodes the whole list in C++ on ``num_threads`` threads (-1: all cores); Arrow
        converts its lists in one call. (Its ``numpy`` output is no faster: one buffer object per
        sentence costs more to wrap than the lists cost to convert.)
        """
        return pa.array(self.sp(side).encode(list(texts), out_type=int, num_threads=num_threads), _IDS_TYPE)

    def decode_src(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id sequence; pad/BOS/EOS decode to nothing, ``<unk>`` to " ⁇ "."""
        return self.src_sp.decode(_as_int_lists(ids))

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id sequence; pad/BOS/EOS decode to nothing, ``<unk>`` to " ⁇ "."""
        return self.tgt_sp.decode(_as_int_lists(ids))

    def sample(self, texts: Sequence[str], side: str, alpha: float, seeds: Sequence[int]) -> list[list[int]]:
        """Piece ids of each sentence drawn from the model's segmentations (subword regularization,
        Kudo 2018: unigram lattice sampling with smoothing ``alpha``; a BPE model drops merges with
        probability ``alpha``, Provilkov et al. 2020). ``seeds[i]`` (0 to 2^31 - 1) decides sentence ``i``'s
        draw alone: the same seed gives the same pieces in any order, batch, thread or process.

        One sentence per call, each after reseeding: SentencePiece's batch encode spreads sentences over
        threads whose draws depend on the scheduling, so it is not reproducible."""
        sp = self.sp(side)
        out = []
        for text, seed in zip(texts, seeds, strict=True):
            spm.set_random_generator_seed(int(seed))
            out.append(sp.encode(text, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1))
        return out

    def encode_pieces(self, texts: Sequence[str], side: str = "src") -> list[list[str]]:
        """Piece strings of each sentence, for inspection (``s2s tokenizer encode --pieces``)."""
        return self.sp(side).encode(list(texts), out_type=str)

    # --------------------------------------------------------------------------- word-boundary helpers

    def piece(self, piece_id: int, side: str = "tgt") -> str:
        """The piece string of an id (``"▁the"``, ``"s"``, ``"<0xF0>"``, ``"</s>"``)."""
        return self.sp(side).id_to_piece(int(piece_id))

    def starts_word(self, piece_id: int, side: str = "tgt") -> bool:
        """Whether the piece begins a new word: it carries the leading "▁" (a space before it)."""
        sp = self.sp(side)
        piece_id = int(piece_id)
        if sp.is_control(piece_id) or sp.is_unknown(piece_id) or sp.is_byte(piece_id):
            return False
        return sp.id_to_piece(piece_id).startswith(WORD_BOUNDARY)

    def word_start_ids(self, side: str = "tgt") -> list[int]:
        """Ids of all pieces that begin a new word (see :meth:`starts_word`)."""
        return [i for i in range(self.sp(side).get_piece_size()) if self.starts_word(i, side)]

    def byte_ids(self, side: str = "tgt") -> list[int]:
        """Ids of the byte-fallback pieces ``<0x00>`` .. ``<0xFF>`` (empty without byte_fallback)."""
        sp = self.sp(side)
        return [i for i in range(sp.get_piece_size()) if sp.is_byte(i)]

    def control_ids(self, side: str = "tgt") -> list[int]:
        """Ids of pieces that never appear as text: ``<pad>``, ``<unk>``, ``<s>``, ``</s>``."""
        sp = self.sp(side)
        return [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]

    # ---------------------------------------------------------------------------------------- identity

    def fingerprint(self) -> str:
        """A hash of the model(s): equal fingerprints encode identically (used as a cache key)."""
        h = hashlib.sha256()
        h.update(self._protos["src"])
        h.update(self._protos["tgt"])
        return h.hexdigest()[:16]

    def __getstate__(self) -> dict:
        # pickled for datasets.map workers and its cache fingerprint: the model bytes say it all
        return {"protos": self._protos, "joint": self.joint}

    def __setstate__(self, state: dict) -> None:
        protos = state["protos"]
        self.__init__(protos["src"], None if state["joint"] else protos["tgt"])

    def __repr__(self) -> str:
        kind = "joint" if self.joint else "separate"
        return f"Tokenizer({kind}, src_vocab={self.src_vocab_size}, tgt_vocab={self.tgt_vocab_size})"


def _as_int_lists(ids: Sequence[Sequence[int]]) -> list[list[int]]:
    # SentencePiece takes Python ints only; callers may hand tensors' or numpy's integers
    return [[int(i) for i in x] for x in ids]
