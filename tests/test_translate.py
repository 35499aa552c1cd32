"""The Translator and `s2s translate`: search invariants through batching, chunking, scores, the CLI.

Learning is not the point here, so the run directory holds an untrained tiny Seq2Seq whose weights are
drawn wider than the usual init (uniform +-0.6 instead of +-0.1): its outputs are peaked (no near-ties)
and end at varied lengths, from 1 piece to the maximum, like a trained model's. Wider still (+-1) the
recurrence turns chaotic and float32 rounding differences between batch shapes (1e-6 per step) grow to
1e-3 in a score over 40 steps; at +-0.6 they stay below 1e-5, as in a trained model. The tokenizer is
trained on the fixture corpus. Building the run takes well under a second.
"""

import importlib
import json
import logging
import math
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_results import one_error_line
from click.testing import CliRunner

from seq2seq_lstm.checkpoint import RunDir, export_weights, save_checkpoint_info
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config, save_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.decoding.options import SearchOptions
from seq2seq_lstm.decoding.search import LENGTH_PENALTIES, beam_search
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.inference.translator import Sampling, Translator, split_long
from seq2seq_lstm.model.seq2seq import Seq2Seq
from seq2seq_lstm.vocab import BOS_ID, EOS_ID

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/fixtures/tiny"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(out: Path, vocab_size: int = 120, seed: int = 0) -> Path:
    """A run directory as `s2s train` writes it, with random weights (see the module docstring)."""
    cfg = load_config(
        ROOT / "configs/tiny.yaml", [f"training.out_dir={out}", f"tokenizer.vocab_size={vocab_size}"]
    )
    run = RunDir(out)
    src = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
    tgt = (TINY / "train.es").read_text(encoding="utf-8").splitlines()
    tokenizer = Tokenizer.train(src, tgt, cfg.tokenizer, out_dir=run.tokenizer)
    save_config(cfg, run.config)
    torch.manual_seed(seed)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    export_weights(model, run, save_checkpoint_info(cfg, tokenizer))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("translate") / "run")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """Mixed lengths: the fixture sentences and joins of two to four of them."""
    base = (TINY / "train.en").read_text(encoding="utf-8").splitlines()
    rng = random.Random(0)
    joined = [" ".join(rng.sample(base, rng.randint(2, 4))) for _ in range(14)]
    return base + joined


def same(a, b):
    """Two n-best lists agree: identical texts and tokens, scores to 1e-5 or float32's own precision.

    A score sums ~30 float32 log-probs, each a few ulp apart between batch shapes (the GEMM kernels
    block differently), and the rounding differences feed through the recurrence: on these lines they
    reach a relative 1.9e-6 of the score (measured; 1.2e-6 before the decoder looked its embedding gates
    up in a table, which moved the trajectories), hence the relative 3e-6 (~25 float32 ulp)."""
    assert [h.text for h in a] == [h.text for h in b]
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=3e-6, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# Search invariants through the Translator


def test_beam_1_equals_greedy(run_dir, lines):
    greedy = Translator.from_checkpoint(run_dir, beam_size=1)  # beam_size 1 runs greedy_search
    results = greedy.translate_full(lines, attention=False)
    model, tok = greedy.models[0], greedy.tokenizer
    for line, hyps in zip(lines, results, strict=True):
        ids = torch.tensor(tok.encode_src([line]))
        lens = torch.tensor([ids.size(1)])
        max_len = int(1.5 * lens.item() + 5)
        with torch.inference_mode():
            options = SearchOptions(beam_size=1, length_penalty="gnmt", alpha=0.6, return_attention=False)
            beam = beam_search(model, model.start(ids, lens), options, batch_size=1, max_len=max_len)[0]
        assert hyps[0].tokens == beam[0].tokens
        assert hyps[0].score == pytest.approx(beam[0].score, rel=1e-6, abs=1e-5)
    assert len({len(h[0].tokens) for h in results}) > 5, "outputs should end at varied lengths"


def test_first_of_n_best_is_the_1_best(run_dir, lines):
    best = Translator.from_checkpoint(run_dir, beam_size=4, n_best=1).translate_full(lines, attention=False)
    nbest = Translator.from_checkpoint(run_dir, beam_size=4, n_best=4).translate_full(lines, attention=False)
    for one, many in zip(best, nbest, strict=True):
        same(one, many[:1])
        assert len(many) == 4
        scores = [h.score for h in many]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in many}) == 4  # distinct hypotheses


