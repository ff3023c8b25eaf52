"""Grad-norm clipping from recent history, and an EMA-based "good enough" threshold."""

from __future__ import annotations

import logging
import math
import numbers
from collections import deque
from typing import Any

from vsrkit._state import check_state, state_values
from vsrkit.adaptive._common import AdaptiveError, check_int, check_number

__all__ = ["GradClipAdapter", "DynamicThreshold"]

log = logging.getLogger(__name__)
STATE_VERSION = 1


class GradClipAdapter:
    """Clip value from a quantile of the last ``window`` grad norms, in ``[min_clip, max_clip]``.

    The loop calls :meth:`observe` once per log interval with the (already synced) float
    norm, and passes :attr:`clip_value` to ``torch.nn.utils.clip_grad_norm_``. Until
    ``min_history`` finite norms were seen, the clip value is ``initial``. Non-finite norms
    (AMP overflow steps) are skipped and counted. A user's ``configure(grad_clip=x)``
    overrides the adaptive value until ``configure(grad_clip=None)``.

    Example:
        >>> clip = GradClipAdapter(quantile=0.9, window=100, min_history=5)
        >>> for step in range(100):
        ...     value = clip.observe(step, 0.5 + (step % 10) / 10)
        >>> round(clip.clip_value, 2)
        1.31
        >>> clip.configure(grad_clip=2.5)
        >>> clip.status()
        {'gradient_clip_val': 2.5}
    """

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        window: int = 200,
        min_clip: float = 0.1,
        max_clip: float = 10.0,
        initial: float = 1.0,
        min_history: int = 10,
    ) -> None:
        owner = "GradClipAdapter"
        self._quantile = check_number(owner, "quantile", quantile, low=0, high=1)
        self._window = check_int(owner, "window", window, low=1)
        self._min = check_number(owner, "min_clip", min_clip, low=0, low_open=True)
        self._max = check_number(owner, "max_clip", max_clip, low=self._min)
        self._initial = check_number(owner, "initial", initial, low=self._min, high=self._max)
        self._min_history = check_int(owner, "min_history", min_history, low=1)
        self._override: float | None = None
        self._history: deque[float] = deque(maxlen=self._window)
        self._last_step: int | None = None
        self._skipped = 0
        self._value = self._initial

    def configure(self, **settings: Any) -> None:
        """Change settings at run time: ``grad_clip``, a user override of the clip value
        (``None`` returns to the adaptive value).

        Raises:
            AdaptiveError: an unknown name, or ``grad_clip`` outside ``[min_clip, max_clip]``
                or not a number (nothing is changed then).
        """
        unknown = sorted(set(settings) - {"grad_clip"})
        if unknown:
            raise AdaptiveError(
                f"GradClipAdapter: unknown setting {unknown[0]!r} (known: grad_clip)"
            )
        if "grad_clip" not in settings:
            return
        grad_clip = settings["grad_clip"]
        if grad_clip is not None:
            grad_clip = check_number(
                "GradClipAdapter", "grad_clip", grad_clip, low=self._min, high=self._max
            )
        self._override = grad_clip

    @property
    def clip_value(self) -> float:
        """The max grad norm to clip to now."""
        return self._override if self._override is not None else self._value

    def observe(self, step: int, grad_norm: float) -> float:
        """Record one gradient norm (a float, never a tensor); returns the new clip value."""
        if self._last_step is not None and step <= self._last_step:
            raise AdaptiveError(
                f"GradClipAdapter.observe: step must increase, got {step} after {self._last_step}"
            )
        if isinstance(grad_norm, bool) or not isinstance(grad_norm, numbers.Real):
            raise AdaptiveError(
                f"GradClipAdapter.observe: grad_norm must be a float (call .item() once per "
                f"log interval), got {type(grad_norm).__name__}"
            )
        self._last_step = step
        norm = float(grad_norm)
        if not math.isfinite(norm):
            self._skipped += 1
            log.debug("step %d: non-finite grad norm skipped", step)
            return self.clip_value
        self._history.append(norm)
        self._recompute()
        return self.clip_value

    def _recompute(self) -> None:
        if len(self._history) < self._min_history:
            self._value = self._initial
            return
        ordered = sorted(self._history)
        pos = self._quantile * (len(ordered) - 1)
        i = int(pos)
        frac = pos - i
        q = ordered[i] if frac == 0.0 else ordered[i] + (ordered[i + 1] - ordered[i]) * frac
        self._value = min(self._max, max(self._min, q))

    def status(self) -> dict[str, float]:
        """The statistics-file field ``gradient_clip_val``."""
        return {"gradient_clip_val": self.clip_value}

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe history (no settings, no user override) with a ``"version"`` key."""
        return {
            "version": STATE_VERSION,
            "history": list(self._history),
            "last_step": self._last_step,
            "skipped": self._skipped,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore the history (cut to this object's ``window``); settings stay."""
        owner = "GradClipAdapter state"
        keys = ("history", "last_step", "skipped")
        st = check_state("GradClipAdapter", state, STATE_VERSION, keys)
        with state_values("GradClipAdapter"):
            if not isinstance(st["history"], list):
                raise AdaptiveError(f"{owner}: history must be a list of numbers")
            history = [check_number(owner, "history[]", v, low=0) for v in st["history"]]
            last = st["last_step"]
            last = None if last is None else check_int(owner, "last_step", last, low=-(2**62))
            skipped = check_int(owner, "skipped", st["skipped"])
        self._history = deque(history, maxlen=self._window)
        self._last_step, self._skipped = last, skipped
        self._recompute()


