"""Errors of :mod:`vsrkit.loop`; a bad saved state raises :class:`~vsrkit.errors.StateError`."""

from __future__ import annotations

from vsrkit.errors import StateError, VsrkitError

__all__ = ["LoopError", "StateError"]


class LoopError(VsrkitError):
    """The loop core was set up or called wrongly (a setting, an order of calls, a field
    name); the message says what to change."""
