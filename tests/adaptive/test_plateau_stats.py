"""The statistics behind PlateauTracker, checked against direct computations (no numpy/scipy)."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError
from vsrkit.adaptive._plateau_stats import WINSOR, BatchWindow, robust_scale, t_cdf, t_quantile


def t_density(x: float, dof: int) -> float:
    c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
    return c * (1 + x * x / dof) ** (-(dof + 1) / 2)


def simpson(f, a: float, b: float, n: int = 20000) -> float:
    h = (b - a) / n
    s = f(a) + f(b)
    s += 4 * sum(f(a + (2 * i - 1) * h) for i in range(1, n // 2 + 1))
    s += 2 * sum(f(a + 2 * i * h) for i in range(1, n // 2))
    return s * h / 3


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 8, 15, 30])
@pytest.mark.parametrize("x", [-3.1, -0.7, 0.0, 0.4, 1.5, 2.9])
def test_t_cdf_matches_the_integrated_density(dof, x):
    # P(T <= x) = 1/2 + integral of the density from 0 to x (the density is symmetric)
    direct = 0.5 + math.copysign(simpson(lambda u: t_density(u, dof), 0.0, abs(x)), x)
    assert t_cdf(x, dof) == pytest.approx(direct, abs=1e-10)


@pytest.mark.parametrize(
    ("p", "dof", "expected"),
    [  # references: mpmath at 40 digits (regularized incomplete beta), to 17 digits
        (0.95, 1, 6.3137515146750374),
        (0.95, 2, 2.9199855803537242),
        (0.975, 10, 2.2281388519862742),
        (0.9, 5, 1.4758840488244813),
        (0.8, 30, 0.85376726147129779),
        (0.99, 3, 4.5407028585681321),
        (0.8, 7, 0.89602964431376513),
    ],
)
def test_t_quantile_known_values(p, dof, expected):
    assert t_quantile(p, dof) == pytest.approx(expected, rel=1e-12)
    assert t_quantile(1 - p, dof) == pytest.approx(-expected, rel=1e-12)


@given(st.floats(0.501, 0.9999), st.integers(1, 3000))
def test_t_quantile_inverts_the_cdf(p, dof):
    q = t_quantile(p, dof)
    if dof <= 2000:
        assert t_cdf(q, dof) == pytest.approx(p, abs=1e-12)
    z = t_quantile(p, 10**6)  # converges to the normal quantile from above
    assert q >= z - 1e-9


def test_t_rejects_bad_arguments():
    with pytest.raises(ValueError, match="p must be in"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="dof"):
        t_quantile(0.9, 0)
    with pytest.raises(ValueError, match="dof"):
        t_cdf(1.0, 0)
    assert t_quantile(0.5, 7) == 0.0 and t_cdf(math.inf, 3) == 1.0 and t_cdf(-math.inf, 3) == 0.0


def direct_robust_scale(values: list[float]) -> float:
    """The documented definition, written out independently."""
    a = sorted(abs(v) for v in values)
    n = len(a)
    med = a[n // 2] if n % 2 else (a[n // 2 - 1] + a[n // 2]) / 2
    # median |Z| and E[min(Z^2, c^2)] of a standard normal, by integration
    phi = lambda u: math.exp(-u * u / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    lo, hi = 0.0, 2.0
    for _ in range(200):  # P(|Z| <= m) = 1/2
        m = (lo + hi) / 2
        lo, hi = (m, hi) if 2 * simpson(phi, 0, m, 2000) < 0.5 else (lo, m)
    mad = (lo + hi) / 2
    c = WINSOR
    e = 2 * simpson(lambda u: u * u * phi(u), 0, c, 4000) + c * c * 2 * (
        0.5 - simpson(phi, 0, c, 4000)
    )
    cap = WINSOR * med / mad
    return math.sqrt(sum(min(v, cap) ** 2 for v in a) / (n * e))


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60))
@settings(max_examples=50, deadline=None)
def test_robust_scale_matches_its_definition(values):
    assert robust_scale(values) == pytest.approx(direct_robust_scale(values), rel=1e-7, abs=1e-300)


def test_robust_scale_is_consistent_for_gaussians_and_robust_to_outliers():
    rng = random.Random(3)
    xs = [rng.gauss(0, 2.0) for _ in range(20000)]
    assert robust_scale(xs) == pytest.approx(2.0, rel=0.03)
    spoiled = xs[:18000] + [1e9] * 2000  # 10% wild values
    assert robust_scale(spoiled) < 1.35 * 2.0
    assert robust_scale([]) == 0.0 and robust_scale([0.0, 0.0, 5.0]) == 0.0


# ------------------------------------------------------------------------------- BatchWindow
def direct_window(points, width_of, span_of, history_of):
    """Batches and the window/history sums recomputed from all points (no running sums)."""
    batches = []  # [start, [(t, y), ...]]
    for t, y in points:
        start = t - t % width_of(t)
        if batches and batches[-1][0] == start:
            batches[-1][1].append((t, y))
        else:
            batches.append([start, [(t, y)]])
    step = points[-1][0]
    span, history = span_of(step), history_of(step)
    closed = batches[:-1]
    in_window = [b for b in closed if b[0] > step - span] or closed[-1:]
    in_history = [b for b in closed if b not in in_window and b[0] > step - span - history]

    def lsq(groups):
        pts = [p for b in groups for p in b[1]]
        if not pts:
            return [0.0] * 5
        n = len(pts)
        tbar = sum(t for t, _ in pts) / n
        ybar = sum(y for _, y in pts) / n
        stt = sum((t - tbar) ** 2 for t, _ in pts)
        sty = sum((t - tbar) * (y - ybar) for t, y in pts)
        return [float(n), tbar, ybar, stt, sty]

    return lsq(in_window + batches[-1:]), lsq(in_history), len(closed)


def close(a, b, scale):
    return all(abs(x - y) <= 1e-9 * (abs(y) + s) for x, y, s in zip(a, b, scale, strict=True))


@given(
    st.lists(st.tuples(st.integers(1, 7), st.floats(-100, 100)), min_size=2, max_size=250),
    st.integers(1, 12),
    st.integers(5, 60),
    st.integers(0, 120),
    st.integers(0, 249),
)
@settings(max_examples=80, deadline=None)
def test_window_sums_match_a_direct_least_squares(gaps, width, span, history, change_at):
    """Running sums (with patience-like changes of width and span halfway) equal the direct
    computation over the batches that the rules select."""
    win = BatchWindow()
    points, t = [], 0

    def width_of(s):
        return width if s < change_at else max(1, width // 2)

    def span_of(s):
        return span if s < change_at else span * 2

    def history_of(s):
        return history

    for gap, y in gaps:
        t += gap
        points.append((t, y))
        keep = span_of(t) + history + 10_000  # keep every batch the direct version may need
        win.add(t, y, width_of(t), span_of(t), history, keep)
    if change_at <= points[0][0]:
        pass  # the change happened before any value: the same rules, nothing special
    expected_w, expected_h, n_closed = direct_window(points, width_of, span_of, history_of)
    t_scale = [1.0, 1.0, 100.0, t * t, 100.0 * t]
    assert len(win.batches) == n_closed
    assert close(win.window_stats(), expected_w, t_scale), (win.window_stats(), expected_w)
    assert close(win.hist, expected_h, t_scale), (win.hist, expected_h)
    # a JSON round trip restores the same window, bit for bit
    again = BatchWindow.from_state(json.loads(json.dumps(win.state_dict())), "test")
    assert again.state_dict() == win.state_dict()


def feed(win: BatchWindow, values, width=10, span=100, history=400, keep=500, start=0):
    for i, v in enumerate(values):
        win.add(start + i, v, width, span, history, keep)
    return win


def test_noise_scale_of_white_noise_ignores_a_linear_trend():
    def scales(slope: float) -> list[float]:
        rng = random.Random(7)
        win, out = BatchWindow(), []
        for i in range(4000):
            y = 3.0 + slope * i + rng.gauss(0, 0.2)
            if win.add(i, y, 10, 100, 400, 500) and win.sigma is not None and i > 600:
                out.append(win.sigma)
        return out

    flat = scales(0.0)
    assert sorted(flat)[len(flat) // 2] == pytest.approx(0.2, rel=0.12)
    for slope in (-0.01, 0.5):  # the same noise on a trend: the same scales
        assert scales(slope) == pytest.approx(flat, rel=1e-6)


def ar1(rng: random.Random, n: int, phi: float) -> list[float]:
    acc, out = rng.gauss(0, 1), []
    for _ in range(n):
        acc = phi * acc + rng.gauss(0, math.sqrt(1 - phi * phi))
        out.append(acc)
    return out


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_noise_scale_sees_autocorrelation_longer_than_a_batch(phi):
    """AR(1) noise of unit variance: the long-run scale of one value is
    sqrt((1 + phi) / (1 - phi)) (4.4 at phi = 0.9). Batch means of 10 steps alone see ~0.37
    of it at phi = 0.9; with the merged batches the estimate stays within [0.55, 1.3]."""
    rng = random.Random(11)
    values = ar1(rng, 6000, phi)
    win = BatchWindow()
    ratios = []
    longrun = math.sqrt((1 + phi) / (1 - phi))
    for i, v in enumerate(values):
        if win.add(i, v, 10, 100, 400, 500) and win.sigma is not None and i > 600:
            ratios.append(win.sigma / longrun)
    ratios.sort()
    median_ratio = ratios[len(ratios) // 2]
    assert 0.55 < median_ratio < 1.3
    if phi == 0.9:  # what batch means of one size give (the test would be far too sure)
        means = [sum(values[k : k + 10]) / 10 for k in range(0, 6000, 10)]
        d2 = [(means[j] - (means[j - 1] + means[j + 1]) / 2) / math.sqrt(1.5 / 10)
              for j in range(1, len(means) - 1)]  # fmt: skip
        assert robust_scale(d2) / longrun < 0.5 < median_ratio


def test_noise_scale_shrugs_off_clipped_spikes():
    """The tracker clips each value to 4 noise scales before it reaches the batches: a spike
    every 50 steps, clipped so, adds its true variance (the scale of the values becomes
    sqrt(1 + 0.02 * 16) = 1.15 noise scales) and nothing more."""
    rng = random.Random(5)
    clean = [1.0 + rng.gauss(0, 0.01) for _ in range(500)]
    spiky = list(clean)
    for k in range(7, 500, 50):
        spiky[k] += 0.04  # a spike of 400 noise scales, clipped at 4
    a, b = feed(BatchWindow(), clean), feed(BatchWindow(), spiky)
    assert a.sigma == pytest.approx(0.01, rel=0.3)
    assert b.sigma < 1.4 * a.sigma


def test_batches_older_than_keep_are_dropped_and_state_errors_name_the_field():
    win = feed(BatchWindow(), [float(i % 3) for i in range(2000)])
    assert win.batches[0][0] > 2000 - 500 - 10
    state = json.loads(json.dumps(win.state_dict()))
    BatchWindow.from_state(state, "owner")
    bad = {**state, "batches": [*state["batches"][:-1], [0, 0, 0, 0, 0, 0, None]]}
    with pytest.raises(AdaptiveError, match=r"owner: window.batches\[\d+\]\[1\] must be >= 1"):
        BatchWindow.from_state(bad, "owner")
    with pytest.raises(AdaptiveError, match="window.n_hist"):
        BatchWindow.from_state({**state, "n_hist": 10**6}, "owner")
    with pytest.raises(AdaptiveError, match="window.sigma must be a finite number"):
        BatchWindow.from_state({**state, "sigma": "x"}, "owner")
    with pytest.raises(AdaptiveError, match=r"window.batches\[0\] must be a list of 7"):
        BatchWindow.from_state({**state, "batches": [[1, 2]]}, "owner")
    with pytest.raises(AdaptiveError, match="missing key.*scores"):
        BatchWindow.from_state({k: v for k, v in state.items() if k != "scores"}, "owner")
    with pytest.raises(AdaptiveError, match="window must be a mapping"):
        BatchWindow.from_state([1], "owner")
