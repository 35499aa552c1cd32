"""SentencePiece tokenizer: fixed special ids, lossless round trips, save/load, size errors, word helpers."""

import pickle
from pathlib import Path

import pytest
import sentencepiece as spm

from seq2seq_lstm.config import TokenizerConfig
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID

TINY = Path(__file__).parent / "fixtures" / "tiny"

# accents, emoji, CJK, Cyrillic, symbols: most characters never occur in the tiny training corpus
HARD_TEXT = [
    "Ça va, señor? Grüße aus Köln – naïve façade.",
    "Emoji 😀🚀 and a flag 🇪🇸 stay intact.",
    "日本語のテキスト, русский текст, Ελληνικά ✓ ∑ → ©",
    "El niño come pan.",
]


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def corpus():
    return lines(TINY / "train.en"), lines(TINY / "train.es")


@pytest.fixture(scope="module")
def joint(corpus):
    return Tokenizer.train(*corpus, TokenizerConfig(vocab_size=400))


def test_special_ids_are_fixed(corpus, joint):
    separate = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=350, joint=False, model_type="bpe"))
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    for sp in (joint.src_sp, separate.src_sp, separate.tgt_sp):
        assert [sp.piece_to_id(p) for p in ("<pad>", "<unk>", "<s>", "</s>")] == [0, 1, 2, 3]
        assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)


def test_vocab_sizes_are_exactly_the_configured_ones(corpus, joint):
    separate = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=350, joint=False))
    assert (
        joint.joint and joint.src_sp is joint.tgt_sp and joint.src_vocab_size == joint.tgt_vocab_size == 400
    )
    assert not separate.joint and separate.src_sp is not separate.tgt_sp
    assert separate.src_vocab_size == separate.tgt_vocab_size == 350


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_byte_fallback_round_trip_is_lossless(corpus, model_type):
    tok = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=400, model_type=model_type))
    ids = tok.encode_src(HARD_TEXT)
    assert tok.decode_src(ids) == HARD_TEXT
    assert tok.decode_tgt(tok.encode_tgt(HARD_TEXT)) == HARD_TEXT
    assert all(UNK_ID not in x for x in ids)  # unseen characters became byte pieces, not <unk>
    assert set(ids[1]) & set(tok.byte_ids("src"))  # the emoji are spelled in bytes


def test_text_is_nfkc_normalized(joint):
    # SentencePiece's nmt_nfkc rule: compatibility characters and runs of spaces are normalized
    assert joint.decode_src(joint.encode_src(["H₂O  ﬁne"])) == ["H2O fine"]


def test_without_byte_fallback_unseen_characters_are_unknown(corpus):
    tok = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=100, byte_fallback=False))
    ids = tok.encode_src(["😀 niño"])[0]
    assert UNK_ID in ids and tok.byte_ids("src") == []
    assert tok.decode_src([ids]) == [" ⁇  niño"]  # SentencePiece renders <unk> as " ⁇ "


def test_ids_exclude_bos_eos_and_decode_drops_specials(joint):
    ids = joint.encode_tgt(["El gato es negro."])[0]
    assert BOS_ID not in ids and EOS_ID not in ids and PAD_ID not in ids
    assert joint.decode_tgt([[BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]]) == ["El gato es negro."]


def test_training_is_deterministic(corpus, joint):
    again = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=400))
    assert again.model_files() == joint.model_files()


def test_training_does_not_depend_on_the_machines_core_count(corpus, joint, monkeypatch):
    # SentencePiece's sums depend on how many threads share them: a thread count taken from the
    # machine gave a 2-core laptop and a 16-core GPU server different vocabularies from one config
    models = []
    for cores in (2, 16):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        models.append(Tokenizer.train(*corpus, TokenizerConfig(vocab_size=400)).model_files())
    assert models[0] == models[1] == joint.model_files()
    fewer = Tokenizer.train(*corpus, TokenizerConfig(vocab_size=400, num_threads=2)).model_files()
    assert fewer != joint.model_files()  # the setting itself does change the model


