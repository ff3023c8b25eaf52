"""Plateau detection on a noisy loss: :class:`PlateauTracker`, :class:`PlateauEvent`.

The tracker is a pure object: the caller passes ``(step, loss, quality)`` as floats, the
tracker answers with a :class:`PlateauEvent` and never touches an optimizer. The decision is a
one-sided statistical test on the last ``patience`` steps (see :class:`PlateauTracker` and
``docs/adaptive.md``, with the benchmark against ``ReduceLROnPlateau``); the statistics live in
:mod:`vsrkit.adaptive._plateau_stats`.
"""

from __future__ import annotations

import logging
import math
import operator
import warnings
from collections.abc import Mapping
from typing import Any

from vsrkit._state import check_state, state_values
from vsrkit.adaptive._common import HUGE, AdaptiveError, check_int, check_number, opt_float
from vsrkit.adaptive._plateau_stats import BatchWindow, t_quantile
from vsrkit.adaptive.events import PlateauEvent, PlateauReason

__all__ = ["PlateauReason", "PlateauEvent", "PlateauTracker", "RUNTIME_KEYS", "STATE_VERSION"]

log = logging.getLogger(__name__)

#: version of :meth:`PlateauTracker.state_dict`; version 1 (the EMA tracker) still loads
STATE_VERSION = 2
BATCHES = 10  # batches per patience window (batch width = ceil(patience / BATCHES) steps)
NOISE_WINDOWS = 4  # batches of the last max(NOISE_WINDOWS, 1 + trend) windows give the noise

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
    "confidence",
    "trend",
    "quality_threshold",
    "aggressive_sharpness",
    "non_finite",
)
_FIXED = ("mode", "ema_alpha", "clip_k")  # constructor only
#: accepted for compatibility, no effect since state version 2 (the EMA counter is gone)
_DEPRECATED = ("noise_k", "grace_margin", "grace_rate")


