"""Per-frame records kept off the device: host memory up to a budget, then a temporary file.

Streaming inference keeps two things per frame until the forward pass reaches that frame: the
low-resolution input and the backward branch's features. :class:`FeatureStore` holds them as
fixed-size records. Records ``0 .. host_records - 1`` live in host memory (pinned when they
feed a GPU); later records go to a spill file in ``spill_dir``, written and read with
positioned I/O (``pwrite``/``preadv``), so what is spilled lives in the page cache, never in
the process's resident memory: the resident set stays at the budget whatever the clip length
(a memory-mapped file would count its dirty pages as resident until they are written back).
A record the forward pass is done with is released: its host memory is freed, and its file
pages are dropped from the page cache (``posix_fadvise``).

The spill file is created with a unique name and, on POSIX, unlinked at once: it has no name
while it is used, so it disappears when the store closes, on an exception, when a generator
using it is closed, and even when the process is killed. Elsewhere it is removed on close.

With ``staged=True`` (the GPU path) values arrive on the device and are copied to pinned host
buffers with ``non_blocking=True``; a spilled value waits in a small ring of staging buffers
until its copy has finished, so the device never waits for the disk.

Not thread-safe: one store belongs to one streaming run.

Example:
    >>> import torch
    >>> fields = {"lr": ((3, 4, 4), torch.uint8), "feat": ((2, 8, 4, 4), torch.float32)}
    >>> with FeatureStore(fields, host_budget=0) as store:  # every record spills
    ...     store.put(0, "feat", torch.ones(8, 4, 4), part=1)
    ...     float(store.get(0, "feat", part=1).sum()), store.spilled_records
    (128.0, 1)
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vsrkit.infer.errors import InferenceError

__all__ = ["FeatureStore", "SPILL_PREFIX", "default_host_budget"]

#: Name prefix of spill files (``vsrkit-spill-*.bin``).
SPILL_PREFIX = "vsrkit-spill-"
_PAGE = 4096
_STAGING_RING = 2  # staging buffers per field shape and direction


def default_host_budget() -> int:
    """The default host budget: a quarter of physical memory, at most 4 GiB (bytes)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 8 << 30
    return int(min(4 << 30, total // 4))


@dataclass(frozen=True)
class _Field:
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int  # within a record in the file
    nbytes: int

    @property
    def part_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def part_nbytes(self) -> int:
        return self.nbytes // self.shape[0]


def _byte_view(t: Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy (any dtype, bf16 included)."""
    return t.reshape(-1).view(torch.uint8).numpy().data


def _close_spill(fd: int, path: str, unlinked: bool) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    if not unlinked:
        with contextlib.suppress(OSError):
            os.unlink(path)


class FeatureStore:
    """Fixed-size per-frame records in host memory up to ``host_budget`` bytes, then on disk.

    Args:
        fields: name -> ``(shape, dtype)`` of each value a record holds. A field whose values
            are put in parts (tiles) has the part index as its first dimension.
        host_budget: bytes of records kept in host memory; the rest is spilled.
        spill_dir: folder of the spill file (default: the system temp folder).
        pin_memory: allocate host records and staging buffers in pinned memory (CUDA).
        staged: values come from (and go back to) a device through staging buffers with
            non-blocking copies; ``False`` stores CPU tensors as they are.

    Attributes:
        host_records: how many records (frames) fit the budget.
        record_bytes: bytes of one record.
        spilled_records: records written to the spill file so far.
        spill_bytes: size of the spill file (bytes).
        spill_path: the spill file's name, ``None`` before the first spill (on POSIX it is
            unlinked right after creation, so the name is gone while the data lives on).
    """

    def __init__(
        self,
        fields: Mapping[str, tuple[Sequence[int], torch.dtype]],
        *,
        host_budget: int,
        spill_dir: str | os.PathLike[str] | None = None,
        pin_memory: bool = False,
        staged: bool = False,
    ) -> None:
        if host_budget < 0:
            raise ValueError(f"host_budget must be >= 0 bytes, got {host_budget}")
        self._fields: dict[str, _Field] = {}
        offset = 0
        for name, (shape, dtype) in fields.items():
            shape = tuple(int(s) for s in shape)
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            self._fields[name] = _Field(shape, dtype, offset, nbytes)
            offset += -(-nbytes // 64) * 64  # keep every field 64-byte aligned
        self.record_bytes = sum(f.nbytes for f in self._fields.values())
        self._slot_bytes = -(-offset // _PAGE) * _PAGE  # file slots page-aligned
        self.host_records = host_budget // max(self.record_bytes, 1)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
        self.pin_memory = bool(pin_memory)
        self.staged = bool(staged)
        self._ram: dict[int, dict[str, Tensor]] = {}
        self._events: dict[tuple[int, str], Any] = {}
        # staging rings: (field, direction) -> list of [buffer, event, pending write key]
        self._rings: dict[tuple[str, str], list[list[Any]]] = {}
        self._ring_pos: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[int, str, int | None], list[Any]] = {}
        self._fd: int | None = None
        self._finalizer: weakref.finalize | None = None
        self.spill_path: Path | None = None
        self.spilled_records = 0
        self.spill_bytes = 0
        self._written: set[int] = set()
        self._closed = False

    # ---------------------------------------------------------------- public
    def put(self, index: int, name: str, value: Tensor, *, part: int | None = None) -> None:
        """Keep ``value`` as field ``name`` (or part ``part`` of it) of record ``index``."""
        field = self._field(name, value, part)
        if index < self.host_records:
            self._put_ram(index, name, field, value, part)
        else:
            self._put_file(index, name, field, value, part)

    def get(
        self,
        index: int,
        name: str,
        *,
        part: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Field ``name`` (or part ``part``) of record ``index``, on ``device``.

        On the CPU a host record is returned without a copy: do not modify it.
        """
        field = self._fields[name]
        dev = torch.device(device)
        if index < self.host_records:
            rec = self._ram.get(index)
            if rec is None or name not in rec:
                raise KeyError(f"record {index} has no {name!r}")
            t = rec[name] if part is None else rec[name][part]
            if dev.type == "cpu":
                self._wait_event((index, name))
                return t
            return t.to(dev, non_blocking=True)
        key = (index, name, part)
        staged = self._pending.get(key)
        if staged is not None:  # still in a staging buffer: the copy is ordered on the stream
            buf = staged[0]
            if dev.type == "cpu":
                self._sync(staged)
                return buf.clone()
            return buf.to(dev, non_blocking=True)
        if index not in self._written:
            raise KeyError(f"record {index} was never stored")
        shape = field.shape if part is None else field.part_shape
        off = (index - self.host_records) * self._slot_bytes + field.offset
        if part is not None:
            off += part * field.part_nbytes
        if dev.type == "cpu" or not self.staged:
            out = torch.empty(shape, dtype=field.dtype)
            self._pread(out, off)
            return out if dev.type == "cpu" else out.to(dev)
        slot = self._acquire(name, "in", shape, field.dtype)
        self._pread(slot[0], off)
        moved = slot[0].to(dev, non_blocking=True)
        slot[1] = _record_event(dev)
        return moved

    def release(self, index: int) -> None:
        """Forget record ``index``: free its host memory, drop its file pages from the cache."""
        for key in [k for k in self._pending if k[0] == index]:
            self._pending.pop(key)[2] = None  # not needed any more: never written
        rec = self._ram.pop(index, None)
        if rec is not None:
            for name in rec:
                self._events.pop((index, name), None)
            return
        if index in self._written and self._fd is not None:
            off = (index - self.host_records) * self._slot_bytes
            advise = getattr(os, "posix_fadvise", None)
            if advise is not None:
                with contextlib.suppress(OSError):
                    advise(self._fd, off, self._slot_bytes, os.POSIX_FADV_DONTNEED)

    def flush(self) -> None:
        """Write every value still waiting in a staging buffer to the spill file."""
        for key in list(self._pending):
            self._write_pending(key)

    def close(self) -> None:
        """Free every record and remove the spill file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._ram.clear()
        self._events.clear()
        self._pending.clear()
        self._rings.clear()
        if self._finalizer is not None:
            self._finalizer()  # closes the file and removes it where it still has a name
        self._fd = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals
    def _field(self, name: str, value: Tensor, part: int | None) -> _Field:
        field = self._fields.get(name)
        if field is None:
            raise KeyError(f"unknown field {name!r}; fields: {sorted(self._fields)}")
        shape = field.shape if part is None else field.part_shape
        if tuple(value.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(value.shape)}")
        if part is not None and not 0 <= part < field.shape[0]:
            raise IndexError(f"{name}: part {part} out of range for {field.shape[0]} parts")
        return field

    def _put_ram(
        self, index: int, name: str, field: _Field, value: Tensor, part: int | None
    ) -> None:
        rec = self._ram.setdefault(index, {})
        if not self.staged and part is None and value.device.type == "cpu":
            rec[name] = value.to(field.dtype).contiguous()  # no copy when it already fits
            return
        if name not in rec:
            rec[name] = torch.empty(field.shape, dtype=field.dtype, pin_memory=self.pin_memory)
        dst = rec[name] if part is None else rec[name][part]
        dst.copy_(value, non_blocking=self.staged)
        if self.staged:
            self._events[(index, name)] = _record_event(value.device)

    def _put_file(
        self, index: int, name: str, field: _Field, value: Tensor, part: int | None
    ) -> None:
        self._open_spill()
        if index not in self._written:
            self._written.add(index)
            self.spilled_records += 1
        key = (index, name, part)
        if self.staged:
            shape = field.shape if part is None else field.part_shape
            slot = self._acquire(name, "out", shape, field.dtype)
            slot[0].copy_(value, non_blocking=True)
            slot[1] = _record_event(value.device)
            slot[2] = key
            self._pending[key] = slot
            return
        host = value.detach().to("cpu", field.dtype).contiguous()
        self._pwrite(host, self._offset(key))

    def _offset(self, key: tuple[int, str, int | None]) -> int:
        index, name, part = key
        field = self._fields[name]
        off = (index - self.host_records) * self._slot_bytes + field.offset
        return off + (part * field.part_nbytes if part is not None else 0)

    def _acquire(
        self, name: str, direction: str, shape: tuple[int, ...], dtype: torch.dtype
    ) -> list[Any]:
        """The next staging buffer of a ring, once its previous use is complete."""
        ring_key = (name, direction)
        ring = self._rings.setdefault(ring_key, [])
        if len(ring) < _STAGING_RING:
            buf = torch.empty(shape, dtype=dtype, pin_memory=self.pin_memory)
            ring.append([buf, None, None])
        pos = self._ring_pos.get(ring_key, -1) + 1
        self._ring_pos[ring_key] = pos
        slot = ring[pos % len(ring)]
        if slot[2] is not None:  # an earlier value waits in it: write it out first
            self._write_pending(slot[2])
        self._sync(slot)
        if tuple(slot[0].shape) != shape:
            slot[0] = torch.empty(shape, dtype=dtype, pin_memory=self.pin_memory)
        return slot

    def _write_pending(self, key: tuple[int, str, int | None]) -> None:
        slot = self._pending.pop(key, None)
        if slot is None:
            return
        self._sync(slot)
        slot[2] = None
        self._pwrite(slot[0], self._offset(key))

    @staticmethod
    def _sync(slot: list[Any]) -> None:
        if slot[1] is not None:
            slot[1].synchronize()
            slot[1] = None

    def _wait_event(self, key: tuple[int, str]) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.synchronize()

    def _open_spill(self) -> None:
        if self._fd is not None:
            return
        if self._closed:
            raise InferenceError("the feature store is closed")
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".bin", dir=self.spill_dir)
        except OSError as exc:
            raise InferenceError(
                f"cannot create a spill file in {self.spill_dir}: {exc.strerror or exc} "
                "(choose another folder with --spill-dir, or raise --host-budget-gb)"
            ) from exc
        unlinked = False
        if os.name == "posix":  # nameless from now on: nothing can leave it behind
            with contextlib.suppress(OSError):
                os.unlink(name)
                unlinked = True
        self._fd = fd
        self.spill_path = Path(name)
        self._finalizer = weakref.finalize(self, _close_spill, fd, name, unlinked)

    def _pwrite(self, t: Tensor, offset: int) -> None:
        assert self._fd is not None
        view = _byte_view(t)
        try:
            _write_at(self._fd, view, offset)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            why = "is full" if full else f"cannot be written ({exc.strerror or exc})"
            raise InferenceError(
                f"spill folder {self.spill_dir} {why} after {self.spill_bytes / 2**20:.0f} MiB; "
                "choose another folder with --spill-dir, or raise --host-budget-gb"
            ) from exc
        self.spill_bytes = max(self.spill_bytes, offset + len(view))

    def _pread(self, t: Tensor, offset: int) -> None:
        assert self._fd is not None
        if not _read_at(self._fd, _byte_view(t), offset):
            raise InferenceError(f"spill file in {self.spill_dir} ended early at byte {offset}")


def _write_at(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset`` (positioned: the file position is not used)."""
    done = 0
    while done < len(view):
        if hasattr(os, "pwrite"):
            done += os.pwrite(fd, view[done:], offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            done += os.write(fd, view[done:])


def _read_at(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` from ``offset``; ``False`` if the file ends first."""
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            data = os.read(fd, len(view) - done)
            n = len(data)
            view[done : done + n] = data
        if n <= 0:
            return False
        done += n
    return True


def _record_event(device: torch.device) -> Any:
    """A CUDA event recorded on the current stream, ``None`` for the CPU."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event
