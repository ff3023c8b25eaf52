"""Turn a plateau trigger into learning rates: :class:`LRBoostPolicy` and :func:`apply_lr`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vsrkit._state import check_state, state_values
from vsrkit.adaptive._common import AdaptiveError, check_int, check_number
from vsrkit.adaptive.plateau import PlateauEvent

__all__ = ["LRBoostPolicy", "apply_lr", "current_lrs"]

log = logging.getLogger(__name__)
STATE_VERSION = 1


class LRBoostPolicy:
    """A pure policy from a triggered :class:`PlateauEvent` to new learning rates.

    ``mode="boost"``: every group's LR is multiplied by ``1 + (factor - 1) * decay**k`` on
    the k-th boost (so boosts shrink), capped at ``max_lr``, at most ``max_boosts`` times.
    ``mode="reduce"``: multiplied by ``factor`` (< 1), floored at ``min_lr``, like
    ``ReduceLROnPlateau``. After a change the policy waits ``cooldown`` steps. It returns
    ``None`` when it changes nothing (no trigger, cooldown, boosts used up, already at the
    cap/floor). The caller applies the answer, e.g. with :func:`apply_lr`.

    Example:
        >>> from vsrkit.adaptive import PlateauTracker
        >>> policy = LRBoostPolicy(mode="reduce", factor=0.5, min_lr=1e-6)
        >>> tracker = PlateauTracker(patience=5, cooldown=0)
        >>> lrs = [1e-3, 1e-4]
        >>> for step in range(13):
        ...     new = policy.on_event(tracker.update(step, 1.0), step=step, lrs=lrs)
        ...     lrs = new if new is not None else lrs
        >>> lrs
        [0.00025, 2.5e-05]
    """

    def __init__(
        self,
        *,
        mode: str = "boost",
        factor: float | None = None,
        max_lr: float | None = None,
        min_lr: float = 0.0,
        max_boosts: int | None = 3,
        decay: float = 0.5,
        cooldown: int = 0,
    ) -> None:
        if mode not in ("boost", "reduce"):
            raise AdaptiveError(f"LRBoostPolicy: mode must be 'boost' or 'reduce', got {mode!r}")
        self._mode = mode
        if factor is None:
            factor = 2.0 if mode == "boost" else 0.1
        self._factor = 1.0
        self._max_lr: float | None = None
        self._min_lr = 0.0
        self._max_boosts: int | None = None
        self._decay = 1.0
        self._cooldown = 0
        self.configure(
            factor=factor,
            max_lr=max_lr,
            min_lr=min_lr,
            max_boosts=max_boosts,
            decay=decay,
            cooldown=cooldown,
        )
        self._changes = 0
        self._last_change: int | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def changes(self) -> int:
        """How many times the policy changed the LRs (boosts in boost mode)."""
        return self._changes

    def configure(self, **settings: Any) -> None:
        """Validate and change ``factor``, ``max_lr``, ``min_lr``, ``max_boosts``, ``decay``,
        ``cooldown`` at run time; all or nothing.

        Raises:
            AdaptiveError: unknown name, bad value, ``min_lr > max_lr``, or a factor on the
                wrong side of 1 for the mode.
        """
        owner = "LRBoostPolicy"
        known = ("factor", "max_lr", "min_lr", "max_boosts", "decay", "cooldown")
        new: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in known:
                raise AdaptiveError(f"{owner}: unknown setting {key!r} (known: {', '.join(known)})")
            if key == "factor":
                value = check_number(owner, key, value, low=0, low_open=True)
                if (self._mode == "boost") != (value > 1.0) or value == 1.0:
                    side = "> 1" if self._mode == "boost" else "< 1"
                    raise AdaptiveError(
                        f"{owner}: factor must be {side} in {self._mode} mode, got {value}"
                    )
            elif key == "max_lr":
                value = (
                    None if value is None else check_number(owner, key, value, low=0, low_open=True)
                )
            elif key == "min_lr":
                value = check_number(owner, key, value, low=0)
            elif key == "max_boosts":
                value = None if value is None else check_int(owner, key, value, low=0)
            elif key == "decay":
                value = check_number(owner, key, value, low=0, high=1)
            else:
                value = check_int(owner, key, value, low=0)
            new[key] = value
        max_lr = new.get("max_lr", self._max_lr)
        min_lr = new.get("min_lr", self._min_lr)
        if max_lr is not None and min_lr > max_lr:
            raise AdaptiveError(f"{owner}: min_lr ({min_lr}) must not exceed max_lr ({max_lr})")
        for key, value in new.items():
            setattr(self, "_" + key, value)

    @property
    def settings(self) -> dict[str, Any]:
        """The current settings, JSON-safe."""
        return {
            "mode": self._mode,
            "factor": self._factor,
            "max_lr": self._max_lr,
            "min_lr": self._min_lr,
            "max_boosts": self._max_boosts,
            "decay": self._decay,
            "cooldown": self._cooldown,
        }

    def available(self, step: int) -> bool:
        """Whether a trigger at ``step`` could change the LRs (cooldown over, boosts left)."""
        if self._last_change is not None and step < self._last_change + self._cooldown:
            return False
        return not (
            self._mode == "boost"
            and self._max_boosts is not None
            and self._changes >= self._max_boosts
        )

    def on_event(
        self, event: PlateauEvent, *, step: int, lrs: Sequence[float]
    ) -> list[float] | None:
        """New LRs (one per param group) for a triggered event, or ``None`` for no change."""
        if not event.triggered or not self.available(step):
            return None
        if not lrs:
            raise AdaptiveError("LRBoostPolicy.on_event: lrs is empty (one LR per param group)")
        old = [check_number("LRBoostPolicy.on_event", "lrs", v, low=0) for v in lrs]
        if self._mode == "boost":
            f = 1.0 + (self._factor - 1.0) * self._decay**self._changes
            cap = self._max_lr
            new = [lr * f if cap is None else min(lr * f, max(cap, lr)) for lr in old]
        else:
            new = [max(lr * self._factor, min(self._min_lr, lr)) for lr in old]
        if all(abs(a - b) <= 1e-12 * max(abs(a), 1e-30) for a, b in zip(new, old, strict=True)):
            return None
        self._changes += 1
        self._last_change = step
        log.info("step %d: %s LRs %s -> %s (%s)", step, self._mode, old, new, event.reason.value)
        return new

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (no settings) with a ``"version"`` key."""
        return {
            "version": STATE_VERSION,
            "changes": self._changes,
            "last_change_step": self._last_change,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore the counters; settings stay as configured."""
        owner = "LRBoostPolicy state"
        st = check_state("LRBoostPolicy", state, STATE_VERSION, ("changes", "last_change_step"))
        with state_values("LRBoostPolicy"):
            changes = check_int(owner, "changes", st["changes"])
            last = st["last_change_step"]
            if last is not None:
                last = check_int(owner, "last_change_step", last)
        self._changes, self._last_change = changes, last


def current_lrs(optimizer: Any) -> list[float]:
    """The LR of every param group of a torch optimizer, in order."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def apply_lr(optimizer: Any, lrs: Sequence[float] | float) -> list[float]:
    """Set the LR of every param group; returns the previous LRs.

    ``lrs`` is one float for all groups or one value per group, read fresh from
    ``optimizer.param_groups`` at each call (so groups added mid-run are covered; a list of
    the wrong length is an error, never a silent partial update). A tensor LR (fused/capturable
    optimizers) is updated in place with ``fill_``.

    Raises:
        AdaptiveError: wrong number of values, or a negative/non-finite LR.
    """
    groups = optimizer.param_groups
    if isinstance(lrs, (int, float)):
        values = [check_number("apply_lr", "lr", lrs, low=0)] * len(groups)
    else:
        values = [check_number("apply_lr", f"lrs[{i}]", v, low=0) for i, v in enumerate(lrs)]
        if len(values) != len(groups):
            raise AdaptiveError(
                f"apply_lr: got {len(values)} learning rates for {len(groups)} param groups "
                "(read the LRs again with current_lrs(optimizer) after adding a group)"
            )
    old = current_lrs(optimizer)
    for group, value in zip(groups, values, strict=True):
        lr = group["lr"]
        if hasattr(lr, "fill_"):
            lr.fill_(value)
        else:
            group["lr"] = value
    return old
