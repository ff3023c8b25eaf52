"""Low-level helpers of the checkpoint writer: hashing file wrapper, tensor walks, metrics."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import copy
import hashlib
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vsrkit.checkpoint.errors import CheckpointValueError

logger = logging.getLogger(__name__)


class HashingWriter:
    """File wrapper for ``torch.save``: sha256 and byte count of what goes through.

    Hashing runs on ``pool``'s single thread, in order, while this thread writes (both release
    the GIL). A big chunk that lies inside one of ``stable`` (address ranges of CPU tensor
    storages that stay alive and unchanged during the save) is hashed in the background
    without waiting, so the hash overlaps the rest of the write and the fsync; any other big
    chunk is hashed before ``write`` returns; small chunks are copied. :meth:`hexdigest`
    waits for the last chunk. With ``pool=None`` it only counts bytes. An ``OSError`` from
    the file is kept in :attr:`error`.
    """

    def __init__(
        self,
        fh: Any,
        pool: concurrent.futures.ThreadPoolExecutor | None,
        stable: Sequence[tuple[int, int]] = (),
    ) -> None:
        self._fh = fh
        self._pool = pool
        self._stable = stable
        self._last: concurrent.futures.Future[None] | None = None
        self._sha = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def _is_stable(self, view: memoryview) -> bool:
        import numpy as np

        start = int(np.frombuffer(view, dtype=np.uint8).ctypes.data)
        end = start + view.nbytes
        return any(lo <= start and end <= hi for lo, hi in self._stable)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        nbytes = view.nbytes
        wait = False
        if self._pool is None:  # counting only: no checksum wanted
            pass
        elif nbytes < 1 << 20:
            self._last = self._pool.submit(self._sha.update, bytes(view))
        else:
            wait = not self._is_stable(view)
            self._last = self._pool.submit(self._sha.update, view)
        try:
            self._fh.write(view)
        except OSError as exc:
            self.error = exc
            raise
        finally:
            if wait and self._last is not None:
                self._last.result()
        self.size += nbytes
        return nbytes

    def flush(self) -> None:
        self._fh.flush()

    def hexdigest(self) -> str | None:
        """The sha256 of everything written, ``None`` without a pool (no checksum)."""
        if self._last is not None:
            self._last.result()
        return self._sha.hexdigest() if self._pool is not None else None


_CRC_LOCK = threading.Lock()


@contextlib.contextmanager
def zip_crc32(enabled: bool) -> Iterator[None]:
    """Turn torch's per-record zip CRC32 on or off for one save (it is a process-wide switch)."""
    import torch.serialization as ts

    with _CRC_LOCK:
        before = ts.get_crc32_options()
        ts.set_crc32_options(enabled)
        try:
            yield
        finally:
            ts.set_crc32_options(before)


def iter_tensors(obj: Any) -> Iterator[Any]:
    """Every tensor inside nested dicts/lists/tuples."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from iter_tensors(v)


def storage_range(t: Any) -> tuple[int, int]:
    storage = t.untyped_storage()
    return (storage.data_ptr(), storage.data_ptr() + storage.nbytes())


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str):
            raise CheckpointValueError(f"checkpoint metrics: keys must be strings, got {key!r}")
        if hasattr(value, "item") and callable(value.item):
            value = value.item()  # a 0-d tensor or numpy scalar
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise CheckpointValueError(
                f"checkpoint metrics: {key!r} must be a number or None, got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            logger.warning("checkpoint metric %r is %r: written as null", key, value)
            value = None
        out[key] = value
    return out


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def walk_tensors(obj: Any, fn: Any, memo: dict[int, Any] | None = None) -> Any:
    """Rebuild nested dicts/lists/tuples, applying ``fn`` to every tensor (shared ones once)."""
    import torch

    memo = {} if memo is None else memo
    if isinstance(obj, torch.Tensor):
        if id(obj) not in memo:
            memo[id(obj)] = fn(obj)
        return memo[id(obj)]
    if isinstance(obj, Mapping):
        cls = type(obj) if type(obj) in (dict, collections.OrderedDict) else dict
        return cls((k, walk_tensors(v, fn, memo)) for k, v in obj.items())  # type: ignore[call-arg]
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(walk_tensors(v, fn, memo) for v in obj)
    return copy.deepcopy(obj)


def remove_stale_temp_files(directory: Path, *, left_by: str) -> None:
    """Delete the temp files of checkpoint writes killed mid-way in ``directory`` (only call it
    from the process that writes there); ``left_by`` names the writer for the log."""
    from vsrkit._atomic import remove_temp_files

    remove_temp_files(directory, "checkpoint_*", left_by=left_by)
