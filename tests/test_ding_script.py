"""data_scripts/ding_en_de.py --phrases: multi-word phrase pairs as extra training data, test kept out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))
ding = pytest.importorskip("ding_en_de")

# A few lines in the dictionary's format: `de | de :: en | en`, synonyms after `; `, labels in {} and [].
DICTIONARY = "".join(
    line + "\n"
    for line in [
        "# de-en dictionary (test excerpt)",
        "Abholung {f} | Abholung der Waren am Bahnhof | zur Abholung bereit :: collection | "
        "collection of the goods from the station | ready for collection; awaiting collection",
        "Abhorchen {n} (mit einem Stethoskop) [med.] :: listening (with a stethoscope) [med.]",
        "jdm. etw. geben | jdm. etw. zurückgeben :: to give sb. sth. | to give sth. back to sb.",
        "gute/schlechte Nachricht :: good/bad news",
        "Ich komme gleich. :: I'm coming right away.",
        "kalter Kaffee | Das ist kalter Kaffee. :: old hat | That's old hat.",
        "gut gemacht :: well done",
    ]
)


def test_phrase_pairs_are_multi_word_sub_entries_without_labels_templates_or_sentences(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(DICTIONARY, encoding="utf-8")
    assert list(ding.read_phrase_pairs(path)) == [
        ("collection of the goods from the station", "Abholung der Waren am Bahnhof"),
        # synonyms name one sense: every English one with every German one
        ("ready for collection", "zur Abholung bereit"),
        ("awaiting collection", "zur Abholung bereit"),
        # single words ("collection"), placeholders (sb./jdm.), alternatives (/) and sentences are not
        # phrases; a parenthesized gloss is dropped with the labels
        ("old hat", "kalter Kaffee"),
        ("well done", "gut gemacht"),
    ]
    # the sentence reader keeps what the phrase reader leaves out, and nothing else
    assert list(ding.read_pairs(path)) == [
        ("I'm coming right away.", "Ich komme gleich."),
        ("That's old hat.", "Das ist kalter Kaffee."),
    ]


def test_a_phrase_whose_side_equals_a_valid_or_test_sentence_is_not_added():
    phrases = [("old hat", "kalter Kaffee"), ("well done", "gut gemacht"), ("Old hat", "kalter Kaffee"),
               ("good morning", "Guten Morgen")]  # fmt: skip
    held_out = [("Well done!", "Sehr gut."), ("Hello.", "Guten Morgen!")]
    kept, dropped = ding.held_out_phrases(phrases, held_out)
    # "well done" is the English of a held-out pair and "Guten Morgen" its German (case and punctuation
    # ignored, as the sentence dedupe does); the second "Old hat" repeats the first pair
    assert kept == [("old hat", "kalter Kaffee")]
    assert dropped == 2


def test_phrases_go_to_train_only(tmp_path, monkeypatch):
    path = tmp_path / "de-en"
    path.write_text(DICTIONARY, encoding="utf-8")
    monkeypatch.setattr(ding, "dict_file", lambda cache: path)
    splits = {"train": [("A b c.", "D e f.")], "valid": [("Well done!", "Gut gemacht!")], "test": []}
    out = ding.add_phrases(splits, tmp_path)
    assert out["valid"] == splits["valid"] and out["test"] == []
    assert out["train"][0] == ("A b c.", "D e f.")
    assert ("old hat", "kalter Kaffee") in out["train"]
    assert not any(e == "well done" for e, _ in out["train"])  # a valid sentence's English
