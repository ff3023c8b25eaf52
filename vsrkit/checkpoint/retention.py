"""Retention policies: small rules that say which checkpoints to keep, composed with AnyOf.

A policy sees the *committed* checkpoints of the manager's own run (or, for
:func:`~vsrkit.checkpoint.prune_checkpoints`, of a whole folder), sorted by step, and returns
the file names to keep. Every keep is a policy: what the manager keeps is what its ``keep``
says, and nothing besides (the checkpoint just saved is never deleted by its own save). The
checkpoint a resume would pick is kept by :class:`ResumeCandidate`, the best by
:class:`BestN`; :func:`standard_retention` composes the usual set, the one ``vsrkit train``
and ``vsrkit checkpoints prune`` use.

Each kind of checkpoint is counted by its own rule: ``LatestN(3)`` keeps three *regular*
checkpoints, so ``_best`` and ``_emergency`` copies never use up its places; keep those with
``BestN`` and ``LatestN(1, kind="emergency")`` (or ``KeepTagged``), composed with ``AnyOf``.

"Best" is defined once, by :func:`rank_best`: the highest (``mode="max"``) or lowest value of
a manifest metric, ties broken by the higher step; a missing or NaN value is never best.

Example:
    >>> standard_retention(3)
    AnyOf(LatestN(n=3), BestN(n=1, metric='quality', mode='max'), LatestN(n=1, \
kind='emergency'), ResumeCandidate())
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from vsrkit.checkpoint.errors import CheckpointValueError
from vsrkit.checkpoint.records import CheckpointRecord, resume_order

__all__ = [
    "AnyOf",
    "BestN",
    "EveryNSteps",
    "KeepAll",
    "KeepTagged",
    "LatestN",
    "ResumeCandidate",
    "RetentionPolicy",
    "apply_retention",
    "rank_best",
    "standard_retention",
]

logger = logging.getLogger(__name__)


class RetentionPolicy(Protocol):
    """Anything with ``keep(records) -> set of file names``.

    Example:
        >>> policy: RetentionPolicy = AnyOf(LatestN(1), ResumeCandidate())
        >>> policy.keep([])
        set()
    """

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]: ...


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointValueError(f"{name} must be an int >= 1, got {value!r}")
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
            raise CheckpointValueError(f"LatestN kind must be a non-empty string, got {kind!r}")
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
            raise CheckpointValueError(f"BestN mode must be 'max' or 'min', got {mode!r}")
        self.metric, self.mode = metric, mode

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        return {r.filename for r in rank_best(records, self.metric, self.mode)[: self.n]}

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
                raise CheckpointValueError(f"KeepTagged tags must be non-empty strings, got {t!r}")
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
            raise CheckpointValueError("AnyOf needs at least one policy")
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


class ResumeCandidate:
    """Keep the checkpoint a resume would pick (the newest valid one of the run, see
    :meth:`CheckpointManager.restore <vsrkit.checkpoint.CheckpointManager.restore>`).

    Example:
        >>> ResumeCandidate()
        ResumeCandidate()
    """

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        order = resume_order(records, None)
        return {order[0].filename} if order else set()

    def __repr__(self) -> str:
        return "ResumeCandidate()"


class KeepAll:
    """Keep every checkpoint (the manager's default: nothing is ever deleted).

    Example:
        >>> KeepAll()
        KeepAll()
    """

    def keep(self, records: Sequence[CheckpointRecord]) -> set[str]:
        return {r.filename for r in records}

    def __repr__(self) -> str:
        return "KeepAll()"


def standard_retention(last: int, *, best_metric: str = "quality", best_mode: str = "max") -> AnyOf:
    """The usual set: the ``last`` newest regular checkpoints, the best by ``best_metric``,
    the newest emergency checkpoint and the one a resume would pick (``vsrkit train
    --keep-last``, ``vsrkit checkpoints prune --keep-last``)."""
    return AnyOf(
        LatestN(last),
        BestN(1, metric=best_metric, mode=best_mode),
        LatestN(1, kind="emergency"),
        ResumeCandidate(),
    )


def _score(rec: CheckpointRecord, metric: str) -> float | None:
    value = rec.metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def rank_best(
    records: Iterable[CheckpointRecord], metric: str, mode: str
) -> list[CheckpointRecord]:
    """The records that have ``metric``, best first (``mode`` ``"max"``: highest value); ties
    go to the higher step, then to the order given. The one definition of "best".

    Raises:
        ValueError: ``mode`` is not ``"max"`` or ``"min"``.
    """
    if mode not in ("max", "min"):
        raise CheckpointValueError(f"mode must be 'max' or 'min', got {mode!r}")
    sign = -1.0 if mode == "max" else 1.0
    scored = [(sign * s, -r.step, i, r) for i, r in enumerate(records)
              if (s := _score(r, metric)) is not None]  # fmt: skip
    return [r for *_, r in sorted(scored, key=lambda t: t[:3])]


def best_record(
    records: Sequence[CheckpointRecord], metric: str, mode: str
) -> CheckpointRecord | None:
    """The record with the best ``metric`` (ties: the highest step), ``None`` if none has it."""
    ranked = rank_best(records, metric, mode)
    return ranked[0] if ranked else None


def apply_retention(
    records: Sequence[CheckpointRecord],
    policy: RetentionPolicy,
    *,
    protect: Iterable[str] = (),
    dry_run: bool = False,
) -> list[CheckpointRecord]:
    """Delete the committed ``records`` that ``policy`` does not keep (and that are not in
    ``protect``), manifest first so a half-deleted checkpoint is never a committed one.

    Only ``committed`` and ``legacy`` records are ever deleted; uncommitted or mismatching
    files are left for a human to look at. Returns the records deleted (or that would be).
    """
    valid = [r for r in records if r.valid]
    keep = set(policy.keep(valid)) | set(protect)
    doomed = [r for r in valid if r.filename not in keep]
    if dry_run:
        return doomed
    deleted = []
    for rec in doomed:
        try:
            _delete(rec)
        except OSError as exc:
            logger.warning("retention: could not delete %s: %s", rec.path, exc)
            continue
        deleted.append(rec)
        logger.info("retention: deleted %s", rec.path)
    return deleted


def _delete(rec: CheckpointRecord) -> None:
    mpath: Path | None = rec.manifest_path
    if mpath is not None:
        mpath.unlink(missing_ok=True)  # uncommit first
    rec.path.unlink(missing_ok=True)
