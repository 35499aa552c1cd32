"""Verse-aligned English-Spanish Bible from the SWORD modules in Debian (public domain).

English: World English Bible (engWEB2015eb, package sword-text-web), or the King James Version
(engKJV2006eb, sword-text-kjv) with --english kjv. Spanish: Reina-Valera 1909 (spaRV1909eb,
sword-text-sparv). Verses are read through the `Sword` bindings of Debian's python3 (python3-sword),
cleaned of OSIS markup, joined on the verse reference and split train/valid/test.

    python data_scripts/bible_en_es.py --out data/bible-en-es
    python data_scripts/bible_en_es.py --embedded     # the sample shipped in seq2seq_lstm/corpora/
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from common import (
    DEFAULT_SEED,
    HERE,
    REPO,
    apt_install,
    clean_ws,
    dedupe_pairs,
    log,
    split,
    summary,
    write_parallel_splits,
    write_tsv_gz,
)

MODULES = {"web": "engWEB2015eb", "kjv": "engKJV2006eb", "es": "spaRV1909eb"}
PACKAGES = ["sword-text-web", "sword-text-kjv", "sword-text-sparv", "python3-sword"]
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-sword installs the bindings for this interpreter only
N_VALID = N_TEST = 1000
MIN_RATIO, MAX_RATIO = 0.5, 2.0

EMBEDDED_DIR = REPO / "seq2seq_lstm" / "corpora" / "bible-en-es"
EMBEDDED_SIZES = {"train": 4000, "valid": 300, "test": 300}
EMBEDDED_MAX_WORDS = 30

# Markup. Notes (footnotes, cross references), non-canonical titles and speaker labels are not verse
# text. Canonical psalm titles are kept: RV1909 has them inline in verse 1. Word-level tags wrap words
# that already have their spaces around them, so they vanish; any other tag (line, paragraph, title,
# milestone) may stand between two words, so it becomes a space: the library's own plain rendering
# glues words across markup ("Godcreated").
_END_OF_TEXT = re.compile(r"<chapter eID=.*", re.S)  # WEB appends its glossary to Rev 22:21
_DROP = re.compile(
    r"<note\b.*?</note>|<speaker\b.*?</speaker>|<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.S
)
_INLINE = re.compile(r"</?(w|transChange|divineName|q|seg|name|foreign|hi|catchWord|rdg)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_USFM = re.compile(r"\\\+?[a-z]+\*?")  # stray USFM character markers in KJV (\nd ... \+nd*)
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?’”])")
# Acrostic headings of Psalm 119 (ALEPH, BETH, ...): a title in English, inline text in RV1909.
_HEBREW_LETTERS = (
    "ALEPH BETH GIMEL DALETH HE HEH VAU VAV ZAIN ZAYIN CHETH HETH TETH JOD YODH CAPH KAPF LAMED LAMEDH MEM"
    " NUN SAMECH SAMEKH AIN AYIN PE TZADDI TZADHE COPH QOPH RESH SIN SHIN SCHIN TAU TAV"
)
_HEBREW_LETTER = re.compile(rf"^(?:{'|'.join(_HEBREW_LETTERS.split())})\.? ")
_WORD = re.compile(r"\w+")


def ensure_packages() -> None:
    apt_install(*PACKAGES)


def read_module(name: str) -> dict[str, str]:
    """{OSIS ref: raw OSIS verse text} for one SWORD module, via Debian's python3 in a subprocess."""
    cmd = [SYSTEM_PYTHON, str(HERE / "sword_dump.py"), name]
    log("$ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    verses = {}
    for line in out.splitlines():
        item = json.loads(line)
        verses[item["ref"]] = item["raw"]
    log(f"{name}: {len(verses)} verse entries")
    return verses


def clean(raw: str) -> str:
    """OSIS verse markup to plain text."""
    text = _END_OF_TEXT.sub("", raw)
    text = _DROP.sub(" ", text)
    text = _INLINE.sub("", text)
    text = _TAG.sub(" ", text)
    text = _USFM.sub("", text)
    text = clean_ws(text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def word_case_lexicon(texts: list[str]) -> dict[str, str]:
    """Most common spelling of each word outside all-caps runs: 'jehová' -> 'Jehová', 'fue' -> 'fue'."""
    forms: dict[str, Counter] = {}
    for text in texts:
        for word in re.findall(r"\w+", text):
            if not (len(word) > 1 and word.isupper()):
                forms.setdefault(word.lower(), Counter())[word] += 1
    return {low: c.most_common(1)[0][0] for low, c in forms.items()}


def fix_chapter_caps(text: str, lexicon: dict[str, str]) -> str:
    """RV1909 prints the first word(s) of each chapter in capitals: 'EN el principio', 'Y FUERON',
    'Salmo de David. ¡OH Jehová'. Re-case the first run of all-caps words of the verse from the words'
    usual spelling elsewhere in the text, capitalised when it starts the sentence."""
    words = list(_WORD.finditer(text))
    first = next((i for i, m in enumerate(words) if len(m.group()) > 1 and m.group().isupper()), None)
    if first is None:
        return text
    last = first  # the run goes on over space-separated all-caps words: 'YO DIJE', 'A TI'
    while last + 1 < len(words) and words[last + 1].group().isupper():
        if text[words[last].end() : words[last + 1].start()] != " ":
            break
        last += 1
    fixed = [lexicon.get(m.group().lower(), m.group().lower()) for m in words[first : last + 1]]
    start, end = words[first].start(), words[last].end()
    before = text[:start].rstrip("¡¿ ")
    if not before or before[-1] in ".:!?":
        fixed[0] = fixed[0][:1].upper() + fixed[0][1:]
    return text[:start] + " ".join(fixed) + text[end:]


def ratio_ok(en: str, es: str) -> bool:
    ratio = len(en.split()) / max(1, len(es.split()))
    return MIN_RATIO <= ratio <= MAX_RATIO


def english_verses(english: str = "web") -> list[str]:
    """Every verse of the English module, cleaned (for monolingual English text)."""
    return [text for _, text in english_verses_by_ref(english)]


def english_verses_by_ref(english: str = "web") -> list[tuple[str, str]]:
    """(OSIS ref, cleaned text) of every non-empty verse of the English module, in canonical order."""
    ensure_packages()
    verses = []
    for ref, raw in read_module(MODULES[english]).items():
        text = clean(raw)
        if ref.startswith("Ps.119."):
            text = _HEBREW_LETTER.sub("", text)
        if text:
            verses.append((ref, text))
    return verses


def build_pairs(english: str = "web") -> list[tuple[str, str, str]]:
    """(ref, en, es) verse pairs in canonical order, cleaned, filtered and deduplicated."""
    en_raw, es_raw = read_module(MODULES[english]), read_module(MODULES["es"])
    es_clean = {ref: clean(raw) for ref, raw in es_raw.items()}
    lexicon = word_case_lexicon(list(es_clean.values()))
    pairs, counts = [], Counter()
    for ref, raw in en_raw.items():
        if ref not in es_clean:
            counts["English only"] += 1
            continue
        en, es = clean(raw), es_clean[ref]
        starts_section = ref.endswith(".1")
        if ref.startswith("Ps.119."):
            en = _HEBREW_LETTER.sub("", en)
            starts_section |= _HEBREW_LETTER.match(es) is not None
            es = _HEBREW_LETTER.sub("", es)
        if starts_section:
            es = fix_chapter_caps(es, lexicon)
        if not en or not es:
            counts["empty"] += 1
        elif not ratio_ok(en, es):
            counts["length ratio"] += 1
        else:
            pairs.append((ref, en, es))
    counts["Spanish only"] = len(set(es_clean) - set(en_raw))
    kept, counts["duplicates"] = dedupe_pairs(pairs, src=1, tgt=2)
    log(f"Bible: {len(kept)} verse pairs kept; dropped: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return kept


def embedded_sample(splits: dict[str, list[tuple[str, str, str]]], seed: int) -> dict[str, list]:
    """A few thousand short verse pairs, each split drawn from the same split of the full corpus, so
    the embedded test set never overlaps the full training set either."""
    sample = {}
    for name, size in EMBEDDED_SIZES.items():
        short = [p for p in splits[name] if max(len(p[1].split()), len(p[2].split())) <= EMBEDDED_MAX_WORDS]
        if len(short) < size:
            sys.exit(f"error: only {len(short)} short verses in {name}, need {size}")
        sample[name] = random.Random(seed).sample(short, size)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bible-en-es", help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed for the split")
    parser.add_argument("--english", choices=["web", "kjv"], default="web", help="English translation")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help=f"write the embedded sample to {EMBEDDED_DIR.relative_to(REPO)} instead of --out",
    )
    args = parser.parse_args()
    ensure_packages()
    pairs = build_pairs(args.english)
    splits = split(pairs, N_VALID, N_TEST, args.seed)
    if args.embedded:
        sample = embedded_sample(splits, args.seed)
        for name, rows in sample.items():
            write_tsv_gz(EMBEDDED_DIR / f"{name}.tsv.gz", ("en", "es"), [(en, es) for _, en, es in rows])
        summary("embedded bible-en-es pairs", {k: len(v) for k, v in sample.items()})
        return
    write_parallel_splits(
        args.out, {k: [(en, es) for _, en, es in v] for k, v in splits.items()}, ("en", "es")
    )
    summary("bible-en-es pairs", {k: len(v) for k, v in splits.items()})


if __name__ == "__main__":
    main()
