"""Batching across requests: one decoding thread per model, fed by a bounded queue.

Requests do not decode one by one: a worker takes the job at the head of its queue and every job
queued behind it, lets more join for at most ``Limits.batch_wait_s``, and hands the sentences of
every job that asks for the same search to one ``Translator.translate_full`` call. It waits only for
requests it has reason to expect: the clients its last decoding round answered tend to come back at
once, and so do those that were already queued when that round ended, so it waits while it holds
fewer jobs than the two together (and before its first round, when it knows nothing). A lone client
is therefore never held for the window, and under load a batch leaves as soon as the clients just
answered are back, without waiting out the rest of it.

Counting the queued ones too keeps concurrent clients in one batch: counting only the answered ones,
the requests that arrived during a call formed the next call at once while the answered clients were
still on their way back, so N clients were decoded as two alternating batches of N/2, and a batch of
32 sentences costs about a fifth less decoding time per sentence than two of 16. Those clients need
a few milliseconds each to get their answer and send again (the event loop writes and parses every
request in turn), more than the window, so while they are expected the wait may stretch to
``RETURN_SHARE`` of the last call's decoding time: the thread idles at most that share, for a batch
that decodes faster than the halves would.
That call cuts them into batches under the same token budget and memory bound as `s2s translate`, and
its search is batch-invariant (the encoder packs its sequences, the beams of different sentences never
mix), so every sentence gets the translation it would get alone: batching changes the speed, never
the text. Sampling is not served: a seeded sample depends on the batch it is drawn in.

The queue is bounded in sentences, not requests: a request that would take it past
``Limits.queue_sentences`` is refused at once (:class:`QueueFull`, 503), so memory stays bounded under
any burst. A job is a ``concurrent.futures.Future``: the web side cancels it when its client hangs up
or its time runs out, and the worker skips cancelled jobs without decoding them.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..decoding.options import SearchOptions
from ..errors import UserError
from ..inference.translator import Translation, Translator
from ..suggest.suggester import Suggester, Suggestion
from .limits import Limits

logger = logging.getLogger(__name__)
RETURN_SHARE = 0.2  # the longest wait for expected clients, as a share of the last call's decoding time


class QueueFull(Exception):
    """The model's queue holds too many sentences to take this request now (503, Retry-After)."""


@dataclass(frozen=True)
class TranslateJob:
    """Lines of one request; its future gets one n-best list of Translations per line."""

    lines: list[str]
    prefixes: list[str | None] | None
    options: SearchOptions
    attention: bool
    future: Future = field(default_factory=Future, compare=False)

    @property
    def size(self) -> int:
        return max(1, len(self.lines))


@dataclass(frozen=True)
class SuggestJob:
    """One text being typed; its future gets the top-k :class:`Suggestion` list."""

    text: str
    k: int | None
    source: str | None
    future: Future = field(default_factory=Future, compare=False)
    size: int = 1


