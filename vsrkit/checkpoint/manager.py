"""CheckpointManager: atomic, verified, retained checkpoints of one training run.

Thread/process-safety contract: one manager writes a folder, from one process (rank 0 under
DDP). Its methods may be called from any thread (a lock serializes them) but are meant for the
training loop's thread. Readers in other processes (``vsrkit checkpoints list``, a monitor)
may list and load at any time: they only ever see committed files, because every file is
written to a temp file, fsynced and renamed, and the manifest (the commit marker) comes last.
Two managers writing the same folder at the same time is not supported. With ``mirror_dir``,
copies to the mirror run on their own background thread (see :mod:`vsrkit.checkpoint.mirror`):
``save`` never waits for them; ``wait``, ``restore`` and ``close`` do.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import errno
import logging
import os
import pickle
import re
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from vsrkit._atomic import atomic_open, atomic_write_json
from vsrkit._version import __version__
from vsrkit.checkpoint._io import (
    HashingWriter,
    check_metrics,
    iter_tensors,
    remove_stale_temp_files,
    sha256_file,
    storage_range,
    walk_tensors,
    zip_crc32,
)
from vsrkit.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointMirrorError,
    CheckpointNotFoundError,
    CheckpointWriteError,
)
from vsrkit.checkpoint.mirror import CheckpointMirror, pair_with_mirror
from vsrkit.checkpoint.names import format_checkpoint_name, manifest_name
from vsrkit.checkpoint.records import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    CheckpointRecord,
    read_manifest,
    resume_order,
    scan_directory,
)
from vsrkit.checkpoint.retention import RetentionPolicy, best_record

__all__ = ["CheckpointManager"]

logger = logging.getLogger(__name__)

_Records = list[CheckpointRecord]  # ``list`` is a method name inside the class
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


class CheckpointManager:
    """Saves, lists, retains and restores the checkpoints of a training run.

    Args:
        directory: The checkpoint folder (created if missing).
        keep: A retention policy (``LatestN(5)``, ``AnyOf(...)``); ``None`` keeps everything.
            Only committed checkpoints of this manager's run are ever deleted, after the new
            save has committed; the latest valid and the best checkpoint are always kept.
        async_save: Snapshot the state to CPU memory on the caller's thread and write it in
            a background thread (at most one save in flight).
        run_id: Identifies this run in manifests; ``None`` makes a fresh one, and a
            ``restore`` of a run's newest checkpoint (before any save) continues that run.
        best_metric: Manifest metric that defines "best" for retention.
        best_mode: ``"max"`` or ``"min"``.
        min_free_mb: Free space (MB) that must remain after the estimated checkpoint size,
            checked before writing.
        torch_crc32: Also compute torch's per-record zip CRC32. Off by default: ``torch.load``
            never checks it, and the manifest's sha256 of the whole file (checked by
            ``restore(verify=True)`` and ``vsrkit checkpoints verify``) covers the same
            damage. The switch is process-wide in torch; it is flipped only for the duration
            of this manager's ``torch.save`` call.
        checksum: Hash every file (sha256, on a helper thread while it is written). With
            ``False`` the manifest's ``sha256`` is ``null`` and damage is only caught by
            the size check and by loading; it saves the hashing CPU time.
        mirror_dir: A second folder (another disk, a network drive) that receives a copy of
            every committed checkpoint and manifest, in the background, with the same commit
            protocol; retention is applied there too. ``restore`` falls back to it when the
            primary copy is missing or corrupt. ``None``: no mirror.
        mirror_strict: With ``False`` (default) a failed mirror copy is logged and kept in
            :attr:`mirror_errors` only; with ``True`` ``wait()`` and ``close()`` also raise
            :class:`CheckpointMirrorError` for the failures not raised before. ``save``
            never raises for the mirror.

    Example:
        >>> import tempfile, torch
        >>> from vsrkit.checkpoint import LatestN
        >>> with CheckpointManager(tempfile.mkdtemp(), keep=LatestN(2)) as mgr:
        ...     for step in (100, 200, 300):
        ...         _ = mgr.save(step, {"w": torch.ones(2) * step}, metrics={"quality": 0.5})
        ...     [r.step for r in mgr.list()], mgr.restore()[0]
        ([200, 300], 300)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: RetentionPolicy | None = None,
        async_save: bool = False,
        run_id: str | None = None,
        best_metric: str = "quality",
        best_mode: str = "max",
        min_free_mb: float = 64.0,
        torch_crc32: bool = False,
        checksum: bool = True,
        mirror_dir: str | os.PathLike[str] | None = None,
        mirror_strict: bool = False,
    ) -> None:
        if keep is not None and not callable(getattr(keep, "keep", None)):
            raise TypeError(f"keep must be a retention policy (LatestN, AnyOf, ...), got {keep!r}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string or None, got {run_id!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep, self.async_save = keep, bool(async_save)
        self.best_metric, self.best_mode = best_metric, best_mode
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.torch_crc32 = bool(torch_crc32)
        self.checksum = bool(checksum)
        self._run_id_given = run_id is not None
        self.run_id: str = run_id or uuid.uuid4().hex[:12]
        self._saved_any = False
        self._lock = threading.RLock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future[Path] | None = None
        self._hasher: concurrent.futures.ThreadPoolExecutor | None = None
        self._snapshot_buffers: dict[tuple[Any, ...], Any] = {}
        self._closed = False
        #: The file the last successful :meth:`restore` loaded (``None`` before one).
        self.restored_from: Path | None = None
        self.mirror_strict = bool(mirror_strict)
        #: The :class:`CheckpointMirror` of ``mirror_dir``, ``None`` without one.
        self.mirror: CheckpointMirror | None = None
        if mirror_dir is not None:
            self.mirror = CheckpointMirror(self.directory, mirror_dir, min_free_mb=min_free_mb)

    @property
    def mirror_errors(self) -> list[CheckpointMirrorError]:
        """Every failed mirror copy so far (empty without a mirror); the primary is intact."""
        return self.mirror.errors if self.mirror is not None else []

    # ----------------------------------------------------------------- saving
    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        *,
        metrics: Mapping[str, Any] | None = None,
        tag: str | None = None,
        runtime_config: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Write ``state`` as the checkpoint of ``step``; the manifest commits it.

        Args:
            step: The training step the state belongs to (from the caller, never counted here).
            state: Tensors and plain values (nested dicts/lists); load-safe with ``weights_only``.
            metrics: Numbers such as ``quality`` and ``loss`` for the manifest (NaN becomes null).
            tag: ``"best"``, ``"emergency"`` or another tag in the file name.
            runtime_config: Name or path of the runtime-config snapshot, stored in the manifest.

        Returns:
            The path of the checkpoint file (committed when this returns, or, with
            ``async_save``, once :meth:`wait` returns).

        Raises:
            CheckpointWriteError: Disk full, no permission, too little free space; or the
                previous background save failed. The previous good checkpoint is kept.
        """
        name = format_checkpoint_name(step, tag)
        if not isinstance(state, Mapping):
            raise TypeError(f"checkpoint state must be a mapping, got {type(state).__name__}")
        clean_metrics = check_metrics(metrics)
        rc = None if runtime_config is None else os.fspath(runtime_config)
        with self._lock:
            if self._closed:
                raise CheckpointError(f"CheckpointManager for {self.directory} is closed")
            self._collect()
            self._check_free_space(state, name)
            if not self._saved_any:
                # a manager that only reads never deletes (another process may be writing)
                remove_stale_temp_files(self.directory, left_by="save")
            self._saved_any = True
            if not self.async_save:
                return self._write(step, tag, name, state, clean_metrics, rc, False)
            started = time.perf_counter()
            snapshot = self._snapshot(state)
            logger.debug("snapshot of step %d took %.3f s", step, time.perf_counter() - started)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="vsrkit-ckpt"
                )
            self._pending = self._executor.submit(
                self._write, step, tag, name, snapshot, clean_metrics, rc, True
            )
            return self.directory / name

    def _snapshot(self, state: Mapping[str, Any]) -> Any:
        """Copy every tensor to CPU memory now, reusing the previous save's buffers.

        Safe because the previous background save has finished before this runs. CUDA tensors
        go to pinned buffers with one synchronize at the end.
        """
        import torch

        old, new = self._snapshot_buffers, {}
        counter = iter(range(1 << 62))
        cuda = False

        def copy(t: Any) -> Any:
            nonlocal cuda
            key = (next(counter), tuple(t.shape), t.dtype, t.device.type)
            buf = old.get(key)
            if buf is None:
                pin = t.device.type == "cuda"
                buf = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin)
            cuda = cuda or t.device.type == "cuda"
            buf.copy_(t.detach(), non_blocking=t.device.type == "cuda")
            new[key] = buf
            return buf

        snapshot = walk_tensors(state, copy)
        if cuda:
            torch.cuda.synchronize()
        self._snapshot_buffers = new
        return snapshot

    def wait(self) -> None:
        """Block until the in-flight async save and the mirror copies are done.

        Raises the async save's error if it failed; mirror failures only with ``mirror_strict``.
        """
        with self._lock:
            self._collect()
            self._wait_mirror()

    def _wait_mirror(self) -> None:
        if self.mirror is None:
            return
        self.mirror.wait()
        if self.mirror_strict:
            new = self.mirror.take_new_errors()
            if new:
                raise CheckpointMirrorError(
                    f"{len(new)} mirror cop{'y' if len(new) == 1 else 'ies'} failed: "
                    + "; ".join(str(e) for e in new),
                    filename=new[0].filename if len(new) == 1 else None,
                    directory=self.mirror.directory,
                )

    def _hash_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._hasher is None:
            self._hasher = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="vsrkit-sha256"
            )
        return self._hasher

    def _collect(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # re-raises the background error here

    def _check_free_space(self, state: Mapping[str, Any], name: str) -> None:
        need = (
            sum(t.nelement() * t.element_size() for t in iter_tensors(state)) + self.min_free_bytes
        )
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise CheckpointWriteError(
                f"not enough free space in {self.directory} for {name}: {free / 1e6:.0f} MB free, "
                f"need about {need / 1e6:.0f} MB (checkpoint + min_free_mb); nothing was written"
            )

    def _write(
        self,
        step: int,
        tag: str | None,
        name: str,
        state: Mapping[str, Any],
        metrics: dict[str, Any],
        runtime_config: str | None,
        is_async: bool,
    ) -> Path:
        import torch

        path = self.directory / name
        mpath = self.directory / manifest_name(name)
        started = time.perf_counter()
        old = self._manifest_or_none(mpath)
        if old is not None and old.get("run_id") != self.run_id:
            logger.warning("%s: overwriting step %d of run %s", path, step, old.get("run_id"))
        stable = [storage_range(t) for t in iter_tensors(state) if t.device.type == "cpu"]
        writer: HashingWriter | None = None
        try:
            # The file's data is fsynced before its rename; the folder fsync that follows the
            # manifest's rename makes both renames durable, in order (one folder fsync, not two).
            with atomic_open(path, "wb", fsync=False) as fh:
                writer = HashingWriter(fh, self._hash_pool() if self.checksum else None, stable)
                with zip_crc32(self.torch_crc32):
                    torch.save(state, writer)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
                # written in full: uncommit an older file of this name just before replacing it
                mpath.unlink(missing_ok=True)
            sha256 = writer.hexdigest()  # waits for the hash, which ran beside the fsync
            now = time.time()
            manifest = {
                "format": MANIFEST_FORMAT,
                "manifest_version": MANIFEST_VERSION,
                "file": name,
                "step": step,
                "tag": tag,
                "type": tag or "regular",
                "metrics": metrics,
                "size_bytes": writer.size,
                "sha256": sha256,
                "time": _dt.datetime.fromtimestamp(now, tz=_dt.timezone.utc).isoformat(),
                "unix_time": now,
                "run_id": self.run_id,
                "runtime_config": runtime_config,
                "vsrkit_version": __version__,
                "torch_version": torch.__version__,
                "async": is_async,
                "write_seconds": round(time.perf_counter() - started, 4),
            }
            try:
                atomic_write_json(mpath, manifest)
            except BaseException:
                path.unlink(missing_ok=True)  # never leave an uncommitted file behind us
                raise
        except BaseException as exc:
            if writer is not None:
                writer.hexdigest()  # let the hash thread finish with the state's memory
            err = writer.error if writer is not None and writer.error is not None else exc
            if isinstance(err, OSError):
                reason = errno.errorcode.get(err.errno or 0, "error")
                raise CheckpointWriteError(
                    f"could not write checkpoint {path}: {err.strerror or err} ({reason}); "
                    "the temporary file was removed and earlier checkpoints are untouched"
                ) from exc
            raise
        logger.info(
            "saved %s (%.1f MB, %.2f s)", path, writer.size / 1e6, time.perf_counter() - started
        )
        deleted = self._retain(name)
        if self.mirror is not None:
            self.mirror.submit(name, manifest, deleted)
        return path

    @staticmethod
    def _manifest_or_none(mpath: Path) -> dict[str, Any] | None:
        try:
            return read_manifest(mpath)
        except (OSError, ValueError):
            return None

    def _retain(self, just_saved: str) -> list[str]:
        """Apply the retention policy; returns the file names deleted."""
        if self.keep is None:
            return []
        records = scan_directory(self.directory)
        own = [r for r in records if r.status == "committed" and r.run_id == self.run_id]
        keep = set(self.keep.keep(own)) | {just_saved}
        order = resume_order(own, self.run_id)
        if order:
            keep.add(order[0].filename)
        best = best_record(own, self.best_metric, self.best_mode)
        if best is not None:
            keep.add(best.filename)
        deleted = []
        for rec in own:
            if rec.filename in keep:
                continue
            try:
                if rec.manifest_path is not None:
                    rec.manifest_path.unlink(missing_ok=True)  # uncommit first
                rec.path.unlink(missing_ok=True)
                deleted.append(rec.filename)
                logger.info("retention: deleted %s", rec.path)
            except OSError as exc:
                logger.warning("retention: could not delete %s: %s", rec.path, exc)
        others = sum(1 for r in records if r.run_id != self.run_id)
        if others:
            logger.debug(
                "retention: %d checkpoint(s) of other runs or without manifest left alone", others
            )
        return deleted

    # ---------------------------------------------------------------- reading
    def list(self) -> list[CheckpointRecord]:
        """All checkpoints of the primary folder sorted by step, from names and manifests only.

        Mirror-only checkpoints are not listed here (``mgr.mirror.list()`` lists the mirror).
        """
        return scan_directory(self.directory)

    def _candidates(
        self, records: _Records
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
        return resume_order(combined, self.run_id), combined, backups

    def _is_mirrored(self, rec: CheckpointRecord) -> bool:
        return self.mirror is not None and rec.directory == self.mirror.directory

    def latest_step(self) -> int | None:
        """The step ``restore()`` tries first (mirror-only checkpoints included), or ``None``."""
        order = self._candidates(self.list())[0]
        return order[0].step if order else None

    def best_step(self, metric: str = "quality", mode: str = "max") -> int | None:
        """Step of the valid checkpoint (any run) with the best ``metric``; ties: highest step."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        best = best_record([r for r in self.list() if r.valid], metric, mode)
        return best.step if best else None

    def manifest(self, step: int) -> dict[str, Any]:
        """The manifest dict of the checkpoint at ``step`` (the one ``restore(step)`` loads)."""
        for rec in self._candidates(self.list())[0]:
            if rec.step == step and rec.manifest_path is not None:
                return read_manifest(rec.manifest_path)
        raise CheckpointNotFoundError(
            f"no committed checkpoint with a manifest at step {step} in {self.directory}"
        )

    def restore(
        self,
        step: int | None = None,
        *,
        best: bool = False,
        map_location: Any = "cpu",
        verify: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Load a checkpoint with ``torch.load(weights_only=True)``.

        Which one, with ``step=None``: the newest valid checkpoint of this manager's run if it
        has one; otherwise of the run that committed a checkpoint most recently (so a stale
        higher step of an earlier run in the same folder does not shadow the newer run); then
        the remaining ones by step. With ``best=True``: the one with the best ``best_metric``
        first, then the next best. Any file that fails to load (truncated, damaged bytes, a
        size or sha256 that disagrees with its manifest, objects that safe loading refuses)
        is renamed ``*.corrupt`` with its manifest, logged once, and the next one is tried;
        so is every committed file whose size disagrees with its manifest. A file that cannot
        be opened (permissions) is skipped, not renamed. Restoring the newest checkpoint of a
        run before any save adopts that run's id (unless ``run_id`` was given), so retention
        continues the same run.

        With ``mirror_dir``: it first waits for the mirror copies; a checkpoint whose primary
        copy is missing, invalid or fails to load is loaded from the mirror copy of the same
        commit, and mirror-only checkpoints (primary deleted) are candidates like the others.
        A mirror copy is always checked against its manifest's sha256 before loading.

        Args:
            step: A specific step (an error if it is missing or corrupt, nothing renamed).
            best: With ``step=None``, try the best checkpoints first (by ``best_metric``);
                raises :class:`CheckpointNotFoundError` when none has that metric.
            map_location: Passed to ``torch.load``.
            verify: Also check the sha256 of the file against the manifest (zeroed bytes
                inside tensor data load without an error otherwise).

        Returns:
            ``(step, state)``.

        Raises:
            CheckpointNotFoundError: No (valid) checkpoint.
            CheckpointCorruptError: ``step`` was given and that checkpoint is unusable.
        """
        with self._lock:
            self._collect()
            if self.mirror is not None:
                self.mirror.wait()
            order, records, backups = self._candidates(self.list())
            if step is not None:
                order = [r for r in order if r.step == step]
                if not order:
                    raise CheckpointNotFoundError(
                        f"no valid checkpoint at step {step} in {self.directory} "
                        f"(found steps: {sorted({r.step for r in records if r.valid})[-10:]})"
                    )
                rec = order[0]
                try:
                    state = self._load(rec, map_location, verify or self._is_mirrored(rec))
                except (CheckpointCorruptError, OSError) as exc:
                    backup = backups.get(rec.filename)
                    if backup is None:
                        raise
                    logger.warning("%s; loading the mirror copy %s", exc, backup.path)
                    rec, state = backup, self._load(backup, map_location, True)
                self._maybe_adopt(rec, records)
                self.restored_from = rec.path
                return rec.step, state
            set_aside: set[Path] = set()
            for rec in records:  # committed once, damaged since: never a candidate
                if rec.status == "mismatch" and not self._is_mirrored(rec):
                    logger.warning(
                        "%s does not match its manifest (%s); renamed to *.corrupt",
                        rec.path,
                        _mismatch_reason(rec),
                    )
                    self._quarantine(rec)
                    set_aside.add(rec.path)
            if best:
                order = self._best_order(order)
            for first in order:
                backup = backups.get(first.filename) if not self._is_mirrored(first) else None
                for cand in (first, backup):
                    if cand is None:
                        continue
                    try:
                        state = self._load(cand, map_location, verify or self._is_mirrored(cand))
                    except CheckpointError as exc:
                        logger.warning("%s; renamed to *.corrupt, trying the next one", exc)
                        self._quarantine(cand)
                        set_aside.add(cand.path)
                        continue
                    except OSError as exc:
                        logger.warning(
                            "cannot read %s (%s); skipped, trying the next one", cand.path, exc
                        )
                        continue
                    if self._is_mirrored(cand):
                        logger.warning("restored step %d from the mirror: %s", cand.step, cand.path)
                    # a run whose newer files were set aside still continues (retention goes on)
                    self._maybe_adopt(cand, [r for r in records if r.path not in set_aside])
                    self.restored_from = cand.path
                    return cand.step, state
            raise CheckpointNotFoundError(f"no valid checkpoint to restore in {self.directory}")

    def _best_order(self, order: _Records) -> _Records:
        """``order`` re-sorted best first by ``best_metric`` (records without it left out)."""
        sign = -1.0 if self.best_mode == "max" else 1.0
        scored = [(r.metrics.get(self.best_metric), i, r) for i, r in enumerate(order)]
        usable = [
            (sign * float(v), i, r)
            for v, i, r in scored
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        ]
        if not usable:
            raise CheckpointNotFoundError(
                f"no checkpoint with a {self.best_metric!r} metric in {self.directory}"
            )
        return [r for _, _, r in sorted(usable, key=lambda t: (t[0], t[1]))]

    def _load(self, rec: CheckpointRecord, map_location: Any, verify: bool) -> dict[str, Any]:
        import torch

        if rec.manifest_path is not None:
            # the listing checked the size against the manifest; check again in case it changed
            size = rec.path.stat().st_size
            expected = rec.size_bytes
            if size != expected:
                raise CheckpointCorruptError(f"{rec.path}: {size} bytes, manifest says {expected}")
            if verify and self._sha256_matches(rec) is None:
                logger.warning(
                    "%s: no sha256 in its manifest (checksum=False); size checked only",
                    rec.path,
                )
        try:
            state = torch.load(rec.path, map_location=map_location, weights_only=True)
        except OSError:
            raise
        except Exception as exc:  # truncated zip, bad CRC, garbage bytes, refused objects
            if not verify:  # damage first: a checksum that disagrees says what happened
                self._sha256_matches(rec)
            refused = _refused_global(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
            if refused is not None:  # an intact file with real objects, refused on purpose
                raise CheckpointError(
                    f"{rec.path}: holds Python objects that are never loaded ({refused}); "
                    "a checkpoint may hold only tensors and plain values"
                ) from exc
            if isinstance(exc, pickle.UnpicklingError):
                reason = "damaged pickled data"  # never torch's advice on weights_only
            else:
                reason = _first_line(exc)
            raise CheckpointCorruptError(f"{rec.path}: cannot be loaded ({reason})") from exc
        if not isinstance(state, dict):
            raise CheckpointCorruptError(
                f"{rec.path}: expected a dict state, found {type(state).__name__}"
            )
        return state

    @staticmethod
    def _sha256_matches(rec: CheckpointRecord) -> bool | None:
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

    def _maybe_adopt(self, rec: CheckpointRecord, records: Sequence[CheckpointRecord]) -> None:
        if self._run_id_given or self._saved_any or rec.run_id is None:
            return
        same_run = [r.step for r in records if r.valid and r.run_id == rec.run_id]
        if rec.step == max(same_run):
            logger.info("continuing run %s from step %d", rec.run_id, rec.step)
            self.run_id = rec.run_id

    @staticmethod
    def _quarantine(rec: CheckpointRecord) -> None:
        """Rename the file and its manifest to ``*.corrupt`` (listings skip those names)."""
        for p in (rec.path, rec.manifest_path):
            if p is not None:
                try:
                    os.replace(p, p.with_name(p.name + ".corrupt"))
                except OSError as exc:
                    logger.warning("could not rename %s: %s", p, exc)

    # -------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Wait for an in-flight save (raising its error) and for the mirror copies, and stop
        the background threads. Mirror failures are logged (raised with ``mirror_strict``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._collect()
            finally:
                for pool in (self._executor, self._hasher):
                    if pool is not None:
                        pool.shutdown(wait=True)
                self._executor = self._hasher = None
                self._snapshot_buffers.clear()
                if self.mirror is not None:
                    self.mirror.close()
                    if self.mirror.errors:
                        logger.error(
                            "checkpoint mirror %s: %d failure(s) in this run (see mirror_errors);"
                            " the primary checkpoints in %s are intact",
                            self.mirror.directory,
                            len(self.mirror.errors),
                            self.directory,
                        )
            self._wait_mirror()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception as bg:  # don't hide the exception that is already propagating
            logger.error("background checkpoint save failed while exiting: %s", bg)

    def __repr__(self) -> str:
        where = str(self.directory)
        return f"CheckpointManager({where!r}, keep={self.keep!r}, run_id={self.run_id!r})"


def _first_line(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception, without torch's advice on ``weights_only``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    if "weights_only" in text:
        text = "damaged data"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refused_global(message: str) -> str | None:
    """The name of the global that ``weights_only`` loading refused, if that was the error."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if match:
        return match.group(1)
    return "unsupported object" if "Unsupported global" in message else None


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