class PlateauTracker:
    """Detects a plateau of a noisy loss with a one-sided test on the last ``patience`` steps.

    Each value is clipped to ``clip_k`` noise scales around the current fit (one spike cannot
    fake a trend) and goes into batches of ``ceil(patience / 10)`` steps. The *improvement* is
    the least-squares slope of the values of the last ``patience`` steps times ``patience``;
    its standard error uses the long-run noise scale of one value, estimated robustly from the
    second differences of the batch means of the last ``max(4, 1 + trend)`` windows, at the
    batch size and at four times it (batch means absorb autocorrelation shorter than a batch,
    the larger batches what is longer). With ``z`` the one-sided Student-t quantile at
    ``confidence`` (80% by default, as SASA's test):

    - **plateau** (``NO_IMPROVEMENT``): the upper confidence bound of the improvement is at
      most the threshold ``max(rel * |level|, z * se)``, where ``rel`` falls from
      ``rel_threshold[1]`` to ``rel_threshold[0]`` as the loss drops ``level_decades`` decades
      (the threshold is never finer than the test can resolve in ``patience`` steps: under
      noise this reads "no estimated improvement at all");
    - **trend** (``TREND``): a plateau-looking window is still taken as progress when the
      ``trend * patience`` steps before it decline significantly and the window's mean lies
      within the two-sided confidence band of that decline's extrapolation (slow declines);
    - **improved** (``IMPROVED``): otherwise, when the window's mean beats the best window
      mean so far by ``max(rel * |level|, z2 * sigma * sqrt(2 / n))`` (a new best; ``z2`` the
      two-sided quantile), or when every value of the window is below the one before (never
      a plateau: a sign test, exact on noiseless curves);
    - otherwise inconclusive (``GRACE``).

    It triggers (``PLATEAU``) on a plateau verdict once ``patience`` steps were counted since
    the last trigger, quality reset or the end of the warmup/cooldown, so ``patience`` is the
    most evidence it needs: a flat noiseless loss triggers at ``counter > patience`` exactly
    like ``ReduceLROnPlateau``. ``counter`` reports the steps since the last evidence of
    progress (improved, trend, quality), ``stalled_steps`` those since the last improved or
    trend verdict (not reset by triggers). ``quality`` (higher is better) beating its best by
    ``quality_threshold`` (relative) resets the count; ``safety_steps`` triggers (``SAFETY``)
    after that many steps without evidence of a falling loss even if quality kept resetting.
    ``mode="max"`` tracks a metric that should rise.

    Non-finite losses (and ``|loss| > 1e150``) follow ``non_finite``: ``"skip"`` (default;
    ignored, reported as ``NON_FINITE``), ``"bad"`` (counted as a step without improvement)
    or ``"raise"``. Steps must increase from call to call. Not thread-safe; call it from the
    loop.

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
    _confidence: float
    _trend: float
    _quality_threshold: float
    _aggressive_sharpness: float
    _non_finite: str

    def __init__(
        self,
        *,
        patience: int = 250,
        cooldown: int = 50,
        warmup: int = 0,
        mode: str = "min",
        safety_steps: int | None = None,
        rel_threshold: tuple[float, float] = (0.00001, 0.0001),
        level_decades: float = 2.0,
        confidence: float = 0.8,
        trend: float = 4.0,
        clip_k: float = 3.0,
        ema_alpha: float = 0.1,
        quality_threshold: float = 0.001,
        aggressive_sharpness: float = 0.70,
        non_finite: str = "skip",
        noise_k: float | None = None,
        grace_margin: float | None = None,
        grace_rate: float | None = None,
    ) -> None:
        owner = "PlateauTracker"
        if mode not in ("min", "max"):
            raise AdaptiveError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")
        self._mode = mode
        self._sign = -1.0 if mode == "max" else 1.0
        self._alpha = check_number(owner, "ema_alpha", ema_alpha, low=0, high=1, low_open=True)
        self._clip_k = check_number(owner, "clip_k", clip_k, low=0, low_open=True)
        self._deprecated: dict[str, float | None] = dict.fromkeys(_DEPRECATED)
        self._configure(
            patience=patience,
            cooldown=cooldown,
            warmup=warmup,
            safety_steps=safety_steps,
            rel_threshold=rel_threshold,
            level_decades=level_decades,
            confidence=confidence,
            trend=trend,
            quality_threshold=quality_threshold,
            aggressive_sharpness=aggressive_sharpness,
            non_finite=non_finite,
            **{
                k: v
                for k, v in (
                    ("noise_k", noise_k),
                    ("grace_margin", grace_margin),
                    ("grace_rate", grace_rate),
                )
                if v is not None
            },
        )
        self._reset_state()

    # ----------------------------------------------------------------- settings
    @property
    def settings(self) -> dict[str, Any]:
        """The current settings (constructor arguments), JSON-safe."""
        out: dict[str, Any] = {name: getattr(self, "_" + name) for name in _SETTINGS}
        out["rel_threshold"] = list(out["rel_threshold"])
        out["mode"] = self._mode
        out["ema_alpha"] = self._alpha
        out["clip_k"] = self._clip_k
        out.update(self._deprecated)
        return out

    def configure(self, **settings: Any) -> None:
        """Validate and change settings at run time; all or nothing.

        Accepts the constructor's names and the runtime-config keys of :data:`RUNTIME_KEYS`
        (``plateau_patience``, ``plateau_safety_threshold``, ``cooldown_duration``).
        ``mode``, ``ema_alpha`` and ``clip_k`` are fixed at construction. ``noise_k``,
        ``grace_margin`` and ``grace_rate`` are accepted with a ``DeprecationWarning`` and
        have no effect (they tuned the EMA counter that the test replaced).

        Raises:
            AdaptiveError: an unknown name or a bad value (nothing is changed then).
        """
        self._configure(**settings)

    def _configure(self, **settings: Any) -> None:
        owner = "PlateauTracker"
        new: dict[str, Any] = {}
        for key, value in settings.items():
            name = RUNTIME_KEYS.get(key, key)
            if name in _FIXED:
                raise AdaptiveError(f"{owner}: {name} can only be set in the constructor")
            if name in _DEPRECATED:
                value = check_number(owner, key, value, low=0)
            elif name not in _SETTINGS:
                known = ", ".join(_SETTINGS + _FIXED)
                raise AdaptiveError(f"{owner}: unknown setting {key!r} (known: {known})")
            elif name in ("patience", "safety_steps"):
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
            elif name == "confidence":
                value = check_number(owner, key, value, low=0.5, high=1, high_open=True)
            elif name == "level_decades":
                value = check_number(owner, key, value, low=0, low_open=True)
            else:  # trend, quality_threshold, aggressive_sharpness
                value = check_number(owner, key, value, low=0)
            new[name] = value
        for name, value in new.items():
            if name in _DEPRECATED:
                warnings.warn(
                    f"PlateauTracker: {name} has no effect since the statistical test replaced "
                    "the EMA counter (state version 2); remove it",
                    DeprecationWarning,
                    stacklevel=3,  # the caller of __init__ or configure
                )
                self._deprecated[name] = value
            else:
                setattr(self, "_" + name, value)
        if "patience" in new:
            self._width = max(1, -(-self._patience // BATCHES))
        if new.keys() & {"patience", "trend"}:
            self._hist_span = int(math.ceil(self._trend * self._patience))
            self._keep = max(NOISE_WINDOWS * self._patience, self._patience + self._hist_span)
        if "confidence" in new and hasattr(self, "_win"):
            self._refresh_z()
        self._relv = -1.0  # the relative threshold is recomputed at the next update

    @property
    def patience(self) -> int:
        return self._patience

    @property
    def mode(self) -> str:
        """``"min"`` (a loss) or ``"max"`` (a metric that should rise)."""
        return self._mode

    # -------------------------------------------------------------------- state
    def _reset_state(self) -> None:
        self._n = 0
        self._first_step: int | None = None
        self._last_step: int | None = None
        self._ema = 0.0  # raw (biased) EMA sum of the clipped values; / (1 - decay) = EMA
        self._decay = 1.0
        self._prev: float | None = None  # last finite value (internal sign)
        self._run = 0  # consecutive strict improvements of the raw values
        self._first: float | None = None  # first EMA (internal sign)
        self._best: float | None = None  # best EMA (internal sign)
        self._best_quality: float | None = None
        self._best_level: float | None = None  # best window mean (internal sign), by a margin
        self._counter = 0  # counted steps since the last evidence of progress
        self._armed = 0  # counted steps since the last trigger / quality reset
        self._cooldown_until = _LOW  # no cooldown yet (any step is after it)
        self._safety_anchor: int | None = None
        self._stalled_anchor: int | None = None
        self._last_finite: int | None = None
        self._verdict = False  # the last finite update's window was a plateau
        self._fit: tuple[float, float, float] | None = None  # (mean, slope, mean step)
        self._triggers = 0
        self._nonfinite_count = 0
        self._win = BatchWindow()
        self._z = self._z2 = 0.0
        self._relv = -1.0  # cached relative threshold (< 0: to compute)
        self._refresh_z()

    def _refresh_z(self) -> None:
        scores = self._win.scores
        dof = max(1, scores - 1)
        self._z = t_quantile(self._confidence, dof) if scores else 0.0
        self._z2 = t_quantile(0.5 + 0.5 * self._confidence, dof) if scores else 0.0

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (no settings) with a ``"version"`` key."""
        return {
            "version": STATE_VERSION,
            "mode": self._mode,
            "n": self._n,
            "first_step": self._first_step,
            "last_step": self._last_step,
            "ema": self._ema,
            "decay": self._decay,
            "prev": self._prev,
            "run": self._run,
            "first": self._first,
            "best": self._best,
            "best_quality": self._best_quality,
            "best_level": self._best_level,
            "counter": self._counter,
            "armed": self._armed,
            "cooldown_until": self._cooldown_until,
            "safety_anchor": self._safety_anchor,
            "stalled_anchor": self._stalled_anchor,
            "last_finite": self._last_finite,
            "verdict": self._verdict,
            "fit": None if self._fit is None else list(self._fit),
            "triggers": self._triggers,
            "non_finite_count": self._nonfinite_count,
            "window": self._win.state_dict(),
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore the state; settings (patience, cooldown, ...) stay as configured.

        A version-1 state (the EMA tracker of earlier releases) loads with its counters,
        cooldown, triggers, EMA and best; its test window starts empty, so the first trigger
        after loading needs ``patience`` steps of new values (a warning says so).

        Raises:
            StateError: not a mapping, an unknown version, a missing key or a bad value
                (nothing is changed then).
        """
        with state_values("PlateauTracker"):
            vals = _parse_state(state, self._mode)
        for key, value in vals.items():
            setattr(self, "_" + key, value)
        self._refresh_z()
        self._relv = -1.0

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
        anchor = self._stalled_anchor
        stalled = 0 if anchor is None else step - anchor
        sign = self._sign
        n = self._n
        best = self._best
        return PlateauEvent(
            step,
            triggered,
            reason,
            self._counter,
            sign * self._ema / (1.0 - self._decay) if n else None,
            None if best is None else sign * best,
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
            loss: the training (or validation) loss, lower is better (``mode="max"``: the
                metric, higher is better); may be negative.
            quality: optional quality metric, higher is better (e.g. PSNR); non-finite ignored.
            sharpness_ratio: optional; below ``aggressive_sharpness`` with ``stalled_steps >
                patience`` the event is marked ``aggressive`` (an extreme plateau).
        """
        if type(step) is not int:  # numpy integers, integral floats: to int (JSON-safe)
            step = _as_step(step)
        last = self._last_step
        if last is not None and step <= last:
            raise AdaptiveError(
                f"PlateauTracker.update: step must increase, got {step} after {last}"
            )
        delta = 1 if last is None else step - last
        x = float(loss)
        if not -HUGE <= x <= HUGE:  # NaN, +-inf, or so large that the sums would overflow
            return self._non_finite_value(step, delta, x, sharpness_ratio)
        self._last_step = step
        if self._first_step is None:
            self._first_step = step
        self._last_finite = step
        y = self._sign * x
        prev = self._prev
        self._run = self._run + 1 if prev is not None and y < prev else 0
        self._prev = y
        # clip to clip_k noise scales (plus the local trend over two batches) around the fit
        win = self._win
        sigma = win.sigma
        fit = self._fit
        width = self._width
        if sigma is not None and fit is not None:
            slope = fit[1]
            pred = fit[0] + slope * (step - fit[2])
            band = self._clip_k * sigma + 2.0 * abs(slope) * width
            if y > pred + band:
                y = pred + band
            elif y < pred - band:
                y = pred - band
        alpha = self._alpha
        self._ema = (1.0 - alpha) * self._ema + alpha * y
        self._decay *= 1.0 - alpha
        self._n += 1
        ema = self._ema / (1.0 - self._decay)
        patience = self._patience
        if win.add(step, y, width, patience, self._hist_span, self._keep):
            self._refresh_z()
        # the window's least-squares line
        agg = win.window
        op = win.open
        n_w, tbar, ybar, stt, sty = agg[0], agg[1], agg[2], agg[3], agg[4]
        if op is not None:  # merge the open batch (inline for speed)
            m = op[1]
            if n_w == 0.0:
                n_w, tbar, ybar, stt, sty = m, op[2], op[3], op[4], op[5]
            else:
                tot = n_w + m
                dt = op[2] - tbar
                dy = op[3] - ybar
                f = n_w * m / tot
                tbar += dt * m / tot
                ybar += dy * m / tot
                stt += op[4] + f * dt * dt
                sty += op[5] + f * dt * dy
                n_w = tot
        slope = sty / stt if stt > 0.0 else 0.0
        self._fit = (ybar, slope, tbar)
        best = self._best
        if best is None:
            self._best = self._first = ema
            self._best_level = ybar
            self._stalled_anchor = self._safety_anchor = step
            return self._event(step, False, PlateauReason.WARMUP, None, sharpness_ratio)
        rel = self._relv
        if ema < best or rel < 0.0:
            if ema < best:
                self._best = best = ema
            self._relv = rel = self._rel(best)
        # the test
        level = abs(ybar)
        thr_rel = rel * level
        thr = thr_rel
        # a new best window mean, by max(threshold, the two-sided band of a difference of two
        # window means): the evidence of progress behind counter, stalled_steps and safety
        margin = thr_rel
        if sigma is not None:
            band = self._z2 * sigma * math.sqrt(2.0 / n_w)
            if band > margin:
                margin = band
        best_level = self._best_level
        new_best = best_level is None or ybar < best_level - margin
        if new_best:
            self._best_level = ybar
        reason = PlateauReason.GRACE
        plateau = False
        if n_w >= 2.0 and self._run >= n_w - 1.0:
            # every value of the window below the one before: a sign test (1/n! without a
            # trend), exact on noiseless curves
            reason = PlateauReason.IMPROVED
        elif n_w >= 2.0 and stt > 0.0:
            imp = -slope * patience
            se = 0.0 if sigma is None else patience * sigma / math.sqrt(stt)
            zse = self._z * se
            if zse > thr:
                thr = zse
            if imp + zse <= thr:
                plateau = True
                reason = PlateauReason.NO_IMPROVEMENT
                if (
                    self._trend > 0.0
                    and sigma is not None
                    and self._continues_trend(patience, sigma, thr_rel, n_w, tbar, ybar)
                ):
                    plateau = False
                    reason = PlateauReason.TREND
        if new_best and not plateau and reason is PlateauReason.GRACE:
            reason = PlateauReason.IMPROVED
        self._verdict = plateau
        if quality is not None and reason is not PlateauReason.IMPROVED:
            if self._quality_up(float(quality)):
                reason = PlateauReason.QUALITY
        elif quality is not None:
            self._quality_up(float(quality))
        return self._decide(step, delta, reason, thr, sharpness_ratio)

    def _rel(self, best: float) -> float:
        """rel falls from rel_threshold[1] to [0] as |best| drops level_decades below |first|."""
        rel_lo, rel_hi = self._rel_threshold
        first = self._first
        abest = abs(best)
        if abest > 0.0 and first and rel_lo < rel_hi:
            ratio = abs(first) / abest
            if ratio > 1.0:
                frac = math.log10(ratio) / self._level_decades
                return rel_lo if frac >= 1.0 else rel_hi - (rel_hi - rel_lo) * frac
        return rel_hi

    def _continues_trend(
        self, patience: int, sigma: float, thr_rel: float, n_w: float, tbar: float, ybar: float
    ) -> bool:
        """The history before the window falls significantly (one-sided) and the window's mean
        lies within the two-sided confidence band of that fall's extrapolation."""
        h = self._win.hist
        n_h, stt_h = h[0], h[3]
        if n_h < 3.0 or stt_h <= 0.0:
            return False
        slope_h = h[4] / stt_h
        if -slope_h * patience - self._z * patience * sigma / math.sqrt(stt_h) <= thr_rel:
            return False
        gap = tbar - h[1]
        dev = ybar - (h[2] + slope_h * gap)
        var = sigma * sigma * (1.0 / n_h + gap * gap / stt_h + 1.0 / n_w)
        return dev * dev < self._z2 * self._z2 * var

    def _quality_up(self, q: float) -> bool:
        if q - q != 0.0:  # NaN or inf
            return False
        bq = self._best_quality
        if bq is None:
            self._best_quality = q
            return False
        up = q > bq + self._quality_threshold * abs(bq)
        if q > bq:
            self._best_quality = q
        return up

    def _non_finite_value(
        self, step: int, delta: int, x: float, sharpness: float | None
    ) -> PlateauEvent:
        if self._non_finite == "raise":
            raise AdaptiveError(f"PlateauTracker.update: loss at step {step} is {x}")
        self._nonfinite_count += 1
        self._last_step = step
        if self._first_step is None:
            self._first_step = step
        log.debug("non-finite loss %r at step %d ignored (policy %s)", x, step, self._non_finite)
        if self._non_finite == "bad" and self._n:
            self._run = 0
            return self._decide(step, delta, PlateauReason.NON_FINITE, None, sharpness)
        return self._event(step, False, PlateauReason.NON_FINITE, None, sharpness)

    def _no_finite_for(self, step: int) -> bool:
        """No finite value came for ``patience`` steps (the ``"bad"`` policy's evidence)."""
        last = self._last_finite
        return last is None or step - last >= self._patience

    def _decide(
        self,
        step: int,
        delta: int,
        reason: PlateauReason,
        thr: float | None,
        sharpness: float | None,
    ) -> PlateauEvent:
        """Count the steps, apply warmup, cooldown, resets and the triggers."""
        warm_end = self._first_step + self._warmup  # type: ignore[operator]
        progress = reason in (PlateauReason.IMPROVED, PlateauReason.TREND)
        if progress:
            self._stalled_anchor = self._safety_anchor = step
        if step < warm_end:
            self._counter = self._armed = 0
            return self._event(step, False, PlateauReason.WARMUP, thr, sharpness)
        if step < self._cooldown_until:
            self._counter = self._armed = 0
            if not progress and reason is not PlateauReason.QUALITY:
                reason = PlateauReason.COOLDOWN
            return self._event(step, False, reason, thr, sharpness)
        counted = step - max(step - delta, self._cooldown_until, warm_end)
        if reason is PlateauReason.QUALITY:
            self._counter = self._armed = 0
        elif progress:
            self._counter = 0
            self._armed += counted
        else:
            self._counter += counted
            self._armed += counted
        triggered = False
        if self._armed > self._patience and (
            reason is PlateauReason.NO_IMPROVEMENT
            or (reason is PlateauReason.NON_FINITE and (self._verdict or self._no_finite_for(step)))
        ):
            triggered, reason = True, PlateauReason.PLATEAU
        elif (
            self._safety_steps is not None
            and self._safety_anchor is not None
            and step - self._safety_anchor >= self._safety_steps
        ):
            triggered, reason = True, PlateauReason.SAFETY
        if triggered:
            self._triggers += 1
            self._counter = self._armed = 0
            self._cooldown_until = step + self._cooldown
            self._safety_anchor = step
            log.info("plateau trigger at step %d: %s", step, reason.message)
        return self._event(step, triggered, reason, thr, sharpness)

    @property
    def triggers(self) -> int:
        """How many times the tracker has triggered (kept in the state)."""
        return self._triggers


_V2_INTS = ("n", "run", "counter", "armed", "triggers", "non_finite_count")
_V2_STEPS = ("first_step", "last_step", "safety_anchor", "stalled_anchor", "last_finite")
_V2_FLOATS = ("ema", "decay")
_V2_OPT_FLOATS = ("prev", "first", "best", "best_quality", "best_level")
_V1_KEYS = (
    "n", "first_step", "last_step", "ema", "decay", "prev", "first", "best", "best_step",
    "best_quality", "counter", "cooldown_until", "safety_anchor", "triggers", "non_finite_count",
)  # fmt: skip
_LOW = -(2**62)


def _parse_state(state: Any, mode: str) -> dict[str, Any]:
    """Validate a state dict (version 2, or 1 migrated) into attribute values."""
    owner = "PlateauTracker state"
    if check_state("PlateauTracker", state, STATE_VERSION, older=(1,))["version"] == 1:
        return _parse_v1(state, mode)
    keys = (
        "mode", *_V2_INTS, *_V2_STEPS, *_V2_FLOATS, *_V2_OPT_FLOATS,
        "cooldown_until", "verdict", "fit", "window",
    )  # fmt: skip
    check_state("PlateauTracker", state, STATE_VERSION, keys)
    if state["mode"] != mode:
        raise AdaptiveError(
            f"{owner}: the state is of a mode={state['mode']!r} tracker, this one is mode={mode!r}"
        )
    vals: dict[str, Any] = {k: check_int(owner, k, state[k]) for k in _V2_INTS}
    vals["nonfinite_count"] = vals.pop("non_finite_count")
    for k in _V2_STEPS:
        vals[k] = None if state[k] is None else check_int(owner, k, state[k], low=_LOW)
    vals["cooldown_until"] = check_int(owner, "cooldown_until", state["cooldown_until"], low=_LOW)
    for k in _V2_FLOATS:
        vals[k] = check_number(owner, k, state[k])
    for k in _V2_OPT_FLOATS:
        vals[k] = opt_float(owner, k, state[k])
    if not isinstance(state["verdict"], bool):
        raise AdaptiveError(f"{owner}: verdict must be true or false, got {state['verdict']!r}")
    vals["verdict"] = state["verdict"]
    fit = state["fit"]
    if fit is not None:
        if not isinstance(fit, (list, tuple)) or len(fit) != 3:
            raise AdaptiveError(f"{owner}: fit must be null or 3 numbers, got {fit!r}")
        fit = tuple(check_number(owner, f"fit[{i}]", v) for i, v in enumerate(fit))
    vals["fit"] = fit
    vals["win"] = BatchWindow.from_state(state["window"], owner)
    return vals


def _parse_v1(state: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """Migrate the EMA tracker's state: counters, cooldown, EMA and best; no test window."""
    owner = "PlateauTracker state"
    if mode != "min":
        raise AdaptiveError(
            f"{owner}: a version-1 state comes from a mode='min' tracker, this one is mode='max'"
        )
    check_state("PlateauTracker", state, 1, _V1_KEYS)
    steps = {}
    for k in ("first_step", "last_step", "best_step", "safety_anchor"):
        steps[k] = None if state[k] is None else check_int(owner, k, state[k], low=_LOW)
    counter = int(check_number(owner, "counter", state["counter"], low=0))
    vals: dict[str, Any] = {
        "n": check_int(owner, "n", state["n"]),
        "first_step": steps["first_step"],
        "last_step": steps["last_step"],
        "ema": check_number(owner, "ema", state["ema"]),
        "decay": check_number(owner, "decay", state["decay"]),
        "prev": opt_float(owner, "prev", state["prev"]),
        "run": 0,
        "first": opt_float(owner, "first", state["first"]),
        "best": opt_float(owner, "best", state["best"]),
        "best_quality": opt_float(owner, "best_quality", state["best_quality"]),
        "best_level": None,
        "counter": counter,
        "armed": counter,
        "cooldown_until": check_int(owner, "cooldown_until", state["cooldown_until"], low=_LOW),
        "safety_anchor": steps["safety_anchor"],
        "stalled_anchor": steps["best_step"],
        "last_finite": steps["last_step"],
        "verdict": False,
        "fit": None,
        "triggers": check_int(owner, "triggers", state["triggers"]),
        "nonfinite_count": check_int(owner, "non_finite_count", state["non_finite_count"]),
        "win": BatchWindow(),
    }
    log.warning(
        "PlateauTracker: loaded a version-1 state (EMA tracker): counters, cooldown and "
        "triggers kept; the test window starts empty, so the next trigger needs %s",
        "`patience` steps of new values",
    )
    return vals


def _as_step(step: Any) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        if isinstance(step, float) and step.is_integer():
            return int(step)
        raise AdaptiveError(
            f"PlateauTracker.update: step must be an integer, got {step!r}"
        ) from None
    return int(value)
