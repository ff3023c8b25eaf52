"""Errors of :mod:`vsrkit.monitor`; all derive from :class:`~vsrkit.errors.VsrkitError`."""

from __future__ import annotations

from vsrkit.errors import StateError, VsrkitError

__all__ = [
    "MonitorPortError",
    "MonitorServerError",
    "RunFolderError",
    "StateError",
    "UnknownCommandError",
]


class UnknownCommandError(VsrkitError, ValueError):
    """A command that is not one of :data:`vsrkit.monitor.actions.COMMANDS`."""


class MonitorServerError(VsrkitError):
    """The monitor could not start (port in use, remote address without ``allow_remote``)."""


class MonitorPortError(MonitorServerError, OSError):
    """The address could not be bound (port in use, address not available).

    Also an :class:`OSError`, so ``except OSError`` around :meth:`MonitorServer.start` works.
    """


class RunFolderError(VsrkitError):
    """The run folder does not exist or is not a folder."""
