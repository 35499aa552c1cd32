"""Splitting a source line into sentences before translating it (``s2s translate --split-sentences``).

A model trained on single sentences tends to stop after the first one or two sentences of a longer
line (docs/decoding.md, "Sentence splitting", has the measurements), so a line is translated sentence
by sentence and the translations are joined again: one output line per input line.

The rules are sentencex's (Wikimedia, maintained, rule-based with per-language abbreviation lists and
a fallback chain that ends in English for a language it has no rules for; compiled, so a line costs
microseconds). We keep no rules of our own.

A line the splitter finds one sentence in (or none) is returned as it is, untouched, so that it is
translated exactly as it is without splitting.
"""

from __future__ import annotations

import sentencex


def split_sentences(line: str, language: str) -> list[str]:
    """The sentences of ``line`` by the rules of ``language`` (a code such as ``en``), stripped of
    surrounding white space; ``[line]`` itself when it holds fewer than two."""
    sentences = [s.strip() for s in sentencex.segment(language, line)]
    sentences = [s for s in sentences if s]
    return sentences if len(sentences) > 1 else [line]
