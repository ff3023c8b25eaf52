"""What the recipe measures about itself: ETA, memory, AdamW momentum."""

from __future__ import annotations

import torch

__all__ = ["adam_momentum_avg", "format_eta", "vram_gib"]


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
