"""The learning rate the loop controls: one small interface, :class:`LRControl`, two ways.

- :class:`ScheduledLR` (the reference recipe): the LR is a schedule's value times the loop's
  ``lr_scale``, clamped to the live ``min_lr``/``max_lr``, set on the optimizer every step.
  A plateau decision changes the scale.
- :class:`OptimizerLR` (the Lightning and Accelerate adapters): the optimizer's LRs are what
  they are (your scheduler sets them); a plateau decision sets new LRs on the optimizer and
  scales each scheduler's ``base_lrs`` alike, so the scheduler keeps the change.

The loop core asks the control for the LRs the policy sees (:meth:`LRControl.lrs`), hands
it the policy's answer (:meth:`LRControl.set`) and lets it follow the settings after a
runtime change (:meth:`LRControl.refresh`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from vsrkit.adaptive.lr import apply_lr, current_lrs
from vsrkit.loop.errors import LoopError
from vsrkit.loop.state import LoopState

__all__ = ["LRControl", "OptimizerLR", "ScheduledLR", "scale_lrs"]


class LRControl(Protocol):
    """The LR the loop controls (see the module docstring for the two implementations).

    Example:
        >>> import torch
        >>> control: LRControl = OptimizerLR(
        ...     torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
        >>> control.lrs(), control.schedule_state() is None
        ([0.1], True)
    """

    def lrs(self) -> list[float]:
        """The LRs the LR policy decides on (one per value it returns)."""

    def set(
        self, new: Sequence[float], step: int, state: LoopState, live: Mapping[str, Any]
    ) -> list[float]:
        """Apply the LR policy's answer at ``step``; returns the LR of every group now."""

    def refresh(self, step: int, state: LoopState, live: Mapping[str, Any]) -> list[float]:
        """Set the LR of ``step`` (every step, and after a runtime change); returns it."""

    def schedule_state(self) -> dict[str, Any] | None:
        """The schedule's state for the checkpoint, ``None`` without a schedule."""


def scale_lrs(optimizer: Any, new: Sequence[float], schedulers: Iterable[Any] = ()) -> list[float]:
    """Set the optimizer's LRs to ``new`` and scale each scheduler's ``base_lrs`` alike.

    A scheduler that recomputes the LR from ``base_lrs`` (LambdaLR, OneCycle, ...) then keeps
    the change instead of undoing it at its next step. Returns the previous LRs.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        >>> scale_lrs(opt, [0.2], [sched]), sched.base_lrs
        ([0.1], [0.2])
    """
    old = apply_lr(optimizer, list(new))
    for sched in schedulers:
        base = getattr(sched, "base_lrs", None)
        if isinstance(base, list) and len(base) == len(old):
            sched.base_lrs = [
                b * (n / o if o else 1.0) for b, n, o in zip(base, new, old, strict=True)
            ]
    return old


def _track_scale(state: LoopState, old: float, new: float) -> None:
    if old > 0 and new > 0:
        state.lr_scale *= new / old


class OptimizerLR:
    """:class:`LRControl` over an optimizer's own LRs (and its schedulers').

    Args:
        optimizer: A torch optimizer.
        schedulers: LR schedulers of that optimizer; their ``base_lrs`` follow a change.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> control, state = OptimizerLR(opt), LoopState()
        >>> control.set([0.05], step=10, state=state, live={}), state.lr_scale
        ([0.05], 0.5)
    """

    def __init__(self, optimizer: Any, schedulers: Iterable[Any] = ()) -> None:
        self.optimizer = optimizer
        self.schedulers = list(schedulers)

    def lrs(self) -> list[float]:
        return current_lrs(self.optimizer)

    def set(
        self, new: Sequence[float], step: int, state: LoopState, live: Mapping[str, Any]
    ) -> list[float]:
        old = scale_lrs(self.optimizer, new, self.schedulers)
        _track_scale(state, old[0], float(new[0]))
        return self.lrs()

    def refresh(self, step: int, state: LoopState, live: Mapping[str, Any]) -> list[float]:
        return self.lrs()  # the optimizer's schedulers own the LR between decisions

    def schedule_state(self) -> dict[str, Any] | None:
        return None


class ScheduledLR:
    """:class:`LRControl` of a schedule times the loop's ``lr_scale``, inside live bounds.

    At every step the main LR is ``schedule.lr(step) * state.lr_scale``, clamped to the live
    ``min_lr`` and ``max_lr`` (when the runtime settings have them); parameter group ``i``
    gets the main LR times ``factors[i]``. The LR policy decides on the main LR alone; its
    answer changes ``lr_scale``, so the LR keeps following the schedule's shape.

    Args:
        optimizer: A torch optimizer.
        schedule: Anything with ``lr(step) -> float`` (and ``state_dict()`` to be saved), e.g.
            the reference recipe's ``WarmupCosine``.
        factors: One factor per parameter group (default: 1.0 for each group).

    Example:
        >>> import torch
        >>> class Constant:
        ...     def lr(self, step): return 1e-3
        ...     def state_dict(self): return {"lr": 1e-3}
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
        >>> control, state = ScheduledLR(opt, Constant()), LoopState()
        >>> control.refresh(1, state, {"max_lr": 5e-4, "min_lr": 0.0})
        [0.0005]
        >>> control.set([2.5e-4], step=2, state=state, live={}), state.lr_scale
        ([0.00025], 0.25)
    """

    def __init__(self, optimizer: Any, schedule: Any, *, factors: Sequence[float] | None = None):
        self.optimizer = optimizer
        self.schedule = schedule
        groups = len(optimizer.param_groups)
        self.factors = [1.0] * groups if factors is None else [float(f) for f in factors]
        if len(self.factors) != groups:
            raise LoopError(
                f"ScheduledLR: {len(self.factors)} factors for {groups} parameter groups"
            )
        self._lr = float(schedule.lr(0))

    def lrs(self) -> list[float]:
        return [self._lr]

    def set(
        self, new: Sequence[float], step: int, state: LoopState, live: Mapping[str, Any]
    ) -> list[float]:
        base, target = float(self.schedule.lr(step)), float(new[0])
        if base > 0 and self._lr > 0 and target != self._lr:
            # The policy scaled the LR it saw (clamped); the scale it meant is the larger
            # change of the two readings, in the policy's direction: a reduce while max_lr
            # clamps still lowers the LR, and one while min_lr holds it up never raises it.
            by_ratio, by_target = state.lr_scale * target / self._lr, target / base
            pick = min if target < self._lr else max
            state.lr_scale = pick(by_ratio, by_target)
        return self.refresh(step, state, live)

    def refresh(self, step: int, state: LoopState, live: Mapping[str, Any]) -> list[float]:
        lr = self.schedule.lr(step) * state.lr_scale
        high, low = live.get("max_lr"), live.get("min_lr")
        lr = min(math.inf if high is None else float(high), max(float(low or 0.0), lr))
        values = [lr * f for f in self.factors]
        apply_lr(self.optimizer, values)
        self._lr = lr
        return values

    def schedule_state(self) -> dict[str, Any] | None:
        state = getattr(self.schedule, "state_dict", None)
        return dict(state()) if callable(state) else None
