"""The exceptions annzoo raises.

Every error a user can cause derives from :class:`AnnzooError`, itself a
``ValueError``, so ``except ValueError`` keeps working for code that does not
know annzoo. Messages follow one pattern: the argument (or file), what was
expected, what was received, and when possible what to do.
"""

from __future__ import annotations

__all__ = ["AnnzooError", "UnknownNameError", "CheckpointError"]


class AnnzooError(ValueError):
    """Base class of annzoo's user-facing errors."""


class UnknownNameError(AnnzooError, KeyError):
    """A model, dataset, task, optimizer or activation name that is not known."""

    # KeyError quotes its message in ``str()``; keep it a readable sentence.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(AnnzooError):
    """A file in a run directory is missing, unreadable or cannot be written."""
