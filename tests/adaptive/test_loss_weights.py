"""AdaptiveLossWeights: modes, rules (bounds, sum, max change, frozen), status, state."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveError, AdaptiveLossWeights, PlateauReason
from vsrkit.adaptive.loss_weights import MODES
from vsrkit.adaptive.plateau import PlateauEvent
from vsrkit.errors import StateError

TERMS = ("l1", "ms", "grad", "perceptual")


def plateau(aggressive: bool, counter: int = 7) -> PlateauEvent:
    return PlateauEvent(
        0, False, PlateauReason.NO_IMPROVEMENT, counter, 1.0, 1.0, 0.01, False, 0, True,
        aggressive, 0.5 if aggressive else 0.9, 0,
    )  # fmt: skip


def scaled_losses(step: int) -> dict[str, float]:
    wobble = 1.0 + 0.1 * math.sin(step / 7.0)
    return {"l1": 1.0 * wobble, "ms": 0.1, "grad": 0.01 * wobble, "perceptual": 0.05}


def test_fixed_mode_keeps_weights_and_combine_is_weighted_sum():
    w = AdaptiveLossWeights(TERMS, initial={"l1": 0.4, "ms": 0.3, "grad": 0.2, "perceptual": 0.1})
    for step in range(0, 100, 10):
        assert w.update(step, scaled_losses(step)) == w.weights
    assert w.weights == {"l1": 0.4, "ms": 0.3, "grad": 0.2, "perceptual": 0.1}
    x = torch.ones(3, requires_grad=True)
    losses = {"l1": x.sum(), "ms": 2 * x.sum(), "grad": x.mean(), "perceptual": torch.tensor(5.0)}
    total = w.combine(losses)
    assert isinstance(total, torch.Tensor) and total.requires_grad
    assert float(total.detach()) == pytest.approx(0.4 * 3 + 0.3 * 6 + 0.2 * 1 + 0.1 * 5)
    with pytest.raises(AdaptiveError, match="no loss for term 'perceptual'"):
        w.combine({k: v for k, v in losses.items() if k != "perceptual"})
    with pytest.raises(AdaptiveError, match="unknown term.*edge"):
        w.combine({**losses, "edge": x.sum()})


def test_balance_mode_equalises_contributions():
    w = AdaptiveLossWeights(TERMS, mode="balance", max_change=0.05)
    for step in range(0, 3000, 10):
        weights = w.update(step, scaled_losses(step))
    contrib = [weights[t] * scaled_losses(0)[t] for t in TERMS]
    assert max(contrib) / min(contrib) < 1.3
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("mode", ["cv", "dwa"])
def test_cv_and_dwa_modes_move_weights_within_rules(mode):
    w = AdaptiveLossWeights(TERMS, mode=mode, max_change=0.01, bounds=(0.02, 0.9))
    previous = w.weights
    for step in range(0, 2000, 10):
        weights = w.update(step, scaled_losses(step))
        assert all(abs(weights[t] - previous[t]) <= 0.01 + 1e-9 for t in TERMS)
        assert all(0.02 - 1e-12 <= v <= 0.9 + 1e-12 for v in weights.values())
        previous = weights
    assert weights != {t: 0.25 for t in TERMS}


def test_plateau_mode_phases_and_status_fields():
    w = AdaptiveLossWeights(TERMS, mode="plateau", max_change=0.02, cooldown=100)
    w.update(0, scaled_losses(0), plateau(False))
    assert w.phase == "Stable"
    before = w.weights["perceptual"]
    for step in range(10, 60, 10):
        w.update(step, scaled_losses(step), plateau(True, counter=300))
    assert w.phase == "Aggressive"
    assert w.weights["perceptual"] == pytest.approx(before + 5 * 0.02)
    w.update(60, scaled_losses(60), plateau(False))
    held = w.weights
    status = w.status()
    assert status["adaptive_mode"] == "Cooldown" and status["adaptive_is_cooldown"] is True
    assert status["adaptive_cooldown_remaining"] == 100
    assert status["adaptive_plateau_counter"] == 7
    assert status["adaptive_lr_boost_available"] is True
    assert status["adaptive_perceptual_trend"] > 0
    assert set(status) == {
        "adaptive_mode", "adaptive_is_cooldown", "adaptive_cooldown_remaining",
        "adaptive_plateau_counter", "adaptive_lr_boost_available", "adaptive_perceptual_trend",
        "l1_weight_current", "ms_weight_current", "gradient_weight_current",
        "perceptual_weight_current",
    }  # fmt: skip
    assert w.update(150, scaled_losses(150), plateau(False)) == held
    assert w.status()["adaptive_cooldown_remaining"] == 10
    w.update(160, scaled_losses(160), plateau(False))
    assert w.phase == "Stable" and w.weights != held


def test_status_before_any_plateau_is_null_not_zero():
    status = AdaptiveLossWeights(("l1", "grad")).status()
    assert status["adaptive_plateau_counter"] is None
    assert status["adaptive_lr_boost_available"] is None
    assert status["adaptive_perceptual_trend"] is None  # no perceptual term
    assert status["gradient_weight_current"] == 0.5
    custom = AdaptiveLossWeights(("l1", "grad"), stat_names={"grad": "edge"}).status()
    assert "edge_weight_current" in custom


def test_configure_weights_checks_bounds_and_sum_and_starts_cooldown():
    w = AdaptiveLossWeights(TERMS, mode="balance", cooldown=50, bounds={"l1": (0.1, 0.7)})
    with pytest.raises(AdaptiveError, match=r"weights\['l1'\] must be <= 0.7"):
        w.configure(weights={"l1": 0.8, "ms": 0.1, "grad": 0.05, "perceptual": 0.05}, step=5)
    with pytest.raises(AdaptiveError, match="sum to 1.1500; they must sum to 1 \\+- 0.05"):
        w.configure(weights={"l1": 0.4}, step=5)
    with pytest.raises(AdaptiveError, match="unknown term.*gradient"):
        w.configure(weights={"gradient": 0.25}, step=5)
    with pytest.raises(AdaptiveError, match="needs the step"):
        w.configure(weights={"l1": 0.25})
    with pytest.raises(AdaptiveError, match="unknown setting 'l1_weight'"):
        w.configure(l1_weight=0.25, step=5)
    with pytest.raises(AdaptiveError, match="cooldown must be >= 0"):  # all or nothing
        w.configure(
            weights={"l1": 0.5, "ms": 0.2, "grad": 0.15, "perceptual": 0.17}, cooldown=-1, step=5
        )
    assert w.weights == {t: 0.25 for t in TERMS}
    w.configure(weights={"l1": 0.5, "ms": 0.2, "grad": 0.15, "perceptual": 0.17}, step=5)
    got = w.weights
    with pytest.warns(DeprecationWarning, match="configure"):
        assert w.set_weights(got, step=5) == got
    assert math.fsum(got.values()) == pytest.approx(1.02)
    assert w.phase == "Cooldown" and w.update(20, scaled_losses(20)) == got
    w.update(60, scaled_losses(60))
    assert math.fsum(w.weights.values()) == pytest.approx(1.0, abs=1e-9)


def test_constructor_errors_name_the_field():
    with pytest.raises(AdaptiveError, match="mode must be one of"):
        AdaptiveLossWeights(TERMS, mode="gradnorm")
    with pytest.raises(AdaptiveError, match="initial lacks weight"):
        AdaptiveLossWeights(TERMS, initial={"l1": 1.0})
    with pytest.raises(AdaptiveError, match="frozen names unknown term"):
        AdaptiveLossWeights(TERMS, frozen=("edge",))
    with pytest.raises(AdaptiveError, match="admit no weights summing to 1"):
        AdaptiveLossWeights(("a", "b"), bounds=(0.6, 1.0))
    with pytest.raises(AdaptiveError, match="no value for term"):
        AdaptiveLossWeights(TERMS).update(0, {"l1": 1.0})


def test_non_finite_losses_skip_the_update():
    w = AdaptiveLossWeights(TERMS, mode="balance")
    w.update(0, scaled_losses(0))
    before, state = w.weights, w.state_dict()
    assert w.update(10, {**scaled_losses(10), "grad": math.nan}) == before
    after = w.state_dict()
    assert after["skipped"] == 1 and after["mean"] == state["mean"]


def test_load_state_keeps_settings_and_checks_terms():
    a = AdaptiveLossWeights(TERMS, mode="balance")
    for step in range(0, 200, 10):
        a.update(step, scaled_losses(step))
    state = json.loads(json.dumps(a.state_dict()))
    b = AdaptiveLossWeights(TERMS, mode="balance", max_change=0.001)
    b.load_state_dict(state)
    assert b.weights == a.weights and b.state_dict() == a.state_dict()
    old = b.weights
    new = b.update(200, scaled_losses(200))
    assert all(abs(new[t] - old[t]) <= 0.001 + 1e-12 for t in TERMS)  # its own max_change
    with pytest.raises(StateError, match="AdaptiveLossWeights state: state has terms"):
        AdaptiveLossWeights(("l1", "ms")).load_state_dict(state)
    narrow = AdaptiveLossWeights(TERMS, bounds=(0.2, 0.3))
    with pytest.raises(StateError, match="AdaptiveLossWeights state: state weights"):
        narrow.load_state_dict(state)


weights_st = st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4)


@st.composite
def setups(draw):
    mode = draw(st.sampled_from([m for m in MODES if m != "fixed"]))
    lo = draw(st.floats(0.0, 0.2))
    hi = draw(st.floats(0.35, 1.0))
    frozen = draw(st.sets(st.sampled_from(TERMS), max_size=2))
    mc = draw(st.floats(0.001, 0.2))
    raw = draw(weights_st)
    init = [lo + (hi - lo) * r / sum(raw) for r in raw]  # inside the bounds ...
    total = sum(init)
    # ... then nudge to sum 1 while staying inside (always possible: 4*lo <= 1 <= 4*hi)
    init = [max(lo, min(hi, v + (1 - total) / 4)) for v in init]
    for _ in range(50):
        gap = 1 - sum(init)
        free = [i for i, v in enumerate(init) if (gap > 0 and v < hi) or (gap < 0 and v > lo)]
        if abs(gap) < 1e-12 or not free:
            break
        for i in free:
            init[i] = max(lo, min(hi, init[i] + gap / len(free)))
    return mode, (lo, hi), frozen, mc, dict(zip(TERMS, init, strict=True))


losses_st = st.lists(
    st.fixed_dictionaries(
        {t: st.floats(1e-6, 1e6) | st.sampled_from([math.nan, math.inf]) for t in TERMS}
    ),
    min_size=1,
    max_size=40,
)


@given(setups(), losses_st, st.lists(st.booleans(), min_size=40, max_size=40))
def test_rules_hold_for_any_losses(setup, losses, aggressive):
    mode, bounds, frozen, mc, initial = setup
    w = AdaptiveLossWeights(
        TERMS, mode=mode, bounds=bounds, frozen=frozen, max_change=mc, initial=initial, cooldown=3
    )
    prev = w.weights
    for i, values in enumerate(losses):
        new = w.update(i, values, plateau(aggressive[i]))
        assert abs(math.fsum(new.values()) - 1.0) <= 0.05
        for t in TERMS:
            assert bounds[0] - 1e-9 <= new[t] <= bounds[1] + 1e-9
            assert abs(new[t] - prev[t]) <= mc + 1e-9
            if t in frozen:
                assert new[t] == initial[t]
        prev = new
    json.dumps(w.state_dict(), allow_nan=False)


@given(
    st.sampled_from(["balance", "cv", "dwa"]),
    st.lists(
        st.fixed_dictionaries({t: st.floats(1e-3, 1e3) for t in TERMS}), min_size=2, max_size=30
    ),
    st.integers(-20, 20),
)
def test_scale_invariance_of_relative_modes(mode, losses, exponent):
    scale = 2.0**exponent
    a = AdaptiveLossWeights(TERMS, mode=mode, max_change=0.1)
    b = AdaptiveLossWeights(TERMS, mode=mode, max_change=0.1)
    for i, values in enumerate(losses):
        wa = a.update(i, values)
        wb = b.update(i, {t: v * scale for t, v in values.items()})
        assert wb == pytest.approx(wa, abs=1e-9)


@given(st.sampled_from(["balance", "cv"]), st.integers(-10, 10))
def test_one_term_rescaled_keeps_its_contribution(mode, exponent):
    scale = 2.0**exponent
    a = AdaptiveLossWeights(("x", "y"), mode=mode, max_change=1.0)
    b = AdaptiveLossWeights(("x", "y"), mode=mode, max_change=1.0, bounds=(0.0, 1.0))
    for i in range(30):
        values = {"x": 1.0 + 0.3 * math.sin(i), "y": 2.0 + 0.5 * math.cos(i / 3)}
        wa = a.update(i, values)
        wb = b.update(i, {"x": values["x"] * scale, "y": values["y"]})
    share_a = wa["x"] * 1.0 / (wa["x"] * 1.0 + wa["y"] * 2.0)
    share_b = wb["x"] * scale / (wb["x"] * scale + wb["y"] * 2.0)
    assert share_b == pytest.approx(share_a, rel=1e-6)


@given(
    st.sampled_from(MODES),
    st.lists(
        st.fixed_dictionaries({t: st.floats(1e-3, 1e3) for t in TERMS}), min_size=2, max_size=30
    ),
    st.lists(st.booleans(), min_size=30, max_size=30),
    st.data(),
)
def test_resume_invariance_through_json(mode, losses, aggressive, data):
    split = data.draw(st.integers(1, len(losses) - 1))
    kw = {"mode": mode, "cooldown": 4, "max_change": 0.05}
    whole = AdaptiveLossWeights(TERMS, **kw)
    full = [whole.update(i * 5, v, plateau(aggressive[i])) for i, v in enumerate(losses)]
    first = AdaptiveLossWeights(TERMS, **kw)
    for i in range(split):
        first.update(i * 5, losses[i], plateau(aggressive[i]))
    resumed = AdaptiveLossWeights(TERMS, **kw)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    rest = [
        resumed.update(i * 5, losses[i], plateau(aggressive[i])) for i in range(split, len(losses))
    ]
    assert rest == full[split:]
    assert resumed.status() == whole.status()
