"""Folder maintenance used by the CLI: verify hashes, prune across runs."""

from __future__ import annotations

import logging
import os

from vsrkit.checkpoint._io import sha256_file
from vsrkit.checkpoint.records import CheckpointRecord, read_manifest, scan_directory
from vsrkit.checkpoint.retention import apply_retention, standard_retention

__all__ = ["prune_checkpoints", "verify_checkpoint"]

logger = logging.getLogger(__name__)


def verify_checkpoint(rec: CheckpointRecord) -> str | None:
    """Check a committed file against its manifest: ``None`` if good, else why.

    The size is always checked; the sha256 when the manifest has one (``checksum=True``).
    """
    if rec.manifest_path is None:
        return None if rec.status == "legacy" else "no manifest (uncommitted save)"
    try:
        manifest = read_manifest(rec.manifest_path)
        size = rec.path.stat().st_size
        if size != manifest["size_bytes"]:
            return f"size {size} bytes, manifest says {manifest['size_bytes']}"
        if manifest["sha256"] is not None and sha256_file(rec.path) != manifest["sha256"]:
            return "sha256 differs from the manifest"
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    return None


def prune_checkpoints(
    directory: str | os.PathLike[str],
    *,
    keep_last: int,
    dry_run: bool = False,
    best_metric: str = "quality",
    best_mode: str = "max",
) -> list[CheckpointRecord]:
    """Delete all but the ``keep_last`` highest-step regular checkpoints of a folder (any run).

    The policy ``vsrkit train`` keeps, :func:`~vsrkit.checkpoint.standard_retention`:
    ``LatestN(keep_last)`` regular checkpoints, the best one (by ``best_metric``), the newest
    emergency checkpoint, and the checkpoint a resume would pick; uncommitted or mismatching
    files are left alone for a human to look at.

    Returns:
        The records deleted (or that would be, with ``dry_run``).
    """
    policy = standard_retention(keep_last, best_metric=best_metric, best_mode=best_mode)
    return apply_retention(scan_directory(directory), policy, dry_run=dry_run)
