"""LRBoostPolicy and apply_lr."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import (
    AdaptiveError,
    LRBoostPolicy,
    PlateauReason,
    PlateauTracker,
    apply_lr,
    current_lrs,
)
from vsrkit.adaptive.plateau import PlateauEvent
from vsrkit.errors import StateError


def event(step: int, triggered: bool = True) -> PlateauEvent:
    reason = PlateauReason.PLATEAU if triggered else PlateauReason.NO_IMPROVEMENT
    return PlateauEvent(step, triggered, reason, 0, 1.0, 1.0, 0.01, False, 0, True, False, None, 0)


def test_boost_decays_caps_and_stops_after_max_boosts():
    policy = LRBoostPolicy(mode="boost", factor=3.0, decay=0.5, max_boosts=3, max_lr=8e-3)
    lrs = [1e-4, 1e-3]
    lrs = policy.on_event(event(10), step=10, lrs=lrs)
    assert lrs == pytest.approx([3e-4, 3e-3])
    lrs = policy.on_event(event(20), step=20, lrs=lrs)  # factor 1 + 2 * 0.5
    assert lrs == pytest.approx([6e-4, 6e-3])
    lrs = policy.on_event(event(30), step=30, lrs=lrs)  # factor 1.5, second group capped
    assert lrs == pytest.approx([9e-4, 8e-3])
    assert policy.on_event(event(40), step=40, lrs=lrs) is None  # 3 boosts used
    assert not policy.available(40) and policy.changes == 3


def test_boost_never_lowers_an_lr_above_the_cap():
    policy = LRBoostPolicy(mode="boost", factor=2.0, max_lr=1e-3)
    assert policy.on_event(event(1), step=1, lrs=[5e-3, 1e-4]) == pytest.approx([5e-3, 2e-4])
    assert policy.on_event(event(2), step=2, lrs=[5e-3]) is None  # nothing would change


def test_reduce_floors_at_min_lr_and_honours_cooldown():
    policy = LRBoostPolicy(mode="reduce", factor=0.5, min_lr=1e-5, cooldown=100)
    assert policy.on_event(event(0), step=0, lrs=[4e-5]) == pytest.approx([2e-5])
    assert policy.on_event(event(50), step=50, lrs=[2e-5]) is None  # cooldown
    assert policy.on_event(event(100), step=100, lrs=[2e-5]) == pytest.approx([1e-5])
    assert policy.on_event(event(300), step=300, lrs=[1e-5]) is None  # at the floor
    assert policy.on_event(event(400, False), step=400, lrs=[1e-3]) is None  # no trigger


def test_settings_are_validated_and_kept_on_load():
    with pytest.raises(AdaptiveError, match="factor must be > 1 in boost mode"):
        LRBoostPolicy(mode="boost", factor=0.5)
    with pytest.raises(AdaptiveError, match="factor must be < 1 in reduce mode"):
        LRBoostPolicy(mode="reduce", factor=2.0)
    with pytest.raises(AdaptiveError, match="mode must be"):
        LRBoostPolicy(mode="cosine")
    policy = LRBoostPolicy(max_lr=1e-3)
    with pytest.raises(AdaptiveError, match=r"min_lr \(0.01\) must not exceed max_lr"):
        policy.configure(min_lr=1e-2)
    policy.configure(max_lr=2e-3, min_lr=1e-6)
    assert policy.settings["max_lr"] == 2e-3
    policy.on_event(event(5), step=5, lrs=[1e-4])
    other = LRBoostPolicy(max_lr=5e-4, max_boosts=1)
    other.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert other.settings["max_lr"] == 5e-4 and other.changes == 1
    assert other.on_event(event(9), step=9, lrs=[1e-4]) is None  # its own max_boosts=1
    with pytest.raises(StateError, match="LRBoostPolicy state: version 0 is not supported"):
        other.load_state_dict({"version": 0, "changes": 0, "last_change_step": None})


@given(
    st.lists(st.integers(0, 1), min_size=1, max_size=60),
    st.integers(1, 59),
    st.sampled_from(["boost", "reduce"]),
)
def test_resume_through_json_gives_same_answers(pattern, split, mode):
    kw = {"mode": mode, "cooldown": 3, "max_lr": 1.0, "min_lr": 1e-4}
    split = min(split, len(pattern))

    def drive(policy, steps, lrs):
        out = []
        for s in steps:
            new = policy.on_event(event(s, bool(pattern[s])), step=s, lrs=lrs)
            lrs = new if new is not None else lrs
            out.append(new)
        return out, lrs

    whole, _ = drive(LRBoostPolicy(**kw), range(len(pattern)), [0.01])
    first = LRBoostPolicy(**kw)
    head, lrs = drive(first, range(split), [0.01])
    resumed = LRBoostPolicy(**kw)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    tail, _ = drive(resumed, range(split, len(pattern)), lrs)
    assert head + tail == whole


def test_apply_lr_handles_groups_added_mid_run():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(a.parameters(), lr=1e-3)
    assert apply_lr(opt, [2e-3]) == [1e-3]
    opt.add_param_group({"params": b.parameters(), "lr": 1e-4})
    with pytest.raises(AdaptiveError, match="got 1 learning rates for 2 param groups"):
        apply_lr(opt, [5e-4])
    policy = LRBoostPolicy(mode="reduce", factor=0.5)
    new = policy.on_event(event(3), step=3, lrs=current_lrs(opt))
    apply_lr(opt, new)
    assert current_lrs(opt) == pytest.approx([1e-3, 5e-5])
    apply_lr(opt, 3e-4)
    assert current_lrs(opt) == [3e-4, 3e-4]
    with pytest.raises(AdaptiveError, match=r"lrs\[1\] must be >= 0"):
        apply_lr(opt, [1e-3, -1.0])


def test_apply_lr_updates_tensor_lr_in_place():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=torch.tensor(1e-3))
    lr_tensor = opt.param_groups[0]["lr"]
    apply_lr(opt, [4e-3])
    assert opt.param_groups[0]["lr"] is lr_tensor
    assert float(lr_tensor) == pytest.approx(4e-3)


def test_tracker_and_reduce_policy_replace_reduce_lr_on_plateau():
    """Flat loss: both schedules halve the LR the same number of times."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    tracker = PlateauTracker(patience=10, cooldown=5)
    policy = LRBoostPolicy(mode="reduce", factor=0.5)
    for step in range(200):
        new = policy.on_event(tracker.update(step, 1.0), step=step, lrs=current_lrs(opt))
        if new is not None:
            apply_lr(opt, new)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=10, cooldown=5)
    for _ in range(200):
        ref.step(1.0)
    assert current_lrs(opt)[0] == pytest.approx(ref_opt.param_groups[0]["lr"])
