"""Errors of :mod:`vsrkit.checkpoint`; all derive from :class:`~vsrkit.errors.VsrkitError`."""

from __future__ import annotations

from vsrkit.errors import VsrkitError

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
]


class CheckpointError(VsrkitError):
    """Base class of every checkpoint error."""


class CheckpointNotFoundError(CheckpointError):
    """No (valid) checkpoint matches the request."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file is truncated, unreadable or does not match its manifest."""


class CheckpointWriteError(CheckpointError):
    """A save could not be written (disk full, permission denied, read-only folder).

    The temporary file is removed and the previous good checkpoint is untouched.
    """
