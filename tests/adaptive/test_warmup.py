"""LossWarmup: schedules, composition with AdaptiveLossWeights (sum rule and bounds), state."""

from __future__ import annotations

import doctest
import json
import logging
import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError, AdaptiveLossWeights
from vsrkit.adaptive import warmup as warmup_module
from vsrkit.adaptive.warmup import LossWarmup, WarmupSchedule
from vsrkit.errors import StateError

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def setups(draw):
    """Feasible bounds, adaptive weights inside them, schedules for some (not all) terms."""
    n = draw(st.integers(2, 5))
    terms = tuple(f"t{i}" for i in range(n))
    raw = [draw(st.floats(0.05, 1.0)) for _ in terms]
    weights = [r / math.fsum(raw) for r in raw]
    weights[-1] = 1.0 - math.fsum(weights[:-1])
    bounds = {}
    for t, w in zip(terms, weights, strict=True):
        lo = w * draw(unit)
        hi = w + (1.0 - w) * draw(unit)
        bounds[t] = (max(0.0, lo - 1e-9), min(1.0, hi + 1e-9))  # slack: sums stay feasible
    warming = draw(st.lists(st.sampled_from(terms), min_size=1, max_size=n - 1, unique=True))
    schedules = {}
    for t in warming:
        lo, hi = bounds[t]
        schedules[t] = WarmupSchedule(
            start=min(hi, max(lo, lo + (hi - lo) * draw(unit))),
            length=draw(st.floats(1.0, 1e4)),
            begin=draw(st.floats(0.0, 100.0)),
            shape=draw(st.sampled_from(["linear", "cosine"])),
        )
    base = AdaptiveLossWeights(
        terms, initial=dict(zip(terms, weights, strict=True)), bounds=bounds, max_change=0.05
    )
    return base, LossWarmup(base, schedules=schedules), bounds, schedules


def assert_rules(weights, bounds, total):
    assert math.fsum(weights.values()) == pytest.approx(total, abs=1e-9)
    for t, w in weights.items():
        lo, hi = bounds[t]
        assert lo - 1e-12 <= w <= hi + 1e-12, (t, w, lo, hi)


@given(setups(), st.floats(0.0, 2e4))
def test_sum_and_bounds_hold_at_any_progress(setup, progress):
    base, warm, bounds, _ = setup
    assert_rules(warm.weights_at(progress), bounds, math.fsum(base.weights.values()))


@given(setups(), st.floats(0.0, 2e4))
def test_warming_terms_follow_their_schedule_when_the_others_can_take_the_rest(setup, progress):
    base, warm, bounds, schedules = setup
    target = base.weights
    planned = {
        t: s.start + (target[t] - s.start) * s.fraction(progress) for t, s in schedules.items()
    }
    others = [t for t in target if t not in schedules]
    rest = 1.0 - math.fsum(planned.values())
    feasible = (
        math.fsum(bounds[t][0] for t in others) + 1e-9
        <= rest
        <= math.fsum(bounds[t][1] for t in others) - 1e-9
    )
    got = warm.weights_at(progress)
    if feasible:
        for t, value in planned.items():
            assert got[t] == pytest.approx(value, abs=1e-9)


@given(setups())
def test_before_begin_start_weight_after_the_end_the_adaptive_weights(setup):
    base, warm, _, schedules = setup
    end = max(s.begin + s.length for s in schedules.values())
    after = warm.weights_at(end)
    for t, w in base.weights.items():
        assert after[t] == pytest.approx(w, abs=1e-9)


@given(
    st.floats(0.0, 1.0),
    st.floats(1.0, 1e4),
    st.floats(0.0, 1e3),
    st.sampled_from(["linear", "cosine"]),
    st.lists(st.floats(0.0, 2e4), min_size=2, max_size=20),
)
def test_fraction_is_monotone_from_0_to_1(start, length, begin, shape, xs):
    s = WarmupSchedule(start=start, length=length, begin=begin, shape=shape)
    values = [s.fraction(x) for x in sorted(xs)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b + 1e-15 for a, b in zip(values, values[1:], strict=False))
    assert s.fraction(begin) == 0.0 and s.fraction(begin + length) == 1.0


@given(setups(), st.lists(st.floats(1e-3, 1e3), min_size=5, max_size=5))
def test_rules_hold_while_the_adaptive_weights_adapt(setup, scales):
    base, warm, bounds, _ = setup
    for mode_step, step in enumerate(range(0, 200, 10)):
        losses = {
            t: scales[i % len(scales)] * (1 + 0.1 * mode_step) for i, t in enumerate(base.terms)
        }
        eff = warm.update(step, losses)
        assert_rules(eff, bounds, math.fsum(base.weights.values()))
        assert eff == warm.weights


def test_others_share_the_rest_in_proportion():
    base = AdaptiveLossWeights(
        ("l1", "ms", "perceptual"), initial={"l1": 0.4, "ms": 0.2, "perceptual": 0.4}
    )
    warm = LossWarmup(base, schedules={"perceptual": WarmupSchedule(start=0.0, length=10)})
    w = warm.weights_at(5)
    assert w["perceptual"] == pytest.approx(0.2)
    assert w["l1"] == pytest.approx(0.8 * 2 / 3) and w["ms"] == pytest.approx(0.8 / 3)


