"""Facts about this process that several parts report (the monitor card, the training loop)."""

from __future__ import annotations

import os
import sys

__all__ = ["peak_rss_gib", "process_rss_gib"]


def process_rss_gib() -> float | None:
    """Resident memory of this process in GiB (Linux ``/proc``; peak RSS elsewhere), or None.

    Example:
        >>> process_rss_gib() > 0
        True
    """
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return _ru_maxrss_gib()


def peak_rss_gib() -> float | None:
    """Peak resident memory of this process in GiB (Linux ``VmHWM``; ``ru_maxrss`` elsewhere,
    which may count a parent's memory across fork and exec), or None.

    Example:
        >>> now = process_rss_gib()  # read first: the peak read after it includes it
        >>> peak_rss_gib() >= now > 0
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return _ru_maxrss_gib()


def _ru_maxrss_gib() -> float | None:
    """``getrusage``'s peak RSS in GiB (where ``/proc`` is missing), or None."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, B on macOS
        return peak / (2**30 if sys.platform == "darwin" else 2**20)
    except (ImportError, OSError):
        return None
