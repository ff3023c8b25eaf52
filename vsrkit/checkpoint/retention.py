"""Retention policies: small rules that say which checkpoints to keep, composed with AnyOf.

A policy sees the *committed* checkpoints of the manager's own run, sorted by step, and returns
the file names to keep. The manager deletes the others only after a new save has committed and
always keeps the latest valid checkpoint and the best one, whatever the policy says.

Each kind of checkpoint is counted by its own rule: ``LatestN(3)`` keeps three *regular*
checkpoints, so ``_best`` and ``_emergency`` copies never use up its places; keep those with
``BestN`` and ``LatestN(1, kind="emergency")`` (or ``KeepTagged``), composed with ``AnyOf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from vsrkit.checkpoint.records import CheckpointRecord

__all__ = ["AnyOf", "BestN", "EveryNSteps", "KeepTagged", "LatestN", "RetentionPolicy"]


class RetentionPolicy(Protocol):
    """Anything with ``keep(records) -> set of file names``."""

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]: ...


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class LatestN:
    """Keep the ``n`` checkpoints of one kind with the highest steps.

    Args:
        n: How many to keep.
        kind: ``"regular"`` (default: untagged checkpoints only), a tag such as
            ``"emergency"`` or ``"best"``, or ``"any"`` to count every checkpoint alike.

    Example:
        >>> LatestN(2), LatestN(1, kind="emergency")
        (LatestN(n=2), LatestN(n=1, kind='emergency'))
    """

    def __init__(self, n: int, *, kind: str = "regular") -> None:
        self.n = _positive_int("LatestN n", n)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"LatestN kind must be a non-empty string, got {kind!r}")
        self.kind = kind

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        mine = [r for r in records if self.kind == "any" or r.type == self.kind]
        ordered = sorted(mine, key=lambda r: (r.step, r.filename))
        return {r.filename for r in ordered[-self.n :]}

    def __repr__(self) -> str:
        extra = "" if self.kind == "regular" else f", kind={self.kind!r}"
        return f"LatestN(n={self.n}{extra})"


class BestN:
    """Keep the ``n`` checkpoints with the best value of a manifest metric.

    Checkpoints without that metric (or with NaN) are never chosen by this policy.

    Example:
        >>> BestN(3, metric="loss", mode="min")
        BestN(n=3, metric='loss', mode='min')
    """

    def __init__(self, n: int, *, metric: str = "quality", mode: str = "max") -> None:
        self.n = _positive_int("BestN n", n)
        if mode not in ("max", "min"):
            raise ValueError(f"BestN mode must be 'max' or 'min', got {mode!r}")
        self.metric, self.mode = metric, mode

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        scored = [r for r in records if _score(r, self.metric) is not None]
        sign = -1.0 if self.mode == "max" else 1.0
        scored.sort(key=lambda r: (sign * _score(r, self.metric), -r.step))  # type: ignore[operator]
        return {r.filename for r in scored[: self.n]}

    def __repr__(self) -> str:
        return f"BestN(n={self.n}, metric={self.metric!r}, mode={self.mode!r})"


class EveryNSteps:
    """Keep checkpoints whose step is a multiple of ``n`` (milestones).

    Example:
        >>> EveryNSteps(5000)
        EveryNSteps(n=5000)
    """

    def __init__(self, n: int) -> None:
        self.n = _positive_int("EveryNSteps n", n)

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        return {r.filename for r in records if r.step % self.n == 0}

    def __repr__(self) -> str:
        return f"EveryNSteps(n={self.n})"


class KeepTagged:
    """Keep checkpoints with one of the given tags, or with any tag when none are given.

    Example:
        >>> KeepTagged("best", "emergency")
        KeepTagged('best', 'emergency')
    """

    def __init__(self, *tags: str) -> None:
        for t in tags:
            if not isinstance(t, str) or not t:
                raise ValueError(f"KeepTagged tags must be non-empty strings, got {t!r}")
        self.tags = tuple(tags)

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        return {
            r.filename
            for r in records
            if r.tag is not None and (not self.tags or r.tag in self.tags)
        }

    def __repr__(self) -> str:
        return f"KeepTagged({', '.join(map(repr, self.tags))})"


class AnyOf:
    """Keep what any of the policies keeps.

    Example:
        >>> AnyOf(LatestN(3), EveryNSteps(10000))
        AnyOf(LatestN(n=3), EveryNSteps(n=10000))
    """

    def __init__(self, *policies: RetentionPolicy) -> None:
        if not policies:
            raise ValueError("AnyOf needs at least one policy")
        for p in policies:
            if not callable(getattr(p, "keep", None)):
                raise TypeError(f"AnyOf expects retention policies with a keep() method, got {p!r}")
        self.policies = tuple(policies)

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        kept: set[str] = set()
        for p in self.policies:
            kept |= p.keep(records)
        return kept

    def __repr__(self) -> str:
        return f"AnyOf({', '.join(map(repr, self.policies))})"


def _score(rec: CheckpointRecord, metric: str) -> float | None:
    value = rec.metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def best_record(
    records: Sequence[CheckpointRecord], metric: str, mode: str
) -> CheckpointRecord | None:
    """The record with the best ``metric`` (ties: the highest step), ``None`` if none has it."""
    kept = BestN(1, metric=metric, mode=mode).keep(records)
    return next((r for r in records if r.filename in kept), None)
