"""CheckpointMirror: a second copy of every committed checkpoint, written in the background.

Thread/process-safety contract: a mirror belongs to one :class:`CheckpointManager` (one
writing process, rank 0 under DDP). :meth:`CheckpointMirror.submit`, :meth:`wait`,
:meth:`close` and :attr:`errors` may be called from any thread; copies run on one background
thread, one at a time, in the order they were submitted. The mirror folder follows the
primary's commit protocol (temp file, flush, fsync, ``os.replace``, folder fsync, the manifest
last), so readers in other processes (``vsrkit checkpoints list/verify MIRROR``, a restore
after a crash) only ever see committed copies. Two mirrors writing one folder is not supported.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vsrkit._atomic import atomic_open, atomic_write_json, fsync_dir
from vsrkit.checkpoint._io import remove_stale_temp_files
from vsrkit.checkpoint.errors import CheckpointMirrorError, CheckpointValueError
from vsrkit.checkpoint.names import manifest_name
from vsrkit.checkpoint.records import CheckpointRecord, read_manifest, scan_directory

__all__ = ["CheckpointMirror"]

logger = logging.getLogger(__name__)

_CHUNK = 4 << 20


@dataclasses.dataclass
class _Job:
    name: str
    manifest: dict[str, Any]
    deleted: set[str]


class _Superseded(Exception):
    """The primary file changed or vanished after its commit: a newer job covers it."""


class CheckpointMirror:
    """Copies committed checkpoints of ``source`` into ``directory`` on a background thread.

    Normally made by ``CheckpointManager(..., mirror_dir=...)``, which submits every committed
    save. A copy reads the primary file once, hashing it, and commits only when the bytes
    match the manifest's ``size_bytes`` and ``sha256``; then the same manifest is written
    last. A checkpoint that retention deleted in the primary is deleted here after the copy
    of the newer one has committed. A failure (disk full, no permission, missing drive) is
    logged, kept in :attr:`errors`, and never touches the primary folder.

    Args:
        source: The primary checkpoint folder.
        directory: The mirror folder (created at the first copy; must differ from ``source``).
        min_free_mb: Free space (MB) that must remain in the mirror after a copy.
        low_priority: Run the copying thread at a lower CPU priority (Linux: nice +10 for
            that thread only), so it yields to the training loop on a busy machine.

    Example:
        >>> import tempfile, torch
        >>> from vsrkit.checkpoint import CheckpointManager
        >>> primary, backup = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> with CheckpointManager(primary, mirror_dir=backup) as mgr:
        ...     _ = mgr.save(7, {"w": torch.ones(2)})
        ...     mgr.wait()  # the save and its mirror copy have committed
        ...     [r.step for r in mgr.mirror.list()], mgr.mirror_errors
        ([7], [])
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        directory: str | os.PathLike[str],
        *,
        min_free_mb: float = 64.0,
        low_priority: bool = True,
    ) -> None:
        self.source = Path(source)
        self.directory = Path(directory)
        if os.path.abspath(self.source) == os.path.abspath(self.directory):
            raise CheckpointValueError(
                f"mirror_dir must differ from the checkpoint folder {self.source}"
            )
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.low_priority = bool(low_priority)
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._to_delete: set[str] = set()  # used by the copy thread only
        self._carry: set[str] = set()  # deletions of jobs that never ran (under _cond)
        self._errors: list[CheckpointMirrorError] = []
        self._reported = 0
        self._cleaned = False
        self._closed = False

    # ------------------------------------------------------------- interface
    def submit(self, name: str, manifest: Mapping[str, Any], deleted: Sequence[str] = ()) -> None:
        """Queue the copy of the committed checkpoint ``name``; returns at once.

        Args:
            name: The ``.pth`` file name in the primary folder.
            manifest: Its manifest, as committed (it is written to the mirror unchanged).
            deleted: File names that retention deleted in the primary after this commit;
                they are deleted in the mirror once this copy has committed.
        """
        job = _Job(name, dict(manifest), set(deleted) - {name})
        with self._cond:
            if self._closed:
                raise CheckpointMirrorError(f"the mirror to {self.directory} is closed")
            # a queued copy that is re-saved or deleted before it started is not needed
            for old in [j for j in self._queue if j.name == name or j.name in job.deleted]:
                self._queue.remove(old)
                job.deleted |= old.deleted - {name}
                logger.debug("mirror: queued copy of %s superseded", old.name)
            job.deleted |= self._carry - {name}
            self._carry.clear()
            self._queue.append(job)
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="vsrkit-ckpt-mirror", daemon=False)
            try:
                thread.start()
            except Exception as exc:  # e.g. "can't start new thread": never raised into save
                self._queue.clear()
                self._carry |= job.deleted
                failed = exc
            else:
                self._thread = thread
                return
        self._fail(name, failed)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted copy is done (committed or failed).

        Returns:
            ``True`` when idle, ``False`` if ``timeout`` (seconds) passed first.
        """
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self) -> None:
        """Finish the queued copies and refuse new ones (errors stay in :attr:`errors`)."""
        self.wait()
        with self._cond:
            self._closed = True

    @property
    def errors(self) -> list[CheckpointMirrorError]:
        """Every failed copy or mirror deletion so far, oldest first."""
        with self._cond:
            return list(self._errors)

    def take_new_errors(self) -> list[CheckpointMirrorError]:
        """The errors not returned by an earlier call (used by ``mirror_strict``)."""
        with self._cond:
            new = self._errors[self._reported :]
            self._reported = len(self._errors)
            return new

    def list(self) -> list[CheckpointRecord]:
        """The checkpoints in the mirror folder (names and manifests only)."""
        return scan_directory(self.directory)

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        if self.low_priority and sys.platform.startswith("linux"):
            try:  # on Linux a thread id names just this thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except OSError as exc:
                logger.debug("mirror: could not lower the copy thread's priority: %s", exc)
        while True:
            with self._cond:
                if not self._queue:
                    self._thread = None
                    self._busy = False
                    self._cond.notify_all()
                    return
                job = self._queue.popleft()
                self._busy = True
            try:
                self._copy(job)
            except _Superseded as why:
                logger.info("mirror: %s not copied: %s", job.name, why)
                self._to_delete |= job.deleted
            except Exception as exc:
                self._to_delete |= job.deleted  # deleted after the next copy that commits
                self._fail(job.name, exc)
            else:
                self._to_delete.discard(job.name)
                self._to_delete |= job.deleted
                self._delete(job.manifest.get("run_id"))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _fail(self, name: str | None, exc: BaseException) -> None:
        target = self.directory / name if name else self.directory
        if isinstance(exc, OSError):
            reason = errno.errorcode.get(exc.errno or 0, "error")
            what = f"{exc.strerror or exc} ({reason})"
        else:
            what = f"{type(exc).__name__}: {exc}"
        err = CheckpointMirrorError(
            f"checkpoint mirror: could not copy {name or 'checkpoints'} to {target}: {what}; "
            f"the primary copy in {self.source} is intact",
            filename=name,
            directory=self.directory,
        )
        logger.error("%s", err)
        with self._cond:
            self._errors.append(err)

    def _copy(self, job: _Job) -> None:
        src = self.source / job.name
        dst = self.directory / job.name
        mdst = self.directory / manifest_name(job.name)
        size, expected = job.manifest["size_bytes"], job.manifest.get("sha256")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:
            remove_stale_temp_files(self.directory, left_by="mirror copy")
            self._cleaned = True
        free = shutil.disk_usage(self.directory).free
        if free < size + self.min_free_bytes:
            raise OSError(
                errno.ENOSPC,
                f"{free / 1e6:.0f} MB free, need about {(size + self.min_free_bytes) / 1e6:.0f}"
                " MB (checkpoint + min_free_mb); nothing was written",
            )
        try:
            fin = open(src, "rb")  # noqa: SIM115 (closed below; the temp file needs it open)
        except FileNotFoundError:
            if self._primary_changed(job):
                raise _Superseded("deleted from the primary before it was copied") from None
            raise
        sha = hashlib.sha256()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        with fin, atomic_open(dst, "wb", fsync=False) as fout:
            copied = 0
            while n := fin.readinto(buf):
                sha.update(view[:n])
                fout.write(view[:n])
                copied += n
            if copied != size or (expected is not None and sha.hexdigest() != expected):
                if self._primary_changed(job):
                    raise _Superseded("re-saved in the primary while it was copied")
                raise CheckpointMirrorError(
                    f"{src} ({copied} bytes) does not match its manifest "
                    f"({size} bytes, sha256 {expected}); not mirrored"
                )
            fout.flush()
            os.fsync(fout.fileno())
            if hasattr(os, "posix_fadvise"):  # a backup copy: keep it out of the page cache
                os.posix_fadvise(fout.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            mdst.unlink(missing_ok=True)  # uncommit an older copy of this name, then replace
        fsync_dir(self.directory)
        try:
            atomic_write_json(mdst, job.manifest)  # the commit marker, last (fsyncs the folder)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        logger.debug("mirror: committed %s (%.1f MB)", dst, size / 1e6)

    def _primary_changed(self, job: _Job) -> bool:
        try:
            now = read_manifest(self.source / manifest_name(job.name))
        except (OSError, ValueError):
            return True
        return (now.get("unix_time"), now.get("sha256")) != (
            job.manifest.get("unix_time"),
            job.manifest.get("sha256"),
        )

    def _delete(self, run_id: Any) -> None:
        """Delete the mirror copies of what retention deleted in the primary (own run only)."""
        for name in sorted(self._to_delete):
            path, mpath = self.directory / name, self.directory / manifest_name(name)
            try:
                manifest = read_manifest(mpath)
            except FileNotFoundError:
                self._to_delete.discard(name)  # never mirrored, or already gone
                continue
            except (OSError, ValueError) as exc:
                logger.warning("mirror: retention left %s alone: %s", path, exc)
                self._to_delete.discard(name)
                continue
            if manifest.get("run_id") != run_id:
                logger.info("mirror: retention left %s alone (another run)", path)
                self._to_delete.discard(name)
                continue
            try:
                mpath.unlink(missing_ok=True)  # uncommit first
                path.unlink(missing_ok=True)
            except OSError as exc:  # kept in the set: tried again after the next copy
                logger.warning("mirror: retention could not delete %s: %s", path, exc)
                continue
            self._to_delete.discard(name)
            logger.info("mirror: retention deleted %s", path)


def pair_with_mirror(
    records: Sequence[CheckpointRecord], mirrored: Sequence[CheckpointRecord]
) -> tuple[list[CheckpointRecord], dict[str, CheckpointRecord]]:
    """Restore candidates: the primary records plus the mirror-only committed copies.

    Returns:
        ``(combined, backups)``: ``combined`` holds every primary record and each committed
        mirror record whose name has no valid primary record; ``backups`` maps a valid
        primary file name to its mirror copy when that copy is of the same commit (same run,
        commit time and size).
    """
    valid = {r.filename: r for r in records if r.valid}
    combined = list(records)
    backups: dict[str, CheckpointRecord] = {}
    for m in mirrored:
        if m.status != "committed":
            continue
        p = valid.get(m.filename)
        if p is None:
            combined.append(m)
        elif (p.run_id, p.commit_time, p.size_bytes) == (m.run_id, m.commit_time, m.size_bytes):
            backups[m.filename] = m
    return combined, backups
