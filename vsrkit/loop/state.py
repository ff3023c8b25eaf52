"""The loop's own variables in one place: :class:`LoopState`, with a versioned state dict."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from vsrkit._state import check_state
from vsrkit.errors import StateError

__all__ = ["STATE_VERSION", "LoopState"]

#: version of :meth:`LoopState.state_dict`
STATE_VERSION = 1


@dataclasses.dataclass
class LoopState:
    """What a training loop carries from step to step besides the model and the components.

    Attributes:
        step: The last optimizer step the loop finished (the caller's count).
        lr_scale: What the LR policy's changes made of the schedule: the scheduled LR of
            the reference recipe is multiplied by it (a reduce never raises it, a boost never
            lowers it, whatever ``min_lr``/``max_lr`` clamp).
        best_quality: The best validation quality so far (``None`` before a finite one).
        pending_quality: The quality of the last validation, for the plateau tracker at the
            next log interval (``None`` once used).
        config_version: How many runtime-config changes were applied (written into each
            statistics file).
        applied_settings: The runtime settings applied to the components so far (the loss
            weights excepted: they come back with their own state), applied again on resume.
        clip_reported: Whether the line "the adaptive clip value is in force" was logged.
        schedule: The LR schedule the run follows (its ``state_dict()``), ``None`` without one.
        interval: The loss sums of the open log interval and the running non-finite streak
            (a ``LossAccumulator`` state), as of the last :meth:`LoopCore.state_dict`;
            ``None`` before one.

    Example:
        >>> state = LoopState(step=40, best_quality=0.61)
        >>> LoopState.from_state_dict(state.state_dict()) == state
        True
    """

    step: int = 0
    lr_scale: float = 1.0
    best_quality: float | None = None
    pending_quality: float | None = None
    config_version: int = 0
    applied_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    clip_reported: bool = False
    schedule: dict[str, Any] | None = None
    interval: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe copy with a ``"version"`` key."""
        out = dataclasses.asdict(self)
        return {"version": STATE_VERSION, **out}

    def load_state_dict(self, state: Any) -> None:
        """Take the values of ``state`` (checked first: nothing changes on a bad one).

        Raises:
            StateError: Not a mapping, another version, a missing key or a bad value.
        """
        keys = [f.name for f in dataclasses.fields(self)]
        st = check_state("LoopState", state, STATE_VERSION, keys)
        new = _checked(st)
        for key, value in new.items():
            setattr(self, key, value)

    @classmethod
    def from_state_dict(cls, state: Any) -> LoopState:
        """A new :class:`LoopState` from :meth:`state_dict` output."""
        out = cls()
        out.load_state_dict(state)
        return out


def _checked(st: Mapping[str, Any]) -> dict[str, Any]:
    def fail(key: str, what: str) -> StateError:
        return StateError(f"LoopState state: {key} must be {what}, got {st[key]!r}")

    def number(key: str, *, optional: bool) -> float | None:
        value = st[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(key, "a number" + (" or null" if optional else ""))
        if not math.isfinite(value):
            raise fail(key, "finite")
        return float(value)

    def integer(key: str) -> int:
        value = st[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(key, "an int >= 0")
        return int(value)

    def mapping(key: str) -> dict[str, Any] | None:
        value = st[key]
        if value is not None and not isinstance(value, Mapping):
            raise fail(key, "a mapping or null")
        return None if value is None else dict(value)

    applied = st["applied_settings"]
    if not isinstance(applied, Mapping):
        raise fail("applied_settings", "a mapping")
    if not isinstance(st["clip_reported"], bool):
        raise fail("clip_reported", "true or false")
    scale = number("lr_scale", optional=False)
    if scale is None or scale <= 0:
        raise fail("lr_scale", "> 0")
    return {
        "step": integer("step"),
        "lr_scale": scale,
        "best_quality": number("best_quality", optional=True),
        "pending_quality": number("pending_quality", optional=True),
        "config_version": integer("config_version"),
        "applied_settings": dict(applied),
        "clip_reported": st["clip_reported"],
        "schedule": mapping("schedule"),
        "interval": mapping("interval"),
    }
