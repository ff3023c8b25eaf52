"""GradClipAdapter and DynamicThreshold."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError, DynamicThreshold, GradClipAdapter
from vsrkit.errors import StateError


def test_clip_value_is_the_quantile_of_the_window():
    clip = GradClipAdapter(quantile=0.5, window=5, min_history=3, initial=2.0)
    assert clip.observe(0, 1.0) == 2.0 and clip.observe(1, 3.0) == 2.0  # too little history
    assert clip.observe(2, 2.0) == 2.0  # median of 1, 3, 2
    for step, norm in enumerate([5.0, 6.0, 7.0, 8.0], start=3):
        clip.observe(step, norm)
    assert clip.clip_value == 6.0  # window keeps 2, 5, 6, 7, 8
    clip.observe(7, 500.0)
    clip.observe(8, 500.0)
    clip.observe(9, 500.0)
    assert clip.clip_value == 10.0  # max_clip
    assert clip.status() == {"gradient_clip_val": 10.0}


def test_override_non_finite_and_errors():
    clip = GradClipAdapter(min_history=1)
    clip.observe(0, 0.01)
    assert clip.clip_value == 0.1  # min_clip
    clip.configure(grad_clip=2.5)
    assert clip.observe(1, 0.02) == 2.5
    clip.configure(grad_clip=None)
    assert clip.clip_value == 0.1
    before = clip.state_dict()["history"]
    clip.observe(2, math.inf)
    assert clip.state_dict()["history"] == before and clip.state_dict()["skipped"] == 1
    with pytest.raises(AdaptiveError, match=r"grad_clip must be <= 10.0, got 50"):
        clip.configure(grad_clip=50)
    with pytest.raises(AdaptiveError, match="grad_norm must be a float"):
        clip.observe(3, [1.0])
    torch = pytest.importorskip("torch")
    with pytest.raises(AdaptiveError, match=r"call \.item\(\) once per log interval"):
        clip.observe(3, torch.tensor(1.0))
    with pytest.raises(AdaptiveError, match="step must increase"):
        clip.observe(2, 1.0)
    with pytest.raises(AdaptiveError, match="initial must be <= 10.0"):
        GradClipAdapter(initial=20.0)


def test_state_round_trip_keeps_override_and_window_settings():
    a = GradClipAdapter(window=50, min_history=2)
    for step in range(60):
        a.observe(step, 0.5 + step / 100)
    b = GradClipAdapter(window=10, min_history=2)
    b.configure(grad_clip=3.0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.clip_value == 3.0  # user override is a setting, not state
    b.configure(grad_clip=None)
    assert len(b.state_dict()["history"]) == 10
    assert b.clip_value == pytest.approx(0.5 + 58.1 / 100)  # 0.9-quantile of the last 10
    with pytest.raises(StateError, match="GradClipAdapter state: history"):
        b.load_state_dict({"version": 1, "history": [1.0, "x"], "last_step": 3, "skipped": 0})


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=80), st.floats(0, 1))
def test_clip_value_always_within_bounds(norms, quantile):
    clip = GradClipAdapter(quantile=quantile, window=20, min_history=1)
    for step, norm in enumerate(norms):
        value = clip.observe(step, norm)
        assert 0.1 <= value <= 10.0
    json.dumps(clip.state_dict(), allow_nan=False)


@given(st.lists(st.floats(0, 1e3), min_size=2, max_size=60), st.data())
def test_clip_resume_invariance(norms, data):
    split = data.draw(st.integers(1, len(norms) - 1))
    whole = GradClipAdapter(window=16, min_history=4)
    full = [whole.observe(i, v) for i, v in enumerate(norms)]
    first = GradClipAdapter(window=16, min_history=4)
    for i in range(split):
        first.observe(i, norms[i])
    resumed = GradClipAdapter(window=16, min_history=4)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [resumed.observe(i, norms[i]) for i in range(split, len(norms))] == full[split:]


def test_dynamic_threshold_follows_the_seed_rule():
    keep = DynamicThreshold(alpha=0.1, margin=1.10, initial=0.2)
    stored = []
    for acc in (0.15, 0.20, 0.25, 0.30):
        if keep.is_good(acc):
            stored.append(acc)
        keep.update(acc)
    assert stored == [0.25, 0.30]
    assert keep.threshold == pytest.approx(keep.ema * 1.10)


def test_dynamic_threshold_min_mode_negative_values_and_nan():
    low = DynamicThreshold(mode="min", margin=1.2)
    assert low.threshold is None and low.is_good(5.0)  # no history: anything finite is good
    low.update(-10.0)
    assert low.threshold == pytest.approx(-12.0)
    assert low.is_good(-12.5) and not low.is_good(-11.0)
    assert not low.is_good(math.nan)
    assert low.update(math.inf) == pytest.approx(-12.0)
    with pytest.raises(AdaptiveError, match="margin must be >= 1"):
        DynamicThreshold(margin=0.9)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.data())
def test_dynamic_threshold_resume_and_margin_side(values, data):
    split = data.draw(st.integers(0, len(values)))
    whole = DynamicThreshold(margin=1.1)
    full = [whole.update(v) for v in values]
    first = DynamicThreshold(margin=1.1)
    for v in values[:split]:
        first.update(v)
    resumed = DynamicThreshold(margin=1.1)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [resumed.update(v) for v in values[split:]] == full[split:]
    assert whole.threshold >= whole.ema  # max mode: never below the EMA


def test_configure_takes_settings_by_name_and_refuses_unknown_ones():
    clip = GradClipAdapter()
    with pytest.raises(AdaptiveError, match="unknown setting 'clip'"):
        clip.configure(clip=2.0)
    clip.configure()  # nothing given: nothing changes
    clip.configure(grad_clip=2.0)
    assert clip.clip_value == 2.0