def test_bounds_win_over_the_schedule_and_it_is_logged_once(caplog):
    bounds = {"l1": (0.0, 0.6), "perceptual": (0.0, 1.0)}
    base = AdaptiveLossWeights(
        ("l1", "perceptual"), initial={"l1": 0.5, "perceptual": 0.5}, bounds=bounds
    )
    warm = LossWarmup(base, schedules={"perceptual": {"start": 0.0, "length": 100}})
    with caplog.at_level(logging.WARNING, logger="vsrkit.adaptive.warmup"):
        first, second = warm.weights_at(0), warm.weights_at(10)
    assert first == pytest.approx({"l1": 0.6, "perceptual": 0.4})
    assert second == pytest.approx({"l1": 0.6, "perceptual": 0.4})
    assert warm.weights_at(90)["perceptual"] == pytest.approx(0.45)
    assert sum("follow the bounds" in r.message for r in caplog.records) == 1


def test_warm_down_from_a_high_start_like_the_seed_curriculum():
    base = AdaptiveLossWeights(("size", "acc"), initial={"size": 0.5, "acc": 0.5})
    warm = LossWarmup(base, schedules={"size": {"start": 1.0, "length": 3}})
    assert [round(warm.weights_at(e)["size"], 3) for e in (0, 1, 2, 3, 4)] == [
        1.0,
        0.833,
        0.667,
        0.5,
        0.5,
    ]


def test_combine_uses_the_effective_weights():
    base = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 0.5, "perceptual": 0.5})
    warm = LossWarmup(base, schedules={"perceptual": {"length": 10}})
    x = torch.ones(2, requires_grad=True)
    total = warm.combine({"l1": x.sum(), "perceptual": 3 * x.sum()}, progress=5)
    assert total.requires_grad
    assert float(total.detach()) == pytest.approx(2 * 0.75 + 6 * 0.25)
    assert warm.weights == pytest.approx({"l1": 0.75, "perceptual": 0.25})
    with pytest.raises(AdaptiveError, match="no loss for term 'perceptual'"):
        warm.combine({"l1": x.sum()}, progress=1)
    with pytest.raises(AdaptiveError, match="unknown term"):
        warm.combine({"l1": x.sum(), "perceptual": x.sum(), "extra": x.sum()}, progress=1)


def test_status_reports_the_weights_in_force():
    terms = ("l1", "ms", "grad", "perceptual")
    base = AdaptiveLossWeights(
        terms, initial={"l1": 0.4, "ms": 0.2, "grad": 0.2, "perceptual": 0.2}
    )
    warm = LossWarmup(base, schedules={"perceptual": {"length": 100}})
    assert warm.status()["perceptual_weight_current"] == 0.2  # no step seen: the targets
    warm.update(0, {t: 1.0 for t in terms})
    status = warm.status()
    assert status["perceptual_weight_current"] == 0.0
    assert status["gradient_weight_current"] == pytest.approx(0.25)
    assert status["adaptive_mode"] == "Stable"


def test_weights_before_any_step_is_an_error():
    base = AdaptiveLossWeights(("a", "b"))
    warm = LossWarmup(base, schedules={"a": {"length": 5}})
    with pytest.raises(AdaptiveError, match="no step seen"):
        _ = warm.weights


def test_set_weights_changes_the_target():
    base = AdaptiveLossWeights(("a", "b"), initial={"a": 0.5, "b": 0.5})
    warm = LossWarmup(base, schedules={"b": {"length": 10}})
    warm.configure(weights={"a": 0.2, "b": 0.8}, step=0)
    assert warm.weights_at(5) == pytest.approx({"a": 0.6, "b": 0.4})


def test_state_round_trips_through_json_and_keeps_schedules():
    terms = ("l1", "perceptual")
    base = AdaptiveLossWeights(terms, mode="balance", max_change=0.1)
    warm = LossWarmup(base, schedules={"perceptual": {"length": 100}})
    for step in range(0, 50, 10):
        warm.update(step, {"l1": 1.0, "perceptual": 0.1})
    state = json.loads(json.dumps(warm.state_dict(), allow_nan=False))
    other = LossWarmup(
        AdaptiveLossWeights(terms, mode="balance", max_change=0.1),
        schedules={"perceptual": {"length": 200}},
    )
    other.load_state_dict(state)
    assert other.state_dict() == warm.state_dict()
    assert other.schedules["perceptual"].length == 200
    assert other.base.weights == base.weights
    with pytest.raises(StateError, match="LossWarmup state: version 9 is not supported"):
        other.load_state_dict({**state, "version": 9})
    with pytest.raises(StateError, match="LossWarmup state: last_progress"):
        other.load_state_dict({**state, "last_progress": "x"})


@pytest.mark.parametrize(
    "schedules, bounds, match",
    [
        ({}, (0.0, 1.0), "non-empty"),
        ({"x": {"length": 5}}, (0.0, 1.0), "unknown term"),
        ({"a": {"start": 0.1}}, (0.0, 1.0), "needs 'length'"),
        ({"a": {"length": 0}}, (0.0, 1.0), "length"),
        ({"a": {"length": 5, "shape": "step"}}, (0.0, 1.0), "shape"),
        ({"a": {"length": 5, "speed": 2}}, (0.0, 1.0), "unknown key"),
        ({"a": {"length": 5, "start": 1.5}}, (0.0, 1.0), "start"),
        ({"a": {"length": 5}, "b": {"length": 5}}, (0.0, 1.0), "must not warm up"),
        ({"a": {"length": 5, "start": 0.0}}, {"a": (0.2, 0.8)}, "outside the bounds"),
        ({"a": 5}, (0.0, 1.0), "WarmupSchedule or a mapping"),
    ],
)
def test_bad_settings_name_the_field(schedules, bounds, match):
    base = AdaptiveLossWeights(("a", "b"), initial={"a": 0.5, "b": 0.5}, bounds=bounds)
    with pytest.raises(AdaptiveError, match=match):
        LossWarmup(base, schedules=schedules)


def test_import_does_not_import_torch():
    code = "import sys, vsrkit.adaptive.warmup; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docstring_examples_run():
    result = doctest.testmod(warmup_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
