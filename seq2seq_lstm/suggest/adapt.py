"""Adapting suggestions to their user inside a session: the interface every method implements.

An *adapter* learns from the text its user commits and changes what a
:class:`~seq2seq_lstm.suggest.suggester.SuggestSession` suggests, on the device, with no server. Two
kinds of change exist, and the session's caches depend on which one a method makes:

- the **word distribution** only (the cache model, :mod:`.cache`): the model's steps, and the words
  the beam finds for a text, stay valid; :meth:`Adapter.rescore` turns the beam's word probabilities
  into adapted ones (and may add words the beam missed) every time a keystroke is answered, which costs
  no model step. Such an adapter has ``changes_weights = False``.
- the **model's weights** (dynamic evaluation, :mod:`.dynamic`): :meth:`Adapter.model` returns the
  adapted model the session steps with, and ``version`` grows whenever its weights change; a session
  that sees a new ``version`` drops every cached step and answer (they were computed with the old
  weights) and starts again from BOS. Such an adapter has ``changes_weights = True``, and its
  sessions never share the suggester's answers for an empty sentence (computed with the base model).

What is committed: a word counts as typed for good once a boundary follows it (a space or punctuation,
as a keyboard commits it), and the rest of a text when its session is finished
(:meth:`SuggestSession.finish`). The session tracks what it has committed (:class:`CommitTracker`)
and hands the adapter each new stretch of text once, in order: ``commit(text, start=..., end=...)``.
``start`` says the stretch begins a new text (nothing the user typed precedes it: a new sentence at
BOS); ``end`` says the text is finished (a method that learns from whole sentences can learn now).
Stretches of one text concatenate to exactly what the user typed (up to its last committed word).

An adapter belongs to one user and outlives sessions: one adapter serves every session of a
document (``Suggester.session(adapter=...)``), and :meth:`Adapter.reset` forgets everything (between
documents in ``s2s suggest-eval --documents``, or ``--forget``). Methods that persist (user models,
:mod:`.user_model`) give their state as a JSON-able dict (:meth:`Adapter.state`,
:meth:`Adapter.load_state`).

Methods are looked up by name in :data:`ADAPTERS` (``s2s suggest-eval --adapt NAME``); each module
defines a class with ``from_suggester(suggester, options)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import UserError
from .words import Typed, is_word_char

if TYPE_CHECKING:  # --help lists ADAPT_CHOICES without importing torch
    from torch import nn


@runtime_checkable
class Adapter(Protocol):
    """What a session asks of an adaptation method (see the module docstring)."""

    name: str  # its name in ADAPTERS: "cache", "dynamic"
    changes_weights: bool  # True: model() changes as text is committed (sessions re-step on a new version)
    version: int  # grows each time the weights model() returns change; constant when changes_weights is False

    def reset(self) -> None:
        """Forget everything learned (a new document, a new user): back to the unadapted model."""

    def commit(self, text: str, *, start: bool, end: bool) -> None:
        """Learn from a stretch of committed text (words and the spaces/punctuation between them).

        ``start``: the stretch begins a new text (a sentence start, no word before it);
        ``end``: the text is finished, nothing more will follow it.
        """

    def rescore(self, typed: Typed, words: dict[str, float]) -> dict[str, float]:
        """Adapted probabilities of the next word after ``typed.context`` that start with
        ``typed.partial``, from the model's ``words`` (word -> P(word | context), what the beam found,
        not normalized over the prefix). May add words the beam missed (they must start with
        ``typed.partial``) and must not change ``words`` itself. The identity for methods that only
        change weights."""

    def model(self, base: nn.Module) -> nn.Module:
        """The model sessions step with: ``base`` (the suggester's) unless the method changes weights."""

    def state(self) -> dict:
        """What was learned, as plain JSON values (for a user model file)."""

    def load_state(self, state: dict) -> None:
        """Take back what :meth:`state` gave; raise ValueError naming what is wrong with ``state``."""


# name -> "module:class" under seq2seq_lstm.suggest (imported only when chosen: dynamic evaluation
# needs autograd and optimizers that the cache never does)
ADAPTERS: dict[str, str] = {
    "cache": "cache:CacheAdapter",
    "dynamic": "dynamic:DynamicAdapter",
}
ADAPT_CHOICES = ("none", *ADAPTERS)  # what --adapt accepts


def build_adapter(name: str, suggester, options: Mapping[str, float] | None = None) -> Adapter | None:
    """The adapter called ``name`` for ``suggester`` (None for "none"), with method ``options``
    (e.g. ``{"weight": 0.2}`` for the cache); an unknown name or option is a UserError."""
    if name == "none":
        return None
    if name not in ADAPTERS:
        raise UserError(f"--adapt {name} is unknown; choose from {', '.join(ADAPT_CHOICES)}")
    module, cls = ADAPTERS[name].split(":")
    adapter_cls = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    return adapter_cls.from_suggester(suggester, dict(options or {}))


def finished_length(text: str) -> int:
    """Length of the part of ``text`` whose words are finished: all but a word still being typed."""
    end = len(text)
    while end > 0 and is_word_char(text[end - 1]):
        end -= 1
    return end


class CommitTracker:
    """What a session has committed of the text being typed, so that each stretch is committed once.

    The text usually grows keystroke by keystroke; when it does not extend what was committed (an
    edit, or another text), the stretch after the common part, from the start of the word it cuts,
    is committed as a continuation: a deleted word stays learned, which an edit rarely makes wrong.
    """

    def __init__(self) -> None:
        self.committed = ""  # the text up to its last committed word boundary
        self.started = False  # whether anything of this text was committed yet

    def stretch(self, text: str, final: bool = False) -> tuple[str, bool]:
        """The new stretch of ``text`` to commit (``final``: the whole rest) and whether it starts the
        text; updates what was committed."""
        done = text if final else text[: finished_length(text)]
        if done.startswith(self.committed):
            new = done[len(self.committed) :]
        else:
            common = 0
            while common < min(len(done), len(self.committed)) and done[common] == self.committed[common]:
                common += 1
            common = finished_length(done[:common])
            new = done[common:]
        start = not self.started
        self.committed = done
        if new:
            self.started = True
        return new, start
