"""data_scripts/documents.py: the held-out documents for adaptation (HTML paragraphs, sentences, format)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))
documents = pytest.importorskip("documents")

PAGE = """<html><body>
<div class="related"><p class="topless"><a href="x.html">imp — Access the import internals</a></p></div>
<div class="document"><div class="body" role="main">
<h1>mailcap</h1>
<p>Mailcap files are <em>used</em> to configure
applications. For example, a mailcap file might contain a line.</p>
<div class="highlight"><pre><p>not prose</p> x = 1</pre></div>
<p>See e.g. RFC 1524. It is not a standard.</p>
</div></div>
<div class="footer"><p>Copyright notice here.</p></div>
</body></html>"""


def test_only_the_main_texts_paragraphs_are_read_and_code_is_skipped():
    parser = documents._Paragraphs()
    parser.feed(PAGE)
    text = [" ".join(p.split()) for p in parser.paragraphs]
    assert text == [
        "Mailcap files are used to configure applications. For example, a mailcap file might contain a line.",
        "See e.g. RFC 1524. It is not a standard.",
    ]


def test_sentences_split_after_full_stops_but_not_after_abbreviations():
    assert documents.split_sentences("See e.g. RFC 1524. It is not a standard.") == [
        "See e.g. RFC 1524.",
        "It is not a standard.",
    ]


def test_documents_are_separated_by_one_blank_line():
    assert documents.document_lines([["a b c.", "d e f."], ["g h i."]]) == ["a b c.", "d e f.", "", "g h i."]


def test_held_out_books_split_into_tuning_and_test_chapters():
    verses = [("Ruth.1.1", "In the days."), ("Gen.1.1", "In the beginning."), ("Jonah.1.1", "Now."),
              ("Jonah.2.1", "Then."), ("Ruth.1.2", "A man.")]  # fmt: skip
    docs = documents.bible_documents(verses, str)
    assert docs == {"bible-tune": [["In the days.", "A man."]], "bible-test": [["Now."], ["Then."]]}
    assert documents.is_held_out("Eccl.3.1") and not documents.is_held_out("Gen.1.1")
