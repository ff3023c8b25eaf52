"""PlateauTracker: the test's decisions, settings vs state, resume, and hypothesis properties."""

from __future__ import annotations

import json
import logging
import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError, PlateauReason, PlateauTracker
from vsrkit.adaptive.plateau import STATE_VERSION
from vsrkit.errors import StateError, VsrkitError


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


# ------------------------------------------------------------------------------- behaviour
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
    assert events[30].reason is PlateauReason.NO_IMPROVEMENT
    assert tracker.triggers == len(steps)


def test_falling_loss_never_triggers_and_reports_improvement():
    tracker = PlateauTracker(patience=50, cooldown=0)
    events = run(tracker, noisy(1, 1500, slope=0.003, sigma=0.02))
    assert trigger_steps(events) == []
    reasons = [e.reason for e in events]
    assert reasons.count(PlateauReason.IMPROVED) > 250  # a new best every few steps
    assert events[-1].best < 0.05
    assert max(e.counter for e in events) < 50 and max(e.stalled_steps for e in events) < 50


def test_noisy_plateau_counts_stalled_steps_for_aggressive_and_safety():
    """On a noisy flat loss the evidence of progress (a new best window mean by a margin) stays
    rare: stalled_steps and counter grow past patience, so the aggressive signal and the safety
    net still work although quality keeps resetting the trigger count."""
    values = noisy(6, 1500, sigma=0.05)
    quality = [20.0 * 1.002**i for i in range(1500)]
    tracker = PlateauTracker(patience=100, cooldown=0, safety_steps=400)
    events = [tracker.update(i, v, quality[i], sharpness_ratio=0.5) for i, v in enumerate(values)]
    reasons = [e.reason for e in events]
    assert reasons.count(PlateauReason.IMPROVED) < 15
    assert max(e.stalled_steps for e in events) >= 300
    assert sum(e.aggressive for e in events) > 500
    assert [e.reason for e in events if e.triggered] == [PlateauReason.SAFETY] * 3
    plain = run(PlateauTracker(patience=100, cooldown=0), values)
    assert max(e.counter for e in plain) >= 100


def test_noisy_plateau_after_a_decline_triggers_about_patience_steps_in():
    """A decline, then a plateau under several kinds of noise: one trigger per plateau stretch,
    within 1.5 x patience of its start, none during the decline."""
    for seed, kind in enumerate(["gauss", "t3", "ar1", "gauss", "t3", "ar1"]):
        rng = random.Random(seed)
        clean = [math.exp(-0.004 * min(i, 600)) for i in range(1000)]
        acc, values = 0.0, []
        for c in clean:
            if kind == "gauss":
                e = rng.gauss(0, 1)
            elif kind == "t3":
                e = rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(3)) / 3)
            else:
                acc = 0.8 * acc + rng.gauss(0, 0.6)
                e = acc
            values.append(c * (1 + 0.03 * e))
        steps = trigger_steps(run(PlateauTracker(patience=100, cooldown=50), values))
        assert steps, kind
        assert 600 <= steps[0] <= 750, (kind, steps)


def test_slow_steady_decline_is_kept_apart_from_a_plateau_by_the_trend():
    """3e-4 per step under 5% noise: one window of 100 steps holds a 3% decline against a
    standard error of ~1.7% (not resolvable alone); the 400 steps before it show the decline
    clearly, so the tracker mostly takes it as progress (TREND): at most half the triggers
    of the window test alone, on every seed."""
    for seed in range(4):
        values = noisy(seed, 4000, slope=3e-4, sigma=0.05)
        with_trend = run(PlateauTracker(patience=100), values)
        without = run(PlateauTracker(patience=100, trend=0), values)
        assert len(trigger_steps(without)) >= 12
        assert 2 * len(trigger_steps(with_trend)) <= len(trigger_steps(without))
        assert sum(e.reason is PlateauReason.TREND for e in with_trend) > 100
    # ... and a plateau after that decline is still found
    tail = noisy(5, 800, level=values[-1], sigma=0.05)
    tracker = PlateauTracker(patience=100)
    run(tracker, values)
    after = trigger_steps(run(tracker, tail, start=4000))
    assert after and after[0] < 4000 + 400


