"""Named loss-term weights that adapt during training: :class:`AdaptiveLossWeights`."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from vsrkit._state import check_state, state_values
from vsrkit._terms import field_name
from vsrkit.adaptive._common import HUGE, AdaptiveError, check_int, check_number
from vsrkit.adaptive.plateau import PlateauEvent

__all__ = ["AdaptiveLossWeights", "MODES", "PHASES"]

log = logging.getLogger(__name__)
STATE_VERSION = 1
MODES = ("fixed", "balance", "cv", "dwa", "plateau")
PHASES = ("Stable", "Aggressive", "Cooldown")


def _project(target: list[float], lo: list[float], hi: list[float], total: float) -> list[float]:
    """Closest shift of ``target`` into the box ``[lo, hi]`` whose sum is ``total``.

    ``g(tau) = sum(clip(target + tau, lo, hi))`` is piecewise linear and non-decreasing;
    the answer is found exactly between two of its breakpoints (needs sum(lo) <= total <=
    sum(hi)).
    """
    triples = list(zip(target, lo, hi, strict=True))

    def g(tau: float) -> float:
        return math.fsum(min(h, max(l_, t + tau)) for t, l_, h in triples)

    points = sorted({l_ - t for t, l_, _ in triples} | {h - t for t, _, h in triples})
    prev_tau, prev_g = points[0], g(points[0])
    tau = prev_tau
    if prev_g < total:
        tau = points[-1]
        for point in points[1:]:
            value = g(point)
            if value >= total:
                slope = (value - prev_g) / (point - prev_tau)
                tau = prev_tau + (total - prev_g) / slope if slope > 0 else point
                break
            prev_tau, prev_g = point, value
    return [min(h, max(l_, t + tau)) for t, l_, h in triples]


class AdaptiveLossWeights:
    """Weights for named loss terms, adapted from the terms' running statistics.

    Modes (``target`` is normalised to sum 1; ``prior`` is the ``initial`` weights):

    - ``"fixed"``: weights change only through :meth:`set_weights`.
    - ``"balance"``: ``target_i ~ prior_i / mean_i``: every term contributes in proportion
      to its prior, whatever its scale.
    - ``"cv"``: coefficient of variation (Groenendijk et al. 2021): ``target_i ~ prior_i *
      cv_i / mean_i``; terms that still move get more weight.
    - ``"dwa"``: dynamic weight average (Liu et al. 2019) on scale-balanced terms:
      ``target_i ~ prior_i * exp(r_i / temperature) / mean_i``, ``r_i`` the ratio of the
      term's smoothed value to its value at the previous update.
    - ``"plateau"``: the VSR trainer's behaviour. ``Stable``: like ``"balance"``. When the
      latest :class:`PlateauEvent` is ``aggressive`` the phase becomes ``Aggressive`` and
      weight moves to ``aggressive_terms`` (default ``perceptual``) by ``max_change`` per
      update; when it ends, ``Cooldown`` holds the weights for ``cooldown`` steps.

    In every mode each update moves a weight by at most ``max_change``, keeps it inside its
    ``bounds``, leaves ``frozen`` terms alone, and the weights sum to 1 (a user's
    :meth:`set_weights` may leave the sum anywhere within ``1 +- sum_tolerance``; updates
    bring it back to 1). :meth:`set_weights` starts a ``Cooldown`` in the adaptive modes.
    An update with a missing, unknown or non-finite loss changes nothing (missing/unknown
    raise; non-finite, or ``|value| > 1e150``, is skipped and counted). Not thread-safe.

    Example:
        >>> w = AdaptiveLossWeights(("l1", "grad"), mode="balance", max_change=0.1)
        >>> for step in range(0, 100, 10):
        ...     weights = w.update(step, {"l1": 1.0, "grad": 0.01})
        >>> {k: round(v, 3) for k, v in weights.items()}
        {'l1': 0.01, 'grad': 0.99}
        >>> w.status()["gradient_weight_current"]
        0.990099...
    """

    def __init__(
        self,
        terms: Iterable[str] = ("l1", "ms", "grad", "perceptual"),
        *,
        mode: str = "fixed",
        initial: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | tuple[float, float] = (0.0, 1.0),
        max_change: float = 0.02,
        frozen: Iterable[str] = (),
        ema_alpha: float = 0.1,
        temperature: float = 2.0,
        cooldown: int = 500,
        aggressive_terms: Iterable[str] | None = None,
        stat_names: Mapping[str, str] | None = None,
        sum_tolerance: float = 0.05,
    ) -> None:
        owner = "AdaptiveLossWeights"
        self._terms = tuple(terms)
        if not self._terms or len(set(self._terms)) != len(self._terms):
            raise AdaptiveError(f"{owner}: terms must be non-empty and unique, got {self._terms!r}")
        if mode not in MODES:
            raise AdaptiveError(f"{owner}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._mode = mode
        self._max_change = check_number(owner, "max_change", max_change, low=0, low_open=True)
        self._alpha = check_number(owner, "ema_alpha", ema_alpha, low=0, high=1, low_open=True)
        self._temperature = check_number(owner, "temperature", temperature, low=0, low_open=True)
        self._cooldown = check_int(owner, "cooldown", cooldown)
        self._tol = check_number(owner, "sum_tolerance", sum_tolerance, low=0, high=0.5)
        if isinstance(bounds, Mapping):
            self._check_names("bounds", bounds)
            pairs = {t: bounds.get(t, (0.0, 1.0)) for t in self._terms}
        else:
            pairs = {t: bounds for t in self._terms}
        self._bounds: dict[str, tuple[float, float]] = {}
        for t, pair in pairs.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise AdaptiveError(f"{owner}: bounds for {t!r} must be (low, high), got {pair!r}")
            lo = check_number(owner, f"bounds[{t!r}] low", pair[0], low=0, high=1)
            hi = check_number(owner, f"bounds[{t!r}] high", pair[1], low=lo, high=1)
            self._bounds[t] = (lo, hi)
        if (
            sum(b[0] for b in self._bounds.values()) > 1
            or sum(b[1] for b in self._bounds.values()) < 1
        ):
            raise AdaptiveError(f"{owner}: bounds {self._bounds} admit no weights summing to 1")
        self._frozen = frozenset(frozen)
        self._check_names("frozen", self._frozen)
        if aggressive_terms is None:
            aggressive_terms = ("perceptual",) if "perceptual" in self._terms else ()
        self._aggressive = tuple(aggressive_terms)
        self._check_names("aggressive_terms", self._aggressive)
        self._stat = {t: field_name(t) for t in self._terms}
        if stat_names is not None:
            self._check_names("stat_names", stat_names)
            self._stat.update(stat_names)
        if initial is None:
            initial = {t: 1.0 / len(self._terms) for t in self._terms}
        self._weights = self._validated(initial, partial=False, what="initial")
        self._prior = dict(self._weights)
        self._n = 0
        self._decay = 1.0
        self._mean = {t: 0.0 for t in self._terms}
        self._sq = {t: 0.0 for t in self._terms}
        self._prev_mean: dict[str, float] | None = None
        self._phase = "Stable"
        self._cooldown_until: int | None = None
        self._last_step: int | None = None
        self._trend: float | None = 0.0 if "perceptual" in self._terms else None
        self._plateau_counter: int | None = None
        self._boost_available: bool | None = None
        self._skipped = 0

    # ------------------------------------------------------------------ checks
    def _check_names(self, what: str, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self._terms))
        if unknown:
            raise AdaptiveError(
                f"AdaptiveLossWeights: {what} names unknown term(s) {', '.join(unknown)} "
                f"(terms: {', '.join(self._terms)})"
            )

    def _validated(
        self, mapping: Mapping[str, float], *, partial: bool, what: str
    ) -> dict[str, float]:
        owner = "AdaptiveLossWeights"
        if not isinstance(mapping, Mapping):
            raise AdaptiveError(f"{owner}: {what} must be a mapping term -> weight")
        self._check_names(what, mapping)
        if not partial:
            missing = [t for t in self._terms if t not in mapping]
            if missing:
                raise AdaptiveError(f"{owner}: {what} lacks weight(s) for {', '.join(missing)}")
        out = {t: mapping[t] if t in mapping else self._weights[t] for t in self._terms}
        for t, v in out.items():
            lo, hi = self._bounds[t]
            out[t] = check_number(owner, f"{what}[{t!r}]", v, low=lo, high=hi)
        total = math.fsum(out.values())
        if abs(total - 1.0) > self._tol + 1e-12:
            raise AdaptiveError(
                f"{owner}: {what} weights sum to {total:.4f}; they must sum to 1 +- {self._tol}"
            )
        return out

    # --------------------------------------------------------------- accessors
    @property
    def terms(self) -> tuple[str, ...]:
        return self._terms

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """The ``(low, high)`` bounds of each term (a copy)."""
        return dict(self._bounds)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def phase(self) -> str:
        """``"Stable"``, ``"Aggressive"`` or ``"Cooldown"``."""
        return self._phase

    @property
    def weights(self) -> dict[str, float]:
        """The current weights (a copy)."""
        return dict(self._weights)

    def combine(self, losses: Mapping[str, Any]) -> Any:
        """Weighted sum of the loss tensors, on their device, without a host sync.

        Raises:
            AdaptiveError: a term is missing from ``losses`` or ``losses`` has an unknown key.
        """
        self._check_names("combine(losses)", losses)
        total = None
        for t, w in self._weights.items():
            if t not in losses:
                raise AdaptiveError(f"AdaptiveLossWeights.combine: no loss for term {t!r}")
            part = losses[t] * w
            total = part if total is None else total + part
        return total

    # ----------------------------------------------------------------- updates
    def _step_check(self, step: int, where: str) -> None:
        if self._last_step is not None and step < self._last_step:
            raise AdaptiveError(
                f"AdaptiveLossWeights.{where}: step {step} is before the last step "
                f"{self._last_step}"
            )

    def configure(self, *, step: int | None = None, **settings: Any) -> None:
        """Change settings at run time; all or nothing.

        ``weights``: a user's change of the weights (e.g. from the runtime config), some or
        all terms, checked against the bounds and the sum rule; it needs the ``step`` and
        starts a ``Cooldown`` in the adaptive modes. ``cooldown``: the steps a ``Cooldown``
        holds the weights. ``max_change``: the most one update moves a weight.

        Raises:
            AdaptiveError: an unknown name, an unknown term, a value outside its bounds, a
                sum not within 1 +- tol, or ``weights`` without a ``step``.

        Example:
            >>> w = AdaptiveLossWeights(("l1", "grad"), initial={"l1": 0.5, "grad": 0.5})
            >>> w.configure(weights={"l1": 0.7, "grad": 0.3}, step=10)
            >>> w.weights, w.phase
            ({'l1': 0.7, 'grad': 0.3}, 'Stable')
        """
        owner = "AdaptiveLossWeights"
        known = ("weights", "cooldown", "max_change")
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise AdaptiveError(
                f"{owner}: unknown setting {unknown[0]!r} (known: {', '.join(known)})"
            )
        cooldown = self._cooldown
        if "cooldown" in settings:
            cooldown = check_int(owner, "cooldown", settings["cooldown"])
        max_change = self._max_change
        if "max_change" in settings:
            max_change = check_number(
                owner, "max_change", settings["max_change"], low=0, low_open=True
            )
        new = None
        if "weights" in settings:
            if step is None:
                raise AdaptiveError(f"{owner}: configure(weights=...) needs the step")
            self._step_check(step, "configure")
            new = self._validated(settings["weights"], partial=True, what="weights")
        self._cooldown, self._max_change = cooldown, max_change
        if new is None or step is None:
            return
        self._weights = new
        self._last_step = step
        if self._mode != "fixed" and self._cooldown:
            self._phase, self._cooldown_until = "Cooldown", step + self._cooldown
        log.info("step %d: loss weights set to %s", step, new)

    def set_weights(self, mapping: Mapping[str, float], *, step: int) -> dict[str, float]:
        """Deprecated: use ``configure(weights=mapping, step=step)``; returns the weights."""
        warnings.warn(
            "AdaptiveLossWeights.set_weights(mapping, step=) is deprecated; use "
            "configure(weights=mapping, step=step)",
            DeprecationWarning,
            stacklevel=2,
        )
        self.configure(weights=mapping, step=step)
        return dict(self._weights)

    def update(
        self, step: int, losses: Mapping[str, float], plateau: PlateauEvent | None = None
    ) -> dict[str, float]:
        """Feed the terms' values (floats, once per log interval) and get the new weights."""
        self._step_check(step, "update")
        self._check_names("update(losses)", losses)
        missing = [t for t in self._terms if t not in losses]
        if missing:
            raise AdaptiveError(
                f"AdaptiveLossWeights.update: no value for term(s) {', '.join(missing)}"
            )
        values = {t: float(losses[t]) for t in self._terms}
        self._last_step = step
        if plateau is not None:
            self._plateau_counter = plateau.counter
            self._boost_available = plateau.lr_boost_available
        if not all(-HUGE <= v <= HUGE for v in values.values()):
            self._skipped += 1
            log.warning("step %d: non-finite loss term(s) %s: weights unchanged", step, values)
            return dict(self._weights)
        a = self._alpha
        self._prev_mean = self._current_means() if self._n else None
        for t, v in values.items():
            if self._n:
                d = v - self._mean[t] / (1.0 - self._decay)
                self._sq[t] = (1.0 - a) * (self._sq[t] + a * d * d)
            self._mean[t] = (1.0 - a) * self._mean[t] + a * v
        self._decay *= 1.0 - a
        self._n += 1
        self._advance_phase(step, plateau)
        target = self._target()
        if target is not None:
            old = self._weights
            self._weights = self._move(target)
            if self._trend is not None:
                change = self._weights["perceptual"] - old["perceptual"]
                self._trend = (1.0 - a) * self._trend + a * change
        return dict(self._weights)

    def _current_means(self) -> dict[str, float]:
        return {t: m / (1.0 - self._decay) for t, m in self._mean.items()}

    def _advance_phase(self, step: int, plateau: PlateauEvent | None) -> None:
        if self._phase == "Cooldown" and step >= (self._cooldown_until or 0):
            self._phase, self._cooldown_until = "Stable", None
        if self._mode != "plateau" or plateau is None:
            return
        if plateau.aggressive and self._phase == "Stable":
            self._phase = "Aggressive"
            log.info("step %d: loss weights enter Aggressive (extreme plateau)", step)
        elif not plateau.aggressive and self._phase == "Aggressive":
            self._phase = "Cooldown" if self._cooldown else "Stable"
            self._cooldown_until = step + self._cooldown if self._cooldown else None

    def _target(self) -> list[float] | None:
        if self._mode == "fixed" or self._phase == "Cooldown":
            return None
        w = self._weights
        if self._phase == "Aggressive":
            push = self._max_change / max(len(self._aggressive), 1)
            up = {t: w[t] + push for t in self._aggressive}
            rest = math.fsum(w[t] for t in self._terms if t not in up)
            if rest <= 0.0:
                return None
            shrink = (1.0 - math.fsum(up.values())) / rest
            return [up[t] if t in up else w[t] * shrink for t in self._terms]
        means = self._current_means()
        if any(m == 0.0 for m in means.values()):
            return None
        if self._mode == "cv":
            if self._n < 2:
                return None
            var_scale = 1.0 - self._decay
            factor = {t: math.sqrt(self._sq[t] / var_scale) / abs(means[t]) for t in self._terms}
        elif self._mode == "dwa" and self._prev_mean is not None:
            ratio = {
                t: means[t] / self._prev_mean[t] if self._prev_mean[t] else 1.0 for t in self._terms
            }
            top = max(ratio.values())  # softmax shift: same target, no overflow
            factor = {t: math.exp((ratio[t] - top) / self._temperature) for t in self._terms}
        else:
            factor = {t: 1.0 for t in self._terms}
        raw = [self._prior[t] * factor[t] / abs(means[t]) for t in self._terms]
        total = math.fsum(raw)
        if not total > 0.0 or not math.isfinite(total):
            return None
        return [r / total for r in raw]

    def _move(self, target: list[float]) -> dict[str, float]:
        mc = self._max_change
        lo, hi = [], []
        for t in self._terms:
            w = self._weights[t]
            b_lo, b_hi = self._bounds[t]
            if t in self._frozen:
                lo.append(w)
                hi.append(w)
            else:
                lo.append(max(b_lo, w - mc))
                hi.append(min(b_hi, w + mc))
        total = min(max(1.0, math.fsum(lo)), math.fsum(hi))
        return dict(zip(self._terms, _project(target, lo, hi, total), strict=True))

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The statistics-file fields (``gradient_weight_current`` for the term ``grad``)."""
        remaining = 0
        if (
            self._phase == "Cooldown"
            and self._cooldown_until is not None
            and self._last_step is not None
        ):
            remaining = max(0, self._cooldown_until - self._last_step)
        out: dict[str, Any] = {
            "adaptive_mode": self._phase,
            "adaptive_is_cooldown": self._phase == "Cooldown",
            "adaptive_cooldown_remaining": remaining,
            "adaptive_plateau_counter": self._plateau_counter,
            "adaptive_lr_boost_available": self._boost_available,
            "adaptive_perceptual_trend": self._trend,
        }
        for t in self._terms:
            out[f"{self._stat[t]}_weight_current"] = self._weights[t]
        return out

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (weights and statistics, no settings) with a ``"version"`` key."""
        return {
            "version": STATE_VERSION,
            "terms": list(self._terms),
            "weights": dict(self._weights),
            "n": self._n,
            "decay": self._decay,
            "mean": dict(self._mean),
            "sq": dict(self._sq),
            "prev_mean": None if self._prev_mean is None else dict(self._prev_mean),
            "phase": self._phase,
            "cooldown_until": self._cooldown_until,
            "last_step": self._last_step,
            "perceptual_trend": self._trend,
            "plateau_counter": self._plateau_counter,
            "lr_boost_available": self._boost_available,
            "skipped": self._skipped,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore weights and statistics; the settings (mode, bounds, ...) stay as built.

        Raises:
            StateError: wrong version, other terms, or weights that break this object's
                bounds or sum rule (nothing is loaded then).
        """
        keys = tuple(k for k in self.state_dict() if k != "version")
        st = check_state("AdaptiveLossWeights", state, STATE_VERSION, keys)
        with state_values("AdaptiveLossWeights"):
            self._load(st)

    def _load(self, st: Mapping[str, Any]) -> None:
        owner = "AdaptiveLossWeights state"
        if list(st["terms"]) != list(self._terms):
            raise AdaptiveError(
                f"{owner}: state has terms {st['terms']}, this object {list(self._terms)}"
            )
        weights = self._validated(st["weights"], partial=False, what="state weights")
        if st["phase"] not in PHASES:
            raise AdaptiveError(
                f"{owner}: phase must be one of {', '.join(PHASES)}, got {st['phase']!r}"
            )

        def per_term(key: str) -> dict[str, float]:
            value = st[key]
            if not isinstance(value, Mapping) or set(value) != set(self._terms):
                raise AdaptiveError(f"{owner}: {key} must map every term to a number")
            return {t: check_number(owner, f"{key}[{t!r}]", value[t]) for t in self._terms}

        mean, sq = per_term("mean"), per_term("sq")
        prev = None if st["prev_mean"] is None else per_term("prev_mean")
        n = check_int(owner, "n", st["n"])
        decay = check_number(owner, "decay", st["decay"], low=0, high=1)
        trend = st["perceptual_trend"]
        trend = None if trend is None else check_number(owner, "perceptual_trend", trend)
        counter = st["plateau_counter"]
        counter = None if counter is None else check_int(owner, "plateau_counter", counter)
        until, last = st["cooldown_until"], st["last_step"]
        until = None if until is None else check_int(owner, "cooldown_until", until, low=-(2**62))
        last = None if last is None else check_int(owner, "last_step", last, low=-(2**62))
        boost = st["lr_boost_available"]
        if boost is not None and not isinstance(boost, bool):
            raise AdaptiveError(f"{owner}: lr_boost_available must be true, false or null")
        skipped = check_int(owner, "skipped", st["skipped"])
        self._weights, self._mean, self._sq, self._prev_mean = weights, mean, sq, prev
        self._n, self._decay, self._trend, self._plateau_counter = n, decay, trend, counter
        self._phase, self._cooldown_until, self._last_step = st["phase"], until, last
        self._boost_available, self._skipped = boost, skipped
