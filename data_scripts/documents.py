"""Held-out documents for adaptation inside a suggestion session (english_mono.py --documents-out).

Two kinds of text that no training split contains, typed as documents in order:

- whole Bible books (World English Bible) held out of the English training text, one chapter a
  document, one verse a line: narrative (Ruth, Jonah), letters (James, Philippians) and wisdom
  (Ecclesiastes). The tuning books and the test books differ, so nothing tuned has seen a test book;
- pages of the Python 3.11 documentation (package python3.11-doc), an unseen technical style: the
  `<p>` paragraphs of one HTML page (code blocks skipped) cut into sentences, one a line, one page a
  document; a fixed-seed sample of pages, split into tuning and test pages.

File format (what `s2s suggest-eval --documents` reads): UTF-8, one sentence a line, a blank line
between documents.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path

from common import clean_ws, installed_or_unpacked, log

# OSIS book names; tuning and test books are different books, so the cache weight or the learning
# rate tuned on one set meets the other as new text
BIBLE_TUNE_BOOKS = ("Ruth", "Jas")
BIBLE_TEST_BOOKS = ("Jonah", "Phil", "Eccl")
HELD_OUT_BOOKS = BIBLE_TUNE_BOOKS + BIBLE_TEST_BOOKS

PYDOC_PACKAGE = "python3.11-doc"
PYDOC_HTML = "usr/share/doc/python3.11/html"
# pages that are lists, indexes or legal text rather than prose
PYDOC_SKIP = re.compile(r"(^|/)(genindex|py-modindex|search|copyright|license|bugs|about|contents)\b|^_")
PYDOC_MIN_SENTENCES = 12  # shorter pages give a cache little to work with
PYDOC_MAX_SENTENCES = 30  # the first 30 sentences of a page: bounds the evaluation time per document
PYDOC_TUNE, PYDOC_TEST = 50, 100  # pages
MIN_WORDS, MAX_WORDS = 3, 80  # a shorter "sentence" is a heading-like fragment, a longer one a list

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ABBREV_END = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|Mr|Dr)\.$")


class _Paragraphs(HTMLParser):
    """Text of every `<p>` element in a page's main text (Sphinx's `<div class="body">`: not the
    navigation, sidebar or footer), except inside `<pre>` (code)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._divs: list[bool] = []  # open <div>s: is each the main text?
        self._pre = 0
        self._buf: list[str] | None = None  # text of the open <p>

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "div":
            self._divs.append(("class", "body") in attrs)
        elif tag == "pre":
            self._pre += 1
        elif tag == "p" and any(self._divs) and not self._pre:
            self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._divs:
            self._divs.pop()
        elif tag == "pre" and self._pre:
            self._pre -= 1
        elif tag == "p" and self._buf is not None:
            self.paragraphs.append("".join(self._buf))
            self._buf = None

    def handle_data(self, data: str) -> None:
        if self._buf is not None and not self._pre:
            self._buf.append(data)


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph: cut after . ! ? before a capital, not after e.g./i.e./etc."""
    parts: list[str] = []
    for piece in _SENTENCE_END.split(paragraph):
        if parts and _ABBREV_END.search(parts[-1]):
            parts[-1] += " " + piece
        else:
            parts.append(piece)
    return parts


def _keep(sentence: str) -> bool:
    return MIN_WORDS <= len(sentence.split()) <= MAX_WORDS


def pydoc_pages(cache: Path, normalize: Callable[[str], str]) -> dict[str, list[str]]:
    """{page path: its sentences} for every prose page of the Python documentation."""
    root = installed_or_unpacked(PYDOC_PACKAGE, PYDOC_HTML, cache)
    pages = {}
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).as_posix()
        if PYDOC_SKIP.search(rel):
            continue
        parser = _Paragraphs()
        parser.feed(path.read_text(encoding="utf-8"))
        sentences = [normalize(s) for p in parser.paragraphs for s in split_sentences(clean_ws(p))]
        pages[rel] = [s for s in sentences if _keep(s)]
    log(f"{PYDOC_PACKAGE}: {len(pages)} pages of prose")
    return pages


def pydoc_documents(cache: Path, normalize: Callable[[str], str], seed: int) -> dict[str, list[list[str]]]:
    """{"pydoc-tune": [...], "pydoc-test": [...]}: a fixed-seed sample of pages with at least
    PYDOC_MIN_SENTENCES sentences, each cut to its first PYDOC_MAX_SENTENCES."""
    pages = pydoc_pages(cache, normalize)
    names = sorted(n for n, s in pages.items() if len(s) >= PYDOC_MIN_SENTENCES)
    if len(names) < PYDOC_TUNE + PYDOC_TEST:
        raise SystemExit(f"error: only {len(names)} documentation pages are long enough")
    chosen = random.Random(seed).sample(names, PYDOC_TUNE + PYDOC_TEST)
    docs = [pages[n][:PYDOC_MAX_SENTENCES] for n in chosen]
    return {"pydoc-tune": docs[:PYDOC_TUNE], "pydoc-test": docs[PYDOC_TUNE:]}


def bible_documents(
    verses: Sequence[tuple[str, str]], normalize: Callable[[str], str]
) -> dict[str, list[list[str]]]:
    """{"bible-tune": [...], "bible-test": [...]}: the held-out books' chapters, verses in order."""
    chapters: dict[tuple[str, str], list[str]] = {}
    for ref, text in verses:
        book, chapter = ref.split(".")[:2]
        if book in HELD_OUT_BOOKS:
            chapters.setdefault((book, chapter), []).append(normalize(text))
    out: dict[str, list[list[str]]] = {}
    for name, books in (("bible-tune", BIBLE_TUNE_BOOKS), ("bible-test", BIBLE_TEST_BOOKS)):
        out[name] = [lines for (book, _), lines in chapters.items() if book in books]
    return out


def is_held_out(ref: str) -> bool:
    return ref.split(".")[0] in HELD_OUT_BOOKS


def document_lines(docs: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a documents file: each document's sentences, a blank line between documents."""
    lines: list[str] = []
    for i, doc in enumerate(docs):
        lines += ([""] if i else []) + list(doc)
    return lines
