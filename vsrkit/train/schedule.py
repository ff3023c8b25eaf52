"""The learning-rate schedule of the reference recipe: linear warm-up, then cosine decay.

The schedule is a pure function of the step; plateau boosts and reductions multiply it by a
scale that the loop keeps (and checkpoints), and the runtime ``min_lr``/``max_lr`` clamp the
result. So a resumed run recomputes exactly the LR an uninterrupted run had.

A resumed run whose ``--steps`` (or ``--lr``, ``warmup_steps``) differ from the checkpoint's
never jumps: :meth:`WarmupCosine.continued` starts the new shape at the LR in force at the
resume step and decays from there to ``final_lr`` at the new last step (inside the warm-up it
warms up from there to the new peak first). The schedule is saved in the checkpoint, so a
second resume continues the same curve.

Example:
    >>> s = WarmupCosine(base_lr=1e-3, warmup_steps=10, total_steps=100, final_lr=1e-5)
    >>> s.phase(5), s.phase(50)
    ('warmup', 'cosine')
    >>> round(s.lr(10), 6)
    0.001
    >>> longer = s.continued(60, total_steps=200)  # --steps 200 on resume at step 60
    >>> longer.lr(60) == s.lr(60), longer.lr(200) == s.lr(100)
    (True, True)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["WarmupCosine", "resumed_schedule", "schedule_note"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from ``base_lr / 100`` to ``base_lr``, then cosine down to ``final_lr``.

    With ``start_lr`` set, the curve is anchored at ``(start_step, start_lr)``: from there it
    warms up linearly to ``base_lr`` (if ``start_step`` lies inside the warm-up) or decays by a
    cosine to ``final_lr`` at ``total_steps``. Steps before ``start_step`` follow the plain
    curve (they are history).
    """

    base_lr: float
    warmup_steps: int
    total_steps: int
    final_lr: float = 0.0
    start_step: int = 0
    start_lr: float | None = None

    def phase(self, step: int) -> str:
        """Name of the phase at ``step`` (``warmup``, ``cosine`` or ``done``)."""
        if step < self.warmup_steps:
            return "warmup"
        return "cosine" if step < self.total_steps else "done"

    def lr(self, step: int) -> float:
        """Learning rate at ``step`` before any plateau scaling."""
        anchored = self.start_lr is not None and step >= self.start_step
        if step < self.warmup_steps:
            if anchored:
                assert self.start_lr is not None
                frac = (step - self.start_step) / (self.warmup_steps - self.start_step)
                return self.start_lr + (self.base_lr - self.start_lr) * frac
            start = self.base_lr / 100
            return start + (self.base_lr - start) * step / self.warmup_steps
        if anchored and self.start_step >= self.warmup_steps:
            assert self.start_lr is not None
            top, origin = self.start_lr, self.start_step
        else:
            top, origin = self.base_lr, self.warmup_steps
        span = max(1, self.total_steps - origin)
        t = min(1.0, (step - origin) / span)
        return self.final_lr + 0.5 * (top - self.final_lr) * (1 + math.cos(math.pi * t))

    def continued(
        self,
        step: int,
        *,
        base_lr: float | None = None,
        warmup_steps: int | None = None,
        total_steps: int | None = None,
    ) -> WarmupCosine:
        """The schedule for a resume at ``step`` with new settings (``None``: unchanged).

        Unchanged settings give ``self`` (the uninterrupted curve); any change gives a curve
        anchored at the LR this one has at ``step``, so the LR never jumps.
        """
        new = dataclasses.replace(
            self,
            base_lr=self.base_lr if base_lr is None else base_lr,
            warmup_steps=self.warmup_steps if warmup_steps is None else warmup_steps,
            total_steps=self.total_steps if total_steps is None else total_steps,
        )
        if new == self:
            return self
        return dataclasses.replace(new, start_step=step, start_lr=self.lr(step))

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe fields (saved in the checkpoint's loop state)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WarmupCosine:
        """The schedule saved by :meth:`state_dict`.

        Raises:
            ValueError: If ``state`` is not such a mapping.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(state, Mapping) or not {"base_lr", "total_steps"} <= set(state):
            raise ValueError(f"not a WarmupCosine state: {state!r}")
        return cls(**{k: v for k, v in state.items() if k in names})


def resumed_schedule(
    saved: Mapping[str, Any] | None, config: Mapping[str, Any], fresh: WarmupCosine, step: int
) -> tuple[WarmupCosine, str | None]:
    """The schedule a run resumed at ``step`` follows, and a line that says how it changed.

    ``saved`` is the schedule state of the checkpoint (older checkpoints: ``None``, then the
    curve is rebuilt from the checkpoint's ``config``); ``fresh`` is the schedule of this
    invocation's settings, whose shape takes over from ``step`` without a jump.

    Example:
        >>> old = WarmupCosine(1e-3, 10, 100, final_lr=1e-5)
        >>> new, note = resumed_schedule(old.state_dict(), {}, WarmupCosine(1e-3, 10, 200,
        ...                              final_lr=1e-5), 60)
        >>> new.lr(60) == old.lr(60), note.startswith("LR schedule (steps 100 -> 200)")
        (True, True)
    """
    before = _saved_schedule(saved, config, fresh)
    after = before.continued(
        step, base_lr=fresh.base_lr, warmup_steps=fresh.warmup_steps, total_steps=fresh.total_steps
    )
    return after, (None if after == before else schedule_note(before, after, step))


def _saved_schedule(
    saved: Mapping[str, Any] | None, config: Mapping[str, Any], fallback: WarmupCosine
) -> WarmupCosine:
    """The LR schedule a checkpoint ran on (older checkpoints: rebuilt from their settings)."""
    if saved is not None:
        try:
            return WarmupCosine.from_state(saved)
        except (TypeError, ValueError):
            logger.warning("the checkpoint's LR schedule is unreadable; rebuilt from its settings")
    try:
        return WarmupCosine(
            float(config["lr"]),
            int(config["warmup_steps"]),
            int(config["steps"]),
            final_lr=float(config["min_lr"]),
        )
    except (KeyError, TypeError, ValueError):
        return fallback


def schedule_note(old: WarmupCosine, new: WarmupCosine, step: int) -> str:
    """One line on how a resume with other schedule settings continues the LR (no jump)."""
    changed = [
        f"{name} {getattr(old, attr):g} -> {getattr(new, attr):g}"
        for name, attr in (
            ("steps", "total_steps"),
            ("lr", "base_lr"),
            ("warmup_steps", "warmup_steps"),
        )
        if getattr(old, attr) != getattr(new, attr)
    ]
    lr0 = old.lr(step)
    if step < new.warmup_steps:
        shape = f"warms up from {lr0:.2e} to {new.base_lr:.2e} at step {new.warmup_steps}, then"
    else:
        shape = f"continues from {lr0:.2e} at step {step} and"
        if new.base_lr != old.base_lr:
            shape = f"(lr only shapes the warm-up, which is over) {shape}"
    note = (
        f"LR schedule ({', '.join(changed)}): the LR {shape} decays by a cosine to "
        f"{new.final_lr:.2e} at step {new.total_steps}, without a jump"
    )
    if old.lr(step) <= old.final_lr * (1 + 1e-9) and new.total_steps > old.total_steps:
        note += (
            "; the old schedule had ended, so the added steps run at its final LR "
            "(raise min_lr live with `vsrkit config set` to train on faster)"
        )
    return note