def test_spikes_do_not_fake_a_plateau_or_hide_one():
    rng = random.Random(2)
    values = [math.exp(-0.003 * i) * (1 + rng.gauss(0, 0.01)) for i in range(1200)]
    for k in range(150, 1200, 97):
        values[k] *= 8.0  # up spikes on a falling loss
    values[700] *= 0.1  # and one deep down spike
    assert trigger_steps(run(PlateauTracker(patience=100, cooldown=0), values)) == []
    flat = [v if i < 300 else 0.5 * (1 + rng.gauss(0, 0.01)) for i, v in enumerate(values)]
    flat[350] = 1e-6  # a huge down spike early in the plateau
    steps = trigger_steps(run(PlateauTracker(patience=100, cooldown=0), flat))
    assert steps and steps[0] < 300 + 160


def test_steps_may_be_numpy_integers_or_integral_floats_and_stay_json_safe():
    np = pytest.importorskip("numpy")
    tracker = PlateauTracker(patience=5, cooldown=0)
    for s in np.arange(10):
        tracker.update(s, 1.0)
    tracker.update(10.0, 1.0)
    state = json.loads(json.dumps(tracker.state_dict()))
    assert state["last_step"] == 10 and type(state["last_step"]) is int
    with pytest.raises(AdaptiveError, match="step must be an integer, got 11.5"):
        tracker.update(11.5, 1.0)
    with pytest.raises(AdaptiveError, match="step must be an integer, got '12'"):
        tracker.update("12", 1.0)


def test_counter_uses_step_difference_not_call_count():
    tracker = PlateauTracker(patience=100, cooldown=0)
    events = [tracker.update(step, 1.0) for step in range(0, 500, 10)]
    assert trigger_steps(events) == [110, 220, 330, 440]
    with pytest.raises(AdaptiveError, match="step must increase"):
        tracker.update(490, 1.0)


def test_sparse_updates_still_tell_progress_from_a_plateau():
    """One value every 500 steps with patience 200 (each window holds two values)."""
    falling = PlateauTracker(patience=200, cooldown=0)
    events = [falling.update(s, 1.0 / (1 + s / 1000)) for s in range(0, 20000, 500)]
    assert trigger_steps(events) == []
    flat = PlateauTracker(patience=200, cooldown=0)
    assert len(trigger_steps([flat.update(s, 0.3) for s in range(0, 20000, 500)])) == 39


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
    assert events[50].reason is PlateauReason.QUALITY and events[50].counter == 0
    # a quality improvement below quality_threshold does not count
    tracker = PlateauTracker(patience=20, cooldown=0, quality_threshold=0.01)
    assert trigger_steps(run(tracker, values, quality=quality)) != []


def test_negative_losses_use_absolute_level():
    tracker = PlateauTracker(patience=40, cooldown=0)
    falling = [-1.0 - 0.01 * i for i in range(300)]
    assert trigger_steps(run(tracker, falling)) == []
    flat = run(tracker, [-4.0] * 200, start=300)
    assert trigger_steps(flat) != []


def test_mode_max_tracks_a_rising_metric():
    rng = random.Random(8)
    psnr = [30 - 8 * math.exp(-0.004 * min(i, 800)) + rng.gauss(0, 0.05) for i in range(1400)]
    events = run(PlateauTracker(patience=100, mode="max"), psnr)
    steps = trigger_steps(events)
    assert steps and 800 <= steps[0] <= 950
    assert events[-1].best == pytest.approx(max(e.ema for e in events))
    assert events[-1].ema == pytest.approx(30 - 8 * math.exp(-3.2), abs=0.05)
    # the same tracker in mode="min" sees a falling loss only where the metric falls
    assert trigger_steps(run(PlateauTracker(patience=100), psnr))[0] < 300
    with pytest.raises(AdaptiveError, match="mode must be 'min' or 'max'"):
        PlateauTracker(mode="maximum")
    with pytest.raises(AdaptiveError, match="mode can only be set in the constructor"):
        PlateauTracker().configure(mode="max")


