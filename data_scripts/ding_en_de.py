"""English-German example sentences from the Ding dictionary (Debian package trans-de-en, GPL-2+).

The dictionary has one entry a line, `de_1 | de_2 :: en_1 | en_2`: ` | ` separates aligned sub-entries
and `; ` synonyms; `{m}`, `{pl}`, `[coll.]` ... are grammar and usage labels. Most sub-entries are
words and phrases; we keep the sub-entries where both sides look like sentences. The data is GPL:
this script fetches and builds it locally, it is never committed.

    python data_scripts/ding_en_de.py --out data/ding-en-de
    python data_scripts/ding_en_de.py --phrases        # + phrase pairs in train: data/ding-en-de-phrases

`--phrases` adds the multi-word phrase sub-entries ("a medical journal :: eine medizinische
Fachzeitschrift") to the training split only, as extra training data; valid and test stay the same
sentences, and no phrase whose English or German side equals a valid/test sentence's is added.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from common import (
    DEFAULT_CACHE,
    DEFAULT_SEED,
    REPO,
    clean_ws,
    dedupe_key,
    dedupe_pairs,
    installed_or_unpacked,
    log,
    split,
    summary,
    write_parallel_splits,
)

PACKAGE = "trans-de-en"
DICT_PATH = "usr/share/trans/de-en"
N_VALID = N_TEST = 1000

_LABEL = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
_OPEN = "\"'„‚“‘«»¿¡("
_CLOSE = "\"'“”‘’«»)"
# Dictionary placeholders (`sth.`, `jdm.`) mark templates, not sentences.
_PLACEHOLDER = re.compile(r"\b(sth|sb|etw|jdm|jdn|jds|jd)\b\.?", re.IGNORECASE)
# A parenthesized part of a phrase is a gloss or an optional word ("listening (with a stethoscope)"):
# the phrase without it is still a translation of the other side without its own.
_GLOSS = re.compile(r"\s*\([^()]*\)")


def dict_file(cache: Path) -> Path:
    return installed_or_unpacked(PACKAGE, DICT_PATH, cache)


def is_sentence(text: str) -> bool:
    """Capital start, ends in . ! or ? (quotes around it allowed), at least 3 words."""
    core = text.lstrip(_OPEN).rstrip(_CLOSE)
    return len(text.split()) >= 3 and core[:1].isupper() and core[-1:] in ".!?"


def normalize(text: str) -> str:
    # The dictionary mixes ’ (about 80%) and ' for apostrophes and uses ' for quotes; one form keeps the
    # vocabulary from doubling every contraction, and ASCII is what people type.
    return clean_ws(text.replace("’", "'"))


def usable(text: str) -> bool:
    # `/` marks alternatives ("good/bad deal") and parentheses optional words ("(that)"): either way the
    # line is a template of several sentences whose other side rarely matches word for word.
    return (
        not any(c in text for c in "/()")
        and not _PLACEHOLDER.search(text)
        and "..." not in text
        and "…" not in text
    )


def read_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """All (en, de) sentence pairs in dictionary order, before dedupe.

    Synonyms of one sub-entry are paired by position when both sides list the same number of sentences
    (they are parallel variants: "Ach ja!; Ah ja! :: Oh yes!; Oh right!"), otherwise only the first ones.
    """
    for de_sub, en_sub in sub_entries(path):
        des = [normalize(_LABEL.sub("", s)) for s in de_sub.split("; ")]
        ens = [normalize(_LABEL.sub("", s)) for s in en_sub.split("; ")]
        des = [s for s in des if is_sentence(s)]
        ens = [s for s in ens if is_sentence(s)]
        if not des or not ens:
            continue
        pairs = zip(ens, des, strict=True) if len(des) == len(ens) else [(ens[0], des[0])]
        for e, d in pairs:
            if usable(e) and usable(d):
                yield e, d


def sub_entries(path: Path) -> Iterator[tuple[str, str]]:
    """The aligned (German, English) sub-entries of every dictionary line, in order; lines whose two
    sides have different numbers of sub-entries are skipped (they cannot be aligned)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            de, en = line.rstrip("\n").split(" :: ", 1)
            de_subs, en_subs = de.split(" | "), en.split(" | ")
            if len(de_subs) == len(en_subs):
                yield from zip(de_subs, en_subs, strict=True)


