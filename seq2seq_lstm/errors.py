"""Errors caused by user input.

Library code raises :class:`UserError` for anything a user can fix (a bad path, a bad option, a
malformed file). The CLI turns it into one line on stderr and a non-zero exit, without a traceback.
Internal invariants use ``assert`` instead.
"""


class UserError(ValueError):
    """Bad user input: the message says what was wrong, where, and what to do."""


class ConfigError(UserError):
    """A configuration file or ``--set`` override is invalid."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, unsafe, or does not match the config or tokenizer."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects that could run code: refused, never worked around."""
