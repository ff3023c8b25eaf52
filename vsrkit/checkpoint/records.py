"""Listing a checkpoint folder from names and manifests only (never ``torch.load``, no torch).

A checkpoint is *committed* when its manifest (written last) exists, names the same file and
step, and the file size matches. Status values of a :class:`CheckpointRecord`:

- ``"committed"``: manifest present and consistent (``valid=True``);
- ``"legacy"``: an old-format name written before manifests existed (``valid=True``, it is
  checked when loaded);
- ``"uncommitted"``: a new-format file without manifest, e.g. a save killed between the file
  and its manifest (``valid=False``);
- ``"mismatch"``: the manifest is unreadable or disagrees with the file (``valid=False``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vsrkit.checkpoint.errors import CheckpointValueError
from vsrkit.checkpoint.names import CheckpointName, manifest_name, parse_checkpoint_name

__all__ = [
    "CheckpointRecord",
    "checkpoint_folder",
    "read_manifest",
    "resume_order",
    "scan_directory",
]

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "vsrkit-checkpoint"
MANIFEST_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint file as seen by a listing.

    Attributes:
        directory: The folder it lies in.
        filename: The ``.pth`` file name; ``path`` is ``directory / filename``.
        step: The training step (from the name, which always agrees with a valid manifest).
        type: ``"regular"``, ``"best"``, ``"emergency"`` or another tag.
        tag: The tag, ``None`` for a regular checkpoint.
        quality: ``metrics["quality"]`` from the manifest, ``None`` when absent.
        loss: ``metrics["loss"]`` from the manifest, ``None`` when absent.
        size_mb: File size in MB (10**6 bytes).
        timestamp: Commit time (UTC) from the manifest, or the file's mtime for a legacy
            file without manifest (display only, never used for ordering); ``None`` if unknown.
        date_str: ``timestamp`` as ``"YYYY-MM-DD HH:MM"`` (UTC), ``""`` if unknown.
        valid: Whether restore may use it (committed or legacy).
        status: ``"committed"``, ``"legacy"``, ``"uncommitted"`` or ``"mismatch"``.
        run_id: The run that wrote it (from the manifest), ``None`` if unknown.
        commit_time: Manifest ``unix_time`` (seconds), ``None`` without a manifest.
        metrics: Every metric of the manifest.
        manifest_file: The manifest's file name, ``None`` when there is none
            (``manifest_path`` is its full path).
        size_bytes: File size in bytes, ``None`` if it could not be read.

    Example:
        >>> import tempfile
        >>> scan_directory(tempfile.mkdtemp())
        []
    """

    directory: Path
    filename: str
    step: int
    type: str
    tag: str | None
    quality: float | None
    loss: float | None
    size_mb: float
    timestamp: _dt.datetime | None
    date_str: str
    valid: bool
    status: str
    run_id: str | None = None
    commit_time: float | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    manifest_file: str | None = None
    size_bytes: int | None = None

    # Paths are built on first use: pathlib parsing dominated listing 10,000 checkpoints.
    @functools.cached_property
    def path(self) -> Path:
        """Full path of the ``.pth`` file."""
        return self.directory / self.filename

    @functools.cached_property
    def manifest_path(self) -> Path | None:
        """Full path of the manifest, ``None`` when there is none."""
        return self.directory / self.manifest_file if self.manifest_file else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (paths as strings, timestamp as ISO 8601)."""
        return {
            "path": str(self.path),
            "filename": self.filename,
            "step": self.step,
            "type": self.type,
            "tag": self.tag,
            "quality": self.quality,
            "loss": self.loss,
            "size_mb": self.size_mb,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "date_str": self.date_str,
            "valid": self.valid,
            "status": self.status,
            "run_id": self.run_id,
            "commit_time": self.commit_time,
            "metrics": dict(self.metrics),
            "manifest_path": str(self.manifest_path) if self.manifest_path else None,
            "directory": str(self.directory),
            "size_bytes": self.size_bytes,
        }


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a manifest file.

    Raises:
        OSError: If it cannot be read.
        ValueError: If it is not a vsrkit manifest (the message names the file and field).
    """
    with open(path, "rb") as fh:  # bytes: json decodes UTF-8 itself, faster than a text file
        raw = fh.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointValueError(f"{os.fspath(path)}: not valid JSON ({exc})") from exc
    return _check_manifest(data, path)