class ModelWorker:
    """A served model: its Translator (translation models) and Suggester, and the one thread that
    runs them, so a model is never used by two threads at once."""

    def __init__(
        self,
        translator: Translator | None,
        suggester: Suggester | None,
        limits: Limits,
        name: str = "model",
        threads: int = 0,
    ) -> None:
        self.translator, self.suggester, self.limits, self.threads = translator, suggester, limits, threads
        self._queue: queue.Queue[TranslateJob | SuggestJob | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0  # sentences queued or decoding
        self._last_round = 0  # jobs the last _collect returned (0: none yet)
        self._backlog = 0  # jobs queued when the last round's decoding ended, before its answers
        self._last_decode_s = 0.0  # how long the last round's decoding took
        self.counts = {"jobs": 0, "batches": 0, "skipped": 0}  # answered, decoding calls, cancelled unrun
        self._variants: dict[SearchOptions, Translator] = {}
        self._thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)

    # ---------------------------------------------------------------------------------- web side

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the jobs already queued, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Sentences queued now; jobs answered, decoding calls made and cancelled jobs skipped so far."""
        return {"queued": self._pending, **self.counts}

    def submit(self, job: TranslateJob | SuggestJob) -> Future:
        """Queue ``job`` (:class:`QueueFull` when it does not fit); its future is the answer."""
        with self._lock:
            if self._pending + job.size > self.limits.queue_sentences:
                raise QueueFull(f"the queue holds {self._pending} sentences; try again shortly")
            self._pending += job.size
        job.future.add_done_callback(lambda _: self._release(job.size))  # cancelled ones too
        self._queue.put(job)
        return job.future

    def _release(self, size: int) -> None:
        with self._lock:
            self._pending -= size

    # ------------------------------------------------------------------------------- worker side

    def _run(self) -> None:
        if self.threads:  # torch's thread count is per thread under OpenMP: set it where decoding runs
            import torch

            torch.set_num_threads(self.threads)
        self._warm_up()
        while True:
            jobs, stop = self._collect()
            suggest = [j for j in jobs if isinstance(j, SuggestJob)]
            translate = [j for j in jobs if isinstance(j, TranslateJob)]
            for job in suggest:  # a keystroke is a few small steps: answer it before a long batch
                self._answer(job, lambda j=job: self.suggester.suggest(j.text, j.k, j.source))
            groups: dict[SearchOptions, list[TranslateJob]] = {}
            for job in translate:
                groups.setdefault(job.options, []).append(job)
            began, self._backlog = time.monotonic(), 0
            for options, group in groups.items():
                self._translate(options, group)
            self._last_decode_s = time.monotonic() - began
            if stop:
                return

    def _warm_up(self) -> None:
        """Decode one short sentence before the first request: torch's first call allocates and picks
        its kernels, a cost the first client would otherwise pay."""
        if self.translator is not None:
            try:
                self.translator.translate_full(["Hello."], attention=False)
            except Exception as e:  # a server that cannot decode says so on its requests, not here
                logger.warning("warm-up decoding failed: %s", e)

    def _collect(self) -> tuple[list[TranslateJob | SuggestJob], bool]:
        """The next jobs: the head of the queue, all queued behind it, and what arrives within the
        wait while fewer jobs are held than are expected (:meth:`_expect_more`; at most
        ``queue_sentences`` sentences); ``True`` when the stop mark was met."""
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, size = [first], first.size
        deadline = time.monotonic() + self._wait_s()
        while size < self.limits.queue_sentences:
            try:  # whatever is queued already joins at once
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self._expect_more(len(jobs)):
                    break
                try:
                    job = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if job is None:
                self._last_round = len(jobs)
                return jobs, True
            jobs.append(job)
            size += job.size
        self._last_round = len(jobs)
        return jobs, False

    def _expect_more(self, held: int) -> bool:
        """Whether more requests are worth waiting for: the clients the last round answered and
        those queued when it ended are expected; before any round there is nothing to go by, so the
        window is waited out."""
        return self._last_round == 0 or held < self._last_round + self._backlog

    def _wait_s(self) -> float:
        """How long a batch may wait for expected clients: the window, stretched to
        ``RETURN_SHARE`` of the last call's decoding time (no wait when the window is 0)."""
        window = self.limits.batch_wait_s
        return max(window, RETURN_SHARE * self._last_decode_s) if window > 0 else 0.0

    def _translate(self, options: SearchOptions, jobs: list[TranslateJob]) -> None:
        """One ``translate_full`` over the live jobs of one search; when it fails (a request's beam
        too large for the memory bound, say), each job is retried alone so only its own fails."""
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        self.counts["skipped"] += len(jobs) - len(live)
        if not live:
            return
        try:
            results = self._decode(options, live)
        except Exception as e:
            if len(live) == 1:
                return self._fail(live[0], e)
            for job in live:  # already running: decode each alone, on its own future
                try:
                    job.future.set_result(self._decode(options, [job]))
                except Exception as e:
                    self._fail(job, e)
            return
        start = 0
        for job in live:
            job.future.set_result(results[start : start + len(job.lines)])
            start += len(job.lines)

    def _decode(self, options: SearchOptions, jobs: Sequence[TranslateJob]) -> list[list[Translation]]:
        lines = [line for j in jobs for line in j.lines]
        prefixes = None
        if any(j.prefixes is not None for j in jobs):
            prefixes = [p for j in jobs for p in (j.prefixes or [None] * len(j.lines))]
        attention = any(j.attention for j in jobs)
        self.counts["batches"] += 1
        self.counts["jobs"] += len(jobs)
        results = self.variant(options).translate_full(lines, prefixes, attention=attention)
        # before any answer is out: a lone client sends again the moment it has its answer, and
        # counted as queued it would be waited for a second time
        self._backlog = self._queue.qsize()
        return results

    def variant(self, options: SearchOptions) -> Translator:
        """The Translator with ``options`` as its search: the same models and tokenizer, shared."""
        if options == self.translator.options:
            return self.translator
        if options not in self._variants:
            if len(self._variants) >= 64:  # requests choose the options: keep the cache bounded
                self._variants.clear()
            variant = copy.copy(self.translator)
            variant.options, variant.sampling = options, options.sampling
            self._variants[options] = variant
        return self._variants[options]

    def _answer(self, job: SuggestJob, work) -> None:
        if not job.future.set_running_or_notify_cancel():
            self.counts["skipped"] += 1
            return
        self.counts["jobs"] += 1
        try:
            job.future.set_result(work())
        except Exception as e:
            self._fail(job, e)

    @staticmethod
    def _fail(job: TranslateJob | SuggestJob, error: Exception) -> None:
        if not isinstance(error, UserError):  # a bug, not a bad request: log it in full
            logger.error("decoding failed", exc_info=error)
        job.future.set_exception(error)


__all__ = ["ModelWorker", "QueueFull", "SuggestJob", "Suggestion", "TranslateJob"]
