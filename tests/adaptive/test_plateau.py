"""PlateauTracker: behaviour, settings vs state, and hypothesis properties."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError, PlateauReason, PlateauTracker
from vsrkit.errors import VsrkitError


def noisy(seed: int, n: int, *, level: float = 1.0, slope: float = 0.0, sigma: float = 0.01):
    rng = random.Random(seed)
    return [level * math.exp(-slope * i) * (1 + rng.gauss(0, sigma)) for i in range(n)]


def run(tracker: PlateauTracker, values, start: int = 0, quality=None):
    return [
        tracker.update(start + i, v, None if quality is None else quality[i])
        for i, v in enumerate(values)
    ]


def trigger_steps(events):
    return [e.step for e in events if e.triggered]


def test_flat_loss_triggers_after_patience_then_cooldown():
    tracker = PlateauTracker(patience=30, cooldown=10)
    events = run(tracker, [2.0] * 120)
    steps = trigger_steps(events)
    # like ReduceLROnPlateau: the 31st step without improvement triggers, then 10 steps of
    # cooldown are not counted and 31 more are needed
    assert steps[:2] == [31, 72]
    first = events[31]
    assert first.reason is PlateauReason.PLATEAU and first.counter == 0
    assert first.in_cooldown and first.cooldown_remaining == 10
    assert not first.lr_boost_available
    assert events[30].counter == 30 and events[30].lr_boost_available
    assert tracker.triggers == len(steps)


def test_falling_loss_never_triggers_and_reports_improvement():
    tracker = PlateauTracker(patience=50, cooldown=0)
    events = run(tracker, noisy(1, 1500, slope=0.003, sigma=0.02))
    assert trigger_steps(events) == []
    reasons = {e.reason for e in events}
    assert PlateauReason.IMPROVED in reasons
    assert events[-1].best < 0.05


def test_counter_uses_step_difference_not_call_count():
    tracker = PlateauTracker(patience=100, cooldown=0)
    events = [tracker.update(step, 1.0) for step in range(0, 500, 10)]
    assert trigger_steps(events) == [110, 220, 330, 440]
    with pytest.raises(AdaptiveError, match="step must increase"):
        tracker.update(490, 1.0)


def test_warmup_delays_counting():
    tracker = PlateauTracker(patience=10, cooldown=0, warmup=25)
    events = run(tracker, [1.0] * 60, start=100)
    assert all(e.reason is PlateauReason.WARMUP for e in events[:25])
    assert trigger_steps(events) == [136, 147, 158]


def test_quality_improvement_resets_counter():
    values = [1.0] * 100
    quality = [20.0 + 0.05 * i for i in range(100)]  # PSNR rising by 0.25% a step
    tracker = PlateauTracker(patience=20, cooldown=0)
    events = run(tracker, values, quality=quality)
    assert trigger_steps(events) == []
    assert events[50].reason is PlateauReason.QUALITY
    # a quality improvement below quality_threshold does not count
    tracker = PlateauTracker(patience=20, cooldown=0, quality_threshold=0.01)
    assert trigger_steps(run(tracker, values, quality=quality)) != []


def test_negative_losses_use_absolute_best():
    tracker = PlateauTracker(patience=40, cooldown=0)
    falling = [-1.0 - 0.01 * i for i in range(300)]
    assert trigger_steps(run(tracker, falling)) == []
    flat = run(tracker, [-4.0] * 200, start=300)
    assert trigger_steps(flat) != []


def test_aggressive_needs_low_sharpness_and_counter_above_patience():
    tracker = PlateauTracker(patience=20, cooldown=5)
    events = [tracker.update(s, 1.0, sharpness_ratio=0.5) for s in range(40)]
    assert not any(e.aggressive for e in events[:21])
    assert all(e.aggressive for e in events[21:])
    assert events[30].stalled_steps == 30
    assert events[30].sharpness_ratio == 0.5
    later = tracker.update(40, 1.0, sharpness_ratio=0.9)
    assert not later.aggressive


def test_safety_net_triggers_when_quality_keeps_resetting():
    values = [1.0] * 400
    quality = [10.0 * 1.01**i for i in range(400)]
    tracker = PlateauTracker(patience=50, cooldown=0, safety_steps=150)
    steps = trigger_steps(run(tracker, values, quality=quality))
    assert steps == [150, 300]
    without = PlateauTracker(patience=50, cooldown=0)
    assert trigger_steps(run(without, values, quality=quality)) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_policies(bad):
    skip = PlateauTracker(patience=5, cooldown=0)
    run(skip, [1.0, 0.5])
    before = skip.state_dict()
    event = skip.update(2, bad)
    assert event.reason is PlateauReason.NON_FINITE and not event.triggered
    after = skip.state_dict()
    assert after["non_finite_count"] == 1 and after["ema"] == before["ema"]
    assert after["best"] == before["best"]

    counted = PlateauTracker(patience=3, cooldown=0, non_finite="bad")
    counted.update(0, 1.0)
    events = [counted.update(s, bad) for s in range(1, 5)]
    assert [e.triggered for e in events] == [False, False, False, True]

    strict = PlateauTracker(non_finite="raise")
    with pytest.raises(VsrkitError, match="loss at step 7"):
        strict.update(7, bad)


def test_configure_validates_all_or_nothing_and_accepts_runtime_keys():
    tracker = PlateauTracker(patience=100)
    tracker.configure(plateau_patience=350, cooldown_duration=20, plateau_safety_threshold=1000)
    assert tracker.settings["patience"] == 350
    assert tracker.settings["cooldown"] == 20
    assert tracker.settings["safety_steps"] == 1000
    with pytest.raises(AdaptiveError, match="patience must be >= 1"):
        tracker.configure(cooldown=5, patience=0)
    assert tracker.settings["cooldown"] == 20  # nothing applied
    with pytest.raises(AdaptiveError, match="unknown setting 'bogus'"):
        tracker.configure(bogus=1)
    with pytest.raises(AdaptiveError, match="ema_alpha can only be set in the constructor"):
        tracker.configure(ema_alpha=0.2)
    with pytest.raises(AdaptiveError, match="must be an integer"):
        tracker.configure(patience="10")
    with pytest.raises(AdaptiveError, match="non_finite"):
        PlateauTracker(non_finite="zero")


def test_patience_change_at_runtime_takes_effect():
    tracker = PlateauTracker(patience=1000, cooldown=0)
    run(tracker, [1.0] * 50)
    tracker.configure(patience=60)
    events = run(tracker, [1.0] * 20, start=50)
    assert trigger_steps(events) == [61]


def test_load_state_keeps_settings_and_rejects_bad_state():
    a = PlateauTracker(patience=10, cooldown=3)
    run(a, [1.0] * 30)
    state = json.loads(json.dumps(a.state_dict()))
    b = PlateauTracker(patience=99, cooldown=7)
    b.load_state_dict(state)
    assert b.settings["patience"] == 99 and b.settings["cooldown"] == 7
    assert b.state_dict() == a.state_dict()
    with pytest.raises(AdaptiveError, match="version"):
        b.load_state_dict({**state, "version": 99})
    with pytest.raises(AdaptiveError, match="missing key.*best"):
        b.load_state_dict({k: v for k, v in state.items() if k != "best"})
    with pytest.raises(AdaptiveError, match="ema"):
        b.load_state_dict({**state, "ema": "x"})
    assert b.state_dict() == a.state_dict()


def test_event_is_json_safe():
    tracker = PlateauTracker(patience=3, cooldown=0)
    events = run(tracker, [1.0] * 6)
    payload = json.loads(json.dumps([e.to_dict() for e in events]))
    assert payload[4]["triggered"] and payload[4]["reason"] == "plateau"
    assert events[4].message == PlateauReason.PLATEAU.message
    assert payload[0]["threshold"] is None  # first value: no threshold yet, not a 0


curves = st.lists(
    st.floats(min_value=0.01, max_value=100.0, allow_nan=False), min_size=20, max_size=300
)


@given(curves, st.integers(min_value=-10, max_value=10), st.integers(2, 40), st.integers(0, 10))
def test_scale_invariance_power_of_two(values, exponent, patience, cooldown):
    scale = 2.0**exponent  # exact in binary floating point, so decisions must match exactly
    a = PlateauTracker(patience=patience, cooldown=cooldown)
    b = PlateauTracker(patience=patience, cooldown=cooldown)
    ea = run(a, values)
    eb = run(b, [v * scale for v in values])
    assert [(e.triggered, e.reason, e.counter) for e in ea] == [
        (e.triggered, e.reason, e.counter) for e in eb
    ]
    assert eb[-1].ema == pytest.approx(ea[-1].ema * scale, rel=1e-12)


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-50, max_value=50, allow_nan=False),
            st.sampled_from([math.nan, math.inf, -math.inf]),
        ),
        min_size=2,
        max_size=200,
    ),
    st.data(),
)
def test_resume_invariance_through_json(values, data):
    split = data.draw(st.integers(1, len(values) - 1))
    quality = data.draw(st.lists(st.floats(0, 40), min_size=len(values), max_size=len(values)))
    kw = {"patience": 15, "cooldown": 4, "warmup": 3, "safety_steps": 40, "non_finite": "bad"}
    whole = PlateauTracker(**kw)
    full = run(whole, values, quality=quality)
    first = PlateauTracker(**kw)
    run(first, values[:split], quality=quality[:split])
    resumed = PlateauTracker(**kw)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    rest = [resumed.update(i, values[i], quality[i]) for i in range(split, len(values))]
    assert rest == full[split:]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=100))
def test_any_float_input_gives_sane_events(values):
    tracker = PlateauTracker(patience=5, cooldown=1)
    for i, v in enumerate(values):
        e = tracker.update(i, v)
        assert e.counter >= 0 and e.cooldown_remaining >= 0
        if not math.isfinite(v):
            assert e.reason is PlateauReason.NON_FINITE and not e.triggered
        for x in (e.ema, e.best, e.threshold):
            assert x is None or not math.isnan(x)
    json.dumps(tracker.state_dict(), allow_nan=False)


def test_grace_slows_the_counter_on_a_slight_improvement():
    values = [1.0] + [0.997] * 120  # 0.3% better: above half the 0.5% threshold, below it
    slow = PlateauTracker(patience=20, cooldown=0)
    events = run(slow, values)
    assert PlateauReason.GRACE in {e.reason for e in events}
    plain = PlateauTracker(patience=20, cooldown=0, grace_rate=1.0)
    first_plain = trigger_steps(run(plain, values))[0]
    first_grace = trigger_steps(events)[0]
    assert first_plain == 21
    assert 30 <= first_grace <= 45