def is_phrase(text: str) -> bool:
    """At least 2 words, no template marks (see `usable`), and not a sentence (those are `read_pairs`')."""
    return len(text.split()) >= 2 and usable(text) and not is_sentence(text)


def read_phrase_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """All (en, de) multi-word phrase pairs in dictionary order, labels and glosses stripped.

    Unlike sentences, the synonyms of a phrase sub-entry are paired every German with every English
    one: they name one sense, and phrases need no word-for-word match ("ready for collection; awaiting
    collection" both translate "zur Abholung bereit").
    """
    for de_sub, en_sub in sub_entries(path):
        des = [normalize(_GLOSS.sub("", _LABEL.sub("", s))) for s in de_sub.split("; ")]
        ens = [normalize(_GLOSS.sub("", _LABEL.sub("", s))) for s in en_sub.split("; ")]
        for e in filter(is_phrase, ens):
            for d in filter(is_phrase, des):
                yield e, d


def held_out_phrases(
    phrases: Iterable[tuple[str, str]], held_out: Iterable[tuple[str, str]]
) -> tuple[list[tuple[str, str]], int]:
    """``(kept, dropped)``: the phrase pairs once each (by `dedupe_key`), without those whose English
    or German side equals a held-out (valid/test) sentence's, so no evaluation text is trained on."""
    held = list(held_out)
    seen = {dedupe_key(e) for e, _ in held}, {dedupe_key(d) for _, d in held}
    pairs: set[tuple[str, str]] = set()
    kept, dropped = [], 0
    for e, d in phrases:
        key = (dedupe_key(e), dedupe_key(d))
        if key[0] in seen[0] or key[1] in seen[1]:
            dropped += 1
        elif key not in pairs:
            pairs.add(key)
            kept.append((e, d))
    return kept, dropped


def build_splits(seed: int = DEFAULT_SEED, cache: Path = DEFAULT_CACHE) -> dict[str, list[tuple[str, str]]]:
    """Deduplicated (en, de) pairs split into train/valid/test; deterministic for a given seed."""
    path = dict_file(cache)
    raw = list(read_pairs(path))
    pairs, dropped = dedupe_pairs(raw)
    log(f"Ding: {len(raw)} sentence pairs, {dropped} duplicates dropped (one translation per sentence)")
    return split(pairs, N_VALID, N_TEST, seed)


def add_phrases(splits: dict[str, list[tuple[str, str]]], cache: Path) -> dict[str, list[tuple[str, str]]]:
    """The splits with the dictionary's phrase pairs appended to train (valid and test unchanged)."""
    held_out = splits["valid"] + splits["test"]
    phrases, dropped = held_out_phrases(read_phrase_pairs(dict_file(cache)), held_out)
    log(f"Ding: {len(phrases)} phrase pairs added to train ({dropped} dropped: a side is a valid/test one)")
    return {**splits, "train": splits["train"] + phrases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="output folder (default data/ding-en-de[-phrases])")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="shuffle seed for the split")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where downloads are unpacked")
    parser.add_argument(
        "--phrases", action="store_true", help="add the dictionary's multi-word phrase pairs to train"
    )
    args = parser.parse_args()
    out = args.out or REPO / "data" / ("ding-en-de-phrases" if args.phrases else "ding-en-de")
    splits = build_splits(args.seed, args.cache)
    if args.phrases:
        splits = add_phrases(splits, args.cache)
    write_parallel_splits(out, splits, ("en", "de"))
    summary("ding-en-de pairs", {k: len(v) for k, v in splits.items()})


if __name__ == "__main__":
    main()
