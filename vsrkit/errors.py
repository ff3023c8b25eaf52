"""The exceptions every vsrkit error derives from.

The CLI turns a :class:`VsrkitError` into one clear line on stderr and exit code 1; anything
else is a bug and keeps its traceback. Each package keeps its own errors in its ``errors``
module (``vsrkit.checkpoint.errors``, ``vsrkit.adaptive.errors``, ...), all subclasses of
:class:`VsrkitError`, and also of ``ValueError`` where the input at fault is a value.

Example:
    >>> from vsrkit.adaptive import PlateauTracker
    >>> try:
    ...     PlateauTracker().load_state_dict({"version": 99})
    ... except StateError as exc:
    ...     print(exc)
    PlateauTracker state: version 99 is not supported (expected 2, or 1)
"""

from __future__ import annotations

__all__ = ["StateError", "VsrkitError"]


class VsrkitError(Exception):
    """A user-facing error: bad input, a missing file, a full disk. The message says what to do."""


class StateError(VsrkitError, ValueError):
    """A saved state (``load_state_dict``) that a component cannot load: not a mapping, a
    version it does not know, a missing key or a bad value. Nothing is loaded then.

    Every component raises this one type, with one message shape:
    ``"<Component> state: <what is wrong>"``.
    """
