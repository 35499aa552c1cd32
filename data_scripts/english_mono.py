"""English monolingual text for next-word suggestion, one sentence a line.

Sources: Ding example sentences (English side; package trans-de-en), WordNet gloss examples (package
wordnet-base), the World English Bible (package sword-text-web) and chatterbot-corpus (PyPI). The Ding
split is the one ding_en_de.py makes with the same seed: its training side goes to train, its valid
and test sides are valid.txt and test.txt, and no valid or test sentence appears in train.
train-ding.txt repeats train.txt's Ding sentences alone (the in-domain part, for fine-tuning).

With --documents-out DIR, whole Bible books are held out of the training text and written to DIR as
documents for adaptation, with pages of the Python documentation (documents.py says which and how):
{bible,pydoc}-{tune,test}.txt, one sentence a line, a blank line between documents. No document
sentence appears in train.txt.

    python data_scripts/english_mono.py --out data/en-mono
    python data_scripts/english_mono.py --out data/en-mono --documents-out data/en-mono/documents
"""

from __future__ import annotations

import argparse
import random
import re
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import yaml
from bible_en_es import english_verses_by_ref
from common import (
    DEFAULT_CACHE,
    DEFAULT_SEED,
    REPO,
    clean_ws,
    dedupe_key,
    dedupe_texts,
    installed_or_unpacked,
    log,
    pip_download,
    summary,
    write_lines,
)
from ding_en_de import build_splits
from documents import bible_documents, document_lines, is_held_out, pydoc_documents

_QUOTED = re.compile(r'"([^"]+)"')
_CODE = re.compile(r"`|[{}<>\\]|\w\(")
_QUOTES = str.maketrans({"`": "'", "‘": "'", "’": "'", "“": '"', "”": '"'})


def normalize(text: str) -> str:
    # The sources disagree (Ding: mostly ', the Bible: ’ and “”, WordNet: `...'); one ASCII form each keeps
    # "don't" and "don’t" from being two different words to predict.
    return clean_ws(text.translate(_QUOTES))


def wordnet_examples(cache: Path) -> list[str]:
    """Quoted usage examples in WordNet glosses ('... | gloss; "example one"; "example two"')."""
    examples = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = installed_or_unpacked("wordnet-base", f"usr/share/wordnet/data.{pos}", cache)
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:  # licence header lines start with spaces
                    continue
                gloss = line.split(" | ", 1)[1]
                examples += [q for q in _QUOTED.findall(gloss) if len(q.split()) >= 2]
    return examples


def chatterbot_utterances(cache: Path) -> list[str]:
    """Every English utterance in chatterbot-corpus (YAML `conversations`: lists of turns)."""
    dist = pip_download("chatterbot-corpus", cache)
    files: dict[str, bytes] = {}
    if dist.suffix == ".whl":
        with zipfile.ZipFile(dist) as z:
            files = {n: z.read(n) for n in z.namelist() if "/data/english/" in n and n.endswith(".yml")}
    else:
        with tarfile.open(dist) as t:
            for m in t.getmembers():
                if "/data/english/" in m.name and m.name.endswith(".yml") and m.isfile():
                    files[m.name] = t.extractfile(m).read()
    utterances = []
    for name in sorted(files):
        doc = yaml.safe_load(files[name].decode("utf-8"))
        for conversation in doc.get("conversations") or []:
            utterances += [str(turn) for turn in conversation if isinstance(turn, (str, int, float))]
    # coding.yml answers with code snippets; they are not English to suggest words from.
    utterances = [u for u in utterances if not _CODE.search(u)]
    log(f"chatterbot-corpus: {len(files)} English files")
    return utterances


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "en-mono", help="output folder")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the Ding split (use ding_en_de.py's) and shuffle",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where downloads are unpacked")
    parser.add_argument(
        "--documents-out",
        type=Path,
        default=None,
        help="hold Bible books out of train and write them, with Python documentation pages, here as "
        "documents for adaptation (data_scripts/documents.py)",
    )
    return parser.parse_args()


def write_documents(out: Path, documents: dict[str, list[list[str]]]) -> None:
    for name, docs in documents.items():
        write_lines(out / f"{name}.txt", document_lines(docs))
    summary("documents", {name: len(docs) for name, docs in documents.items()})
    summary("document sentences", {name: sum(map(len, docs)) for name, docs in documents.items()})


def main() -> None:
    args = parse_args()
    ding = build_splits(args.seed, args.cache)
    test = dedupe_texts(normalize(en) for en, _ in ding["test"])
    valid = dedupe_texts((normalize(en) for en, _ in ding["valid"]), exclude={dedupe_key(s) for s in test})
    held_out = {dedupe_key(s) for s in test + valid}

    verses = english_verses_by_ref("web")
    documents: dict[str, list[list[str]]] = {}
    if args.documents_out:
        documents = bible_documents(verses, normalize) | pydoc_documents(args.cache, normalize, args.seed)
        verses = [(ref, text) for ref, text in verses if not is_held_out(ref)]
    doc_keys = {dedupe_key(s) for docs in documents.values() for doc in docs for s in doc}
    sources = {
        "ding": [en for en, _ in ding["train"]],
        "wordnet": wordnet_examples(args.cache),
        "bible-web": [text for _, text in verses],
        "chatterbot": chatterbot_utterances(args.cache),
    }
    train, per_source, seen, kept_by_source = [], Counter(), held_out | doc_keys, {}
    for name, texts in sources.items():
        kept = dedupe_texts((normalize(t) for t in texts), exclude=seen)
        seen.update(dedupe_key(t) for t in kept)
        per_source[name] = len(kept)
        kept_by_source[name] = kept
        log(f"{name}: {len(texts)} sentences read, {len(kept)} new after dedupe and held-out removal")
        train += kept
    random.Random(args.seed).shuffle(train)  # sources interleaved, so any prefix is a fair sample

    train_keys = {dedupe_key(s) for s in train}
    assert not held_out & train_keys, "a valid/test sentence leaked into train"
    assert not doc_keys & train_keys, "a document sentence leaked into train"
    write_lines(args.out / "train.txt", train)
    write_lines(args.out / "valid.txt", valid)
    write_lines(args.out / "test.txt", test)
    # the in-domain part of train.txt (valid and test are Ding sentences too), for fine-tuning a model
    # trained on all of it: `s2s train --init-from` (README, next-word suggestion)
    write_lines(args.out / "train-ding.txt", kept_by_source["ding"])
    if documents:
        write_documents(args.documents_out, documents)
    summary("en-mono train sentences by source", dict(per_source))
    summary("en-mono sentences", {"train": len(train), "valid": len(valid), "test": len(test)})


if __name__ == "__main__":
    main()
