"""How many CPU threads the recipe's tensor operations use.

torch starts one OpenMP thread per core, and those threads spin while they wait for each
other. When another process keeps one of the cores busy, every parallel region waits for the
thread that shares a core with it: on 2 cores beside one busy process the ``quick`` preset
ran 2.3x slower with torch's 2 threads than with 1 (see ``benchmarks/overhead_bench.py``).

:class:`CpuThreads` decides the count (the recipe applies it with ``torch.set_num_threads``):
a fixed count when the user gave one (``--threads N`` or ``OMP_NUM_THREADS``), otherwise the
cores of this process's CPU affinity set minus the cores other processes keep busy, measured
from ``/proc/stat`` at start and again every ``recheck_seconds`` (a change needs two checks in
a row that agree). Where ``/proc/stat`` cannot be read the count is the number of cores.
This module does not import torch.

Example:
    >>> threads = CpuThreads(2, cores=8)
    >>> threads.start()
    ThreadChoice(threads=2, reason='--threads 2')
    >>> threads.recheck() is None  # a fixed count never changes
    True
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping

__all__ = ["CpuSample", "CpuThreads", "ThreadChoice", "read_cpu_sample", "threads_for"]

#: Another process counts as keeping a core busy from this share of one core on.
BUSY_SHARE = 0.35


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why (shown in the log)."""

    threads: int
    reason: str


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU time counters (clock ticks) at one moment.

    Attributes:
        busy: Non-idle ticks of the CPUs this process may run on, summed over them.
        total: All ticks of those CPUs (busy + idle + iowait), summed over them.
        own: Ticks this process (all its threads) has used.
        cpus: How many CPUs ``busy`` and ``total`` cover.
    """

    busy: int
    total: int
    own: int
    cpus: int


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def read_cpu_sample(proc: str = "/proc") -> CpuSample | None:
    """CPU counters from ``/proc/stat`` and ``/proc/self/stat``; ``None`` where unreadable."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = None
    busy = total = seen = 0
    try:
        with open(f"{proc}/stat", encoding="ascii") as fh:
            for line in fh:
                if not (line.startswith("cpu") and line[3:4].isdigit()):
                    continue
                name, *fields = line.split()
                if cpus is not None and int(name[3:]) not in cpus:
                    continue
                v = [int(x) for x in fields[:8]] + [0] * max(0, 8 - len(fields))
                # user nice system idle iowait irq softirq steal
                b = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                busy, total, seen = busy + b, total + b + v[3] + v[4], seen + 1
        with open(f"{proc}/self/stat", encoding="ascii") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()
        own = int(after_name[11]) + int(after_name[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None
    return CpuSample(busy, total, own, seen) if seen else None


def others_load(before: CpuSample, after: CpuSample) -> float | None:
    """Cores that other processes kept busy between two samples (``None`` if no time passed)."""
    wall_ticks = (after.total - before.total) / max(1, after.cpus)
    if wall_ticks <= 0:
        return None
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / wall_ticks


def _env_count(text: str) -> int | None:
    """The outer thread count of an ``OMP_NUM_THREADS`` value (``"4"``, ``"4,2"``), if any."""
    first = text.split(",")[0].strip()
    if first.isascii() and first.isdigit() and int(first) > 0:
        return int(first)
    return None


def threads_for(cores: int, others: float) -> int:
    """Threads for ``cores`` cores when other processes keep ``others`` cores busy.

    Example:
        >>> threads_for(2, 0.05), threads_for(2, 0.7), threads_for(2, 3.0), threads_for(8, 1.2)
        (2, 1, 1, 7)
    """
    taken = math.floor(others + 1 - BUSY_SHARE) if others > 0 else 0
    return max(1, cores - taken)


class CpuThreads:
    """Decides the intra-op thread count of a training process (components decide, the loop
    acts: call :meth:`start` once and :meth:`recheck` now and then, apply what they return).

    Args:
        requested: A fixed count (``--threads N``); ``None`` for automatic.
        cores: Cores to plan for (default: this process's CPU affinity set).
        processes: Training processes sharing these cores (DDP ranks on one machine); the
            automatic count is then ``cores // processes`` and is never re-checked (every
            rank must use the same count).
        env: Environment to read ``OMP_NUM_THREADS`` from (default ``os.environ``); a valid
            value there is a fixed count when ``requested`` is ``None``.
        probe_seconds: How long :meth:`start` measures the other processes' load.
        recheck_seconds: Minimum time between two measurements in :meth:`recheck`.
        sampler: Returns a :class:`CpuSample` (default :func:`read_cpu_sample`).
        clock, sleep: Time functions (tests pass fakes).
    """

    def __init__(
        self,
        requested: int | None = None,
        *,
        cores: int | None = None,
        processes: int = 1,
        env: Mapping[str, str] | None = None,
        probe_seconds: float = 0.25,
        recheck_seconds: float = 15.0,
        sampler: Callable[[], CpuSample | None] = read_cpu_sample,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requested is not None and (
            isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
        ):
            raise ValueError(f"threads must be an int >= 1 or None, got {requested!r}")
        self.cores = usable_cores() if cores is None else max(1, int(cores))
        self.processes = max(1, int(processes))
        self.probe_seconds, self.recheck_seconds = probe_seconds, recheck_seconds
        self._sampler, self._clock, self._sleep = sampler, clock, sleep
        env = os.environ if env is None else env
        self.fixed: ThreadChoice | None = None
        if requested is not None:
            self.fixed = ThreadChoice(requested, f"--threads {requested}")
        elif _env_count(env.get("OMP_NUM_THREADS", "")) is not None:
            n = _env_count(env["OMP_NUM_THREADS"])
            assert n is not None
            self.fixed = ThreadChoice(n, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS'].strip()}")
        elif self.processes > 1:
            n = max(1, self.cores // self.processes)
            self.fixed = ThreadChoice(n, f"{self.cores} cores shared by {self.processes} processes")
        self.threads: int | None = None
        self._last: CpuSample | None = None
        self._last_time = 0.0
        self._proposed: int | None = None

    def start(self) -> ThreadChoice:
        """The count to use from the start (measures the other processes' load if automatic)."""
        if self.fixed is not None:
            self.threads = self.fixed.threads
            return self.fixed
        before = self._sampler()
        if before is None:
            self.threads = self.cores
            return ThreadChoice(self.cores, f"{self.cores} cores (load of other processes unknown)")
        self._sleep(self.probe_seconds)
        choice = self._measure(before)
        self.threads = choice.threads if choice is not None else self.cores
        return choice or ThreadChoice(self.cores, f"{self.cores} cores")

    def recheck(self) -> ThreadChoice | None:
        """A new count when the other processes' load has changed (two checks in a row agree),
        else ``None``. Cheap: it reads two small files at most every ``recheck_seconds``."""
        if self.fixed is not None or self._last is None:
            return None
        if self._clock() - self._last_time < self.recheck_seconds:
            return None
        choice = self._measure(self._last)
        if choice is None or choice.threads == self.threads:
            self._proposed = None
            return None
        if self._proposed != choice.threads:
            self._proposed = choice.threads  # wait for a second measurement to agree
            return None
        self._proposed, self.threads = None, choice.threads
        return choice

    def _measure(self, before: CpuSample) -> ThreadChoice | None:
        after = self._sampler()
        if after is None:
            return None
        self._last, self._last_time = after, self._clock()
        others = others_load(before, after)
        if others is None:
            return None
        n = threads_for(self.cores, others)
        if n == self.cores:
            return ThreadChoice(n, f"{self.cores} cores, other processes use {others:.1f}")
        return ThreadChoice(n, f"other processes keep {others:.1f} of {self.cores} cores busy")
