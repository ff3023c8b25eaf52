"""Restore planning: which checkpoint a resume loads, in which order, and what is set aside.

:class:`Restorer` is the read side of a :class:`~vsrkit.checkpoint.CheckpointManager`: it
orders the candidates (the newest of the run first, or the best first), loads each with the
one safe ``torch.load`` of vsrkit (:func:`vsrkit._safe_load.load_torch_file`), checks it
against its manifest, renames a damaged file ``*.corrupt`` (with its manifest) and tries the
next one, and falls back to the mirror copy of the same commit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vsrkit._safe_load import UnreadableFileError, load_torch_file
from vsrkit.checkpoint._io import sha256_file
from vsrkit.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
)
from vsrkit.checkpoint.mirror import CheckpointMirror, pair_with_mirror
from vsrkit.checkpoint.records import CheckpointRecord, read_manifest, resume_order
from vsrkit.checkpoint.retention import rank_best

__all__ = ["Restorer"]

logger = logging.getLogger("vsrkit.checkpoint.manager")

_Records = list[CheckpointRecord]


class Restorer:
    """Loads checkpoints of one folder (and its mirror) for a manager.

    Example:
        >>> import tempfile
        >>> r = Restorer(tempfile.mkdtemp(), mirror=None)
        >>> r.candidates([], run_id=None)[0]
        []
    """

    def __init__(self, directory: str | os.PathLike[str], *, mirror: CheckpointMirror | None):
        self.directory = Path(directory)
        self.mirror = mirror

    def is_mirrored(self, rec: CheckpointRecord) -> bool:
        return self.mirror is not None and rec.directory == self.mirror.directory

    def candidates(
        self, records: _Records, run_id: str | None
    ) -> tuple[_Records, _Records, dict[str, CheckpointRecord]]:
        """``(order, combined, backups)``: the resume order over the primary and the
        mirror-only checkpoints, all those records, and the mirror copy of a primary file."""
        combined: _Records = records
        backups: dict[str, CheckpointRecord] = {}
        if self.mirror is not None:
            try:
                combined, backups = pair_with_mirror(records, self.mirror.list())
            except OSError as exc:  # an unreachable mirror never stops a restore
                logger.warning("checkpoint mirror %s unreadable: %s", self.mirror.directory, exc)
        return resume_order(combined, run_id), combined, backups

    def restore(
        self,
        records: _Records,
        *,
        run_id: str | None,
        step: int | None,
        best: tuple[str, str] | None,
        map_location: Any,
        verify: bool,
    ) -> tuple[CheckpointRecord, dict[str, Any], _Records]:
        """Load the checkpoint that :meth:`CheckpointManager.restore` describes.

        Returns:
            ``(record, state, records)``: the record loaded, its state, and the records that
            are still there (those set aside left out).
        """
        order, combined, backups = self.candidates(records, run_id)
        if step is not None:
            return self._exact(step, order, combined, backups, map_location, verify)
        set_aside: set[Path] = set()
        for rec in combined:  # committed once, damaged since: never a candidate
            if rec.status == "mismatch" and not self.is_mirrored(rec):
                logger.warning(
                    "%s does not match its manifest (%s); renamed to *.corrupt",
                    rec.path,
                    _mismatch_reason(rec),
                )
                quarantine(rec)
                set_aside.add(rec.path)
        if best is not None:
            order = rank_best(order, *best)
            if not order:
                raise CheckpointNotFoundError(
                    f"no checkpoint with a {best[0]!r} metric in {self.directory}"
                )
        for first in order:
            backup = backups.get(first.filename) if not self.is_mirrored(first) else None
            for cand in (first, backup):
                if cand is None:
                    continue
                try:
                    state = self.load(cand, map_location, verify or self.is_mirrored(cand))
                except CheckpointError as exc:
                    logger.warning("%s; renamed to *.corrupt, trying the next one", exc)
                    quarantine(cand)
                    set_aside.add(cand.path)
                    continue
                except OSError as exc:
                    logger.warning(
                        "cannot read %s (%s); skipped, trying the next one", cand.path, exc
                    )
                    continue
                if self.is_mirrored(cand):
                    logger.warning("restored step %d from the mirror: %s", cand.step, cand.path)
                return cand, state, [r for r in combined if r.path not in set_aside]
        raise CheckpointNotFoundError(f"no valid checkpoint to restore in {self.directory}")

    def _exact(
        self,
        step: int,
        order: _Records,
        combined: _Records,
        backups: dict[str, CheckpointRecord],
        map_location: Any,
        verify: bool,
    ) -> tuple[CheckpointRecord, dict[str, Any], _Records]:
        """The checkpoint of ``step``: an error if it is missing or unusable (nothing renamed)."""
        at_step = [r for r in order if r.step == step]
        if not at_step:
            raise CheckpointNotFoundError(
                f"no valid checkpoint at step {step} in {self.directory} "
                f"(found steps: {sorted({r.step for r in combined if r.valid})[-10:]})"
            )
        rec = at_step[0]
        try:
            state = self.load(rec, map_location, verify or self.is_mirrored(rec))
        except (CheckpointCorruptError, OSError) as exc:
            backup = backups.get(rec.filename)
            if backup is None:
                raise
            logger.warning("%s; loading the mirror copy %s", exc, backup.path)
            rec, state = backup, self.load(backup, map_location, True)
        return rec, state, combined

    def load(self, rec: CheckpointRecord, map_location: Any, verify: bool) -> dict[str, Any]:
        """The state of ``rec`` after the size (and with ``verify`` the sha256) checks.

        Raises:
            CheckpointCorruptError: Damaged: size or sha256 differ, or torch cannot read it.
            CheckpointError: It holds objects safe loading refuses (never renamed at a step).
            OSError: The system refused to read it (permissions): skipped, not renamed.
        """
        if rec.manifest_path is not None:
            # the listing checked the size against the manifest; check again in case it changed
            size = rec.path.stat().st_size
            if size != rec.size_bytes:
                raise CheckpointCorruptError(
                    f"{rec.path}: {size} bytes, manifest says {rec.size_bytes}"
                )
            if verify and sha256_matches(rec) is None:
                logger.warning(
                    "%s: no sha256 in its manifest (checksum=False); size checked only", rec.path
                )
        try:
            state = load_torch_file(rec.path, map_location=map_location)
        except UnreadableFileError as exc:
            if exc.kind in ("os", "missing"):
                raise OSError(exc.reason) from exc
            if exc.kind == "refused":  # an intact file with real objects, refused on purpose
                raise CheckpointError(str(exc)) from exc
            if not verify:  # damage first: a checksum that disagrees says what happened
                sha256_matches(rec)
            raise CheckpointCorruptError(f"{rec.path}: cannot be loaded: {exc.reason}") from exc
        if not isinstance(state, dict):
            raise CheckpointCorruptError(
                f"{rec.path}: expected a dict state, found {type(state).__name__}"
            )
        return state


def sha256_matches(rec: CheckpointRecord) -> bool | None:
    """``True`` if the file's sha256 matches its manifest, ``None`` without one.

    Raises:
        CheckpointCorruptError: The sha256 differs (the file changed after saving).
    """
    if rec.manifest_path is None:
        return None
    try:
        expected = read_manifest(rec.manifest_path)["sha256"]
    except (OSError, ValueError):
        return None
    if expected is None:
        return None
    if sha256_file(rec.path) != expected:
        raise CheckpointCorruptError(
            f"{rec.path}: sha256 differs from its manifest (changed after saving)"
        )
    return True


def quarantine(rec: CheckpointRecord) -> None:
    """Rename the file and its manifest to ``*.corrupt`` (listings skip those names)."""
    for p in (rec.path, rec.manifest_path):
        if p is not None:
            try:
                os.replace(p, p.with_name(p.name + ".corrupt"))
            except OSError as exc:
                logger.warning("could not rename %s: %s", p, exc)


def _mismatch_reason(rec: CheckpointRecord) -> str:
    try:
        manifest = read_manifest(rec.manifest_path) if rec.manifest_path else None
    except (OSError, ValueError) as exc:
        return f"manifest unusable: {exc}"
    if manifest is None:
        return "no manifest"
    if manifest["file"] != rec.filename or manifest["step"] != rec.step:
        return f"the manifest names {manifest['file']!r} step {manifest['step']}"
    return f"{rec.size_bytes} bytes on disk, the manifest says {manifest['size_bytes']}"


def adopted_run(rec: CheckpointRecord, records: Sequence[CheckpointRecord]) -> str | None:
    """The run id a manager continues after restoring ``rec``: its run when ``rec`` is that
    run's newest valid checkpoint, else ``None``."""
    if rec.run_id is None:
        return None
    same_run = [r.step for r in records if r.valid and r.run_id == rec.run_id]
    return rec.run_id if same_run and rec.step == max(same_run) else None
