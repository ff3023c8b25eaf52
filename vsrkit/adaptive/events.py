"""What a PlateauTracker answers: :class:`PlateauEvent` and its :class:`PlateauReason`."""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

__all__ = ["PlateauReason", "PlateauEvent"]


class PlateauReason(str, Enum):
    """Why an update came out the way it did; ``.message`` is a readable sentence."""

    WARMUP = "warmup"
    NON_FINITE = "non_finite"
    IMPROVED = "improved"
    QUALITY = "quality"
    TREND = "trend"
    GRACE = "grace"
    NO_IMPROVEMENT = "no_improvement"
    COOLDOWN = "cooldown"
    PLATEAU = "plateau"
    SAFETY = "safety"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    PlateauReason.WARMUP: "warming up: smoothing the loss, not counting yet",
    PlateauReason.NON_FINITE: "loss was NaN or infinite: value ignored (see non_finite policy)",
    PlateauReason.IMPROVED: "smoothed loss improved on the best by more than the threshold",
    PlateauReason.QUALITY: "quality metric improved: counter reset",
    PlateauReason.TREND: "the loss still follows its longer downward trend: counter reset",
    PlateauReason.GRACE: "improvement neither shown nor ruled out: counter rising",
    PlateauReason.NO_IMPROVEMENT: "no improvement beyond the threshold: counter rising",
    PlateauReason.COOLDOWN: "in cooldown after a trigger: not counting",
    PlateauReason.PLATEAU: "plateau: no improvement beyond the threshold in `patience` steps",
    PlateauReason.SAFETY: "safety net: no sign of a falling loss for `safety_steps` steps",
}


class PlateauEvent(NamedTuple):
    """The tracker's answer to one :meth:`PlateauTracker.update`.

    ``counter`` and ``stalled_steps`` are in steps (the caller's step numbers); ``ema``,
    ``best`` and ``threshold`` are in loss units (``None`` before the first finite loss).
    ``stalled_steps`` counts steps since the last evidence of a falling loss (``IMPROVED``
    or ``TREND``) and is not reset by a trigger.
    """

    step: int
    triggered: bool
    reason: PlateauReason
    counter: int
    ema: float | None
    best: float | None
    threshold: float | None
    in_cooldown: bool
    cooldown_remaining: int
    lr_boost_available: bool
    aggressive: bool
    sharpness_ratio: float | None
    stalled_steps: int

    @property
    def message(self) -> str:
        """The reason as a sentence, e.g. for a log line."""
        return self.reason.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the reason as its string value)."""
        d = self._asdict()
        d["reason"] = self.reason.value
        return d
