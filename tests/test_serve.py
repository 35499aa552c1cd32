"""`s2s serve`: the real server process on a free loopback port, spoken to over HTTP.

Servers are started as `python -m seq2seq_lstm serve ...` with a tiny untrained translation run
(test_translate.make_run) and a tiny untrained language model; every wait is bounded, every address
is 127.0.0.1, and each server is stopped with SIGTERM (killed if it does not end). Three servers
are shared by the tests of a module (plain with an API key; tight limits; a long batch window) and
one more is started for the SIGTERM test. The server's /health counts batches and skipped requests,
which lets the tests see batching across requests and cancelled work from outside.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from click.testing import CliRunner
from test_translate import make_run

from seq2seq_lstm.checkpoint import RunDir, export_weights, save_checkpoint_info
from seq2seq_lstm.cli import main
from seq2seq_lstm.config import load_config, save_config
from seq2seq_lstm.data.tokenizer import Tokenizer
from seq2seq_lstm.decoding.options import SearchOptions
from seq2seq_lstm.inference.translator import Translator
from seq2seq_lstm.model.seq2seq import LanguageModel
from seq2seq_lstm.serve.batcher import ModelWorker, SuggestJob, TranslateJob
from seq2seq_lstm.serve.limits import Limits
from seq2seq_lstm.suggest.suggester import Suggester

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests/fixtures/tiny"
KEY = "s3cret-key"
LINES = (TINY / "train.en").read_text(encoding="utf-8").splitlines()[:24]
START_TIMEOUT = 60  # seconds for a server to load and answer /health (2 shared cores, torch import)

# The exchange OpenNMT-py 3.5.1 has with a client (onmt/bin/server.py, translate()): a list of
# {"src", "id"} in; out, a list over n-best ranks, each a list over the inputs, of these four fields
# ("align" and "align_score", lists of strings, only when the server reports alignments).
ONMT_REQUEST = [{"src": "Hello world.", "id": 0}, {"src": "How are you?", "id": 0}]
ONMT_RESPONSE_N_BEST_2 = [
    [{"src": "Hello world.", "tgt": "Hallo Welt.", "n_best": 2, "pred_score": -0.41},
     {"src": "How are you?", "tgt": "Wie geht es dir?", "n_best": 2, "pred_score": -0.72}],
    [{"src": "Hello world.", "tgt": "Hallo, Welt.", "n_best": 2, "pred_score": -1.3},
     {"src": "How are you?", "tgt": "Wie geht's?", "n_best": 2, "pred_score": -1.9}],
]  # fmt: skip


def make_lm_run(out: Path) -> Path:
    """A language-model run as `s2s train` writes it, with random weights (as make_run's)."""
    cfg = load_config(ROOT / "configs/tiny.yaml", ["task=lm", f"training.out_dir={out}",
                                                    "tokenizer.vocab_size=100"])  # fmt: skip
    run = RunDir(out)
    tokenizer = Tokenizer.train((TINY / "train.es").read_text(encoding="utf-8").splitlines(), None,
                                cfg.tokenizer, out_dir=run.tokenizer)  # fmt: skip
    save_config(cfg, run.config)
    torch.manual_seed(0)
    model = LanguageModel(cfg.model, tokenizer.tgt_vocab_size)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    export_weights(model, run, save_checkpoint_info(cfg, tokenizer))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `s2s serve` process and an HTTP client for it."""

    def __init__(self, process: subprocess.Popen, url: str, headers: dict[str, str]) -> None:
        self.process, self.url = process, url
        self.client = httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False)

    def post(self, path: str, body, **kwargs) -> httpx.Response:
        return self.client.post(path, content=json.dumps(body), **kwargs)

    def health(self) -> dict:
        return self.client.get("/health").json()["models"][0]

    def stop(self, timeout: float = 30) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


@contextmanager
def serving(tmp: Path, *models: Path, args: tuple[str, ...] = (), key: str | None = None) -> Iterator[Server]:
    """Start `s2s serve` on a free loopback port; yield it once /health answers; SIGTERM it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "seq2seq_lstm", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--threads", "1", *(a for m in models for a in ("--checkpoint", str(m))), *args]  # fmt: skip
    headers = {}
    if key is not None:
        (tmp / "key").write_text(key + "\n")
        cmd += ["--api-key-file", str(tmp / "key")]
        headers = {"Authorization": f"Bearer {key}"}
    log = open(tmp / f"server-{port}.log", "w+b")  # noqa: SIM115 (closed below)
    env = {**os.environ, "NO_PROXY": "*"}
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(process, f"http://127.0.0.1:{port}", headers)
    try:
        _wait_ready(server, log)
        yield server
    finally:
        if process.poll() is None:
            server.stop()
        log.close()


def _wait_ready(server: Server, log) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log.seek(0)
            pytest.fail(f"the server ended: {log.read().decode()[-2000:]}")
        try:
            if server.client.get("/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("the server did not answer /health in time")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    return {"mt": make_run(root / "mt"), "lm": make_lm_run(root / "lm"), "root": root}


@pytest.fixture(scope="module")
def server(runs) -> Iterator[Server]:
    """Both models (0: translation, 1: language model), an API key, a 50 ms batch window."""
    with serving(runs["root"], runs["mt"], runs["lm"], args=("--batch-wait-ms", "50"), key=KEY) as s:
        yield s


@pytest.fixture(scope="module")
def tight(runs) -> Iterator[Server]:
    """Small limits, and a batch window (1 s) longer than the timeout (0.5 s): every translation
    request waits, so a second one meets a full queue and the first one times out."""
    args = ("--batch-wait-ms", "1000", "--queue-sentences", "4", "--max-sentences", "4", "--max-chars", "200",
            "--max-body-bytes", "4096", "--timeout", "0.5")  # fmt: skip
    with serving(runs["root"], runs["mt"], args=args) as s:
        yield s


@pytest.fixture(scope="module")
def translator(runs) -> Translator:
    return Translator.from_checkpoint(runs["mt"])


# ------------------------------------------------------------------------------------ OpenNMT-py API


def shape(value):
    """The JSON shape of ``value``: types of leaves, keys of objects, lengths of lists."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def test_opennmt_translate_answers_in_the_recorded_exchange_shape(runs, tmp_path):
    with serving(tmp_path, runs["mt"], args=("--beam-size", "3", "--n-best", "2")) as s:
        response = s.post("/translator/translate", ONMT_REQUEST)
        models = s.client.get("/translator/models").json()
        health = s.client.get("/health").json()
    assert response.status_code == 200, response.text
    assert shape(response.json()) == shape(ONMT_RESPONSE_N_BEST_2)
    best = Translator.from_checkpoint(runs["mt"], beam_size=3, n_best=2).translate_full(
        [r["src"] for r in ONMT_REQUEST], attention=False
    )
    for k in range(2):
        assert [o["tgt"] for o in response.json()[k]] == [hyps[k].text for hyps in best]
        assert [o["pred_score"] for o in response.json()[k]] == pytest.approx(
            [h[k].score for h in best], rel=1e-5
        )
    assert [(m["model_id"], m["models"], m["loaded"]) for m in models] == [(0, [str(runs["mt"])], True)]
    assert health["status"] == "ok"


def test_opennmt_translate_equals_translator_and_reports_alignments(server, translator):
    response = server.post("/translator/translate", [{"src": line, "id": 0} for line in LINES[:5]])
    assert response.status_code == 200, response.text
    (rank,) = response.json()  # the run's n_best is 1
    assert [o["tgt"] for o in rank] == translator.translate(LINES[:5])
    assert [o["src"] for o in rank] == LINES[:5]
    assert all("align" not in o for o in rank)  # not asked for (--report-align)


def test_opennmt_alignments_with_report_align(runs, tmp_path, translator):
    with serving(tmp_path, runs["mt"], args=("--report-align",)) as s:
        response = s.post("/translator/translate", [{"src": line, "id": 0} for line in LINES[:3]])
    assert response.status_code == 200, response.text
    best = [hyps[0] for hyps in translator.translate_full(LINES[:3])]
    for out, h in zip(response.json()[0], best, strict=True):
        pairs = sorted((s, t) for t, s in enumerate(h.alignment))  # Pharaoh src-tgt, by source then target
        assert out["align"] == [" ".join(f"{s}-{t}" for s, t in pairs)]
        scores = [float(x.split("-")[1]) for x in out["align_score"][0].split()]
        assert len(scores) == len(h.tokens) and all(0 < x <= 1 for x in scores)


def test_opennmt_unknown_model_and_mixed_ids(server):
    unknown = server.post("/translator/translate", [{"src": "Hi.", "id": 7}])
    assert (unknown.status_code, unknown.json()) == (
        404, {"status": "error", "error": "No such model '7'", "field": "[0].id"})  # fmt: skip
    mixed = server.post("/translator/translate", [{"src": "Hi.", "id": 0}, {"src": "Yo.", "id": 1}])
    assert (mixed.status_code, mixed.json()["field"]) == (422, "[1].id")
    lm = server.post("/translator/translate", [{"src": "Hi.", "id": 1}])
    assert lm.status_code == 422 and "language model" in lm.json()["error"]


# ---------------------------------------------------------------------------------------- native API


def test_native_translate_n_best_prefix_and_alignments(server, runs):
    body = {"text": LINES[:3], "beam_size": 3, "n_best": 2, "alignments": True, "prefix": "El"}
    response = server.post("/v1/translate", body)
    assert response.status_code == 200, response.text
    out = response.json()
    expected = Translator.from_checkpoint(runs["mt"], beam_size=3, n_best=2).translate_full(
        LINES[:3], ["El"] * 3
    )
    assert out["translations"] == [[h.text for h in hyps] for hyps in expected]
    assert all(t.startswith("El") for hyps in out["translations"] for t in hyps)
    assert out["alignments"] == [[h.alignment for h in hyps] for hyps in expected]
    assert [len(s) for s in out["scores"]] == [2, 2, 2]


def test_suggest_completes_a_half_typed_word(server, runs):
    response = server.post("/v1/suggest", {"text": "el li", "k": 3})
    assert response.status_code == 200, response.text
    out = response.json()
    expected = Suggester.from_checkpoint(runs["lm"]).suggest("el li", 3)
    assert out["model"] == 1  # the language model, not the translation model listed first
    assert [w["word"] for w in out["suggestions"]] == [s.word for s in expected]
    assert [w["prob"] for w in out["suggestions"]] == pytest.approx([s.prob for s in expected], rel=1e-4)
    mt = server.post("/v1/suggest", {"text": "el", "model": 0})
    assert (mt.status_code, mt.json()["field"]) == (422, "source")
    assert server.post("/v1/suggest", {"text": "el", "model": 0, "source": "Hello."}).status_code == 200


def test_openapi_schema_lists_both_apis(server):
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/translator/translate", "/translator/models", "/health", "/v1/translate", "/v1/suggest"} <= set(
        paths
    )


# ------------------------------------------------------------------------------ batching across requests


def test_concurrent_requests_are_batched_and_equal_single_ones(server, translator):
    requests = [LINES[i : i + 3] for i in range(0, 24, 3)]  # 8 requests of 3 lines
    single = [server.post("/v1/translate", {"text": r}).json() for r in requests]
    before = server.health()
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda r: server.post("/v1/translate", {"text": r}).json(), requests))
    after = server.health()
    assert [t["translations"] for t in together] == [s["translations"] for s in single]
    assert [[h[0] for h in t["translations"]] for t in together] == [
        translator.translate(r) for r in requests
    ]
    for t, s in zip(together, single, strict=True):
        assert sum(t["scores"], []) == pytest.approx(sum(s["scores"], []), rel=3e-6)
    assert after["jobs"] - before["jobs"] == len(requests)
    assert after["batches"] - before["batches"] < len(requests)  # some requests shared a decoding call


# ---------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/translate", b'{"text": ["a"', 400, "body"),
        ("/v1/translate", b"", 422, "body"),
        ("/v1/translate", {"text": []}, 422, "text"),
        ("/v1/translate", {"text": "not a list"}, 422, "text"),
        ("/v1/translate", {"text": ["ok", 3]}, 422, "text[1]"),
        ("/v1/translate", {"text": ["a"], "beam_size": "3"}, 422, "beam_size"),
        ("/v1/translate", {"text": ["a"], "beam_size": 0}, 422, "beam_size"),
        ("/v1/translate", {"text": ["a"], "beam_size": 99}, 422, "beam_size"),
        ("/v1/translate", {"text": ["a"], "beam_size": 2, "n_best": 3}, 422, "n_best"),
        ("/v1/translate", {"text": ["a"], "beams": 2}, 422, "beams"),
        ("/v1/translate", {"text": ["a", "b"], "prefix": ["x"]}, 422, "prefix"),
        ("/v1/translate", {"text": ["a"], "model": 9}, 404, "model"),
        ("/v1/suggest", {"k": 3}, 422, "text"),
        ("/v1/suggest", {"text": "a", "k": 0}, 422, "k"),
        ("/translator/translate", [], 422, "body"),
        ("/translator/translate", {"src": "a"}, 422, "body"),
        ("/translator/translate", [{"id": 0}], 422, "[0].src"),
        ("/translator/translate", [{"src": None}], 422, "[0].src"),
    ],
)
def test_bad_bodies_are_4xx_naming_the_field(server, path, body, status, field):
    content = body if isinstance(body, bytes) else json.dumps(body)
    response = server.client.post(path, content=content)
    assert response.status_code == status, response.text
    assert response.json()["status"] == "error" and response.json()["field"] == field
    assert server.client.get("/health").status_code == 200


def test_api_key_is_required_except_for_health(server):
    bare = httpx.Client(base_url=server.url, timeout=10, trust_env=False)
    with bare:
        assert bare.post("/v1/translate", json={"text": ["a"]}).status_code == 401
        wrong = bare.post("/v1/translate", json={"text": ["a"]}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["status"] == "error"
        assert bare.get("/translator/models").status_code == 401
        assert bare.get("/health").status_code == 200
        assert bare.post("/v1/translate", json={"text": ["a"]}, headers={"X-API-Key": KEY}).status_code == 200


def test_limits_on_body_sentences_and_characters(tight):
    big = tight.client.post("/v1/translate", content=json.dumps({"text": ["x" * 5000]}))
    assert (big.status_code, big.json()["field"]) == (413, "body")
    chunked = tight.client.post("/v1/translate", content=iter([b'{"text": ["', b"y" * 5000, b'"]}']))
    assert chunked.status_code == 413  # no Content-Length: refused as the bytes pass the limit
    many = tight.post("/v1/translate", {"text": ["a"] * 5})
    assert (many.status_code, many.json()["field"]) == (413, "text")
    long = tight.post("/translator/translate", [{"src": "z" * 201}])
    assert (long.status_code, long.json()["field"]) == (413, "src")


def test_full_queue_is_503_with_retry_after_and_late_answers_are_504(tight):
    first: dict = {}

    def send_first() -> None:
        first["response"] = tight.post("/v1/translate", {"text": LINES[:3]})

    thread = threading.Thread(target=send_first)
    thread.start()
    deadline = time.monotonic() + 5
    while tight.health()["queued"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    second = tight.post("/v1/translate", {"text": LINES[3:5]})
    thread.join(10)
    assert (second.status_code, second.headers.get("retry-after")) == (503, "1")
    assert first["response"].status_code == 504  # 0.5 s timeout, 1 s batch window
    deadline = time.monotonic() + 5  # the worker meets the cancelled job when its batch window ends
    while tight.health()["skipped"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = tight.health()
    assert (stats["queued"], stats["skipped"], stats["batches"]) == (0, 1, 0)  # never decoded


def test_a_client_that_hangs_up_cancels_its_queued_work(runs, tmp_path):
    with serving(tmp_path, runs["mt"], args=("--batch-wait-ms", "1000")) as s:
        body = json.dumps({"text": LINES[:3]}).encode()
        with socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=5) as raw:
            raw.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            deadline = time.monotonic() + 5
            while s.health()["queued"] < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        deadline = time.monotonic() + 5
        while s.health()["skipped"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = s.health()
        assert (stats["queued"], stats["skipped"], stats["batches"]) == (0, 1, 0)
        assert s.post("/v1/translate", {"text": ["Hello."]}).status_code == 200  # still serving


def test_waiting_for_a_hang_up_reads_the_next_message_once_instead_of_polling():
    import asyncio

    from seq2seq_lstm.serve.app import _hung_up

    class WaitingRequest:  # the ASGI server's side once the body is read: nothing until the hang-up
        def __init__(self) -> None:
            self.reads, self.closed = 0, asyncio.Event()

        async def receive(self) -> dict:
            self.reads += 1
            await self.closed.wait()
            return {"type": "http.disconnect"}

    async def scenario() -> tuple[bool, int]:
        request = WaitingRequest()
        gone = asyncio.ensure_future(_hung_up(request))
        await asyncio.sleep(0.3)  # a poll every 50 ms would have read six times by now
        waiting = not gone.done()
        request.closed.set()
        await asyncio.wait_for(gone, 5)
        return waiting, request.reads

    assert asyncio.run(scenario()) == (True, 1)


def test_the_load_benchmarks_clients_get_the_answers_of_translate(runs, tmp_path, translator):
    from benchmark_module import load_benchmark, unload_benchmark

    serve_load = load_benchmark("serve_load")
    unload_benchmark("serve_load")
    with serving(tmp_path, runs["mt"]) as s:
        result = serve_load.closed_loop(s.url, LINES[:4], clients=3, seconds=60, max_requests=9)
    assert result["ok"] == 9 and result["errors"] == {}
    assert result["answers"] == dict(zip(LINES[:4], translator.translate(LINES[:4]), strict=True))


def test_sigterm_finishes_the_request_in_flight_then_exits(runs, tmp_path, translator):
    with serving(tmp_path, runs["mt"], args=("--batch-wait-ms", "1000")) as s:
        answer: dict = {}
        thread = threading.Thread(
            target=lambda: answer.update(r=s.post("/v1/translate", {"text": LINES[:4]}))
        )
        thread.start()
        deadline = time.monotonic() + 5
        while s.health()["queued"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        s.process.send_signal(signal.SIGTERM)  # while the request waits in its batch window
        thread.join(30)
        # uvicorn ends by re-raising the signal once drained: the status a supervisor expects of SIGTERM
        assert s.process.wait(30) == -signal.SIGTERM
    assert answer["r"].status_code == 200
    assert [h[0] for h in answer["r"].json()["translations"]] == translator.translate(LINES[:4])


# ------------------------------------------------------------------------ the batcher, without a server


class NoWaitQueue(queue.Queue):
    """A queue that records every timed wait asked of it and answers Empty at once instead of
    sleeping, so the batch window can be checked without a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def get(self, block: bool = True, timeout: float | None = None):
        if block and timeout is not None:
            self.waits.append(timeout)
            return super().get(block=False)  # queue.Empty when nothing is there
        return super().get(block, timeout)


def collect(worker: ModelWorker, jobs: int) -> int:
    """Queue ``jobs`` jobs and run one collection; the number of jobs it returned."""
    for _ in range(jobs):
        worker.submit(SuggestJob("a", 1, None))
    collected, stop = worker._collect()
    assert not stop
    return len(collected)


def test_a_lone_request_is_not_held_for_the_batch_window():
    worker = ModelWorker(None, None, Limits(batch_wait_s=1.0))
    worker._queue = fake = NoWaitQueue()
    assert collect(worker, 1) == 1
    assert len(fake.waits) == 1 and 0 < fake.waits[0] <= 1.0  # no round yet: the window is waited
    assert collect(worker, 1) == 1
    assert collect(worker, 1) == 1
    assert len(fake.waits) == 1  # the last round answered one client: the next lone one goes at once
    assert collect(worker, 3) == 3  # everything queued joins without a wait
    assert len(fake.waits) == 1
    assert collect(worker, 1) == 1  # fewer than the 3 just answered: wait for the others to come back
    assert len(fake.waits) == 2
    assert collect(worker, 2) == 2  # the last round had one
    assert len(fake.waits) == 2


class RecordingTranslator:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def translate_full(self, lines, prefixes=None, attention=True):
        self.calls.append(list(lines))
        return [[] for _ in lines]


def test_a_batch_waits_for_the_clients_answered_and_those_queued_at_the_end_of_the_last_call():
    worker = ModelWorker(None, None, Limits(batch_wait_s=0.005))
    worker._queue = fake = NoWaitQueue()
    worker._last_round, worker._backlog, worker._last_decode_s = 2, 2, 1.0  # 2 answered, 2 queued then
    assert collect(worker, 2) == 2
    assert fake.waits == [pytest.approx(0.2, abs=0.01)]  # expects 4: waits a fifth of the last call
    worker._last_round, worker._backlog, worker._last_decode_s = 2, 0, 0.01
    assert collect(worker, 1) == 1
    assert fake.waits[1] == pytest.approx(0.005, abs=0.001)  # a short call: the window, no longer
    worker = ModelWorker(None, None, Limits(batch_wait_s=0))
    worker._queue = fake = NoWaitQueue()
    worker._last_round, worker._backlog, worker._last_decode_s = 2, 2, 1.0
    assert collect(worker, 1) == 1 and fake.waits == []  # no window asked for: none stretched


class SlowTranslator(RecordingTranslator):
    """Decodes the line "first" slowly, and while it does, two more clients send a request."""

    options = SearchOptions()

    def __init__(self) -> None:
        super().__init__()
        self.worker: ModelWorker | None = None
        self.futures: list = []

    def translate_full(self, lines, prefixes=None, attention=True):
        if list(lines) == ["first"]:
            for line in ("second", "third"):
                self.futures.append(self.worker.submit(job(line)))
            time.sleep(0.5)
        return super().translate_full(lines, prefixes, attention)


def job(line: str) -> TranslateJob:
    return TranslateJob([line], None, SearchOptions(), attention=False)


def test_clients_queued_during_a_call_wait_for_the_ones_it_answered():
    # Three closed-loop clients: one is answered while two wait in the queue; it sends again at once.
    # Counting only the answered client, the two queued ones left without it and the clients were
    # decoded in alternating batches from then on; counting both, the three are decoded together.
    translator = SlowTranslator()
    worker = translator.worker = ModelWorker(translator, None, Limits(batch_wait_s=0.005))
    worker.start()
    try:
        worker.submit(job("first")).result(timeout=30)
        translator.futures.append(worker.submit(job("fourth")))  # the answered client is back
        for future in translator.futures:
            future.result(timeout=30)
    finally:
        worker.stop(timeout=30)
    assert translator.calls[1:] == [["first"], ["second", "third", "fourth"]]


def test_a_lone_client_that_sends_again_the_moment_it_is_answered_is_not_held():
    translator = SlowTranslator()
    worker = translator.worker = ModelWorker(translator, None, Limits(batch_wait_s=0.005))
    worker._queue = fake = NoWaitQueue()
    first, again = job("one"), []
    # the answer's callback runs in the worker's thread: the next request is queued before the
    # worker is done with the round, as a fast client's can be
    first.future.add_done_callback(lambda _: again.append(worker.submit(job("two"))))
    worker.start()
    try:
        worker.submit(first).result(timeout=30)
        again[0].result(timeout=30)
    finally:
        worker.stop(timeout=30)
    assert translator.calls[1:] == [["one"], ["two"]]
    assert len(fake.waits) == 1  # the first request's window (no round to go by), then none


def test_the_worker_decodes_once_before_its_first_request():
    translator = RecordingTranslator()
    worker = ModelWorker(translator, None, Limits())
    worker.start()
    worker.stop(timeout=30)
    assert translator.calls == [["Hello."]]
    assert worker.stats() == {"queued": 0, "jobs": 0, "batches": 0, "skipped": 0}  # not a request


# ------------------------------------------------------------------------------------ the command


def test_a_taken_port_is_one_error_line(runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--checkpoint", str(runs["mt"]), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
