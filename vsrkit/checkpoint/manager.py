"""CheckpointManager: atomic, verified, retained checkpoints of one training run.

Thread/process-safety contract: one manager writes a folder, from one process (rank 0 under
DDP). Its methods may be called from any thread (a lock serializes them) but are meant for the
training loop's thread. Readers in other processes (``vsrkit checkpoints list``, a monitor)
may list and load at any time: they only ever see committed files, because every file is
written to a temp file, fsynced and renamed, and the manifest (the commit marker) comes last.
Two managers writing the same folder at the same time is not supported. With ``mirror_dir``,
copies to the mirror run on their own background thread (see :mod:`vsrkit.checkpoint.mirror`):
``save`` never waits for them; ``wait``, ``restore`` and ``close`` do.

The manager ties three parts together: the write path (:mod:`vsrkit.checkpoint.writer`),
retention (:mod:`vsrkit.checkpoint.retention`) and restore planning
(:mod:`vsrkit.checkpoint.restore`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from vsrkit.checkpoint._io import check_metrics, remove_stale_temp_files
from vsrkit.checkpoint.errors import (
    CheckpointError,
    CheckpointMirrorError,
    CheckpointNotFoundError,
    CheckpointValueError,
)
from vsrkit.checkpoint.mirror import CheckpointMirror
from vsrkit.checkpoint.names import format_checkpoint_name
from vsrkit.checkpoint.records import CheckpointRecord, read_manifest, scan_directory
from vsrkit.checkpoint.restore import Restorer, adopted_run
from vsrkit.checkpoint.retention import KeepAll, RetentionPolicy, apply_retention, best_record
from vsrkit.checkpoint.writer import CheckpointWriter

__all__ = ["CheckpointManager"]

logger = logging.getLogger(__name__)


class CheckpointManager:
    """Saves, lists, retains and restores the checkpoints of a training run.

    Args:
        directory: The checkpoint folder (created if missing).
        keep: A retention policy (``LatestN(5)``, ``AnyOf(...)``): what it keeps is kept, the
            rest deleted after each save commits (the checkpoint just saved excepted). Only
            committed checkpoints of this manager's run are ever deleted. Nothing else is kept
            besides: compose :class:`~vsrkit.checkpoint.ResumeCandidate` and ``BestN`` for the
            checkpoint a resume would pick and the best (``standard_retention(n)`` does).
            Default ``KeepAll()`` (``None`` too): nothing is deleted.
        async_save: Snapshot the state to CPU memory on the caller's thread and write it in
            a background thread (at most one save in flight).
        run_id: Identifies this run in manifests; ``None`` makes a fresh one, and a
            ``restore`` of a run's newest checkpoint (before any save) continues that run.
        best_metric: Manifest metric that defines "best" for ``restore(best=True)``.
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
        >>> from vsrkit.checkpoint import AnyOf, LatestN, ResumeCandidate
        >>> keep = AnyOf(LatestN(2), ResumeCandidate())
        >>> with CheckpointManager(tempfile.mkdtemp(), keep=keep) as mgr:
        ...     for step in (100, 200, 300):
        ...         _ = mgr.save(step, {"w": torch.ones(2) * step}, metrics={"quality": 0.5})
        ...     [r.step for r in mgr.list()], mgr.restore()[0]
        ([200, 300], 300)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: RetentionPolicy | None = KeepAll(),  # noqa: B008 - a stateless policy
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
            raise CheckpointValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise CheckpointValueError(f"run_id must be a non-empty string or None, got {run_id!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep: RetentionPolicy = KeepAll() if keep is None else keep
        self.async_save = bool(async_save)
        self.best_metric, self.best_mode = best_metric, best_mode
        self._writer = CheckpointWriter(
            self.directory,
            min_free_bytes=int(min_free_mb * 1e6),
            checksum=checksum,
            torch_crc32=torch_crc32,
        )
        self._run_id_given = run_id is not None
        self.run_id: str = run_id or uuid.uuid4().hex[:12]
        self._saved_any = False
        self._lock = threading.RLock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future[Path] | None = None
        self._closed = False
        #: The file the last successful :meth:`restore` loaded (``None`` before one).
        self.restored_from: Path | None = None
        self.mirror_strict = bool(mirror_strict)
        #: The :class:`CheckpointMirror` of ``mirror_dir``, ``None`` without one.
        self.mirror: CheckpointMirror | None = None
        if mirror_dir is not None:
            self.mirror = CheckpointMirror(self.directory, mirror_dir, min_free_mb=min_free_mb)
        self._restorer = Restorer(self.directory, mirror=self.mirror)

    @property
    def mirror_errors(self) -> list[CheckpointMirrorError]:
        """Every failed mirror copy so far (empty without a mirror); the primary is intact."""
        return self.mirror.errors if self.mirror is not None else []

    @property
    def checksum(self) -> bool:
        """Whether every file is hashed (sha256 in its manifest)."""
        return self._writer.checksum

    @property
    def min_free_bytes(self) -> int:
        """Free space that must remain after a save, in bytes."""
        return self._writer.min_free_bytes

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
            self._writer.check_free_space(state, name)
            if not self._saved_any:
                # a manager that only reads never deletes (another process may be writing)
                remove_stale_temp_files(self.directory, left_by="save")
            self._saved_any = True
            if not self.async_save:
                return self._commit(step, tag, state, clean_metrics, rc, False)
            started = time.perf_counter()
            snapshot = self._writer.snapshot(state)
            logger.debug("snapshot of step %d took %.3f s", step, time.perf_counter() - started)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="vsrkit-ckpt"
                )
            self._pending = self._executor.submit(
                self._commit, step, tag, snapshot, clean_metrics, rc, True
            )
            return self.directory / name

    def _commit(
        self,
        step: int,
        tag: str | None,
        state: Mapping[str, Any],
        metrics: dict[str, Any],
        runtime_config: str | None,
        is_async: bool,
    ) -> Path:
        """Write, then retention, then the mirror copy (on the saving thread)."""
        path, manifest = self._writer.write(
            step,
            tag,
            state,
            run_id=self.run_id,
            metrics=metrics,
            runtime_config=runtime_config,
            is_async=is_async,
        )
        deleted = self._retain(path.name)
        if self.mirror is not None:
            self.mirror.submit(path.name, manifest, deleted)
        return path

    def _retain(self, just_saved: str) -> list[str]:
        """Apply the retention policy to this run's committed checkpoints; returns the file
        names deleted."""
        if isinstance(self.keep, KeepAll):
            return []
        records = scan_directory(self.directory)
        own = [r for r in records if r.status == "committed" and r.run_id == self.run_id]
        others = len(records) - len(own)
        if others:
            logger.debug(
                "retention: %d checkpoint(s) of other runs or without manifest left alone", others
            )
        return [r.filename for r in apply_retention(own, self.keep, protect=(just_saved,))]

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

    def _collect(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # re-raises the background error here

    # ---------------------------------------------------------------- reading
    def list(self) -> list[CheckpointRecord]:
        """All checkpoints of the primary folder sorted by step, from names and manifests only.

        Mirror-only checkpoints are not listed here (``mgr.mirror.list()`` lists the mirror).
        """
        return scan_directory(self.directory)

    def latest_step(self) -> int | None:
        """The step ``restore()`` tries first (mirror-only checkpoints included), or ``None``."""
        order = self._restorer.candidates(self.list(), self.run_id)[0]
        return order[0].step if order else None

    def best_step(self, metric: str = "quality", mode: str = "max") -> int | None:
        """Step of the valid checkpoint (any run) with the best ``metric``; ties: highest step."""
        best = best_record([r for r in self.list() if r.valid], metric, mode)
        return best.step if best else None

    def manifest(self, step: int) -> dict[str, Any]:
        """The manifest dict of the checkpoint at ``step`` (the one ``restore(step)`` loads)."""
        for rec in self._restorer.candidates(self.list(), self.run_id)[0]:
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
            rec, state, records = self._restorer.restore(
                self.list(),
                run_id=self.run_id,
                step=step,
                best=(self.best_metric, self.best_mode) if best and step is None else None,
                map_location=map_location,
                verify=verify,
            )
            # restoring a run's newest checkpoint before any save continues that run (also when
            # its newer files were set aside: retention goes on)
            if not (self._run_id_given or self._saved_any):
                adopted = adopted_run(rec, records)
                if adopted is not None:
                    logger.info("continuing run %s from step %d", adopted, rec.step)
                    self.run_id = adopted
            self.restored_from = rec.path
            return rec.step, state

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
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                    self._executor = None
                self._writer.close()
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
