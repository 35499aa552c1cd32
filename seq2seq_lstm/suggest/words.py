"""What counts as a word, and how a half-typed word is parsed."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

APOSTROPHES = frozenset("'\u2019")  # ' and ’ join the letters around them into one word
MAX_WORD_CHARS = 48  # a "word" being typed that is longer than this gets no suggestions (bounded work)

# A sentence ends at . ! ? (with closing quotes or brackets) followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]\u2019\u201d]*\s+|\n")


# ------------------------------------------------------------------------------------------------
# Words in plain text


def is_word_char(ch: str, first: bool = False) -> bool:
    """Whether ``ch`` belongs to a word: not whitespace, punctuation, a symbol or a control character.

    Apostrophes join a word only inside it (``first=False``): "don't" is one word, "'tis" starts at t.
    """
    if ch in APOSTROPHES:
        return not first
    return not ch.isspace() and unicodedata.category(ch)[0] not in "PSCZ"


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word in ``text``, by the same rule the suggester builds words with."""
    spans, start = [], None
    for i, ch in enumerate(text):
        if start is None:
            if is_word_char(ch, first=True):
                start = i
        elif not is_word_char(ch):
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(text)))
    return spans


# How the next word attaches to the context before it.
SPACE = "space"  # after whitespace or at the start of a sentence: its first piece carries "▁"
GLUED = "glued"  # right after punctuation, no space ("(hi"): its first piece has no "▁"
EITHER = "either"  # after punctuation with nothing typed yet: ", word" or "(word"
WORD = "word"  # inside a word (suggester only): pieces without "▁" that start with word characters


@dataclass(frozen=True)
class Typed:
    """Typed text split where the suggester needs it."""

    context: str  # the current sentence up to the last word boundary, trailing whitespace removed
    partial: str  # characters typed of the current word ("" right after a space or punctuation)
    join: str  # SPACE, GLUED or EITHER


def clean_word(text: str) -> str:
    # Control and format characters (NUL, BEL, zero-width marks, lone surrogates) carry no words; drop
    # them instead of feeding them to SentencePiece. Whitespace controls (\t, \n) stay: they separate.
    if text.isprintable():  # no Cc, Cf or Cs in it: the common case, without a loop in Python per character
        return text
    return "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))


def parse_typed(text: str, max_chars: int, sentence_scope: bool = True) -> Typed | None:
    """Split the text typed so far into context, partial word and how the next word joins.

    Only the last ``max_chars`` characters are read (cut at whitespace). With ``sentence_scope`` the
    context starts after the last sentence end, as the language model was trained on sentences.
    Returns None when the partial word is longer than :data:`MAX_WORD_CHARS` (no suggestion fits).
    """
    was_cut = len(text) > max_chars
    text = clean_word(text[-max_chars:])
    end = len(text)
    while end > 0 and is_word_char(text[end - 1]):
        end -= 1
        if len(text) - end > MAX_WORD_CHARS:
            return None
    while end < len(text) and text[end] in APOSTROPHES:  # a word does not start with an apostrophe
        end += 1
    context, partial = text[:end], text[end:]
    if was_cut:  # the window may start in the middle of a word: drop that piece of a word
        first_space = re.search(r"\s", context)
        context = context[first_space.end() :] if first_space else ""
    if sentence_scope:
        ends = [m.end() for m in _SENTENCE_END.finditer(context)]
        if ends:
            context = context[ends[-1] :]
    if not context.strip():
        return Typed("", partial, SPACE)
    if context[-1].isspace():
        return Typed(" ".join(context.split()), partial, SPACE)
    return Typed(" ".join(context.split()), partial, GLUED if partial else EITHER)
