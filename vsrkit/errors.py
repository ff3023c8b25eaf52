"""The exception every vsrkit error derives from.

The CLI turns a :class:`VsrkitError` into one clear line on stderr and exit code 1; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["VsrkitError"]


class VsrkitError(Exception):
    """A user-facing error: bad input, a missing file, a full disk. The message says what to do."""
