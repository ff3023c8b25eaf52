"""The write path of a checkpoint folder: :class:`CheckpointWriter`.

A save checks the free space first, streams ``torch.save`` through a hashing file wrapper into
a temp file (the sha256 is computed on a helper thread while the bytes are written), fsyncs and
renames it, then writes the manifest (the commit marker) the same way. For a background save
the state is first copied to CPU memory on the caller's thread (:meth:`CheckpointWriter.snapshot`,
reusing the previous save's buffers). Retention, the mirror and the choice of thread belong to
the :class:`~vsrkit.checkpoint.CheckpointManager`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import errno
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsrkit._atomic import atomic_open, atomic_write_json
from vsrkit._version import __version__
from vsrkit.checkpoint._io import (
    HashingWriter,
    iter_tensors,
    storage_range,
    walk_tensors,
    zip_crc32,
)
from vsrkit.checkpoint.errors import CheckpointWriteError
from vsrkit.checkpoint.names import format_checkpoint_name, manifest_name
from vsrkit.checkpoint.records import MANIFEST_FORMAT, MANIFEST_VERSION, read_manifest

__all__ = ["CheckpointWriter"]

logger = logging.getLogger("vsrkit.checkpoint.manager")

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


class CheckpointWriter:
    """Writes committed checkpoint files into one folder (one thread at a time).

    Args:
        directory: The checkpoint folder.
        min_free_bytes: Free space that must remain after the estimated checkpoint size.
        checksum: Hash every file (sha256) beside the write.
        torch_crc32: Also compute torch's per-record zip CRC32 (process-wide switch, flipped
            for the duration of ``torch.save`` only).

    Example:
        >>> import tempfile, torch
        >>> w = CheckpointWriter(tempfile.mkdtemp(), min_free_bytes=0)
        >>> path, manifest = w.write(5, None, {"w": torch.ones(2)}, run_id="demo")
        >>> path.name, manifest["step"], manifest["type"]
        ('checkpoint_step_0000005.pth', 5, 'regular')
        >>> w.close()
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        min_free_bytes: int,
        checksum: bool = True,
        torch_crc32: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.min_free_bytes = int(min_free_bytes)
        self.checksum = bool(checksum)
        self.torch_crc32 = bool(torch_crc32)
        self._hasher: concurrent.futures.ThreadPoolExecutor | None = None
        self._buffers: dict[tuple[Any, ...], Any] = {}

    def check_free_space(self, state: Mapping[str, Any], name: str) -> None:
        """Refuse a save that would leave less than ``min_free_bytes`` free.

        Raises:
            CheckpointWriteError: Too little free space; nothing was written.
        """
        need = (
            sum(t.nelement() * t.element_size() for t in iter_tensors(state)) + self.min_free_bytes
        )
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise CheckpointWriteError(
                f"not enough free space in {self.directory} for {name}: {free / 1e6:.0f} MB free, "
                f"need about {need / 1e6:.0f} MB (checkpoint + min_free_mb); nothing was written"
            )

    def snapshot(self, state: Mapping[str, Any]) -> Any:
        """Copy every tensor to CPU memory now, reusing the previous snapshot's buffers.

        Safe when the previous background save has finished. CUDA tensors go to pinned
        buffers with one synchronize at the end.
        """
        import torch

        old, new = self._buffers, {}
        counter = iter(range(1 << 62))
        devices: set[str] = set()

        def copy(t: Any) -> Any:
            key = (next(counter), tuple(t.shape), t.dtype, t.device.type)
            buf = old.get(key)
            if buf is None:
                pin = t.device.type == "cuda"
                buf = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin)
            devices.add(t.device.type)
            buf.copy_(t.detach(), non_blocking=t.device.type == "cuda")
            new[key] = buf
            return buf

        snapshot = walk_tensors(state, copy)
        if "cuda" in devices:
            torch.cuda.synchronize()
        self._buffers = new
        return snapshot

    def _hash_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._hasher is None:
            self._hasher = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="vsrkit-sha256"
            )
        return self._hasher

    def write(
        self,
        step: int,
        tag: str | None,
        state: Mapping[str, Any],
        *,
        run_id: str,
        metrics: Mapping[str, Any] | None = None,
        runtime_config: str | None = None,
        is_async: bool = False,
    ) -> tuple[Path, dict[str, Any]]:
        """Write ``state`` as the checkpoint of ``step`` and commit it with its manifest.

        Returns:
            ``(path, manifest)``.

        Raises:
            CheckpointWriteError: The disk refused (full, read-only, no permission); the temp
                file is removed and earlier checkpoints are untouched.
        """
        import torch

        name = format_checkpoint_name(step, tag)
        path = self.directory / name
        mpath = self.directory / manifest_name(name)
        started = time.perf_counter()
        old = _manifest_or_none(mpath)
        if old is not None and old.get("run_id") != run_id:
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
                "metrics": dict(metrics or {}),
                "size_bytes": writer.size,
                "sha256": sha256,
                "time": _dt.datetime.fromtimestamp(now, tz=_dt.timezone.utc).isoformat(),
                "unix_time": now,
                "run_id": run_id,
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
        return path, manifest

    def close(self) -> None:
        """Stop the hashing thread and let the snapshot buffers go."""
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None
        self._buffers.clear()


def _manifest_or_none(mpath: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(mpath)
    except (OSError, ValueError):
        return None
