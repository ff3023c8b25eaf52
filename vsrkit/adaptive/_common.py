"""Shared validation helpers of :mod:`vsrkit.adaptive`."""

from __future__ import annotations

import math
from typing import Any

from vsrkit.adaptive.errors import AdaptiveError

__all__ = ["AdaptiveError", "HUGE", "check_int", "check_number", "opt_float"]

#: inputs larger than this in magnitude count as non-finite (their squares would overflow)
HUGE = 1e150


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the range, or raise :class:`AdaptiveError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdaptiveError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise AdaptiveError(f"{owner}: {name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise AdaptiveError(
            f"{owner}: {name} must be {'>' if low_open else '>='} {low}, got {value}"
        )
    if high is not None and (value >= high if high_open else value > high):
        raise AdaptiveError(
            f"{owner}: {name} must be {'<' if high_open else '<='} {high}, got {value}"
        )
    return value


def check_int(owner: str, name: str, value: Any, *, low: int = 0) -> int:
    """Return ``value`` as an int >= ``low``, or raise :class:`AdaptiveError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise AdaptiveError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < low:
        raise AdaptiveError(f"{owner}: {name} must be >= {low}, got {value}")
    return int(value)


def opt_float(owner: str, key: str, value: Any) -> float | None:
    """A state value that is a float or None (JSON null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdaptiveError(f"{owner}: {key} must be a number or null, got {value!r}")
    return float(value)
