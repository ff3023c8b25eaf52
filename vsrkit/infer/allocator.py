"""Keep freed CPU memory for reuse while frames stream (glibc's allocator).

Each frame's reconstruction allocates and frees the same large activations (a few MB to tens
of MB at 4x the input size). glibc's ``malloc`` serves blocks above its mmap threshold with a
fresh ``mmap`` and returns them with ``munmap`` on free; its threshold rises to the size of a
freed block, but a block of that same size is still mapped anew. So every frame maps,
zero-fills (page faults) and unmaps its activations again: on 2 cores streaming ran at 0.64x
the speed it reaches once the memory is kept (``benchmarks/infer_bench.py``, 300 frames of
72x128 with the tiny model: 2.7 million page faults and 4.7 s of kernel time, against 1,400
and 0.2 s).

:func:`tune_cpu_allocator` raises the mmap threshold to its maximum (32 MiB) and the trim
threshold to 256 MiB, process-wide; ``vsrkit upscale`` and ``vsrkit eval`` call it. It changes
no result, only where freed memory goes (the process keeps up to the trim threshold of freed
memory for reuse). A library user calls it once, if wanted; jemalloc or tcmalloc
(``LD_PRELOAD``) do the same job. Elsewhere (macOS, musl) it does nothing.

Example:
    >>> isinstance(tune_cpu_allocator(), bool)
    True
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_cpu_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_cpu_allocator(*, mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc keep freed blocks below ``mmap_threshold`` for reuse; ``True`` if applied.

    Nothing is changed where the user set ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` (their choice wins), or where the C library is not glibc.
    """
    if not sys.platform.startswith("linux") or any(k in os.environ for k in _ENV):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
        and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )
