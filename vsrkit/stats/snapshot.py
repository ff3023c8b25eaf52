"""MetricsSnapshot: the latest value of every field, with the step and time it was measured.

A missing value is absent, never ``0``: :meth:`MetricsSnapshot.update` rejects ``None``, so a
field either holds a real measurement (with its step) or is not there at all.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from vsrkit._state import check_state, state_values
from vsrkit.stats._json import to_json_value
from vsrkit.stats.errors import StatisticsValueError

__all__ = ["Measurement", "MetricsSnapshot"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class Measurement(NamedTuple):
    """One measured value.

    Attributes:
        value: The value as given (a float, int, bool, str or a mapping such as a layer map).
        step: Training step at which it was measured.
        time: Unix time (seconds) at which it was recorded.

    Example:
        >>> Measurement(0.0156, 100, 1707213600.0).step
        100
    """

    value: Any
    step: int
    time: float


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise StatisticsValueError(f"step must be an int >= 0, got {step!r}")
    return step


class MetricsSnapshot:
    """Thread-safe store of the latest measurement of every field.

    The training loop writes it; the monitor thread, the terminal view and the
    :class:`~vsrkit.stats.DeferredStatsWriter` read it. Every method takes one internal lock
    for a few microseconds and may be called from any thread. ``revision`` grows by one with
    every :meth:`update`, so a reader can tell cheaply whether anything changed.

    Example:
        >>> snap = MetricsSnapshot()
        >>> snap.update(100, {"l1_loss_value": 0.0156}, lr_phase_name="cosine")
        >>> snap.get("l1_loss_value").step
        100
        >>> snap.get("ms_loss_value") is None
        True
        >>> snap.values()["lr_phase_name"]
        'cosine'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Measurement] = {}
        self._revision = 0

    @property
    def revision(self) -> int:
        """Number of updates so far (monotonic; starts at 0)."""
        return self._revision

    def update(self, step: int, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Record each value as measured at ``step`` (now).

        Args:
            step: Training step of the measurement (from the caller).
            values: Field name -> value.
            **kwargs: More field name -> value pairs.

        Raises:
            ValueError: If ``step`` is not an int >= 0, a name is not a non-empty string, or a
                value is ``None`` (leave a field out when it was not measured).
        """
        if type(step) is not int or step < 0:
            _check_step(step)
        items: Mapping[str, Any]
        if kwargs:
            items = {**values, **kwargs} if values else kwargs
        else:
            items = values or {}
        if None in items.values():
            name = next(n for n, v in items.items() if v is None)
            raise StatisticsValueError(
                f"MetricsSnapshot.update: field {name!r} is None at step {step}; "
                "leave a field out when it was not measured"
            )
        for name in items:
            if type(name) is not str or not name:
                raise StatisticsValueError(
                    f"MetricsSnapshot.update: field names must be strings: {name!r}"
                )
        now = time.time()
        new = tuple.__new__
        with self._lock:
            data = self._data
            for name, value in items.items():
                data[name] = new(Measurement, (value, step, now))
            self._revision += 1

    def get(self, name: str) -> Measurement | None:
        """The latest measurement of ``name``, or ``None`` if it was never measured."""
        with self._lock:
            return self._data.get(name)

    def measurements(self, names: Iterable[str] | None = None) -> dict[str, Measurement]:
        """Latest measurements of ``names`` (all fields if ``None``); unmeasured ones left out."""
        with self._lock:
            if names is None:
                return dict(self._data)
            data = self._data
            return {n: data[n] for n in names if n in data}

    def steps(self, names: Iterable[str]) -> dict[str, int | None]:
        """Step of the latest measurement of each name (``None`` if never measured)."""
        with self._lock:
            data = self._data
            out: dict[str, int | None] = {}
            for n in names:
                m = data.get(n)
                out[n] = None if m is None else m.step
            return out

    def values(self) -> dict[str, Any]:
        """Field name -> latest value."""
        with self._lock:
            return {n: m.value for n, m in self._data.items()}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe copy for the status API.

        Returns:
            ``{"revision": int, "fields": {name: {"value", "step", "time"}}}``. A value JSON
            cannot hold (NaN, infinity, an unknown object) becomes ``null`` with a ``"note"``
            that says what it was.
        """
        with self._lock:
            revision = self._revision
            items = list(self._data.items())
        fields: dict[str, Any] = {}
        for name, m in items:
            entry: dict[str, Any] = {"value": None, "step": m.step, "time": m.time}
            try:
                entry["value"] = to_json_value(m.value, name)
            except (TypeError, ValueError) as exc:
                entry["note"] = str(exc)
            fields[name] = entry
        return {"revision": revision, "fields": fields}

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._data

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: every measurement JSON can hold (others are logged and left out)."""
        with self._lock:
            items = list(self._data.items())
            revision = self._revision
        fields: dict[str, Any] = {}
        for name, m in items:
            try:
                value = to_json_value(m.value, name)
            except (TypeError, ValueError) as exc:
                logger.warning("MetricsSnapshot.state_dict leaves out %s", exc)
                continue
            fields[name] = {"value": value, "step": m.step, "time": m.time}
        return {"version": STATE_VERSION, "revision": revision, "fields": fields}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore measurements saved by :meth:`state_dict` (replaces the current ones).

        Raises:
            StateError: If the state has an unknown version or a malformed entry (the current
                measurements are kept).
        """
        check_state("MetricsSnapshot", state, STATE_VERSION, ("fields",))
        with state_values("MetricsSnapshot"):
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        fields = state.get("fields")
        if not isinstance(fields, Mapping):
            raise StatisticsValueError("MetricsSnapshot state: 'fields' must be a mapping")
        restored: dict[str, Measurement] = {}
        for name, entry in fields.items():
            if not isinstance(entry, Mapping) or entry.get("value") is None:
                raise StatisticsValueError(
                    f"MetricsSnapshot state: field {name!r} needs a non-null 'value'"
                )
            t = entry.get("time")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
                raise StatisticsValueError(
                    f"MetricsSnapshot state: field {name!r} 'time' must be a number"
                )
            try:
                step = _check_step(entry.get("step"))
            except ValueError as exc:
                raise StatisticsValueError(
                    f"MetricsSnapshot state: field {name!r}: {exc}"
                ) from None
            restored[name] = Measurement(entry["value"], step, float(t))
        revision = state.get("revision", 0)
        with self._lock:
            self._data = restored
            self._revision = max(self._revision, int(revision)) + 1
