"""Plateau detection on a noisy loss: :class:`PlateauTracker`, :class:`PlateauEvent`.

The tracker is a pure object: the caller passes ``(step, loss, quality)`` as floats, the
tracker answers with a :class:`PlateauEvent` and never touches an optimizer. See
``docs/adaptive.md`` for the rules and the benchmark against ``ReduceLROnPlateau``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from vsrkit.adaptive._common import (
    HUGE,
    AdaptiveError,
    check_int,
    check_number,
    check_state,
    opt_float,
)
from vsrkit.adaptive.events import PlateauEvent, PlateauReason

__all__ = ["PlateauReason", "PlateauEvent", "PlateauTracker", "RUNTIME_KEYS"]

log = logging.getLogger(__name__)

_VERSION = 1
_SLOW = 0.5  # the trend EMA is this much slower than the loss EMA
_NOISE = 1.0 / (2.0 / math.sqrt(math.pi))  # E|x_t - x_t-1| = 2 sigma / sqrt(pi) for Gaussian noise

#: runtime-config key -> :meth:`PlateauTracker.configure` argument
RUNTIME_KEYS: dict[str, str] = {
    "plateau_patience": "patience",
    "plateau_safety_threshold": "safety_steps",
    "cooldown_duration": "cooldown",
}


_SETTINGS = (
    "patience",
    "cooldown",
    "warmup",
    "safety_steps",
    "rel_threshold",
    "level_decades",
    "noise_k",
    "grace_margin",
    "grace_rate",
    "quality_threshold",
    "aggressive_sharpness",
    "non_finite",
)


class PlateauTracker:
    """Detects a plateau of a noisy loss with a smoothed, noise-aware, multi-signal counter.

    Every update smooths the loss with a bias-corrected EMA (outliers beyond ``clip_k``
    noise scales are clipped first) and compares the EMA with the best EMA so far. The
    threshold is ``max(rel * |best|, noise_k * noise of the EMA)``, where ``rel`` falls
    from ``rel_threshold[1]`` to ``rel_threshold[0]`` as the loss drops ``level_decades``
    decades below its first value (scale-free, so x1e-3 and x1e3 curves behave the same).
    The counter resets when the EMA beats the best by the threshold, when a slower EMA
    shows the loss is still falling, or when ``quality`` beats its best by
    ``quality_threshold`` (relative); it rises at ``grace_rate`` on a slight improvement,
    and by the step difference otherwise. At ``counter > patience`` the event triggers,
    the counter restarts and ``cooldown`` steps follow without counting. With
    ``safety_steps`` set, it also triggers when no new best loss came for that many steps
    (runtime key ``plateau_safety_threshold``): a net for signals that keep resetting the
    counter while the loss itself never improves.

    Non-finite losses (and ``|loss| > 1e150``) follow ``non_finite``: ``"skip"`` (default;
    ignored, reported as ``NON_FINITE``), ``"bad"`` (counted as a step without improvement)
    or ``"raise"``.
    Steps must increase from call to call. Not thread-safe; call it from the loop.

    Example:
        >>> tracker = PlateauTracker(patience=20, cooldown=5)
        >>> events = [tracker.update(step, 1.0) for step in range(100)]
        >>> [e.step for e in events if e.triggered][:2]
        [21, 47]
    """

    _patience: int
    _cooldown: int
    _warmup: int
    _safety_steps: int | None
    _rel_threshold: tuple[float, float]
    _level_decades: float
    _noise_k: float
    _grace_margin: float
    _grace_rate: float
    _quality_threshold: float
    _aggressive_sharpness: float
    _non_finite: str

    def __init__(
        self,
        *,
        patience: int = 250,
        cooldown: int = 50,
        warmup: int = 0,
        ema_alpha: float = 0.1,
        safety_steps: int | None = None,
        rel_threshold: tuple[float, float] = (0.001, 0.005),
        level_decades: float = 2.0,
        noise_k: float = 2.0,
        clip_k: float = 4.0,
        grace_margin: float = 0.5,
        grace_rate: float = 0.5,
        quality_threshold: float = 0.001,
        aggressive_sharpness: float = 0.70,
        non_finite: str = "skip",
    ) -> None:
        self._alpha = check_number(
            "PlateauTracker", "ema_alpha", ema_alpha, low=0, high=1, low_open=True
        )
        self._clip_k = check_number("PlateauTracker", "clip_k", clip_k, low=0, low_open=True)
        self._ema_noise = math.sqrt(self._alpha / (2.0 - self._alpha)) * _NOISE
        self.configure(
            patience=patience,
            cooldown=cooldown,
            warmup=warmup,
            safety_steps=safety_steps,
            rel_threshold=rel_threshold,
            level_decades=level_decades,
            noise_k=noise_k,
            grace_margin=grace_margin,
            grace_rate=grace_rate,
            quality_threshold=quality_threshold,
            aggressive_sharpness=aggressive_sharpness,
            non_finite=non_finite,
        )
        self._reset_state()

    # ----------------------------------------------------------------- settings
    @property
    def settings(self) -> dict[str, Any]:
        """The current settings (constructor arguments), JSON-safe."""
        out = {name: getattr(self, "_" + name) for name in _SETTINGS}
        out["rel_threshold"] = list(out["rel_threshold"])
        out["ema_alpha"] = self._alpha
        out["clip_k"] = self._clip_k
        return out

    def configure(self, **settings: Any) -> None:
        """Validate and change settings at run time; all or nothing.

        Accepts the constructor's names and the runtime-config keys of :data:`RUNTIME_KEYS`
        (``plateau_patience``, ``plateau_safety_threshold``, ``cooldown_duration``).
        ``ema_alpha`` and ``clip_k`` are fixed at construction.

        Raises:
            AdaptiveError: an unknown name or a bad value (nothing is changed then).
        """
        owner = "PlateauTracker"
        new: dict[str, Any] = {}
        for key, value in settings.items():
            name = RUNTIME_KEYS.get(key, key)
            if name in ("ema_alpha", "clip_k"):
                raise AdaptiveError(f"{owner}: {name} can only be set in the constructor")
            if name not in _SETTINGS:
                raise AdaptiveError(
                    f"{owner}: unknown setting {key!r} (known: {', '.join(_SETTINGS)})"
                )
            if name in ("patience", "safety_steps"):
                value = (
                    None
                    if value is None and name == "safety_steps"
                    else check_int(owner, key, value, low=1)
                )
            elif name in ("cooldown", "warmup"):
                value = check_int(owner, key, value, low=0)
            elif name == "rel_threshold":
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise AdaptiveError(
                        f"{owner}: rel_threshold must be (low, high), got {value!r}"
                    )
                lo = check_number(owner, "rel_threshold[0]", value[0], low=0)
                hi = check_number(owner, "rel_threshold[1]", value[1], low=lo)
                value = (lo, hi)
            elif name == "non_finite":
                if value not in ("skip", "bad", "raise"):
                    raise AdaptiveError(
                        f"{owner}: non_finite must be 'skip', 'bad' or 'raise', got {value!r}"
                    )
            elif name in ("grace_margin", "grace_rate"):
                value = check_number(owner, key, value, low=0, high=1)
            elif name == "level_decades":
                value = check_number(owner, key, value, low=0, low_open=True)
            else:
                value = check_number(owner, key, value, low=0)
            new[name] = value
        for name, value in new.items():
            setattr(self, "_" + name, value)

    @property
    def patience(self) -> int:
        return self._patience

    # -------------------------------------------------------------------- state
    def _reset_state(self) -> None:
        self._n = 0
        self._first_step: int | None = None
        self._last_step: int | None = None
        self._ema = 0.0  # raw (biased) EMA sums; divide by (1 - decay) for the value
        self._slow = 0.0
        self._noise = 0.0
        self._decay = 1.0  # (1 - alpha) ** n
        self._slow_decay = 1.0
        self._noise_decay = 1.0
        self._prev: float | None = None
        self._first: float | None = None
        self._best: float | None = None
        self._best_step: int | None = None
        self._best_quality: float | None = None
        self._counter = 0.0
        self._cooldown_until = -1
        self._safety_anchor: int | None = None
        self._triggers = 0
        self._nonfinite_count = 0

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (no settings) with a ``"version"`` key."""
        return {
            "version": _VERSION,
            "n": self._n,
            "first_step": self._first_step,
            "last_step": self._last_step,
            "ema": self._ema,
            "slow": self._slow,
            "noise": self._noise,
            "decay": self._decay,
            "slow_decay": self._slow_decay,
            "noise_decay": self._noise_decay,
            "prev": self._prev,
            "first": self._first,
            "best": self._best,
            "best_step": self._best_step,
            "best_quality": self._best_quality,
            "counter": self._counter,
            "cooldown_until": self._cooldown_until,
            "safety_anchor": self._safety_anchor,
            "triggers": self._triggers,
            "non_finite_count": self._nonfinite_count,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore the state; settings (patience, cooldown, ...) stay as configured."""
        keys = tuple(k for k in self.state_dict() if k != "version")
        st = check_state("PlateauTracker", state, _VERSION, keys)
        owner = "PlateauTracker"
        low = -(2**62)

        def opt_step(key: str) -> int | None:
            return (
                None
                if st[key] is None
                else check_int(f"{owner}.load_state_dict", key, st[key], low=low)
            )

        vals: dict[str, Any] = {
            "n": check_int(owner, "n", st["n"]),
            "first_step": opt_step("first_step"),
            "last_step": opt_step("last_step"),
            "best_step": opt_step("best_step"),
            "safety_anchor": opt_step("safety_anchor"),
            "cooldown_until": check_int(owner, "cooldown_until", st["cooldown_until"], low=low),
            "triggers": check_int(owner, "triggers", st["triggers"]),
            "nonfinite_count": check_int(owner, "non_finite_count", st["non_finite_count"]),
        }
        for key in ("ema", "slow", "noise", "decay", "slow_decay", "noise_decay", "counter"):
            vals[key] = check_number(f"{owner}.load_state_dict", key, st[key])
        for key in ("prev", "first", "best", "best_quality"):
            vals[key] = opt_float(owner, key, st[key])
        for key, value in vals.items():
            setattr(self, "_" + key, value)

    # ------------------------------------------------------------------- update
    def _event(
        self,
        step: int,
        triggered: bool,
        reason: PlateauReason,
        thr: float | None,
        sharpness: float | None,
    ) -> PlateauEvent:
        remaining = self._cooldown_until - step
        in_cd = remaining > 0
        warm = self._first_step is None or step < self._first_step + self._warmup
        stalled = 0 if self._best_step is None else step - self._best_step
        n = self._n
        return PlateauEvent(
            step,
            triggered,
            reason,
            int(self._counter),
            self._ema / (1.0 - self._decay) if n else None,
            self._best,
            thr,
            in_cd,
            remaining if in_cd else 0,
            not (in_cd or warm),
            sharpness is not None
            and sharpness < self._aggressive_sharpness
            and stalled > self._patience,
            sharpness,
            stalled,
        )

    def update(
        self,
        step: int,
        loss: float,
        quality: float | None = None,
        sharpness_ratio: float | None = None,
    ) -> PlateauEvent:
        """Feed one loss value (a float, already synced) and get the decision.

        Args:
            step: the caller's global step; must be larger than the previous one.
            loss: the training (or validation) loss, lower is better; may be negative.
            quality: optional quality metric, higher is better (e.g. PSNR); non-finite ignored.
            sharpness_ratio: optional; below ``aggressive_sharpness`` with ``stalled_steps >
                patience`` the event is marked ``aggressive`` (an extreme plateau).
        """
        last = self._last_step
        if last is not None and step <= last:
            raise AdaptiveError(
                f"PlateauTracker.update: step must increase, got {step} after {last}"
            )
        delta = 1 if last is None else step - last
        x = float(loss)
        if not -HUGE <= x <= HUGE:  # NaN, +-inf, or so large that the EMA would overflow
            if self._non_finite == "raise":
                raise AdaptiveError(f"PlateauTracker.update: loss at step {step} is {x}")
            self._nonfinite_count += 1
            self._last_step = step
            if self._first_step is None:
                self._first_step = step
            log.debug(
                "non-finite loss %r at step %d ignored (policy %s)", x, step, self._non_finite
            )
            if self._non_finite == "bad" and self._n:
                return self._decide(
                    step, delta, 1.0, PlateauReason.NON_FINITE, None, sharpness_ratio
                )
            return self._event(step, False, PlateauReason.NON_FINITE, None, sharpness_ratio)
        self._last_step = step
        if self._first_step is None:
            self._first_step = step
        alpha = self._alpha
        keep = 1.0 - alpha
        n = self._n
        prev = self._prev
        if n:
            ema = self._ema / (1.0 - self._decay)
            slow_keep = 1.0 - alpha * _SLOW
            diff = abs(x - prev)  # type: ignore[operator]
            if n >= 10:  # clip outliers once the noise scale is known
                scale = self._noise / (1.0 - self._noise_decay) * _NOISE
                cap = 2.0 * self._clip_k * scale
                if diff > cap:
                    diff = cap
                band = self._clip_k * scale + abs(self._slow / (1.0 - self._slow_decay) - ema)
                xc = ema + band if x > ema + band else (ema - band if x < ema - band else x)
            else:
                xc = x
            self._noise = keep * self._noise + alpha * diff
            self._noise_decay *= keep
            self._slow = slow_keep * self._slow + (1.0 - slow_keep) * xc
            self._slow_decay *= slow_keep
        else:
            xc = x
            self._slow = x * alpha * _SLOW
            self._slow_decay = 1.0 - alpha * _SLOW
        self._prev = x
        self._ema = keep * self._ema + alpha * xc
        self._decay *= keep
        self._n = n + 1
        ema = self._ema / (1.0 - self._decay)
        best = self._best
        if best is None:
            self._best = self._first = ema
            self._best_step = self._safety_anchor = step
            return self._event(step, False, PlateauReason.WARMUP, None, sharpness_ratio)
        # threshold: relative part shrinks as the loss falls below its first value
        first = self._first
        rel_lo, rel_hi = self._rel_threshold
        abest = abs(best)
        rel = rel_hi
        if abest > 0.0 and first != 0.0 and rel_lo < rel_hi:
            ratio = abs(first) / abest  # type: ignore[arg-type]
            if ratio > 1.0:
                frac = math.log10(ratio) / self._level_decades
                rel = rel_lo if frac >= 1.0 else rel_hi - (rel_hi - rel_lo) * frac
        thr = rel * abest
        if self._noise_decay < 1.0:
            noise_thr = self._noise_k * self._ema_noise * self._noise / (1.0 - self._noise_decay)
            if noise_thr > thr:
                thr = noise_thr
        # signals
        if quality is not None:
            q = float(quality)
            if q - q == 0.0:
                bq = self._best_quality
                if bq is None:
                    self._best_quality = q
                    quality_up = False
                else:
                    quality_up = q > bq + self._quality_threshold * abs(bq)
                    if q > bq:
                        self._best_quality = q
            else:
                quality_up = False
        else:
            quality_up = False
        if ema < best - thr:
            self._best = ema
            self._best_step = self._safety_anchor = step
            return self._decide(step, delta, 0.0, PlateauReason.IMPROVED, thr, sharpness_ratio)
        if quality_up:
            return self._decide(step, delta, 0.0, PlateauReason.QUALITY, thr, sharpness_ratio)
        if self._slow / (1.0 - self._slow_decay) - ema > thr:
            return self._decide(step, delta, 0.0, PlateauReason.TREND, thr, sharpness_ratio)
        if ema < best - thr * self._grace_margin:
            return self._decide(
                step, delta, self._grace_rate, PlateauReason.GRACE, thr, sharpness_ratio
            )
        return self._decide(step, delta, 1.0, PlateauReason.NO_IMPROVEMENT, thr, sharpness_ratio)

    def _decide(
        self,
        step: int,
        delta: int,
        rate: float,
        reason: PlateauReason,
        thr: float | None,
        sharpness: float | None,
    ) -> PlateauEvent:
        """Advance the counter by ``rate`` x the counted steps (0 = reset); warmup, cooldown,
        triggers. Only steps after the end of the warmup and of the cooldown are counted."""
        warm_end = self._first_step + self._warmup  # type: ignore[operator]
        if step < warm_end:
            self._counter = 0.0
            return self._event(step, False, PlateauReason.WARMUP, thr, sharpness)
        if step < self._cooldown_until:
            self._counter = 0.0
            if rate:
                reason = PlateauReason.COOLDOWN
            return self._event(step, False, reason, thr, sharpness)
        if rate:
            counted = step - max(step - delta, self._cooldown_until, warm_end)
            self._counter += rate * counted
        else:
            self._counter = 0.0
        triggered = False
        if self._counter > self._patience:
            triggered, reason = True, PlateauReason.PLATEAU
        elif (
            self._safety_steps is not None
            and self._safety_anchor is not None
            and step - self._safety_anchor >= self._safety_steps
        ):
            triggered, reason = True, PlateauReason.SAFETY
        if triggered:
            self._triggers += 1
            self._counter = 0.0
            self._cooldown_until = step + self._cooldown
            self._safety_anchor = step
            log.info("plateau trigger at step %d: %s", step, reason.message)
        return self._event(step, triggered, reason, thr, sharpness)

    @property
    def triggers(self) -> int:
        """How many times the tracker has triggered (kept in the state)."""
        return self._triggers