def test_aggressive_needs_low_sharpness_and_stalled_steps_above_patience():
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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e200])
def test_non_finite_policies(bad):
    skip = PlateauTracker(patience=5, cooldown=0)
    run(skip, [1.0, 0.5])
    before = skip.state_dict()
    event = skip.update(2, bad)
    assert event.reason is PlateauReason.NON_FINITE and not event.triggered
    after = skip.state_dict()
    assert after["non_finite_count"] == 1 and after["ema"] == before["ema"]
    assert after["best"] == before["best"] and after["window"] == before["window"]

    counted = PlateauTracker(patience=3, cooldown=0, non_finite="bad")
    counted.update(0, 1.0)
    events = [counted.update(s, bad) for s in range(1, 5)]
    assert [e.triggered for e in events] == [False, False, False, True]

    strict = PlateauTracker(non_finite="raise")
    with pytest.raises(VsrkitError, match="loss at step 7"):
        strict.update(7, bad)


def test_scale_does_not_change_decisions_on_noisy_curves():
    """Not only powers of two (exact, see the property below): x1e-4 and x1e4."""
    for seed in range(4):
        base = noisy(seed, 1500, slope=0.002, sigma=0.03)[:900] + noisy(seed + 9, 600, sigma=0.03)
        ref = trigger_steps(run(PlateauTracker(patience=100), base))
        assert ref
        for scale in (1e-4, 1e4):
            scaled = [v * scale for v in base]
            assert trigger_steps(run(PlateauTracker(patience=100), scaled)) == ref


# ---------------------------------------------------------------------------------- settings
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
    with pytest.raises(AdaptiveError, match="confidence must be < 1"):
        tracker.configure(confidence=1.0)
    with pytest.raises(AdaptiveError, match="confidence must be >= 0.5"):
        tracker.configure(confidence=0.3)
    with pytest.raises(AdaptiveError, match="trend must be >= 0"):
        tracker.configure(trend=-1)
    tracker.configure(confidence=0.99, trend=0)
    assert tracker.settings["confidence"] == 0.99 and tracker.settings["trend"] == 0


def test_patience_change_at_runtime_takes_effect():
    tracker = PlateauTracker(patience=1000, cooldown=0)
    run(tracker, [1.0] * 50)
    tracker.configure(patience=60)
    events = run(tracker, [1.0] * 20, start=50)
    assert trigger_steps(events) == [61]
    tracker.configure(patience=5000)  # a longer window takes its history back
    assert trigger_steps(run(tracker, [1.0] * 200, start=70)) == []


def test_deprecated_settings_warn_and_change_nothing():
    values = noisy(3, 800, slope=0.001, sigma=0.05)
    plain = trigger_steps(run(PlateauTracker(patience=60), values))
    with pytest.warns(DeprecationWarning) as caught:
        old = PlateauTracker(patience=60, grace_rate=0.5, grace_margin=0.5, noise_k=2.0)
    assert sorted(str(w.message).split()[1] for w in caught) == [
        "grace_margin",
        "grace_rate",
        "noise_k",
    ]
    assert all("has no effect" in str(w.message) for w in caught)
    assert {w.filename for w in caught} == {__file__}  # shown at the caller, not in vsrkit
    assert old.settings["grace_rate"] == 0.5 and PlateauTracker().settings["noise_k"] is None
    assert trigger_steps(run(old, values)) == plain
    with pytest.warns(DeprecationWarning, match="noise_k") as again:
        old.configure(noise_k=3.0)
    assert again[0].filename == __file__
    with pytest.raises(AdaptiveError, match="grace_rate must be >= 0"):
        PlateauTracker(grace_rate=-1.0)


