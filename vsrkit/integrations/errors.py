"""Errors of :mod:`vsrkit.integrations`; all derive from :class:`~vsrkit.errors.VsrkitError`."""

from __future__ import annotations

from vsrkit.loop.errors import LoopError

__all__ = ["IntegrationError"]


class IntegrationError(LoopError):
    """A framework adapter was set up or called wrongly; the message says what to change.

    A :class:`~vsrkit.loop.LoopError` too: the loop core's own complaints reach an adapter's
    user as that type.
    """