@pytest.mark.parametrize(("beam_size", "dtype"), [(1, "float32"), (3, "float32"), (3, "int8")])
def test_a_sentence_gets_the_same_translation_alone_and_in_any_batch(run_dir, lines, beam_size, dtype):
    """int8 too: no quantized product sees the batch (tests/test_quantize.py checks that bit for bit).
    What can still differ is float32 rounding in the encoder and attention (1e-7), which may move an
    int8 activation across a rounding step: that changes a translation only at a near tie. Greedy search
    on this random model runs into such ties (long outputs of two alternating pieces); beam 3 does not,
    nor did a trained model (benchmarks/translate_speed.py: batch 1 vs batch 32 on 100 sentences)."""
    n_best = 2 if beam_size > 1 else 1
    opts = {"beam_size": beam_size, "n_best": n_best, "dtype": dtype}
    alone_tr = Translator.from_checkpoint(run_dir, batch_sentences=1, **opts)
    alone = [alone_tr.translate_full([line], attention=False)[0] for line in lines]
    shuffled = list(range(len(lines)))
    random.Random(1).shuffle(shuffled)
    # batches of 7 and 32 sentences, a small token budget (a few sentences, mixed compositions), one batch
    for options in ({"batch_sentences": 7}, {"batch_sentences": 32}, {"batch_tokens": 70}, {}):
        tr = Translator.from_checkpoint(run_dir, **opts, **options)
        got = tr.translate_full([lines[i] for i in shuffled], attention=False)
        for i, hyps in zip(shuffled, got, strict=True):
            same(hyps, alone[i])


def test_input_order_is_restored(run_dir, lines):
    tr = Translator.from_checkpoint(run_dir, batch_tokens=100)
    forward = tr.translate(lines)
    backward = tr.translate(lines[::-1])
    assert backward[::-1] == forward
    assert len(set(forward)) > 10


@pytest.mark.parametrize("penalty", ["none", "gnmt", "average"])
def test_scores_are_teacher_forced_log_probs_with_the_length_penalty(run_dir, lines, penalty):
    tr = Translator.from_checkpoint(run_dir, beam_size=3, n_best=3, length_penalty=penalty, alpha=0.8)
    results = tr.translate_full(lines[:20], attention=False)
    model, tok = tr.models[0], tr.tokenizer
    for line, hyps in zip(lines[:20], results, strict=True):
        src = torch.tensor(tok.encode_src([line]))
        for h in hyps:
            tgt_in = torch.tensor([[BOS_ID, *h.tokens]])
            with torch.inference_mode():
                log_probs = model(src, torch.tensor([src.size(1)]), tgt_in).log_softmax(-1)[0]  # (T, V)
            gold = torch.tensor([*h.tokens, EOS_ID])
            token_lp = log_probs.gather(1, gold.unsqueeze(1)).squeeze(1)
            total = token_lp.double().sum().item()
            lp = LENGTH_PENALTIES[penalty](len(h.tokens) + 1, 0.8)
            assert h.score == pytest.approx(total / lp, abs=1e-4)
            assert h.token_log_probs == pytest.approx(token_lp.tolist(), abs=1e-4)


def test_ensemble_of_one_model_twice_equals_the_model(run_dir, lines):
    single = Translator.from_checkpoint(run_dir, beam_size=3).translate_full(lines[:12], attention=False)
    double = Translator.from_checkpoint([run_dir, run_dir], beam_size=3).translate_full(
        lines[:12], attention=False
    )
    for a, b in zip(single, double, strict=True):
        same(a, b)


def test_forced_prefix_starts_the_translation(run_dir, lines):
    tr = Translator.from_checkpoint(run_dir, beam_size=3)
    prefix = "El gato"
    forced = tr.tokenizer.encode_tgt([prefix])[0]
    results = tr.translate_full(lines[:6], prefixes=[prefix] * 3 + [None] * 3, attention=False)
    for hyps in results[:3]:
        assert hyps[0].tokens[: len(forced)] == forced
        assert hyps[0].text.startswith(prefix)
    free = tr.translate_full(lines[3:6], attention=False)
    for a, b in zip(results[3:], free, strict=True):
        same(a, b)


