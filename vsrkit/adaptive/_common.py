"""Shared validation helpers and the error class of :mod:`vsrkit.adaptive`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vsrkit.errors import VsrkitError

__all__ = ["AdaptiveError", "HUGE", "check_number", "check_int", "check_state"]

#: inputs larger than this in magnitude count as non-finite (their squares would overflow)
HUGE = 1e150


class AdaptiveError(VsrkitError, ValueError):
    """Bad setting or bad state given to an adaptive component; the message names the field."""


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


def check_state(owner: str, state: Any, version: int, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """Check a state dict's type, version and keys before anything is loaded from it."""
    if not isinstance(state, Mapping):
        raise AdaptiveError(
            f"{owner}.load_state_dict: expected a mapping, got {type(state).__name__}"
        )
    if state.get("version") != version:
        raise AdaptiveError(
            f"{owner}.load_state_dict: unsupported state version {state.get('version')!r} "
            f"(expected {version})"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise AdaptiveError(f"{owner}.load_state_dict: missing key(s) {', '.join(missing)}")
    return state


def opt_float(owner: str, key: str, value: Any) -> float | None:
    """A state value that is a float or None (JSON null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdaptiveError(
            f"{owner}.load_state_dict: {key} must be a number or null, got {value!r}"
        )
    return float(value)
