"""Errors of :mod:`vsrkit.config`; a bad saved state raises :class:`~vsrkit.errors.StateError`."""

from __future__ import annotations

from vsrkit.errors import StateError, VsrkitError

__all__ = ["RuntimeConfigError", "StateError"]


class RuntimeConfigError(VsrkitError):
    """A runtime-config file, snapshot or argument is unusable; the message says why."""