def test_sampling_is_reproducible_with_a_seed_and_ranks_its_samples(run_dir, lines):
    make = lambda seed: Translator.from_checkpoint(run_dir, n_best=3, sampling=Sampling(seed=seed))  # noqa: E731
    # (n_best 3 with sampling: 3 samples, whatever the checkpoint's beam_size)
    a = make(7).translate_full(lines[:8], attention=False)
    b = make(7).translate_full(lines[:8], attention=False)
    for x, y in zip(a, b, strict=True):
        same(x, y)
        assert len(x) == 3
        assert [h.score for h in x] == sorted((h.score for h in x), reverse=True)
    c = make(8).translate_full(lines[:8], attention=False)
    assert [h.text for x in a for h in x] != [h.text for x in c for h in x]


# --------------------------------------------------------------------------------------------------
# Long inputs, empty lines, attention


def test_split_long_prefers_sentence_ends_then_clauses_then_word_starts():
    pieces = ["▁A", "b", ".", "▁C", "d", ",", "▁E", "f", "g", "▁H", "i", "j", "k", "l", "m"]
    piece = pieces.__getitem__
    chunks = split_long(list(range(len(pieces))), 5, piece)
    # "." inside the first 5 pieces; then "," inside the next 5; then the word start ▁H; then hard cuts
    assert [[pieces[i] for i in c] for c in chunks] == [
        ["▁A", "b", "."],
        ["▁C", "d", ","],
        ["▁E", "f", "g"],
        ["▁H", "i", "j", "k", "l"],
        ["m"],
    ]
    assert split_long([1, 2, 3], 5, piece) == [[1, 2, 3]]


