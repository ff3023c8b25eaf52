"""The learning-rate schedule of the reference recipe: linear warm-up, then cosine decay.

The schedule is a pure function of the step; plateau boosts and reductions multiply it by a
scale that the loop keeps (and checkpoints), and the runtime ``min_lr``/``max_lr`` clamp the
result. So a resumed run recomputes exactly the LR an uninterrupted run had.

Example:
    >>> s = WarmupCosine(base_lr=1e-3, warmup_steps=10, total_steps=100, final_lr=1e-5)
    >>> s.phase(5), s.phase(50)
    ('warmup', 'cosine')
    >>> round(s.lr(10), 6)
    0.001
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["WarmupCosine"]


@dataclasses.dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from ``base_lr / 100`` to ``base_lr``, then cosine down to ``final_lr``."""

    base_lr: float
    warmup_steps: int
    total_steps: int
    final_lr: float = 0.0

    def phase(self, step: int) -> str:
        """Name of the phase at ``step`` (``warmup``, ``cosine`` or ``done``)."""
        if step < self.warmup_steps:
            return "warmup"
        return "cosine" if step < self.total_steps else "done"

    def lr(self, step: int) -> float:
        """Learning rate at ``step`` before any plateau scaling."""
        if step < self.warmup_steps:
            start = self.base_lr / 100
            return start + (self.base_lr - start) * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.final_lr + 0.5 * (self.base_lr - self.final_lr) * (1 + math.cos(math.pi * t))