def _check_manifest(data: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise CheckpointValueError(
            f"{os.fspath(path)}: not a vsrkit checkpoint manifest "
            f"(expected format={MANIFEST_FORMAT!r})"
        )
    for key, kind in (("step", int), ("file", str), ("size_bytes", int), ("sha256", str)):
        value = data.get(key)
        if key == "sha256" and value is None and "sha256" in data:
            continue  # saved with checksum=False
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointValueError(
                f"{os.fspath(path)}: field {key!r} must be {kind.__name__}, got {value!r}"
            )
    return data


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _make_record(
    directory: Path, name: str, parsed: CheckpointName, has_manifest: bool
) -> CheckpointRecord:
    base = os.fspath(directory) + os.sep
    try:
        st: os.stat_result | None = os.stat(base + name)
        size = st.st_size  # type: ignore[union-attr]
    except OSError:
        size, st = -1, None
    manifest: dict[str, Any] | None = None
    mname = manifest_name(name) if has_manifest else None
    status = "legacy" if parsed.legacy else "uncommitted"
    if mname is not None:
        try:
            manifest = read_manifest(base + mname)
        except (OSError, ValueError) as exc:
            logger.debug("checkpoint manifest unusable: %s", exc)
            status = "mismatch"
        else:
            if manifest["file"] != name or manifest["step"] != parsed.step:
                logger.debug(
                    "%s: manifest names %r step %r",
                    base + str(mname),
                    manifest["file"],
                    manifest["step"],
                )
                status = "mismatch"
            elif manifest["size_bytes"] != size:
                logger.debug(
                    "%s: size %d on disk, manifest says %d",
                    base + name,
                    size,
                    manifest["size_bytes"],
                )
                status = "mismatch"
            else:
                status = "committed"
    metrics = dict(manifest.get("metrics") or {}) if manifest else {}
    commit_time = manifest.get("unix_time") if manifest else None
    if not isinstance(commit_time, (int, float)) or isinstance(commit_time, bool):
        commit_time = None
    when = (
        commit_time if commit_time is not None else (st.st_mtime if st and parsed.legacy else None)
    )
    ts = _dt.datetime.fromtimestamp(when, tz=_dt.timezone.utc) if when is not None else None
    run_id = manifest.get("run_id") if manifest else None
    return CheckpointRecord(
        directory=directory,
        filename=name,
        step=parsed.step,
        type=parsed.type,
        tag=parsed.tag,
        quality=_metric(metrics, "quality"),
        loss=_metric(metrics, "loss"),
        size_mb=round(max(size, 0) / 1e6, 3),
        timestamp=ts,
        date_str=ts.strftime("%Y-%m-%d %H:%M") if ts else "",
        valid=status in ("committed", "legacy") and size >= 0,
        status=status,
        run_id=run_id if isinstance(run_id, str) else None,
        commit_time=commit_time,
        metrics=metrics,
        manifest_file=mname,
        size_bytes=size if size >= 0 else None,
    )


def _sort_key(rec: CheckpointRecord) -> tuple[int, int, str]:
    # By step; at one step a legacy name sorts first, then untagged, then by name.
    return (rec.step, 0 if rec.tag is None else 1, rec.filename)


def checkpoint_folder(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder a user means: ``path`` itself when it holds checkpoints, else its
    ``checkpoints/`` (a run folder), else ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> (run / "checkpoints").mkdir()
        >>> checkpoint_folder(run) == run / "checkpoints"
        True
    """
    folder = Path(path)
    inner = folder / "checkpoints"
    if inner.is_dir() and not scan_directory(folder, last=1):
        return inner
    return folder


def scan_directory(
    directory: str | os.PathLike[str], *, last: int | None = None
) -> list[CheckpointRecord]:
    """List the checkpoints of a folder, sorted by step (then untagged first, then by name).

    Only names and manifests are read. Anything that is not a checkpoint name is skipped
    with a debug log.

    Args:
        directory: The checkpoint folder (a missing folder lists as empty).
        last: Build records only for the ``last`` highest steps (fast table of a big folder).
    """
    d = Path(directory)
    pth: dict[str, CheckpointName] = {}
    manifests: set[str] = set()
    try:
        entries = os.scandir(d)
    except FileNotFoundError:
        return []
    with entries:
        for entry in entries:
            name = entry.name
            parsed = parse_checkpoint_name(name)
            if parsed is None:
                logger.debug("ignoring %s: not a checkpoint name", d / name)
            elif parsed.kind == "checkpoint":
                pth[name] = parsed
            else:
                manifests.add(name)
    order = sorted(pth.items(), key=lambda kv: (kv[1].step, kv[1].tag is not None, kv[0]))
    if last is not None:
        order = order[-last:] if last > 0 else []
    records = [_make_record(d, n, p, manifest_name(n) in manifests) for n, p in order]
    records.sort(key=_sort_key)
    return records


def resume_order(records: Sequence[CheckpointRecord], run_id: str | None) -> list[CheckpointRecord]:
    """Valid records in the order a resume tries them (see :meth:`CheckpointManager.restore`)."""
    valid = [r for r in records if r.valid]
    preferred = run_id if any(r.run_id == run_id for r in valid) else None
    if preferred is None:
        committed = [r for r in valid if r.commit_time is not None]
        if committed:
            preferred = max(committed, key=lambda r: (r.commit_time, r.step)).run_id

    def key(r: CheckpointRecord) -> tuple[bool, int, float, bool]:
        return (r.run_id == preferred, r.step, r.commit_time or -math.inf, r.tag is None)

    return sorted(valid, key=key, reverse=True)
