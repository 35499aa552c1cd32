"""What one request and the whole server may ask for: the bounds that keep `s2s serve` standing.

Every bound is a refusal with a proper status, never a crash or an unbounded wait: a body over
``max_body_bytes`` is 413 before it is read whole; more than ``max_sentences`` texts or
``max_chars`` characters in one request is 413 naming the field; a model whose queue already holds
``queue_sentences`` sentences answers 503 with ``Retry-After``; a request not answered within
``timeout_s`` is 504 and its queued work is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class Limits:
    """Bounds of one server (the ``s2s serve`` options of the same names)."""

    max_body_bytes: int = 1 << 20  # a request body; 1 MiB holds ~1,000 long sentences of JSON
    max_sentences: int = 256  # texts per translation request
    max_chars: int = 100_000  # characters per request, all texts together
    max_beam: int = 16  # beam_size a request may ask for (search memory and time grow with it)
    queue_sentences: int = 2048  # sentences waiting or decoding per model; more is 503
    timeout_s: float = 30.0  # a request's wait for its answer; longer is 504
    batch_wait_s: float = 0.005  # how long a worker waits for more requests to join a batch
    retry_after_s: int = 1  # the Retry-After of a 503

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_sentences", "max_chars", "max_beam", "queue_sentences",
                     "retry_after_s"):  # fmt: skip
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not 0 < self.timeout_s <= 3600:
            raise UserError(f"timeout_s must be in (0, 3600] seconds; got {self.timeout_s}")
        if not 0 <= self.batch_wait_s <= 1:
            raise UserError(f"batch_wait_s must be between 0 and 1 second; got {self.batch_wait_s}")
        if self.queue_sentences < self.max_sentences:
            raise UserError(
                f"queue_sentences ({self.queue_sentences}) must be >= max_sentences ({self.max_sentences}): "
                "a request the queue can never take would always be refused"
            )