def test_save_load_round_trip(tmp_path, corpus, joint):
    written = joint.save(tmp_path / "joint")
    assert [p.name for p in written] == ["spm.model"]
    loaded = Tokenizer.load(tmp_path / "joint")
    assert loaded.joint and loaded.encode_src(HARD_TEXT) == joint.encode_src(HARD_TEXT)

    separate = Tokenizer.train(
        *corpus, TokenizerConfig(vocab_size=350, joint=False), out_dir=tmp_path / "sep"
    )
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == ["src.model", "tgt.model"]
    loaded = Tokenizer.load(tmp_path / "sep")
    assert not loaded.joint and loaded.encode_tgt(HARD_TEXT) == separate.encode_tgt(HARD_TEXT)
    direct = Tokenizer.from_model_files(tmp_path / "sep" / "src.model", tmp_path / "sep" / "tgt.model")
    assert direct.fingerprint() == separate.fingerprint()

    # saving a joint model over a separate one removes the stale files, so load cannot mix them up
    joint.save(tmp_path / "sep")
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == ["spm.model"]
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_load_errors(tmp_path):
    with pytest.raises(
        UserError, match=r"no tokenizer in .*: expected spm.model, or src.model and tgt.model"
    ):
        Tokenizer.load(tmp_path)
    (tmp_path / "spm.model").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a SentencePiece model"):
        Tokenizer.load(tmp_path)


def test_model_with_other_special_ids_is_rejected(tmp_path, corpus):
    # SentencePiece's defaults put <unk> at 0 and have no <pad>
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[0]), model_prefix=str(tmp_path / "other"), vocab_size=60, minloglevel=2
    )
    with pytest.raises(UserError, match="special pieces must be <pad>, <unk>, <s>, </s> with ids 0-3"):
        Tokenizer.from_model_files(tmp_path / "other.model")


def test_vocab_too_large_names_the_maximum(corpus):
    with pytest.raises(UserError) as e:
        Tokenizer.train(*corpus, TokenizerConfig(vocab_size=5000))
    msg = str(e.value)
    assert msg.startswith(
        "tokenizer.vocab_size=5000 is too large for the joint corpus: SentencePiece can build"
    )
    maximum = int(msg.split("at most ")[1].split()[0])
    assert msg.endswith(f"lower tokenizer.vocab_size to {maximum} or less")
    assert (
        Tokenizer.train(*corpus, TokenizerConfig(vocab_size=maximum)).src_vocab_size == maximum
    )  # it is real


def test_vocab_too_small_for_byte_fallback(corpus):
    with pytest.raises(
        UserError, match=r"tokenizer.vocab_size=100 is too small .* needs at least \d+ pieces"
    ):
        Tokenizer.train(*corpus, TokenizerConfig(vocab_size=100))


def test_empty_training_text():
    with pytest.raises(UserError, match="cannot train a tokenizer on an empty corpus"):
        Tokenizer.train(["", ""], None, TokenizerConfig(vocab_size=300))


def test_word_boundary_helpers(joint):
    assert joint.control_ids() == [0, 1, 2, 3]
    byte_ids = joint.byte_ids()
    assert (
        len(byte_ids) == 256
        and joint.piece(byte_ids[0]) == "<0x00>"
        and joint.piece(byte_ids[-1]) == "<0xFF>"
    )
    starts = set(joint.word_start_ids())
    assert starts and all(joint.piece(i).startswith("▁") for i in starts)
    assert not starts & (set(byte_ids) | {0, 1, 2, 3})
    # every word of a sentence begins with exactly one word-start piece
    for text in ["El gato es negro.", "Mi madre cocina arroz."]:
        ids = joint.encode_tgt([text])[0]
        assert sum(joint.starts_word(i) for i in ids) == len(text.split())
        assert joint.starts_word(ids[0])


def test_pickle_keeps_the_model(joint):
    clone = pickle.loads(pickle.dumps(joint))
    assert clone.fingerprint() == joint.fingerprint()
    assert clone.encode_src(HARD_TEXT) == joint.encode_src(HARD_TEXT)
