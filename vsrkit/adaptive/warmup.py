"""Scheduled loss-term warm-up on top of :class:`AdaptiveLossWeights`: :class:`LossWarmup`.

A warming term's weight follows a schedule from ``start`` to the weight that
:class:`~vsrkit.adaptive.AdaptiveLossWeights` gives it (its *target*, which may itself
adapt), linearly or along a half cosine, over ``length`` steps (or epochs) from ``begin``.
The other terms share what the warming terms leave, in proportion to their adaptive weights.
The result keeps the rules of :class:`AdaptiveLossWeights`: the weights sum to what the
adaptive weights sum to (1 after every update) and each stays inside its bounds. Importing
this module does not import torch.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

from vsrkit._state import check_state, state_values
from vsrkit.adaptive._common import AdaptiveError, check_number, opt_float
from vsrkit.adaptive.loss_weights import AdaptiveLossWeights
from vsrkit.adaptive.plateau import PlateauEvent

__all__ = ["LossWarmup", "WarmupSchedule"]

log = logging.getLogger(__name__)
STATE_VERSION = 1
SHAPES = ("linear", "cosine")


class WarmupSchedule(NamedTuple):
    """How one term warms up: from ``start`` at ``begin`` to its target at ``begin + length``.

    ``begin`` and ``length`` are in the unit of the ``progress`` the caller passes (steps by
    default, or epochs). ``shape`` is ``"linear"`` or ``"cosine"`` (slow at both ends).

    Example:
        >>> s = WarmupSchedule(start=0.0, length=100, shape="cosine")
        >>> [round(s.fraction(x), 3) for x in (0, 25, 50, 100, 1000)]
        [0.0, 0.146, 0.5, 1.0, 1.0]
    """

    start: float = 0.0
    length: float = 1000.0
    begin: float = 0.0
    shape: str = "linear"

    def fraction(self, progress: float) -> float:
        """How far the warm-up is at ``progress``: 0 up to ``begin``, 1 from the end on."""
        p = float(progress)
        if p <= self.begin:
            return 0.0
        if p >= self.begin + self.length:
            return 1.0
        x = min(1.0, (p - self.begin) / self.length)
        return x if self.shape == "linear" else 0.5 - 0.5 * math.cos(math.pi * x)


def _schedule(term: str, value: Any) -> WarmupSchedule:
    owner = "LossWarmup"
    if isinstance(value, WarmupSchedule):
        fields = value._asdict()
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(WarmupSchedule._fields))
        if unknown:
            raise AdaptiveError(
                f"{owner}: schedules[{term!r}] has unknown key(s) {', '.join(map(str, unknown))} "
                f"(known: {', '.join(WarmupSchedule._fields)})"
            )
        if "length" not in value:
            raise AdaptiveError(f"{owner}: schedules[{term!r}] needs 'length' (steps or epochs)")
        fields = {**WarmupSchedule()._asdict(), **value}
    else:
        raise AdaptiveError(
            f"{owner}: schedules[{term!r}] must be a WarmupSchedule or a mapping, got {value!r}"
        )
    if fields["shape"] not in SHAPES:
        raise AdaptiveError(
            f"{owner}: schedules[{term!r}].shape must be 'linear' or 'cosine', "
            f"got {fields['shape']!r}"
        )
    return WarmupSchedule(
        start=check_number(owner, f"schedules[{term!r}].start", fields["start"], low=0, high=1),
        length=check_number(
            owner, f"schedules[{term!r}].length", fields["length"], low=0, low_open=True
        ),
        begin=check_number(owner, f"schedules[{term!r}].begin", fields["begin"], low=0),
        shape=fields["shape"],
    )


def _fill(target: list[float], lo: list[float], hi: list[float], total: float) -> list[float]:
    """Values in ``[lo, hi]`` summing to ``total`` (needs ``sum(lo) <= total <= sum(hi)``):
    ``target`` shifted by one amount and clipped to the box, found exactly on the piecewise
    linear, non-decreasing sum of the shift."""
    box = list(zip(target, lo, hi, strict=True))

    def at(tau: float) -> list[float]:
        return [min(h, max(lo_, t + tau)) for t, lo_, h in box]

    points = sorted({lo_ - t for t, lo_, _ in box} | {h - t for t, _, h in box})
    prev, prev_sum = points[0], math.fsum(at(points[0]))
    tau = prev
    for point in points[1:]:
        if prev_sum >= total:
            break
        value = math.fsum(at(point))
        if value >= total:
            tau = prev + (total - prev_sum) * (point - prev) / (value - prev_sum)
            break
        prev, prev_sum, tau = point, value, point
    out = at(tau)
    err = total - math.fsum(out)  # rounding: give it to a value that stays inside its box
    for i, v in enumerate(out):
        if err and lo[i] <= v + err <= hi[i]:
            out[i] = v + err
            break
    return out


class LossWarmup:
    """Loss-term warm-up composed with an :class:`AdaptiveLossWeights`.

    The adaptive weights keep adapting as usual (call :meth:`update`, which feeds them);
    this object turns them into the *effective* weights of the current progress. A warming
    term gets ``start + (target - start) * fraction`` (its ``start`` must lie inside the
    bounds of ``weights``, so the value does too); the other terms share the rest in
    proportion to their adaptive weights, clipped to their bounds. When the bounds of the
    others cannot take the rest, the warming terms give way (the bounds and the sum win over
    the schedule; logged once). After the warm-up the effective weights equal the adaptive ones.

    Args:
        weights: The adaptive weights this warm-up wraps (it calls only their public API).
        schedules: ``{term: WarmupSchedule or {"start", "length", "begin", "shape"}}``.

    State: :meth:`state_dict` holds the wrapped weights' state too, so save this object
    instead of the adaptive weights. Not thread-safe.

    Example:
        >>> from vsrkit.adaptive import AdaptiveLossWeights
        >>> base = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 0.7, "perceptual": 0.3})
        >>> warm = LossWarmup(base, schedules={"perceptual": {"start": 0.0, "length": 100}})
        >>> [round(warm.weights_at(s)["perceptual"], 3) for s in (0, 50, 100, 200)]
        [0.0, 0.15, 0.3, 0.3]
        >>> round(sum(warm.weights_at(50).values()), 12)
        1.0
    """

    def __init__(
        self,
        weights: AdaptiveLossWeights,
        *,
        schedules: Mapping[str, WarmupSchedule | Mapping[str, Any]],
    ) -> None:
        owner = "LossWarmup"
        if not isinstance(weights, AdaptiveLossWeights):
            raise AdaptiveError(f"{owner}: weights must be an AdaptiveLossWeights, got {weights!r}")
        self._base = weights
        terms = weights.terms
        if not isinstance(schedules, Mapping) or not schedules:
            raise AdaptiveError(f"{owner}: schedules must be a non-empty mapping term -> schedule")
        unknown = sorted(set(schedules) - set(terms))
        if unknown:
            raise AdaptiveError(
                f"{owner}: schedules name unknown term(s) {', '.join(unknown)} "
                f"(terms: {', '.join(terms)})"
            )
        self._bounds = weights.bounds  # the effective weights stay inside the same bounds
        self._schedules = {t: _schedule(t, schedules[t]) for t in terms if t in schedules}
        for t, s in self._schedules.items():
            lo, hi = self._bounds[t]
            if not lo <= s.start <= hi:
                raise AdaptiveError(
                    f"{owner}: schedules[{t!r}].start {s.start} is outside the bounds [{lo}, {hi}]"
                )
        if len(self._schedules) == len(terms):
            raise AdaptiveError(f"{owner}: at least one term must not warm up (they share the sum)")
        self._last_progress: float | None = None
        self._gave_way = False

    def _inside(self, term: str, value: float) -> bool:
        lo, hi = self._bounds[term]
        return lo - 1e-12 <= value <= hi + 1e-12

    # --------------------------------------------------------------- accessors
    @property
    def base(self) -> AdaptiveLossWeights:
        """The wrapped adaptive weights."""
        return self._base

    @property
    def terms(self) -> tuple[str, ...]:
        return self._base.terms

    @property
    def schedules(self) -> dict[str, WarmupSchedule]:
        """The schedules, per warming term (settings)."""
        return dict(self._schedules)

    def fraction(self, progress: float) -> dict[str, float]:
        """Each warming term's schedule fraction (0 to 1) at ``progress``."""
        return {t: s.fraction(progress) for t, s in self._schedules.items()}

    def weights_at(self, progress: float) -> dict[str, float]:
        """The effective weights at ``progress`` (steps or epochs, as the schedules)."""
        base = self._base.weights
        total = math.fsum(base.values())
        warm = {
            t: s.start + (base[t] - s.start) * s.fraction(progress)
            for t, s in self._schedules.items()
        }
        others = [t for t in self.terms if t not in warm]
        rest = total - math.fsum(warm.values())
        lo_o = [self._bounds[t][0] for t in others]
        hi_o = [self._bounds[t][1] for t in others]
        clipped = min(max(rest, math.fsum(lo_o)), math.fsum(hi_o))
        share = math.fsum(base[t] for t in others)
        target = [base[t] * clipped / share if share > 0 else clipped / len(others) for t in others]
        out_o = _fill(target, lo_o, hi_o, clipped)
        if clipped != rest:  # the others cannot take the rest: the warming terms give way
            if not self._gave_way:
                log.warning(
                    "LossWarmup: the bounds of %s cannot take %.4g; the warming term(s) %s "
                    "follow the bounds instead of the schedule",
                    ", ".join(others),
                    rest,
                    ", ".join(warm),
                )
                self._gave_way = True
            names = list(warm)
            filled = _fill(
                [warm[t] for t in names],
                [self._bounds[t][0] for t in names],
                [self._bounds[t][1] for t in names],
                total - math.fsum(out_o),
            )
            warm = dict(zip(names, filled, strict=True))
        out = dict(zip(others, out_o, strict=True))
        out.update(warm)
        return {t: out[t] for t in self.terms}

    @property
    def weights(self) -> dict[str, float]:
        """The effective weights at the last progress seen by :meth:`update`/:meth:`combine`.

        Raises:
            AdaptiveError: before any progress was given (the schedule needs one).
        """
        if self._last_progress is None:
            raise AdaptiveError(
                "LossWarmup.weights: no step seen yet; call weights_at(progress) or update()"
            )
        return self.weights_at(self._last_progress)

    def combine(self, losses: Mapping[str, Any], *, progress: float) -> Any:
        """Weighted sum of the loss tensors with the effective weights, without a host sync."""
        extra = sorted(set(losses) - set(self.terms))
        if extra:
            raise AdaptiveError(f"LossWarmup.combine: unknown term(s) {', '.join(extra)}")
        weights = self.weights_at(progress)
        self._last_progress = float(progress)
        total = None
        for t, w in weights.items():
            if t not in losses:
                raise AdaptiveError(f"LossWarmup.combine: no loss for term {t!r}")
            part = losses[t] * w
            total = part if total is None else total + part
        return total

    # ----------------------------------------------------------------- updates
    def update(
        self,
        step: int,
        losses: Mapping[str, float],
        plateau: PlateauEvent | None = None,
        *,
        progress: float | None = None,
    ) -> dict[str, float]:
        """Update the adaptive weights (``step``, ``losses``, ``plateau`` as for them) and
        return the effective weights at ``progress`` (default: ``step``)."""
        self._base.update(step, losses, plateau)
        self._last_progress = float(step if progress is None else progress)
        return self.weights_at(self._last_progress)

    def configure(self, *, step: int | None = None, **settings: Any) -> None:
        """Change the adaptive weights' settings at run time (``weights`` sets the *target*
        weights); see :meth:`AdaptiveLossWeights.configure`."""
        self._base.configure(step=step, **settings)

    def set_weights(self, mapping: Mapping[str, float], *, step: int) -> dict[str, float]:
        """Deprecated: use ``configure(weights=mapping, step=step)``; returns the targets."""
        warnings.warn(
            "LossWarmup.set_weights(mapping, step=) is deprecated; use "
            "configure(weights=mapping, step=step)",
            DeprecationWarning,
            stacklevel=2,
        )
        self._base.configure(weights=mapping, step=step)
        return self._base.weights

    def status(self) -> dict[str, Any]:
        """The adaptive weights' statistics fields with the effective weights in the
        ``*_weight_current`` fields (those in force), at the last progress seen."""
        out = self._base.status()
        if self._last_progress is None:
            return out
        effective = self.weights_at(self._last_progress)
        # the adaptive weights name these fields (grad -> gradient_...), one per term in order
        weight_keys = [k for k in out if k.endswith("_weight_current")]
        for key, t in zip(weight_keys, self.terms, strict=True):
            out[key] = effective[t]
        return out

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: the adaptive weights' state and the last progress."""
        return {
            "version": STATE_VERSION,
            "weights": self._base.state_dict(),
            "last_progress": self._last_progress,
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore the adaptive weights and the last progress; schedules and bounds stay."""
        st = check_state("LossWarmup", state, STATE_VERSION, ("weights", "last_progress"))
        with state_values("LossWarmup"):
            last = opt_float("LossWarmup state", "last_progress", st["last_progress"])
        self._base.load_state_dict(st["weights"])
        self._last_progress = last