# ------------------------------------------------------------------------------------ state
def test_load_state_keeps_settings_and_rejects_bad_state():
    a = PlateauTracker(patience=10, cooldown=3)
    run(a, noisy(1, 300, slope=0.001))
    state = json.loads(json.dumps(a.state_dict()))
    assert state["version"] == STATE_VERSION == 2
    b = PlateauTracker(patience=99, cooldown=7)
    b.load_state_dict(state)
    assert b.settings["patience"] == 99 and b.settings["cooldown"] == 7
    assert b.state_dict() == a.state_dict()
    with pytest.raises(
        StateError, match="PlateauTracker state: version 99 is not supported .expected 2, or 1"
    ):
        b.load_state_dict({**state, "version": 99})
    with pytest.raises(StateError, match="missing key.*best"):
        b.load_state_dict({k: v for k, v in state.items() if k != "best"})
    with pytest.raises(StateError, match="ema must be a number"):
        b.load_state_dict({**state, "ema": "x"})
    with pytest.raises(StateError, match="verdict must be true or false"):
        b.load_state_dict({**state, "verdict": 1})
    with pytest.raises(StateError, match=r"window.batches\[0\]\[2\] must be a finite"):
        bad_window = json.loads(json.dumps(state["window"]))
        bad_window["batches"][0][2] = None
        b.load_state_dict({**state, "window": bad_window})
    with pytest.raises(StateError, match="expected a mapping, got list"):
        b.load_state_dict([state])
    with pytest.raises(StateError, match="mode='min' tracker, this one is mode='max'"):
        PlateauTracker(mode="max").load_state_dict(state)
    assert b.state_dict() == a.state_dict()  # nothing changed by the refused loads


# a state written by the EMA tracker of earlier releases (version 1), verbatim
V1_STATE = {
    "version": 1, "n": 60, "first_step": 0, "last_step": 59, "ema": 0.942257360773755,
    "slow": 0.9056850135611143, "noise": 9.020921772289305e-05,
    "decay": 0.0017970102999144335, "slow_decay": 0.04606979898695193,
    "noise_decay": 0.001996678111016037, "prev": 0.94, "first": 1.0000000000000002,
    "best": 0.94603168641715, "best_step": 55, "best_quality": None, "counter": 0.0,
    "cooldown_until": -1, "safety_anchor": 55, "triggers": 0, "non_finite_count": 0,
}  # fmt: skip


def test_version_1_state_loads_with_counters_and_a_fresh_window(caplog):
    tracker = PlateauTracker(patience=40, cooldown=10)
    with caplog.at_level(logging.WARNING, logger="vsrkit.adaptive.plateau"):
        tracker.load_state_dict(json.loads(json.dumps(V1_STATE)))
    assert "version-1 state" in caplog.text
    state = tracker.state_dict()
    assert state["version"] == 2 and state["n"] == 60 and state["last_step"] == 59
    assert state["best"] == V1_STATE["best"] and state["stalled_anchor"] == 55
    assert state["window"]["batches"] == []
    with pytest.raises(AdaptiveError, match="step must increase"):
        tracker.update(59, 0.94)
    events = run(tracker, [0.94] * 60, start=60)
    assert trigger_steps(events) == [100]  # 40 steps of new values, then counter > patience
    with pytest.raises(StateError, match="missing key.*best_step"):
        PlateauTracker().load_state_dict({k: v for k, v in V1_STATE.items() if k != "best_step"})


def test_event_is_json_safe():
    tracker = PlateauTracker(patience=3, cooldown=0)
    events = run(tracker, [1.0] * 6)
    payload = json.loads(json.dumps([e.to_dict() for e in events]))
    assert payload[4]["triggered"] and payload[4]["reason"] == "plateau"
    assert events[4].message == PlateauReason.PLATEAU.message
    assert payload[0]["threshold"] is None  # first value: no threshold yet, not a 0


# ------------------------------------------------------------------------------- properties
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
    assert eb[-1].threshold == pytest.approx(ea[-1].threshold * scale, rel=1e-12)


