"""Deprecated: ``StopSignal`` moved to :mod:`vsrkit.loop.signals` (import it from
``vsrkit.loop``); this path works for one more release, with a ``DeprecationWarning``."""

from __future__ import annotations

from vsrkit._deprecated import moved

__getattr__ = moved(__name__, {"StopSignal": "vsrkit.loop.signals"})
