"""What the recipe measures about itself: speed, ETA, memory, AdamW momentum, the interval's
fields of the statistics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from vsrkit._text import format_hms

__all__ = ["Pace", "adam_momentum_avg", "format_eta", "interval_fields", "vram_gib"]


format_eta = format_hms  # ``HH:MM:SS`` or None: the one formatter of vsrkit._text


def vram_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the previous call, in GiB; None off CUDA."""
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


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


class Pace:
    """Steps per second since the start of this invocation, and the time left.

    Example:
        >>> pace = Pace(start_step=100, clock=iter([0.0, 10.0, 10.0]).__next__)
        >>> pace.rate(150), pace.eta(150, 200)
        (5.0, '00:00:10')
    """

    def __init__(self, start_step: int, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.start_step, self._clock = start_step, clock
        self._started = clock()

    def rate(self, step: int) -> float:
        """Steps per second (0.0 before a step took time)."""
        elapsed = self._clock() - self._started
        return (step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def eta(self, step: int, total: int, rate: float | None = None) -> str | None:
        """``HH:MM:SS`` until step ``total``, None when unknown."""
        rate = self.rate(step) if rate is None else rate
        return format_eta((total - step) / rate if rate else None)


def interval_fields(
    *,
    step: int,
    total: int,
    rate: float,
    sampler: Any,
    schedule: Any,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    activity: Any,
) -> dict[str, Any]:
    """The recipe's own measurements of a log interval (the loop core adds the losses, LR,
    weights, clip value and step duration): progress, ETA, memory, momentum, layer activity."""
    from vsrkit._system import process_rss_gib
    from vsrkit.train.evaluation import activity_fields

    epoch, in_epoch = sampler.position(step)
    per_epoch = sampler.steps_per_epoch
    return {
        "step_max": total,
        "epoch_step_total": per_epoch,
        "epoch_num": epoch + 1,
        "epoch_step_current": in_epoch,
        "lr_phase_name": schedule.phase(step),
        "vram_usage_gb": vram_gib(device),
        "process_rss_gb": process_rss_gib(),
        "eta_total_formatted": format_eta((total - step) / rate if rate else None),
        "eta_epoch_formatted": format_eta((per_epoch - in_epoch) / rate if rate else None),
        "adam_momentum_avg": adam_momentum_avg(optimizer),
        **activity_fields(activity.read(reset=True)),
        "training_paused": False,
        "last_update_time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