def test_an_input_of_10000_tokens_and_an_empty_line_translate_in_bounded_memory(run_dir):
    tr = Translator.from_checkpoint(run_dir, max_input_len=200)
    words = "the cat is black and the dog is white , my mother reads a letter .".split()
    long_line = " ".join(words[i % len(words)] for i in range(10_000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    results = tr.translate_full([long_line, "", "   ", "The cat is black."], attention=False)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    long, empty, blank, short = (r[0] for r in results)
    pieces = tr.tokenizer.encode_src([long_line])[0]
    assert len(pieces) >= 10_000
    assert long.chunks >= len(pieces) // 200
    assert long.source_pieces == [tr.tokenizer.src_sp.id_to_piece(i) for i in pieces]
    assert len(long.token_log_probs) == len(long.tokens) + long.chunks  # one EOS per chunk
    assert (empty.text, empty.tokens, empty.score) == ("", [], 0.0)
    assert (blank.text, blank.tokens) == ("", [])
    assert short.text == tr.translate(["The cat is black."])[0]
    assert grown_mib < 300, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_search_rows_stay_within_the_step_memory_limit(run_dir, lines, monkeypatch):
    """A step's (rows, V) log-probs (and kept attention) stay under STEP_MEMORY_LIMIT: a wide beam gets
    fewer sentences per batch (same translations), and a beam that alone would pass the limit is one
    clear error before anything is decoded."""
    from seq2seq_lstm.inference import translator as translate_module

    translator = Translator.from_checkpoint(run_dir, beam_size=4)
    vocab = translator.tokenizer.tgt_vocab_size
    want = translator.translate(lines)
    row_bytes = translate_module.STEP_COPIES * 4 * vocab
    monkeypatch.setattr(translate_module, "STEP_MEMORY_LIMIT", 3 * 4 * row_bytes)  # 3 sentences of 4 rows
    segments = translator._segments(translator._sentences(lines), [[] for _ in lines])
    sizes = [len(b) for b in translator._batches(segments, attention=False)]
    assert max(sizes) == 3 and sum(sizes) == len(segments) > 3
    assert translator.translate(lines) == want
    monkeypatch.setattr(translate_module, "STEP_MEMORY_LIMIT", 100 * row_bytes)  # attention adds bytes
    assert (
        translator._sentences_that_fit(40, attention=True) < translator._sentences_that_fit(40, False) == 25
    )
    monkeypatch.setattr(translate_module, "STEP_MEMORY_LIMIT", 3 * row_bytes)
    with pytest.raises(
        UserError, match=r"^--beam-size 4 is too large: one search step would hold .*: use at most 3$"
    ):
        translator.translate(lines[:1])
    sampler = Translator.from_checkpoint(run_dir, sampling=Sampling(seed=1), beam_size=1, n_best=5)
    with pytest.raises(UserError, match=r"^--n-best 5 with --sampling is too large: "):
        sampler.translate(lines[:1])


def test_cli_a_beam_too_wide_for_memory_is_one_clear_line(run_dir):
    result = invoke("translate", "-m", run_dir, "--beam-size", 10**8, input="x\n")  # never allocated
    assert one_error_line(result).startswith("Error: --beam-size 100000000 is too large: one search step")


def test_a_chunked_line_joins_its_chunks_and_aligns_to_the_whole_source(run_dir, lines):
    tr = Translator.from_checkpoint(run_dir, beam_size=2, max_input_len=12)
    line = " ".join(lines[:12])
    whole = tr.translate_full([line])[0][0]
    pieces = tr.tokenizer.encode_src([line])[0]
    chunks = split_long(pieces, 12, tr.tokenizer.src_sp.id_to_piece)
    alone = tr.translate_full(tr.tokenizer.decode_src(chunks))  # each chunk as its own line
    assert whole.chunks == len(chunks) > 1
    assert whole.text == " ".join(a[0].text for a in alone if a[0].text)
    assert whole.score == pytest.approx(sum(a[0].score for a in alone), rel=1e-6)
    assert whole.attention is None and len(whole.alignment) == len(whole.tokens)
    offsets = [0]
    for c in chunks:
        offsets.append(offsets[-1] + len(c))
    expected = [o + a for o, hyps in zip(offsets, alone, strict=False) for a in hyps[0].alignment]
    assert whole.alignment == expected


# --------------------------------------------------------------------------------------------------
# The command line


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_cli_reads_stdin_and_writes_a_file_atomically(run_dir, lines, tmp_path):
    out = tmp_path / "out" / "hyp.txt"
    source = "\n".join([*lines[:10], "", lines[10]]) + "\n"
    result = invoke("translate", "-m", run_dir, "-o", out, "--beam-size", 3, input=source)
    assert result.exit_code == 0, result.output
    expected = Translator.from_checkpoint(run_dir, beam_size=3).translate([*lines[:10], "", lines[10]])
    assert out.read_text(encoding="utf-8").split("\n") == [*expected, ""]
    assert sorted(p.name for p in out.parent.iterdir()) == ["hyp.txt"]  # no temporary file left
    # interactive mode (line by line) prints the same translations
    result = invoke("translate", "-m", run_dir, "--beam-size", 3, "--interactive", input=source)
    assert result.exit_code == 0 and result.output.split("\n") == [*expected, ""]


def test_cli_deprecated_c_for_the_checkpoint_still_works_for_one_release(run_dir, lines):
    # -c is --config everywhere now; the old -c for the checkpoint says so once on stderr, and translates
    source = "\n".join(lines[:3]) + "\n"
    new = CliRunner().invoke(main, ["translate", "-m", str(run_dir)], input=source)
    old = CliRunner().invoke(main, ["translate", "-c", str(run_dir), "-c", str(run_dir)], input=source)
    assert new.exit_code == old.exit_code == 0, old.output
    assert old.stderr == "-c for --checkpoint is deprecated; use -m\n" and new.stderr == ""
    assert old.stdout == new.stdout and len(new.stdout.splitlines()) == 3


def test_cli_n_best_text_uses_the_moses_format(run_dir, lines):
    result = invoke("translate", "-m", run_dir, "--beam-size", 3, "--n-best", 2, input="\n".join(lines[:3]))
    assert result.exit_code == 0, result.output
    rows = [row.split(" ||| ") for row in result.output.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "1", "1", "2", "2"]
    full = Translator.from_checkpoint(run_dir, beam_size=3, n_best=2).translate_full(lines[:3])
    assert [r[1] for r in rows] == [h.text for hyps in full for h in hyps]


def test_cli_jsonl_has_hypotheses_scores_and_alignments(run_dir, lines, tmp_path):
    plots = tmp_path / "plots"
    source = "\n".join([lines[0], "", lines[50]]) + "\n"  # lines[50] holds several sentences: kept whole
    result = invoke("translate", "-m", run_dir, "--format", "jsonl", "--n-best", 2, "--beam-size", 2,
                    "--plot-attention", plots, "--no-split-sentences", input=source)  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(row) for row in result.output.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    first = records[0]
    assert set(first) == {"line", "source", "translation", "score", "source_pieces", "nbest"}
    assert first["source"] == lines[0] and first["translation"] == first["nbest"][0]["text"]
    assert len(first["nbest"]) == 2 and first["score"] == first["nbest"][0]["score"]
    for hyp in first["nbest"]:
        assert set(hyp) == {"text", "score", "pieces", "ids", "token_log_probs", "alignment", "attention"}
        T, S = len(hyp["ids"]) + 1, len(first["source_pieces"])
        assert len(hyp["token_log_probs"]) == T and len(hyp["alignment"]) == T - 1
        assert len(hyp["attention"]) == T and all(len(row) == S for row in hyp["attention"])
        assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in hyp["attention"])
        assert hyp["alignment"] == [max(range(S), key=row.__getitem__) for row in hyp["attention"][:-1]]
    assert records[1]["translation"] == "" and records[1]["nbest"][0]["attention"] is None
    # one PNG per (non-empty) sentence
    assert sorted(p.name for p in plots.iterdir()) == ["line-000001.png", "line-000003.png"]
    for png in plots.iterdir():
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000


def test_cli_missing_checkpoint_is_one_clear_line(tmp_path):
    result = invoke("translate", "-m", tmp_path / "nope", input="Hello\n")
    assert one_error_line(result) == (
        f"Error: model {tmp_path / 'nope'} does not exist; pass a run directory written by `s2s train`"
    )


def test_cli_device_that_is_missing_or_unknown_is_one_clear_line(run_dir, monkeypatch):
    # seen on a CPU-only machine: `--device cuda` was torch's "not compiled with CUDA" traceback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert one_error_line(invoke("translate", "-m", run_dir, "--device", "cuda", input="Hello\n")) == (
        "Error: device cuda asked for, but no CUDA device is available; use --device cpu"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert one_error_line(invoke("translate", "-m", run_dir, "--device", "cuda:2", input="Hello\n")) == (
        "Error: device cuda:2 asked for, but this machine has 2 CUDA device(s): cuda:0 to cuda:1"
    )
    assert one_error_line(invoke("translate", "-m", run_dir, "--device", "tpu", input="Hello\n")) == (
        "Error: device 'tpu' is not a torch device; use cpu, cuda or cuda:N"
    )
    assert one_error_line(invoke("translate", "-m", run_dir, "--device", "meta", input="Hello\n")) == (
        "Error: device meta is not supported; use cpu, cuda or cuda:N"
    )


def test_cli_checkpoint_with_another_tokenizer_is_one_clear_line(run_dir, tmp_path):
    other = make_run(tmp_path / "other", vocab_size=100)
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    shutil.rmtree(mixed / "tokenizer")
    shutil.copytree(other / "tokenizer", mixed / "tokenizer")
    line = one_error_line(invoke("translate", "-m", mixed, input="Hello\n"))
    assert line.startswith(f"Error: {mixed}/tokenizer/spm.model does not match {mixed}/model.safetensors: ")
    assert line.endswith("use the run's own tokenizer")
    # an ensemble whose members have different tokenizers
    line = one_error_line(invoke("translate", "-m", run_dir, "-m", other, input="Hello\n"))
    assert line == (
        f"Error: {other} was trained with another tokenizer than {run_dir}; the members of an ensemble "
        "must share one vocabulary"
    )


def test_cli_bad_input_leaves_an_existing_output_untouched(run_dir, tmp_path):
    source = tmp_path / "src.txt"
    source.write_bytes(b"The cat is black.\nThe dog.\n\xff\xfe bad\n")
    out = tmp_path / "hyp.txt"
    out.write_text("old\n")
    line = one_error_line(invoke("translate", "-m", run_dir, "-i", source, "-o", out))
    assert line == (
        f"Error: {source} line 3: invalid UTF-8 (byte 0xff at column 1); "
        "fix the file or pass --encoding-errors replace"
    )
    assert out.read_text() == "old\n"
    assert not list(tmp_path.glob(".hyp.txt.*"))
    line = one_error_line(invoke("translate", "-m", run_dir, "-i", tmp_path / "missing.txt"))
    assert line == f"Error: input file {tmp_path / 'missing.txt'} does not exist"
    line = one_error_line(invoke("translate", "-m", run_dir, "--seed", 3, input="x\n"))
    assert line == "Error: --temperature, --top-k, --top-p and --seed need --sampling"
    line = one_error_line(invoke("translate", "-m", run_dir, "--beam-size", 2, "--n-best", 3, input="x\n"))
    assert line == "Error: generation.n_best must be smaller than or equal to generation.beam_size; got 3 > 2"


@pytest.mark.parametrize("option", ["--temperature", "--top-p", "--alpha", "--max-len-a"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_cli_nan_and_infinity_are_refused(run_dir, option, value):
    # before: --temperature nan|inf and --max-len-a nan|inf ended in tracebacks, --alpha nan|inf gave
    # NaN (or all-zero) scores with exit code 0, --top-p nan reached the library's check
    result = invoke("translate", "-m", run_dir, "--sampling", option, value, input="x\n")
    # click's refusal of the value, as one line like every bad input
    assert one_error_line(result).startswith(f"Error: Invalid value for '{option}': ")
    if value == "nan":
        assert one_error_line(result) == (
            f"Error: Invalid value for '{option}': 'nan' is not a finite number; see 's2s translate --help'"
        )


def test_cli_alpha_above_its_maximum_is_refused_before_loading_anything(tmp_path):
    # before: refused only once the checkpoint had loaded (seconds); the run directory here does not exist
    result = invoke("translate", "-m", tmp_path / "missing", "--alpha", "11", input="x\n")
    assert one_error_line(result) == "Error: --alpha must be at most 10 (the GNMT exponent); got 11"


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_cli_seed_outside_64_bits_is_refused(run_dir, seed):
    # before: 2**64 was torch's "Overflow when unpacking long long" traceback
    result = invoke("translate", "-m", run_dir, "--sampling", "--seed", seed, input="x\n")
    assert one_error_line(result).startswith("Error: Invalid value for '--seed': ")


def test_library_refuses_nan_infinity_and_values_that_break_the_search(run_dir):
    for bad in (math.nan, math.inf):
        with pytest.raises(
            UserError, match=r"^--temperature must be a finite number between 1e-06 and 1e\+06"
        ):
            Sampling(temperature=bad)
        with pytest.raises(UserError, match=r"^--top-p must be a finite number in \(0, 1\]"):
            Sampling(top_p=bad)
        with pytest.raises(UserError, match=r"^generation\.alpha.* must be a finite number"):
            Translator.from_checkpoint(run_dir, alpha=bad)
        with pytest.raises(UserError, match=r"^generation\.max_len_a.* must be a finite number"):
            Translator.from_checkpoint(run_dir, max_len_a=bad)
    with pytest.raises(UserError, match=r"^--temperature must be a finite number .*; got 1e-38$"):
        Sampling(temperature=1e-38)  # every scaled log-prob became -inf: torch.multinomial failed
    with pytest.raises(UserError, match=r"^--seed must be between 0 and 18446744073709551615; got -1$"):
        Sampling(seed=-1)
    with pytest.raises(UserError, match=r"^generation\.alpha must be >= 0\.0 and <= 10\.0; got 11\.0$"):
        Translator.from_checkpoint(run_dir, alpha=11.0)  # ((5 + |Y|) / 6) ** alpha overflows on long outputs


def test_cli_sampling_with_a_beam_is_one_clear_line(run_dir, lines):
    # before: the beam size was silently ignored
    line = one_error_line(invoke("translate", "-m", run_dir, "--sampling", "-b", 4, input="x\n"))
    assert line == (
        "Error: --beam-size 4 contradicts --sampling: sampling has no beam (it draws --n-best samples per "
        "line); drop one of them"
    )
    # -b 1 is no beam: allowed, with any --n-best (before: "n_best must be smaller than ... beam_size")
    result = invoke("translate", "-m", run_dir, "--sampling", "-b", 1, "--n-best", 2, "--seed", 1,
                    input=f"{lines[0]}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [row.split(" ||| ")[0] for row in result.output.splitlines()] == ["0", "0"]


def test_cli_prefix_tab_line_without_a_tab_is_one_clear_line(run_dir, lines, tmp_path, monkeypatch):
    # before: such a line was translated with no prefix, silently
    monkeypatch.setattr(importlib.import_module("seq2seq_lstm.cli.translate"), "BLOCK_LINES", 2)
    source = tmp_path / "src.txt"
    source.write_text(f"{lines[0]}\tEl gato\n\n{lines[1]}\t\n{lines[2]}\n", encoding="utf-8")
    out = tmp_path / "hyp.txt"
    line = one_error_line(invoke("translate", "-m", run_dir, "-i", source, "-o", out, "--prefix-tab"))
    assert line == (
        f"Error: {source} line 4: no tab; --prefix-tab expects SOURCE<TAB>PREFIX (SOURCE<TAB> for no prefix)"
    )  # the line number counts from the start of the file, not of the block
    assert not out.exists() and not list(tmp_path.glob(".hyp.txt.*"))
    line = one_error_line(invoke("translate", "-m", run_dir, "--prefix-tab", input="x\ty\nno tab\n"))
    assert line.startswith("Error: stdin line 2: no tab; ")
    # an empty line stays an empty translation; SOURCE<TAB> is a line without a prefix
    source.write_text(f"{lines[0]}\tEl gato\n\n{lines[1]}\t\n", encoding="utf-8")
    result = invoke("translate", "-m", run_dir, "-i", source, "--prefix-tab", "-b", 3)
    assert result.exit_code == 0, result.output
    expected = Translator.from_checkpoint(run_dir, beam_size=3).translate(
        [lines[0], "", lines[1]], prefixes=["El gato", None, None]
    )
    assert result.output.split("\n") == [*expected, ""]
    # an empty source with a typed prefix keeps the prefix (before: the typed text vanished)
    result = invoke("translate", "-m", run_dir, "--prefix-tab", "--format", "jsonl", input="\tEl gato\n")
    (row,) = [json.loads(line) for line in result.output.splitlines()]
    assert row["translation"] == "El gato" and row["score"] == 0.0, row


def test_min_len_above_the_maximum_length_is_cut_there_with_a_warning(run_dir, lines, caplog):
    """The maximum wins (as in OpenNMT-py), and the user is told: before, such lines were silently filled
    up to the maximum with whatever the model predicts while EOS is banned."""
    tr = Translator.from_checkpoint(run_dir, beam_size=3, min_len=50, max_len_a=0.0, max_len_b=4)
    with caplog.at_level(logging.WARNING, logger="seq2seq_lstm"):
        results = tr.translate_full([*lines[:3], ""], attention=False)
    assert [len(hyps[0].tokens) for hyps in results] == [4, 4, 4, 0]
    assert [r.getMessage() for r in caplog.records] == [
        "min_len 50 is above the maximum length floor(0 * source pieces + 4) of 3 of 4 lines: the maximum "
        "wins, so they run to it with EOS banned (their end may be filler); lower --min-len or raise "
        "--max-len-a/--max-len-b"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="seq2seq_lstm"):
        Translator.from_checkpoint(run_dir, beam_size=3, min_len=3).translate(lines[:3])  # fits: no warning
    assert not caplog.records
    # the command line shows it on stderr (no logging set up there: Python's last-resort handler)
    cmd = [sys.executable, "-m", "seq2seq_lstm", "translate", "-m", str(run_dir), "--min-len", "50",
           "--max-len-a", "0", "--max-len-b", "4"]  # fmt: skip
    done = subprocess.run(cmd, input=f"{lines[0]}\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "min_len 50 is above the maximum length floor(0 * source pieces + 4) of 1 of 1 lines"
    )
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_faster_weight_types_reach_the_models_and_mostly_agree(run_dir, lines, dtype):
    """--dtype converts the weights (the step-level closeness is tests/test_quantize.py's); rounding
    may flip a near tie, after which a greedy translation of random weights drifts, so compare the
    first pieces of each translation."""
    exact = Translator.from_checkpoint(run_dir, beam_size=1)
    fast = Translator.from_checkpoint(run_dir, beam_size=1, dtype=dtype)
    if dtype == "int8":
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in fast.models[0].modules())
    else:
        assert fast.models[0].decoder.embed.weight.dtype == torch.bfloat16
    want, got = exact.translate_full(lines), fast.translate_full(lines)
    first = sum(a[0].tokens[:2] == b[0].tokens[:2] for a, b in zip(want, got, strict=True))
    assert first >= 0.8 * len(lines)
