"""Streaming corpora: the same pairs as the in-memory path, a bounded seeded shuffle, token budgets,
sharding by rank and worker, exact mid-stream resume, bad lines, vanished files and dead workers."""

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from test_data import text_pairs

from seq2seq_lstm.config import load_config
from seq2seq_lstm.data import stream_rows, streaming
from seq2seq_lstm.data.corpus import load_parallel
from seq2seq_lstm.data.stream_rows import node_rows, sample_texts, shard_rows, stream_source
from seq2seq_lstm.data.streaming import (
    StreamingBatches,
    StreamingLoader,
    StreamPlan,
    stream_items,
)
from seq2seq_lstm.errors import UserError

TINY = Path(__file__).parent / "fixtures" / "tiny"
WORDS = "the a house dog cat runs sleeps big small red green on under old new".split()


def cfg_for(train: Path | str, *sets: str):
    return load_config(
        None,
        [f"data.train={train}", "data.src_lang=en", "data.tgt_lang=es", "data.streaming=true",
         "data.batch_tokens=200", "data.max_len=40", *sets],
    )  # fmt: skip


def write_pairs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` random word pairs (3-12 words a side) as ``root/train.en`` + ``root/train.es``."""
    rng = random.Random(seed)
    en, es = [], []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        en.append(f"{i} " + " ".join(words))
        es.append(" ".join(reversed(words)))
    (root / "train.en").write_text("\n".join(en) + "\n")
    (root / "train.es").write_text("\n".join(es) + "\n")
    return root / "train"


def plan_for(cfg, rank=0, world=1):
    return StreamPlan(stream_source(cfg), cfg.data, rank=rank, world_size=world)


def batch_list(batches):
    return [(tuple(b["index"].tolist()), b["src"].tolist(), b["tgt_out"].tolist()) for b in batches]


# ------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "path",
    ["train", "train.tsv", "train.jsonl", "train.jsonl.gz", "train.parquet", "train_struct.parquet"],
)
def test_every_format_streams_the_pairs_the_in_memory_path_reads(path):
    memory = load_parallel(str(TINY / path), "en", "es")
    expected = list(zip(memory["line"], memory["src"], memory["tgt"], strict=True))
    source = stream_source(cfg_for(TINY / path))
    assert [(r["line"], r["src"], r["tgt"]) for r in shard_rows(source)] == expected
    # three shards by line: disjoint, and together every row
    shards = [row for k in range(3) for row in shard_rows(source, k, 3)]
    assert sorted((r["line"], r["src"], r["tgt"]) for r in shards) == expected


def test_a_language_model_streams_the_target_side(tok):
    from seq2seq_lstm.data.corpus import load_monolingual

    cfg = cfg_for(TINY / "train", "task=lm")
    source = stream_source(cfg)
    assert [r["text"] for r in shard_rows(source)] == load_monolingual(str(TINY / "train"), "es")["text"]
    batches = [p[0] for kind, *p in stream_items(plan_for(cfg), tok, 0, 0) if kind == "batch"]
    assert all("src" not in b for b in batches)
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(46))


def test_gzip_tsv_streams_like_the_plain_file(tmp_path):
    import gzip

    path = tmp_path / "c.tsv.gz"
    path.write_bytes(gzip.compress((TINY / "train.tsv").read_bytes()))
    assert [(r["src"], r["tgt"]) for r in shard_rows(stream_source(cfg_for(path)))] == text_pairs()


def test_shuffle_buffer_is_bounded_and_deterministic_under_a_seed(tmp_path):
    source = stream_source(cfg_for(write_pairs(tmp_path, 300)))

    def order(seed, epoch, buffer=16):
        return [r["line"] for r in node_rows(source, 0, 1, seed=seed, epoch=epoch, buffer=buffer)]

    a = order(1, 0)
    assert sorted(a) == list(range(300)) and a != sorted(a)
    assert order(1, 0) == a and order(1, 1) != a and order(2, 0) != a
    # the p-th row out was among the first p + 16 rows read: the buffer never holds more than 16
    assert all(line < p + 16 for p, line in enumerate(a))


# ------------------------------------------------------------------------------------------ batches


def test_batches_obey_the_token_budget_and_the_sentence_cap(tmp_path, tok):
    cfg = cfg_for(
        write_pairs(tmp_path, 400), "data.batch_tokens=150", "data.max_sentences=9", "data.window=64"
    )
    batches = [x[1] for x in stream_items(plan_for(cfg), tok, 0, 0) if x[0] == "batch"]
    assert len(batches) > 10
    for b in batches:
        width = max(b["src"].shape[1], b["tgt_in"].shape[1])
        assert width * len(b["index"]) <= 150 and len(b["index"]) <= 9


def test_a_window_tokenized_in_chunks_gives_the_ids_of_the_tokenizer_and_the_same_batches(
    tmp_path, tok, monkeypatch
):
    # the window's ids live in Arrow arrays, encoded a few hundred sentences at a time: every batch
    # must hold the tokenizer's own ids of its lines, and the chunk size must change nothing
    train = write_pairs(tmp_path, 400)
    cfg = cfg_for(train, "data.window=300")
    whole = [x[1] for x in stream_items(plan_for(cfg), tok, 0, 0) if x[0] == "batch"]
    monkeypatch.setattr(streaming, "ENCODE_ROWS", 7)
    chunked = [x[1] for x in stream_items(plan_for(cfg), tok, 0, 0) if x[0] == "batch"]
    assert batch_list(chunked) == batch_list(whole)
    en = Path(f"{train}.en").read_text().splitlines()
    for b in whole:
        ids = tok.encode_src([en[i] for i in b["index"].tolist()])
        assert [row[: len(x)].tolist() for row, x in zip(b["src"], ids, strict=True)] == ids
        assert b["src_lens"].tolist() == [len(x) for x in ids]


def test_two_ranks_times_two_workers_cover_every_pair_exactly_once(tmp_path, tok):
    cfg = cfg_for(write_pairs(tmp_path, 500), "data.num_workers=2", "data.window=50",
                  "data.shuffle_buffer=40", "data.max_len=200", "data.max_ratio=100",
                  "data.batch_tokens=400")  # fmt: skip
    seen = []
    for rank in range(2):
        plan = plan_for(cfg, rank, 2)
        for stream in range(2):
            items = stream_items(plan, tok, 3, stream)
            seen += [i for kind, *p in items if kind == "batch" for i in p[0]["index"].tolist()]
    assert sorted(seen) == list(range(500))


def test_the_in_memory_length_filter_keeps_the_same_pairs(tmp_path, tok):
    from seq2seq_lstm.data.batching import filter_by_length, tokenize

    cfg = cfg_for(write_pairs(tmp_path, 300), "data.max_len=30", "data.min_len=12", "data.max_ratio=1.1")
    seen = [
        i for kind, *p in stream_items(plan_for(cfg), tok, 0, 0) if kind == "batch" for i in p[0]["index"]
    ]
    memory, report = filter_by_length(
        tokenize(load_parallel(str(tmp_path / "train"), "en", "es"), tok), 12, 30, 1.1
    )
    assert sorted(int(i) for i in seen) == sorted(memory["line"])
    assert report.too_short and report.too_long and report.bad_ratio  # every rule had work to do


# ------------------------------------------------------------------------------------------- resume


class Counted:
    """``consumed()`` for a loader: the batches the caller has taken."""

    def __init__(self):
        self.n = 0

    def __call__(self):
        return self.n


def run_loader(cfg, tok, stop=None, state=None, epoch=0):
    counted = Counted()
    loader = StreamingLoader(StreamingBatches(plan_for(cfg), tok), consumed=counted, epoch=lambda: epoch)
    if state is not None:
        loader.load_state_dict(state)
    out = []
    for b in loader:
        if stop is not None and counted.n == stop:
            break
        out.append(b)
        counted.n += 1
    return out, loader.state_dict()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_gives_exactly_the_batches_of_the_uninterrupted_one(tmp_path, tok, workers):
    cfg = cfg_for(write_pairs(tmp_path, 360), f"data.num_workers={workers}", "data.window=40",
                  "data.shuffle_buffer=30", "data.batch_tokens=120")  # fmt: skip
    full, _ = run_loader(cfg, tok, epoch=2)
    assert len(full) > 12
    for stop in (1, 5, len(full) // 2 + 1, len(full) - 1):  # windows hold ~4 batches: some cut, some whole
        head, state = run_loader(cfg, tok, stop=stop, epoch=2)
        assert state["ranks"][0]["count"] == stop
        tail, _ = run_loader(cfg, tok, state=state, epoch=2)
        assert batch_list(head + tail) == batch_list(full), stop
    # a state from epoch 2 does not apply to epoch 3: that one starts afresh
    _, state = run_loader(cfg, tok, stop=3, epoch=2)
    assert batch_list(run_loader(cfg, tok, state=state, epoch=3)[0]) == batch_list(
        run_loader(cfg, tok, epoch=3)[0]
    )


def test_a_state_saved_after_an_epochs_last_batch_resumes_with_the_next_epoch(tmp_path, tok):
    """Lightning resumes from a checkpoint written at an epoch's last batch by counting that epoch done
    and training the next one on the iterator it made while the old epoch was current: that iterator
    must give the next epoch's batches. Streaming draws nothing from the global RNG (dropout's), which
    the resume restores after the loader is made."""
    cfg = cfg_for(write_pairs(tmp_path, 200), "data.window=40", "data.batch_tokens=120")
    rng = torch.get_rng_state()
    full, state = run_loader(cfg, tok, epoch=2)
    assert torch.equal(torch.get_rng_state(), rng)
    assert state["ranks"][0]["count"] == len(full) and state["ranks"][0]["ended"]
    _, mid = run_loader(cfg, tok, stop=len(full) - 1, epoch=2)
    assert not mid["ranks"][0]["ended"]
    assert batch_list(run_loader(cfg, tok, state=state, epoch=2)[0]) == batch_list(
        run_loader(cfg, tok, epoch=3)[0]
    )


def test_resuming_with_other_settings_or_changed_files_is_refused(tmp_path, tok):
    cfg = cfg_for(write_pairs(tmp_path, 100), "data.window=40")
    _, state = run_loader(cfg, tok, stop=2)
    with pytest.raises(
        UserError, match=r"^cannot resume the training stream: data.window changed \(40 then, 30 now\)"
    ):
        run_loader(cfg.replace(data={"window": 30}), tok, state=state)
    (tmp_path / "train.es").write_text((tmp_path / "train.es").read_text() + "extra\n")
    (tmp_path / "train.en").write_text((tmp_path / "train.en").read_text() + "extra\n")
    with pytest.raises(UserError, match="^cannot resume the training stream: the training files changed"):
        run_loader(cfg, tok, state=state)


# ---------------------------------------------------------------------------------------- bad input


def write_tsv_with_bad_lines(path: Path, n: int, bad: set[int]) -> None:
    lines = ["en\tes"] + [f"a{i} b c\tx{i} y" if i not in bad else f"broken line {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_a_malformed_line_deep_in_the_file_names_file_and_line(tmp_path, tok):
    path = tmp_path / "c.tsv"
    write_tsv_with_bad_lines(path, 3000, {2500})
    with pytest.raises(UserError, match=rf"^{path} line 2502: 1 tab-separated fields but the header has 2;"):
        run_loader(cfg_for(path), tok)
    with pytest.raises(UserError, match=rf"^{path} line 2502: 1 tab-separated fields"):
        run_loader(cfg_for(path, "data.num_workers=2"), tok)  # from a worker: the same one line


def test_invalid_utf8_deep_in_a_stream_names_file_line_and_byte_and_a_bom_is_not_text(tmp_path, tok):
    path = tmp_path / "c.tsv"
    write_tsv_with_bad_lines(path, 600, set())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"a400 b c", b"a400 \xff c"))
    with pytest.raises(UserError, match=rf"^{path} line 402: invalid UTF-8 \(byte 0xff at column 6\)"):
        run_loader(cfg_for(path), tok)  # line 1 is the header, which reads despite its byte-order mark


def test_skip_bad_lines_skips_and_counts_them(tmp_path, tok, caplog):
    path = tmp_path / "c.tsv"
    write_tsv_with_bad_lines(path, 600, {5, 300, 599})
    raw = path.read_bytes().replace(b"a100 b c", b"a100 \xff c")  # invalid UTF-8 is a bad line too
    path.write_bytes(raw)
    counted = Counted()
    cfg = cfg_for(path, "data.skip_bad_lines=true", "data.num_workers=2")
    loader = StreamingLoader(StreamingBatches(plan_for(cfg), tok), consumed=counted)
    seen = [i for b in loader for i in b["index"].tolist()]
    assert loader.skipped == 4
    assert sorted(seen) == [i for i in range(600) if i not in {5, 100, 300, 599}]
    assert "skipped 4 malformed lines this epoch; the first:" in caplog.text


def test_a_jsonl_line_that_is_not_json_names_file_and_line(tmp_path, tok):
    path = tmp_path / "c.jsonl"
    good = '{"translation": {"en": "a b", "es": "c d"}}'
    path.write_text("\n".join([good] * 40 + ['{"translation": '] + [good] * 5) + "\n")
    with pytest.raises(UserError, match=rf"^{path} line 41: not valid JSON"):
        run_loader(cfg_for(path), tok)


def test_a_file_that_vanishes_between_epochs_is_one_clear_line(tmp_path, tok):
    cfg = cfg_for(write_pairs(tmp_path, 200), "data.window=20")
    counted = Counted()
    loader = StreamingLoader(StreamingBatches(plan_for(cfg), tok), consumed=counted)
    it = iter(loader)
    next(it)
    (tmp_path / "train.es").unlink()  # the open file still reads to its end on POSIX: this epoch finishes
    assert len(list(it)) > 3
    with pytest.raises(UserError, match=rf"^corpus file {tmp_path / 'train.es'} does not exist$"):
        list(loader)


def test_a_read_that_fails_mid_epoch_is_one_clear_line(tmp_path, tok, monkeypatch):
    cfg = cfg_for(write_pairs(tmp_path, 200), "data.window=20")
    real_open = stream_rows._open

    class Failing:
        def __init__(self, f):
            self.f, self.n = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __iter__(self):
            for line in self.f:
                self.n += 1
                if self.n > 120:
                    raise OSError(116, "Stale file handle")
                yield line

    monkeypatch.setattr(stream_rows, "_open", lambda p: Failing(real_open(p)))
    with pytest.raises(
        UserError, match=r"train\.e[ns]: reading stopped after line 120 \(Stale file handle\)$"
    ):
        run_loader(cfg, tok)


class DyingBatches(StreamingBatches):
    """Worker 1 kills itself (or hangs) after its first item."""

    def __init__(self, plan, tok, how):
        super().__init__(plan, tok)
        self.how = how

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        for n, item in enumerate(super().__iter__()):
            if info.id == 1 and n == 1:
                if self.how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
            yield item


@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_worker_that_dies_or_hangs_ends_in_one_clear_error(tmp_path, tok, how):
    cfg = cfg_for(write_pairs(tmp_path, 300), "data.num_workers=2", "data.window=20", "data.worker_timeout=5")
    loader = StreamingLoader(DyingBatches(plan_for(cfg), tok, how))
    start = time.monotonic()
    with pytest.raises(
        UserError, match=r"^streaming data.train: DataLoader (worker|timed out).*data.worker_timeout=5 s\)$"
    ):
        list(loader)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("error", [EOFError, ConnectionResetError])
def test_a_worker_lost_while_handing_over_a_batch_is_the_same_clear_error(tmp_path, tok, monkeypatch, error):
    """A worker killed while the main process fetches its batch's shared memory surfaces as the
    multiprocessing connection's own error, not the DataLoader's RuntimeError; it gets the same line."""

    def broken(self):
        yield from ()
        raise error

    cfg = cfg_for(write_pairs(tmp_path, 30), "data.num_workers=2", "data.worker_timeout=5")
    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", broken)
    with pytest.raises(UserError, match=r"^streaming data.train: DataLoader worker died handing over a batch "
                       rf"\({error.__name__}\); .*data.worker_timeout=5 s\)$"):  # fmt: skip
        list(StreamingLoader(StreamingBatches(plan_for(cfg), tok)))


# ---------------------------------------------------------------------------------------- tokenizer


def test_the_tokenizer_sample_is_a_seeded_reservoir_of_the_stream(tmp_path):
    source = stream_source(cfg_for(write_pairs(tmp_path, 500)))
    a = sample_texts(source, 50, seed=1)
    assert len(a["src"]) == len(a["tgt"]) == 50
    assert a == sample_texts(source, 50, seed=1) and a != sample_texts(source, 50, seed=2)
    src = (tmp_path / "train.en").read_text().splitlines()
    assert set(a["src"]) <= set(src) and max(src.index(s) for s in a["src"]) > 100  # not just the head
    whole = sample_texts(source, 0, seed=1)
    assert list(whole["src"]) == src


def test_training_on_a_stream_learns_and_resumes_exactly(tmp_path):
    from seq2seq_lstm.training.trainer import train

    data = write_pairs(tmp_path, 300)
    (tmp_path / "valid").mkdir()
    valid = write_pairs(tmp_path / "valid", 20, seed=5)  # validation stays in memory
    sets = [f"data.train={data}", f"data.valid={valid}", "data.src_lang=en", "data.tgt_lang=es",
            "data.streaming=true", "data.num_workers=2", "training.val_every_steps=10",
            "generation.beam_size=1", "data.window=64", "data.shuffle_buffer=50", "data.batch_tokens=300",
            "tokenizer.vocab_size=320", "tokenizer.sample_sentences=200", "model.emb_dim=32",
            "model.hidden_size=32", "model.enc_layers=1", "model.dec_layers=1", "model.dropout=0.1",
            "training.lr=0.01", "training.num_threads=1", "training.log_every_steps=1",
            "training.progress_bar=false", "training.max_epochs=-1"]  # fmt: skip

    def run(out, steps, resume=False):
        return train(
            load_config(None, [*sets, f"training.out_dir={out}", f"training.max_steps={steps}"]), resume
        )

    full = run(tmp_path / "full", 40)
    run(tmp_path / "half", 17)
    resumed = run(tmp_path / "half", 40, resume=True)
    assert full.steps == resumed.steps == 40
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "half")
    assert sorted(a) == sorted(b) == list(range(40))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    first, last = sum(a[s] for s in range(5)) / 5, sum(a[s] for s in range(35, 40)) / 5
    assert last < 0.8 * first  # it learns


def test_a_stream_stopped_at_an_epochs_last_batch_without_validation_resumes_with_the_next_epoch(tmp_path):
    """No data.valid, so no validation rewrites last.ckpt after the stop: ``max_epochs=1``, at epoch 0's
    last batch. last.ckpt holds that final step (a streamed epoch has no length to tell its last batch
    by), and the resumed run trains epoch 1 next (it used to find that epoch empty and go on to epoch
    2) with the uninterrupted run's losses, dropout included."""
    from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file
    from seq2seq_lstm.training.trainer import train

    data = write_pairs(tmp_path, 150)
    sets = [f"data.train={data}", "data.src_lang=en", "data.tgt_lang=es", "data.streaming=true",
            "data.window=40", "data.shuffle_buffer=30", "data.batch_tokens=600", "tokenizer.vocab_size=300",
            "model.emb_dim=16", "model.hidden_size=16", "model.enc_layers=1", "model.dec_layers=1",
            "model.dropout=0.2", "training.num_threads=1", "training.log_every_steps=1",
            "training.val_every_steps=3", "training.progress_bar=false"]  # fmt: skip

    def run(out, *budget, resume=False):
        return train(load_config(None, [*sets, f"training.out_dir={out}", *budget]), resume)

    run(tmp_path / "full", "training.max_steps=12", "training.max_epochs=-1")
    epochs = train_epochs(tmp_path / "full")
    end = sum(1 for e in epochs.values() if e == 0)
    assert 3 < end < 10 and end % 3  # the stop is no step checkpoint's
    assert run(tmp_path / "half", "training.max_steps=-1", "training.max_epochs=1").steps == end
    assert load_checkpoint_file(RunDir(tmp_path / "half").last_ckpt)["global_step"] == end
    run(tmp_path / "half", "training.max_steps=12", "training.max_epochs=-1", resume=True)
    assert train_epochs(tmp_path / "half") == epochs
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "half")
    assert sorted(a) == sorted(b) == list(range(12))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step


def metric_rows(run: Path) -> list[dict[str, str]]:
    import csv

    rows = []
    for version in sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        with open(version / "metrics.csv") as f:
            rows.extend(csv.DictReader(f))
    return rows


def train_losses(run: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["train_loss"]) for r in metric_rows(run) if r.get("train_loss")}


def train_epochs(run: Path) -> dict[int, int]:
    """The epoch each logged training step belongs to."""
    return {int(r["step"]): int(r["epoch"]) for r in metric_rows(run) if r.get("train_loss")}


@pytest.mark.slow
def test_ddp_streaming_resume_gives_the_weights_of_the_uninterrupted_run(tmp_path):
    """Two CPU ranks stream their own shards; 10 steps cross an epoch end (the ranks' batch counts
    differ: the epoch ends for both when the first runs out, here after 5). 10 steps straight == 3 or
    5 steps + resume to 10: both ranks' stream positions came back, a resume from the epoch's last
    batch starts the next epoch, and each rank's dropout continues where it was (no loader drew from
    the RNG in between)."""
    import subprocess
    import sys

    from seq2seq_lstm.checkpoint import RunDir, load_checkpoint_file

    data = write_pairs(tmp_path, 300)
    (tmp_path / "valid").mkdir()
    valid = write_pairs(tmp_path / "valid", 8, seed=5)
    sets = [f"data.train={data}", f"data.valid={valid}", "data.src_lang=en", "data.tgt_lang=es",
            "data.streaming=true", "data.window=40", "data.shuffle_buffer=30", "data.batch_tokens=600",
            "tokenizer.vocab_size=320", "model.emb_dim=16", "model.hidden_size=16", "model.enc_layers=1",
            "model.dec_layers=1", "model.dropout=0.2", "training.num_threads=1",
            "training.progress_bar=false",
            "training.max_epochs=-1", "training.val_every_steps=5", "generation.beam_size=1",
            "training.accelerator=cpu", "training.devices=2", "training.strategy=ddp"]  # fmt: skip
    config = tmp_path / "base.yaml"
    config.write_text("task: translation\n")

    def run(out, steps, *extra):
        cmd = [sys.executable, "-m", "seq2seq_lstm", "train", "--config", str(config), "--out-dir", str(out)]
        cmd += [x for s in [*sets, f"training.max_steps={steps}"] for x in ("--set", s)] + list(extra)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run(tmp_path / "full", 10)
    wa = load_checkpoint_file(RunDir(tmp_path / "full").last_ckpt)["state_dict"]
    for stop in (3, 5):  # inside epoch 0 (no validation there); its last batch
        half = tmp_path / f"half{stop}"
        run(half, stop)
        loops = load_checkpoint_file(RunDir(half).last_ckpt)["loops"]["fit_loop"]["state_dict"]
        states = loops["combined_loader"][0]["ranks"]
        assert len(states) == 2 and all(s["count"] == stop for s in states)  # each rank's own place
        assert all(s["ended"] == (stop == 5) for s in states)
        run(half, 10, "--resume")
        wb = load_checkpoint_file(RunDir(half).last_ckpt)["state_dict"]
        for name in wa:
            torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=0, msg=f"{name}, stop {stop}")