@given(curves, st.integers(2, 40), st.floats(0.5, 0.99), st.floats(0, 6))
def test_mode_max_on_a_metric_equals_mode_min_on_its_negative(values, patience, conf, trend):
    kw = {"patience": patience, "confidence": conf, "trend": trend}
    lo = run(PlateauTracker(**kw), values)
    hi = run(PlateauTracker(mode="max", **kw), [-v for v in values])
    assert [(e.triggered, e.reason, e.counter) for e in lo] == [
        (e.triggered, e.reason, e.counter) for e in hi
    ]
    assert hi[-1].best == -lo[-1].best


settings_strategy = st.fixed_dictionaries(
    {
        "patience": st.integers(1, 60),
        "cooldown": st.integers(0, 20),
        "warmup": st.integers(0, 20),
        "safety_steps": st.one_of(st.none(), st.integers(1, 200)),
        "confidence": st.floats(0.5, 0.999),
        "trend": st.floats(0, 8),
    }
)


@given(
    st.lists(st.floats(-0.5, -1e-9), min_size=2, max_size=300),
    st.floats(1e-3, 1e3),
    settings_strategy,
    st.integers(1, 5),
)
@settings(deadline=None)
def test_no_trigger_on_a_strictly_decreasing_noiseless_curve(log_steps, level, kw, spacing):
    values = [level]
    for d in log_steps:  # each value a factor exp(d) < 1 below the one before
        nxt = values[-1] * math.exp(d)
        assume(nxt < values[-1])
        values.append(nxt)
    tracker = PlateauTracker(**kw)
    events = [tracker.update(i * spacing, v) for i, v in enumerate(values)]
    assert trigger_steps(events) == []


@given(
    st.one_of(st.just(0.0), st.floats(-1e6, 1e6, allow_nan=False)),
    settings_strategy,
    st.integers(-1000, 1000),
)
@settings(deadline=None)
def test_flat_noiseless_curve_triggers_after_patience_plus_warmup(level, kw, start):
    """Like ReduceLROnPlateau: the first trigger comes when more than ``patience`` steps were
    counted after the warmup, i.e. at ``start + warmup + patience + 1``."""
    kw = {**kw, "safety_steps": None}
    tracker = PlateauTracker(**kw)
    n = kw["warmup"] + kw["patience"] + 5
    events = run(tracker, [level] * n, start=start)
    assert trigger_steps(events)[0] == start + kw["warmup"] + kw["patience"] + 1


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-50, max_value=50, allow_nan=False),
            st.sampled_from([math.nan, math.inf, -math.inf]),
        ),
        min_size=2,
        max_size=300,
    ),
    st.data(),
    settings_strategy,
    st.sampled_from(["skip", "bad"]),
)
@settings(deadline=None)
def test_resume_invariance_through_json(values, data, kw, policy):
    split = data.draw(st.integers(1, len(values) - 1))
    quality = data.draw(st.lists(st.floats(0, 40), min_size=len(values), max_size=len(values)))
    steps = data.draw(st.lists(st.integers(1, 7), min_size=len(values), max_size=len(values)))
    at = [sum(steps[: i + 1]) for i in range(len(values))]
    kw = {**kw, "non_finite": policy}
    whole = PlateauTracker(**kw)
    full = [whole.update(at[i], values[i], quality[i]) for i in range(len(values))]
    first = PlateauTracker(**kw)
    for i in range(split):
        first.update(at[i], values[i], quality[i])
    resumed = PlateauTracker(**kw)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    rest = [resumed.update(at[i], values[i], quality[i]) for i in range(split, len(values))]
    assert rest == full[split:]
    assert resumed.state_dict() == whole.state_dict()


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=100))
def test_any_float_input_gives_sane_events(values):
    tracker = PlateauTracker(patience=5, cooldown=1)
    for i, v in enumerate(values):
        e = tracker.update(i, v)
        assert e.counter >= 0 and e.cooldown_remaining >= 0
        if not (math.isfinite(v) and abs(v) <= 1e150):
            assert e.reason is PlateauReason.NON_FINITE and not e.triggered
        for x in (e.ema, e.best, e.threshold):
            assert x is None or math.isfinite(x)
    json.dumps(tracker.state_dict(), allow_nan=False)
