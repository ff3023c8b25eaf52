"""Errors of :mod:`vsrkit.adaptive`; a bad saved state raises :class:`~vsrkit.errors.StateError`."""

from __future__ import annotations

from vsrkit.errors import StateError, VsrkitError

__all__ = ["AdaptiveError", "StateError"]


class AdaptiveError(VsrkitError, ValueError):
    """A bad setting or input given to an adaptive component; the message names the field."""
