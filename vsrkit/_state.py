"""The one check every ``load_state_dict`` makes before it loads anything.

A saved state is a mapping with a ``"version"`` key and the keys its component needs; what is
wrong with it becomes a :class:`~vsrkit.errors.StateError` whose message reads
``"<Component> state: <what is wrong>"``.

Example:
    >>> check_state("Thing", {"version": 1, "n": 3}, 1, ("n",))["n"]
    3
    >>> try:
    ...     check_state("Thing", {"version": 1}, 1, ("n", "m"))
    ... except StateError as exc:
    ...     print(exc)
    Thing state: missing key(s) n, m
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from vsrkit.errors import StateError

__all__ = ["StateError", "check_state", "state_values"]


def check_state(
    owner: str,
    state: Any,
    version: int,
    keys: Iterable[str] = (),
    *,
    older: Iterable[int] = (),
) -> Mapping[str, Any]:
    """``state`` when it is a mapping of a known version with every key in ``keys``.

    Args:
        owner: The component's name, the start of every message.
        state: What ``load_state_dict`` was given.
        version: The version this code writes (its ``STATE_VERSION``).
        keys: Keys that must be present.
        older: Older versions the caller still migrates (accepted here).

    Raises:
        StateError: Not a mapping, an unknown version, or missing keys.
    """
    if not isinstance(state, Mapping):
        raise StateError(f"{owner} state: expected a mapping, got {type(state).__name__}")
    known = (version, *older)
    got = state.get("version")
    if isinstance(got, bool) or got not in known:
        also = "".join(f", or {v}" for v in older)
        raise StateError(
            f"{owner} state: version {got!r} is not supported (expected {version}{also})"
            if "version" in state
            else f"{owner} state: no 'version' key (expected {version}{also})"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise StateError(f"{owner} state: missing key(s) {', '.join(missing)}")
    return state


@contextlib.contextmanager
def state_values(owner: str) -> Iterator[None]:
    """Inside the block, a ``ValueError`` about a value of the state (a component's own
    checks) becomes a :class:`StateError` with the ``"<owner> state: "`` message shape.

    Example:
        >>> try:
        ...     with state_values("Thing"):
        ...         raise ValueError("n must be >= 0, got -1")
        ... except StateError as exc:
        ...     print(exc)
        Thing state: n must be >= 0, got -1
    """
    try:
        yield
    except StateError:
        raise
    except ValueError as exc:
        text = str(exc)
        for head in (f"{owner} state: ", f"{owner}.load_state_dict: ", f"{owner}: "):
            if text.startswith(head):
                text = text[len(head) :]
                break
        raise StateError(f"{owner} state: {text}") from exc
