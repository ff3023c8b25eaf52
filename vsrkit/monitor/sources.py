"""What the monitor reads: duck-typed views of the snapshot and the runtime config.

The monitor depends on no internals of :mod:`vsrkit.stats` or :mod:`vsrkit.config`; it reads
them through the two small protocols below, and :func:`read_snapshot` /
:func:`config_view` / :func:`submit_config` are the only places that know their shapes.
A plain callable returning a mapping of statistics fields also works as a snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ConfigSource",
    "SnapshotSource",
    "config_view",
    "read_snapshot",
    "submit_config",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class SnapshotSource(Protocol):
    """What the monitor reads: :class:`vsrkit.stats.MetricsSnapshot` has this shape.

    ``as_dict()`` returns ``{"revision": int, "fields": {name: {"value", "step", "time"}}}``
    with JSON-safe values; an unmeasured field is absent.
    """

    def as_dict(self) -> Mapping[str, Any]:
        """JSON-safe copy of the latest measurements."""
        ...


@runtime_checkable
class ConfigSource(Protocol):
    """What the monitor edits: :class:`vsrkit.config.RuntimeConfigManager` has this shape."""

    @property
    def current(self) -> Mapping[str, Any]:
        """The settings in force."""
        ...

    @property
    def changes(self) -> Sequence[Any]:
        """History of accepted and rejected changes (objects with ``to_dict()``)."""
        ...

    def submit(self, patch: Mapping[str, Any], *, source: str) -> Any:
        """Validate ``patch`` whole; returns an object with ``accepted`` and ``errors``."""
        ...


def read_snapshot(snapshot: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """Return ``(values, measured_at_step)``.

    ``snapshot`` is a :class:`SnapshotSource` or a zero-argument callable returning either a
    flat mapping of fields (with an optional ``measured_at_step`` mapping) or the
    ``{"fields": {name: {"value", "step"}}}`` shape of ``MetricsSnapshot.as_dict()``.
    """
    raw = snapshot.as_dict() if hasattr(snapshot, "as_dict") else snapshot()
    fields = raw.get("fields") if isinstance(raw, Mapping) else None
    if isinstance(fields, Mapping) and all(isinstance(e, Mapping) for e in fields.values()):
        values = {n: e.get("value") for n, e in fields.items() if e.get("value") is not None}
        steps = {n: e["step"] for n, e in fields.items() if isinstance(e.get("step"), int)}
        return values, steps
    values = dict(raw)
    measured = values.pop("measured_at_step", None)
    if not isinstance(measured, Mapping):
        measured = {}
    return values, {str(k): v for k, v in measured.items() if isinstance(v, int)}


def _spec_rows(config: Any, latest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The live settings with value, type, range, category and description."""
    specs: Any = getattr(config, "specs", None)  # a manager may expose its own schema's keys
    if callable(specs):
        specs = specs()
    if specs is None:
        from vsrkit.config import describe_keys  # the shipped schema; no torch

        specs = describe_keys(live_only=True)
    rows = []
    for spec in specs:
        row: dict[str, Any] = dict(spec.to_dict()) if hasattr(spec, "to_dict") else dict(spec)
        if row.get("live", True) is False:
            continue
        key = str(row.pop("name", None) or row.get("key"))
        row["key"] = key
        row["value"] = latest.get(key)
        rows.append(row)
    return rows


def config_view(config: Any, *, changes_limit: int = 50) -> dict[str, Any]:
    """The ``/api/config`` document: live settings (value, range, category) and recent changes."""
    if config is None:
        return {"enabled": False, "settings": [], "changes": [], "current": {}}
    current = dict(config.current)
    latest = getattr(config, "latest", None)
    settings = _spec_rows(config, dict(latest) if isinstance(latest, Mapping) else current)
    changes: Sequence[Any] = getattr(config, "changes", ()) or ()
    if callable(changes):
        changes = changes()
    recent = [_json_safe_change(c) for c in list(changes)[-changes_limit:]]
    return {"enabled": True, "settings": settings, "changes": recent, "current": current}


def _json_safe_change(change: Any) -> dict[str, Any]:
    if isinstance(change, Mapping):
        return dict(change)
    to_dict = getattr(change, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dict(vars(change))


def submit_config(
    config: Any, patch: Mapping[str, Any], *, source: str
) -> tuple[bool, dict[str, str], str | None]:
    """Submit ``patch`` whole; return ``(accepted, errors_by_key, message)``.

    ``errors_by_key`` maps a setting to the reason it was refused, so the page can show it
    next to the field; ``message`` is an error that belongs to no single key.
    """
    from vsrkit.errors import VsrkitError

    try:
        result = config.submit(dict(patch), source=source)
    except VsrkitError as exc:
        return False, {}, str(exc)
    errors = getattr(result, "errors", None) or {}
    if getattr(result, "accepted", False):
        return True, {}, None
    by_key = {str(k): str(v) for k, v in errors.items() if str(k) in patch}
    other = [f"{k}: {v}" for k, v in errors.items() if str(k) not in patch]
    return False, by_key, ("; ".join(other) or None) if other or not by_key else None