class DynamicThreshold:
    """An EMA of a metric times a margin: "is this value clearly better than usual?".

    ``mode="max"`` (higher is better): threshold ``= ema + (margin - 1) * |ema|`` (for a
    positive metric ``ema * margin``); ``mode="min"``: ``ema - (margin - 1) * |ema|``.
    With no history yet (no ``initial``, no update) every finite value is good. NaN/inf
    values are never good and :meth:`update` skips them.

    Example:
        >>> keep = DynamicThreshold(alpha=0.1, margin=1.10, initial=0.2)
        >>> round(keep.threshold, 3)
        0.22
        >>> keep.is_good(0.15), keep.is_good(0.25)
        (False, True)
        >>> round(keep.update(0.25), 4)
        0.2255
    """

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        margin: float = 1.10,
        mode: str = "max",
        initial: float | None = None,
    ) -> None:
        owner = "DynamicThreshold"
        self._alpha = check_number(owner, "alpha", alpha, low=0, high=1, low_open=True)
        self._margin = check_number(owner, "margin", margin, low=1)
        if mode not in ("max", "min"):
            raise AdaptiveError(f"{owner}: mode must be 'max' or 'min', got {mode!r}")
        self._mode = mode
        self._ema = None if initial is None else check_number(owner, "initial", initial)

    @property
    def ema(self) -> float | None:
        return self._ema

    @property
    def threshold(self) -> float | None:
        """The current threshold, ``None`` before any value."""
        if self._ema is None:
            return None
        gap = (self._margin - 1.0) * abs(self._ema)
        return self._ema + gap if self._mode == "max" else self._ema - gap

    def is_good(self, value: float) -> bool:
        """Whether ``value`` beats the threshold (strictly)."""
        value = float(value)
        if not math.isfinite(value):
            return False
        thr = self.threshold
        if thr is None:
            return True
        return value > thr if self._mode == "max" else value < thr

    def update(self, value: float) -> float | None:
        """Fold ``value`` into the EMA; returns the new threshold."""
        value = float(value)
        if not math.isfinite(value):
            log.warning("DynamicThreshold.update: non-finite value %r skipped", value)
            return self.threshold
        if self._ema is None:
            self._ema = value
        else:
            self._ema = (1.0 - self._alpha) * self._ema + self._alpha * value
        return self.threshold

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state with a ``"version"`` key."""
        return {"version": STATE_VERSION, "ema": self._ema}

    def load_state_dict(self, state: Any) -> None:
        """Restore the EMA; alpha, margin and mode stay as built."""
        st = check_state("DynamicThreshold", state, STATE_VERSION, ("ema",))
        ema = st["ema"]
        with state_values("DynamicThreshold"):
            self._ema = None if ema is None else check_number("DynamicThreshold state", "ema", ema)
