"""The statistics behind :class:`~vsrkit.adaptive.PlateauTracker` (pure Python, no numpy).

- :func:`t_quantile` / :func:`t_cdf`: Student's t distribution for an integer number of
  degrees of freedom (closed-form CDF, quantile by bisection; cached).
- :func:`robust_scale`: a Gaussian-consistent scale that a few outliers cannot inflate (MAD
  start, then the root mean square of the values winsorized at ``2.5`` MADs).
- :class:`BatchWindow`: the loss values grouped into *batches* of consecutive steps; keeps the
  least-squares sums of the recent *window* and of the *history* before it (O(1) per value),
  and the long-run noise scale of one value estimated robustly from the batch means
  (second differences: free of any linear trend), at two batch sizes (the larger scale wins,
  so autocorrelation longer than one batch still shows). All of it is a JSON-safe state.

Every quantity is homogeneous in the values: multiplying every value by ``2**k`` multiplies
every mean, sum, slope and scale by ``2**k`` exactly (no additive constants, no logs), so the
tracker's decisions are the same at any power-of-two scale.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

__all__ = [
    "BatchWindow",
    "robust_scale",
    "t_cdf",
    "t_quantile",
    "WINSOR",
    "MIN_SCORES",
]

_MAD = NormalDist().inv_cdf(0.75)  # median |Z| of a standard normal: 0.6745
WINSOR = 2.5  # robust_scale winsorizes at this many MAD-based scales
#: fewer second-difference scores than this: the noise scale is unknown
MIN_SCORES = 3
MERGE = 4  # the second batch size: this many batches
#: the noise is re-estimated at each of the first SETTLED closed batches, then every
#: max(NOISE_EVERY, NOISE_STEPS / width) closed batches (it changes slowly; this keeps
#: update O(1) amortised even with one-step batches)
SETTLED = 20
NOISE_EVERY = 10
NOISE_STEPS = 100


def _winsor_consistency(c: float) -> float:
    """E[min(Z^2, c^2)] for a standard normal Z."""
    nd = NormalDist()
    tail = 1.0 - nd.cdf(c)
    return (1.0 - 2.0 * tail) - 2.0 * c * nd.pdf(c) + 2.0 * c * c * tail


_WINSOR_E = _winsor_consistency(WINSOR)


def robust_scale(values: Iterable[float]) -> float:
    """Gaussian-consistent scale of values centred at 0 (``0.0`` for no values).

    ``s0 = median(|v|) / 0.6745``; the result is ``sqrt(mean(min(v^2, (2.5 s0)^2)) / e)`` with
    ``e = E[min(Z^2, 2.5^2)]`` for a standard normal ``Z``, so it estimates the standard
    deviation of Gaussian values and a few wild values change it by a bounded amount.
    """
    a = sorted(map(abs, values))
    n = len(a)
    if n == 0:
        return 0.0
    mid = n // 2
    med = a[mid] if n % 2 else 0.5 * (a[mid - 1] + a[mid])
    cap = WINSOR * med / _MAD
    k = bisect_right(a, cap)  # a is sorted: the first k values are not winsorized
    total = sum(v * v for v in a[:k]) + (n - k) * cap * cap
    return math.sqrt(total / (n * _WINSOR_E))


def t_cdf(x: float, dof: int) -> float:
    """P(T <= x) for Student's t with ``dof`` (integer >= 1) degrees of freedom.

    Closed form for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4).
    """
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if x != x:
        return math.nan
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    theta = math.atan(abs(x) / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    s = math.sin(theta)
    if dof % 2:  # odd
        a = theta
        if dof > 1:
            term, acc = math.cos(theta), math.cos(theta)
            for k in range(3, dof, 2):  # cos + 2/3 cos^3 + 2*4/(3*5) cos^5 ...
                term *= c2 * (k - 1) / k
                acc += term
            a += s * acc
        a *= 2.0 / math.pi
    else:
        term, acc = 1.0, 1.0
        for k in range(2, dof, 2):  # 1 + 1/2 cos^2 + 1*3/(2*4) cos^4 ...
            term *= c2 * (k - 1) / k
            acc += term
        a = s * acc
    a = min(1.0, max(0.0, a))  # P(|T| <= |x|)
    return 0.5 + 0.5 * a if x >= 0 else 0.5 - 0.5 * a


@lru_cache(maxsize=512)
def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (``dof >= 1``).

    Bisection on :func:`t_cdf` to full float precision; above 2,000 degrees of freedom the
    normal quantile with the first Cornish-Fisher term (error < 1e-9 there).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    if p == 0.5:
        return 0.0
    z = NormalDist().inv_cdf(p)
    if dof > 2000:
        return z + (z**3 + z) / (4.0 * dof)
    lo, hi = 0.0, max(1.0, z)
    while t_cdf(hi, dof) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
    return hi


# ------------------------------------------------------------------------------ batch window
# A batch is a list [start, n, tbar, ybar, stt, sty, d2]: its first step (the batch grid
# point), the number of values, the mean step, the mean value, the centred sums
# sum (t - tbar)^2 and sum (t - tbar)(y - ybar), and the noise score it added when it closed
# (the standardised second difference of the batch means; None when not defined).
# An aggregate is [n, tbar, ybar, stt, sty] over several batches (Chan et al.'s merge).
_AGG0 = (0.0, 0.0, 0.0, 0.0, 0.0)


def _merge(agg: list[float], n: float, tbar: float, ybar: float, stt: float, sty: float) -> None:
    """Add a group to an aggregate in place (Chan et al.'s pairwise update)."""
    na = agg[0]
    if na == 0.0:
        agg[:] = [n, tbar, ybar, stt, sty]
        return
    tot = na + n
    dt = tbar - agg[1]
    dy = ybar - agg[2]
    f = na * n / tot
    agg[0] = tot
    agg[1] += dt * n / tot
    agg[2] += dy * n / tot
    agg[3] += stt + f * dt * dt
    agg[4] += sty + f * dt * dy


def _unmerge(agg: list[float], n: float, tbar: float, ybar: float, stt: float, sty: float) -> None:
    """Remove a group that was merged into an aggregate (inverse of :func:`_merge`)."""
    tot = agg[0]
    rest = tot - n
    if rest <= 0.0:
        agg[:] = list(_AGG0)
        return
    t_rest = (tot * agg[1] - n * tbar) / rest
    y_rest = (tot * agg[2] - n * ybar) / rest
    dt = tbar - t_rest
    dy = ybar - y_rest
    f = rest * n / tot
    agg[0] = rest
    agg[1] = t_rest
    agg[2] = y_rest
    agg[3] = max(0.0, agg[3] - stt - f * dt * dt)
    agg[4] = agg[4] - sty - f * dt * dy


def _aggregate(batches: Iterable[Sequence[Any]]) -> list[float]:
    agg = list(_AGG0)
    for b in batches:
        _merge(agg, b[1], b[2], b[3], b[4], b[5])
    return agg


class BatchWindow:
    """Values in batches of ``width`` steps; the window, its history, and the noise scale.

    The *window* holds the batches that start after ``step - span`` plus the open batch
    (always at least the last closed batch); the *history* the closed batches of the
    ``history`` steps before the window; batches are kept for noise estimation for
    ``keep`` steps. Sums are updated in O(1) per value; every ``REBUILD`` closed batches the
    aggregates are rebuilt from the batches (bounds the rounding of the running updates).
    """

    REBUILD = 64

    def __init__(self) -> None:
        self.batches: deque[list[Any]] = deque()  # closed batches, oldest first
        self.n_hist = 0  # how many of the oldest batches are out of the window
        self.window = list(_AGG0)  # closed batches in the window
        self.hist = list(_AGG0)  # closed batches in the history
        self.hist_lo = 0  # index of the first batch in the history aggregate
        self.open: list[Any] | None = None  # [start, n, tbar, ybar, stt, sty] (centred)
        self.closed = 0  # batches closed so far (drives the rebuilds)
        self.sigma: float | None = None  # long-run noise scale of one value
        self.scores = 0  # second-difference scores behind sigma

    # ------------------------------------------------------------------------ adding
    def add(self, step: int, y: float, width: int, span: int, history: int, keep: int) -> bool:
        """Add one value; returns True when the noise scale was re-estimated.

        ``width``: batch width in steps; ``span``: window length; ``history``: steps of
        history before the window; ``keep``: steps of batches kept for the noise estimate.
        """
        start = step - step % width
        op = self.open
        closed = renewed = False
        if op is None:
            self.open = [start, 1.0, float(step), y, 0.0, 0.0]
        elif start != op[0]:
            renewed = self._close(width)
            closed = True
            self.open = [start, 1.0, float(step), y, 0.0, 0.0]
        else:  # Welford update of the open batch's centred sums
            n = op[1] + 1.0
            dt = step - op[2]
            dy = y - op[3]
            op[1] = n
            op[2] += dt / n
            op[3] += dy / n
            op[4] += dt * (step - op[2])
            op[5] += dt * (y - op[3])
        self._slide(step, span, history, keep)
        if closed and self.closed % self.REBUILD == 0:
            self.rebuild()
        return renewed

    def _close(self, width: int) -> bool:
        op = self.open
        assert op is not None
        bs = self.batches
        d2 = _score(bs[-2], bs[-1], op) if len(bs) >= 2 else None
        bs.append([op[0], op[1], op[2], op[3], op[4], op[5], d2])
        _merge(self.window, op[1], op[2], op[3], op[4], op[5])
        self.closed += 1
        self.open = None
        every = max(NOISE_EVERY, -(-NOISE_STEPS // width))
        if self.closed <= SETTLED or self.closed % every == 0:
            self._estimate_noise()
            return True
        return False

    def _slide(self, step: int, span: int, history: int, keep: int) -> None:
        bs = self.batches
        win, hist = self.window, self.hist
        # window -> history: closed batches that started span or more steps ago (keep one)
        while len(bs) - self.n_hist > 1 and bs[self.n_hist][0] <= step - span:
            b = bs[self.n_hist]
            _unmerge(win, b[1], b[2], b[3], b[4], b[5])
            _merge(hist, b[1], b[2], b[3], b[4], b[5])
            self.n_hist += 1
        # history -> kept for the noise only: older than span + history
        while self.hist_lo < self.n_hist and bs[self.hist_lo][0] <= step - span - history:
            b = bs[self.hist_lo]
            _unmerge(hist, b[1], b[2], b[3], b[4], b[5])
            self.hist_lo += 1
        # back, when span or history grew (patience or trend raised): noise -> history ...
        while self.hist_lo > 0 and bs[self.hist_lo - 1][0] > step - span - history:
            self.hist_lo -= 1
            b = bs[self.hist_lo]
            _merge(hist, b[1], b[2], b[3], b[4], b[5])
        # ... -> window
        while self.n_hist > self.hist_lo and bs[self.n_hist - 1][0] > step - span:
            self.n_hist -= 1
            b = bs[self.n_hist]
            _unmerge(hist, b[1], b[2], b[3], b[4], b[5])
            _merge(win, b[1], b[2], b[3], b[4], b[5])
        # dropped: older than keep and outside the history
        while self.hist_lo and bs[0][0] <= step - keep:
            bs.popleft()
            self.n_hist -= 1
            self.hist_lo -= 1

    def rebuild(self) -> None:
        """Recompute both aggregates from the batches (exact up to one rounding each)."""
        bs = list(self.batches)
        self.window = _aggregate(bs[self.n_hist :])
        self.hist = _aggregate(bs[self.hist_lo : self.n_hist])

    # ------------------------------------------------------------------------- noise
    def _estimate_noise(self) -> None:
        """Robust scale of the second-difference scores at the batch size and at
        ``MERGE`` x the batch size (overlapping groups of ``MERGE`` batches); the larger one.

        Batch means are independent only when a batch is longer than the correlation of the
        values; a larger batch size shows correlation that the smaller one hides (for AR(1)
        values with phi = 0.9 and batches of 10 steps: 0.76 of the long-run scale instead of
        0.37), at the price of a small upward bias on white noise (~9%).
        """
        bs = self.batches
        d2 = [b[6] for b in bs if b[6] is not None]
        self.scores = len(d2)
        if len(d2) < MIN_SCORES:
            self.sigma = None
            return
        sigma = robust_scale(_centred(d2))
        # groups of MERGE consecutive batches at every offset (overlapping batch means), from
        # prefix sums of n, n * tbar, n * ybar
        cn, ct, cy = [0.0], [0.0], [0.0]
        for b in bs:
            cn.append(cn[-1] + b[1])
            ct.append(ct[-1] + b[1] * b[2])
            cy.append(cy[-1] + b[1] * b[3])
        m = MERGE
        big = []
        for e in range(3 * m, len(bs) + 1):
            rows = []
            for lo in (e - 3 * m, e - 2 * m, e - m):
                n = cn[lo + m] - cn[lo]
                rows.append((0, n, (ct[lo + m] - ct[lo]) / n, (cy[lo + m] - cy[lo]) / n))
            big.append(_score(*rows))
        if len(big) >= MIN_SCORES:
            sigma = max(sigma, robust_scale(_centred(big)))
        self.sigma = sigma

    # ------------------------------------------------------------------------- reads
    def window_stats(self) -> list[float]:
        """[n, tbar, ybar, stt, sty] of the window, the open batch included."""
        agg = list(self.window)
        op = self.open
        if op is not None:
            _merge(agg, op[1], op[2], op[3], op[4], op[5])
        return agg

    def window_values(self) -> int:
        """How many values the window holds (the open batch included)."""
        return int(self.window[0] + (self.open[1] if self.open is not None else 0.0))

    # ------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "batches": [list(b) for b in self.batches],
            "n_hist": self.n_hist,
            "hist_lo": self.hist_lo,
            "window": list(self.window),
            "hist": list(self.hist),
            "open": None if self.open is None else list(self.open),
            "closed": self.closed,
            "sigma": self.sigma,
            "scores": self.scores,
        }

    @classmethod
    def from_state(cls, st: Any, owner: str) -> BatchWindow:
        """A window from a :meth:`state_dict` output; raises ``AdaptiveError`` naming the
        field when the state is malformed."""
        from vsrkit.adaptive._common import AdaptiveError

        def fail(what: str) -> AdaptiveError:
            return AdaptiveError(f"{owner}: window.{what}")

        def num(v: Any, what: str, low: float | None = None) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise fail(f"{what} must be a finite number, got {v!r}")
            if low is not None and v < low:
                raise fail(f"{what} must be >= {low}, got {v!r}")
            return float(v)

        def integer(v: Any, what: str, low: int = 0) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise fail(f"{what} must be an integer >= {low}, got {v!r}")
            return v

        def nums(v: Any, what: str, size: int) -> list[float]:
            if not isinstance(v, (list, tuple)) or len(v) != size:
                raise fail(f"{what} must be a list of {size} numbers, got {v!r}")
            return [num(x, f"{what}[{i}]") for i, x in enumerate(v)]

        if not isinstance(st, Mapping):
            raise AdaptiveError(f"{owner}: window must be a mapping, got {type(st).__name__}")
        keys = ("batches", "n_hist", "hist_lo", "window", "hist", "open", "closed", "sigma",
                "scores")  # fmt: skip
        missing = [k for k in keys if k not in st]
        if missing:
            raise fail(f"missing key(s) {', '.join(missing)}")
        win = cls()
        if not isinstance(st["batches"], (list, tuple)):
            raise fail(f"batches must be a list, got {type(st['batches']).__name__}")
        for i, b in enumerate(st["batches"]):
            if not isinstance(b, (list, tuple)) or len(b) != 7:
                raise fail(f"batches[{i}] must be a list of 7 values, got {b!r}")
            row: list[Any] = [integer(b[0], f"batches[{i}][0]", low=-(2**62))]
            row += [num(b[1], f"batches[{i}][1]", low=1)]
            row += [num(x, f"batches[{i}][{j}]") for j, x in enumerate(b[2:6], start=2)]
            row.append(None if b[6] is None else num(b[6], f"batches[{i}][6]"))
            win.batches.append(row)
        win.n_hist = integer(st["n_hist"], "n_hist")
        win.hist_lo = integer(st["hist_lo"], "hist_lo")
        if not win.hist_lo <= win.n_hist <= len(win.batches):
            raise fail(
                f"n_hist must be between hist_lo ({win.hist_lo}) and the number of batches "
                f"({len(win.batches)}), got {win.n_hist}"
            )
        win.window = nums(st["window"], "window", 5)
        win.hist = nums(st["hist"], "hist", 5)
        if st["open"] is not None:
            op = nums(st["open"], "open", 6)
            start = integer(st["open"][0], "open[0]", low=-(2**62))
            if op[1] < 1.0:
                raise fail(f"open[1] must be >= 1, got {op[1]!r}")
            win.open = [start, *op[1:]]
        win.closed = integer(st["closed"], "closed")
        win.sigma = None if st["sigma"] is None else num(st["sigma"], "sigma", low=0)
        win.scores = integer(st["scores"], "scores")
        return win


def _centred(values: list[float]) -> list[float]:
    s = sorted(values)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return [v - med for v in values]


def _score(q: Sequence[Any], p: Sequence[Any], r: Sequence[Any]) -> float:
    """How far the batch mean of ``p`` lies from the line through those of ``q`` and ``r``, in
    units of its standard deviation for values of unit variance (rows: [start, n, tbar, ybar,
    ...]); exactly 0 for any linear trend."""
    span = r[2] - q[2]
    w1 = (r[2] - p[2]) / span
    w3 = (p[2] - q[2]) / span
    e = p[3] - (w1 * q[3] + w3 * r[3])
    return e / math.sqrt(1.0 / p[1] + w1 * w1 / q[1] + w3 * w3 / r[1])
