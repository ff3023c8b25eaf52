"""Errors of :mod:`vsrkit.checkpoint`; all derive from :class:`~vsrkit.errors.VsrkitError`."""

from __future__ import annotations

import os

from vsrkit.errors import StateError, VsrkitError

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointMirrorError",
    "CheckpointNotFoundError",
    "CheckpointValueError",
    "CheckpointWriteError",
    "StateError",
]


class CheckpointError(VsrkitError):
    """Base class of every checkpoint error."""


class CheckpointValueError(CheckpointError, ValueError):
    """A bad value given to the checkpoint code (a count, a mode, a step, a name, a metric,
    a manifest that is not one); the message names it."""


class CheckpointNotFoundError(CheckpointError):
    """No (valid) checkpoint matches the request."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file is truncated, unreadable or does not match its manifest."""


class CheckpointWriteError(CheckpointError):
    """A save could not be written (disk full, permission denied, read-only folder).

    The temporary file is removed and the previous good checkpoint is untouched.
    """


class CheckpointMirrorError(CheckpointError):
    """A copy to the mirror folder failed; the primary checkpoint is intact.

    Never raised by ``save``: the manager keeps these in ``mirror_errors`` (and raises one
    from ``wait()``/``close()`` only with ``mirror_strict=True``).

    Attributes:
        filename: The checkpoint file name, ``None`` when the failure concerns several.
        directory: The mirror folder, ``None`` if unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.directory = directory
