"""Per-piece facts, computed once per vocabulary: which pieces may follow the typed letters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..vocab import EOS_ID, WORD_BOUNDARY
from .words import APOSTROPHES, EITHER, GLUED, SPACE, WORD, is_word_char

# ------------------------------------------------------------------------------------------------
# Per-piece facts, computed once per vocabulary


@dataclass(frozen=True)
class Allowed:
    """Pieces allowed next, as :meth:`PieceTable.allowed_after` caches them for the word beam."""

    ids: Tensor  # (N,) long
    id_list: list[int]  # the same ids, for Python lookups
    close_at: list[int]  # positions in ids of pieces that end the word inside themselves ("▁etc.")
    close_mask: np.ndarray | None  # (N,) bool, True at close_at; None when there are none
    index: np.ndarray  # (N,) int64: ``ids`` as numpy (the same memory), for the word beam's numpy work


class PieceTable:
    """What every piece means for word building, as lists and boolean masks over the vocabulary (V,).

    For a piece, ``lead`` is the run of word characters at its start (after "▁"); it ``closes`` the
    word when punctuation follows inside the piece. Masks say which pieces may open a word after a
    space, open a word glued to punctuation, continue a word, or mark the boundary after a word.
    Byte-fallback, unknown and control pieces have no spelling: they never build a word (their mass
    is simply not counted), and only ``</s>`` among them is a boundary.
    """

    def __init__(self, sp) -> None:
        vocab = sp.get_piece_size()
        self.leads: list[str] = [""] * vocab
        flags = {
            name: torch.zeros(vocab, dtype=torch.bool) for name in ("space", "bare", "cont", "glued", "close")
        }
        boundary = torch.zeros(vocab, dtype=torch.bool)
        self.by_prefix: dict[str, list[int]] = {}  # every prefix of a lead -> pieces with that lead prefix
        self.by_lead: dict[str, list[int]] = {}  # exact lead -> pieces
        for i in range(vocab):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i):
                boundary[i] = i == EOS_ID
                continue
            piece = sp.id_to_piece(i)
            starts = piece.startswith(WORD_BOUNDARY)
            body = piece[1:] if starts else piece
            n = 0
            while n < len(body) and is_word_char(body[n], first=starts and n == 0):
                n += 1
            lead = body[:n]
            self.leads[i] = lead
            boundary[i] = starts or not lead  # "▁x", or punctuation right after the word
            flags["space"][i] = starts and bool(lead)
            flags["bare"][i] = starts and not body  # a lone "▁": the word's letters come in the next piece
            flags["cont"][i] = not starts and bool(lead)
            flags["glued"][i] = not starts and bool(lead) and body[0] not in APOSTROPHES
            flags["close"][i] = bool(lead) and n < len(body)  # "o," would end the word inside the piece
            if lead:
                self.by_lead.setdefault(lead, []).append(i)
                for j in range(1, n + 1):
                    self.by_prefix.setdefault(lead[:j], []).append(i)
        self.boundary = boundary
        self.boundary_weights = boundary.float()  # P(boundary) = exp(log-probs) @ this, one small GEMV
        bare = flags["bare"]
        # phase -> pieces that may come next; a lone "▁" leads to the GLUED phase (letters without "▁")
        self.allowed = {
            SPACE: flags["space"] | bare,
            GLUED: flags["glued"],
            EITHER: flags["space"] | bare | flags["glued"],
            WORD: flags["cont"],
        }
        self.bare = bare.tolist()
        # the same facts as Python lists, for looking up the few pieces that match typed letters
        self._allowed_lists = {phase: mask.tolist() for phase, mask in self.allowed.items()}
        self._close_list = flags["close"].tolist()
        self._any_close = any(self._close_list)  # many vocabularies split punctuation off: none close
        self._bare_ids = bare.nonzero().squeeze(1).tolist()
        self._ids: dict[tuple[str, str, bool], Allowed] = {}

    def allowed_after(self, phase: str, rest: str, exact: bool) -> Allowed:
        """The pieces that may come next in ``phase`` with ``rest`` still to be typed (cached per key).

        Ids, not a mask: inside a word only a few hundred of the V pieces qualify (fewer once letters
        are typed), and picking the best among those is much cheaper than masking all V.

        With letters to match, a piece qualifies if its lead starts with ``rest`` (it finishes the typed
        part; with ``exact`` the lead must equal it), or if its lead is a proper prefix of ``rest`` and
        it does not close the word (more pieces must follow). A lone "▁" spells nothing and is always
        consistent. These candidates are looked up by lead, never by scanning the vocabulary: a
        keystroke inside a word meets new ``rest`` strings, and a scan of all V per string would sit on
        every keystroke's critical path.
        """
        key = (phase, rest, exact)
        allowed = self._ids.get(key)
        if allowed is None:
            if len(self._ids) > 4096:
                self._ids.clear()
            ok = self._allowed_lists[phase]
            if not rest:  # the typed part is complete: any continuation, unless the word must be exactly it
                id_list = [] if exact else self.allowed[phase].nonzero().squeeze(1).tolist()
            else:
                finish = self.by_lead.get(rest, []) if exact else self.by_prefix.get(rest, [])
                leads = [self.by_lead.get(rest[:j], []) for j in range(1, len(rest))]
                partial = self._bare_ids + [i for ids in leads for i in ids]
                close = self._close_list
                chosen = {i for i in finish if ok[i]} | {i for i in partial if ok[i] and not close[i]}
                id_list = sorted(chosen)
            # a miss sits on a keystroke's critical path: numpy builds the array faster than torch
            index = np.array(id_list, dtype=np.int64)
            close_at = [n for n, i in enumerate(id_list) if self._close_list[i]] if self._any_close else []
            close_mask = None
            if close_at:
                close_mask = np.zeros(len(id_list), dtype=bool)
                close_mask[close_at] = True
            allowed = Allowed(torch.from_numpy(index), id_list, close_at, close_mask, index)
            self._ids[key] = allowed
        return allowed
