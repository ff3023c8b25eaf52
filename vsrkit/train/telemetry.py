"""What the recipe reports about itself: ETA, memory, AdamW momentum, and the progress line."""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any, TextIO

import torch

__all__ = ["ProgressLine", "adam_momentum_avg", "format_eta", "rss_gib", "vram_gib"]


def format_eta(seconds: float | None) -> str | None:
    """``HH:MM:SS`` (hours may exceed 24), or None when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return None
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def vram_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the previous call, in GiB; None off CUDA."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def rss_gib() -> float | None:
    """Resident memory of this process in GiB (Linux), else its peak RSS; None if unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


@torch.no_grad()
def adam_momentum_avg(optimizer: torch.optim.Optimizer) -> float | None:
    """Mean absolute first moment (``exp_avg``) over all parameters; one host sync.

    Returns None before the first step (no moments yet).
    """
    total, count = None, 0
    for state in optimizer.state.values():
        m = state.get("exp_avg")
        if m is None:
            continue
        s = m.abs().sum(dtype=torch.float32)
        total = s if total is None else total + s
        count += m.numel()
    return None if total is None or count == 0 else float(total) / count


class ProgressLine:
    """A live progress line on a terminal, plain log lines otherwise.

    Example:
        >>> import io
        >>> p = ProgressLine(total=100, stream=io.StringIO())
        >>> p.update(step=10, loss=0.5, lr=1e-4, its=3.2, eta="00:00:28")
    """

    def __init__(self, total: int, *, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self._last_plain = 0.0
        self.view: Any = None  # a TerminalView that draws the progress instead

    def attach(self, view: Any) -> None:
        """Let a terminal panel (anything with ``message(text)``) show progress and messages."""
        self.view = view

    def update(self, *, step: int, loss: float, lr: float, its: float, eta: str | None) -> None:
        """Show the state at ``step`` (called once per log interval)."""
        if self.view is not None:
            return
        width = len(str(self.total))
        line = (
            f"step {step:>{width}}/{self.total}  loss {loss:.5f}  lr {lr:.2e}  "
            f"{its:.2f} it/s  ETA {eta or '--:--:--'}"
        )
        if self.live:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif time.monotonic() - self._last_plain >= 5.0 or step >= self.total:
            self._last_plain = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line without breaking the live progress line."""
        if self.view is not None:
            self.view.message(text)
            return
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.view is None:
            self.stream.write("\n")
            self.stream.flush()
