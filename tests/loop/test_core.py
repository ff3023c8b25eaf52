"""The loop core: routing, validation, LR control, state (with the old layouts), errors."""

from __future__ import annotations

import json
import logging
import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveLossWeights, GradClipAdapter, LRBoostPolicy, PlateauTracker
from vsrkit.adaptive.warmup import LossWarmup
from vsrkit.config import ConfigChange, example_settings
from vsrkit.errors import StateError
from vsrkit.loop import (
    ROUTES,
    LocalOps,
    LoopCore,
    LoopError,
    LoopState,
    OptimizerLR,
    ScheduledLR,
    scale_lrs,
)
from vsrkit.stats import load_statistics


def core(tmp_path, **kw) -> LoopCore:
    loop = LoopCore(run_dir=tmp_path, **kw)
    loop.bind(LocalOps())
    return loop


def change(key, old, new, step=10):
    return ConfigChange(step, 0.0, "file", key, old, new, True, "")


def feed(loop: LoopCore, step: int, **values: float) -> None:
    losses = {t: torch.tensor(values.get(t, 1.0)) for t in loop.terms}
    total = torch.tensor(sum(float(v) for v in losses.values()))
    loop.accumulate(losses, total, grad_norm=torch.tensor(values.get("norm", 1.0)))


def test_scale_lrs_keeps_a_lambda_scheduler_on_the_new_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    scale_lrs(opt, [0.1], [sched])
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_runtime_changes_go_to_the_owning_component(tmp_path):
    terms = ("l1", "ms", "grad", "perceptual")
    w = AdaptiveLossWeights(terms, initial={"l1": 0.6, "ms": 0.2, "grad": 0.2, "perceptual": 0.0})
    tracker, policy, clip = PlateauTracker(patience=250), LRBoostPolicy(), GradClipAdapter()
    loop = core(
        tmp_path, loss_weights=w, plateau=tracker, lr_policy=policy, clip=clip,
        runtime_config=example_settings(), cadence={"val_every": 500, "ckpt_every": 1000},
    )  # fmt: skip
    loop.runtime.submit(
        {"plateau_patience": 300, "cooldown_duration": 70, "max_lr": 2e-4, "log_every": 5,
         "l1_weight": 0.5, "perceptual_weight": 0.1, "grad_clip": 2.5, "val_every": 50,
         "min_lr": 2e-6}
    )  # fmt: skip
    applied = loop.apply_changes(loop.runtime.poll(10), 10)
    assert sorted(applied) == sorted(
        ["plateau_patience", "cooldown_duration", "max_lr", "min_lr", "log_every",
         "l1_weight", "perceptual_weight", "grad_clip", "val_every"]
    )  # fmt: skip
    assert tracker.patience == 300 and tracker.settings["cooldown"] == 70
    assert policy.settings["cooldown"] == 70 and policy.settings["max_lr"] == 2e-4
    assert policy.settings["min_lr"] == 2e-6
    assert loop.log_every == 5 and loop.cadence["val_every"] == 50
    assert loop.cadence["ckpt_every"] == 1000
    assert clip.clip_value == 2.5 and loop.clip_value == 2.5
    assert w.weights == pytest.approx({"l1": 0.5, "ms": 0.2, "grad": 0.2, "perceptual": 0.1})
    assert loop.state.config_version == len(applied)
    assert "l1_weight" not in loop.state.applied_settings  # weights come back with their state
    assert loop.state.applied_settings["plateau_patience"] == 300


def test_the_routing_table_names_real_settings_of_the_owners():
    owners = {
        "plateau": PlateauTracker(),
        "lr_policy": LRBoostPolicy(),
        "clip": GradClipAdapter(),
    }
    live = example_settings()
    for key, routes in ROUTES.items():
        assert key in live, key  # every routed key is a runtime key
        for attr, settings in routes:
            owners[attr].configure(**{name: live[k] for k, name in settings.items()})


def test_a_change_a_component_refuses_is_logged_and_skipped(tmp_path, caplog):
    w = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 1.0, "perceptual": 0.0})
    loop = core(tmp_path, loss_weights=w, runtime_config=example_settings())
    # the runtime config accepts it, but these two terms alone would not sum to 1
    applied = loop.apply_changes([change("perceptual_weight", 0.0, 0.5)], 10)
    assert applied == [] and w.weights == {"l1": 1.0, "perceptual": 0.0}
    assert "runtime change perceptual_weight not applied at step 10" in caplog.text
    assert loop.state.config_version == 0


def test_combine_with_a_warm_up_follows_the_step(tmp_path):
    base = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 0.5, "perceptual": 0.5})
    warm = LossWarmup(base, schedules={"perceptual": {"length": 10}})
    loop = core(tmp_path, loss_weights=warm, statistics=False)
    one = {"l1": torch.tensor(1.0), "perceptual": torch.tensor(3.0)}
    assert float(loop.combine(one, step=0)) == pytest.approx(1.0)
    assert float(loop.combine(one, step=10)) == pytest.approx(2.0)
    loop.accumulate(one, torch.tensor(2.0))
    out = loop.end_of_step(10)
    assert out.weights == pytest.approx({"l1": 0.5, "perceptual": 0.5})
    assert loop.snapshot.get("perceptual_weight_current").value == pytest.approx(0.5)


def test_calls_before_bind_and_bad_settings_are_errors(tmp_path):
    loop = LoopCore(run_dir=tmp_path, terms=("a",))
    with pytest.raises(LoopError, match="bind"):
        loop.end_of_step(1)
    with pytest.raises(LoopError, match="bind"):
        loop.validation_end(1, {})
    with pytest.raises(LoopError, match="log_every must be an int >= 1"):
        LoopCore(run_dir=tmp_path, log_every=0)
    with pytest.raises(LoopError, match="val_every must be an int >= 1"):
        LoopCore(run_dir=tmp_path, cadence={"val_every": True})
    with pytest.raises(LoopError, match="differ"):
        LoopCore(run_dir=tmp_path, terms=("x",), loss_weights=AdaptiveLossWeights(("a", "b")))
    with pytest.raises(LoopError, match="lr_policy needs plateau"):
        LoopCore(run_dir=tmp_path, lr_policy=LRBoostPolicy())
    with pytest.raises(LoopError, match="max_nonfinite_streak"):
        LoopCore(run_dir=tmp_path, max_nonfinite_streak=0)
    with pytest.raises(LoopError, match="needs loss_weights"):
        core(tmp_path / "c", terms=("a",)).combine({"a": 1.0}, step=0)
    with pytest.raises(LoopError, match="not statistics validation fields"):
        core(tmp_path / "d", terms=("a",)).validation_end(5, {"psnr": 30.0})


def test_validation_keeps_the_best_and_hands_the_quality_to_the_tracker_once(tmp_path):
    tracker = PlateauTracker(patience=20)
    loop = core(tmp_path, terms=("l1",), log_every=5, plateau=tracker)
    seen = []
    real = tracker.update

    def spy(step, loss, quality=None):
        seen.append((step, quality))
        return real(step, loss, quality=quality)

    tracker.update = spy  # type: ignore[method-assign]
    for step in range(1, 21):
        feed(loop, step, l1=1.0 / step)
        loop.end_of_step(step)
        if step == 5:
            assert loop.validation_end(5, {"quality_ki_value": 0.5}) is True
        if step == 10:
            assert loop.validation_end(10, {"quality_ki_value": 0.4}) is False
        if step == 15:
            assert loop.validation_end(15, {"quality_ki_value": float("nan")}) is False
    assert seen == [(5, None), (10, 0.5), (15, 0.4), (20, None)]  # NaN is never handed on
    assert loop.state.best_quality == 0.5
    docs = {d["step_current"]: d for d in load_statistics(tmp_path)}
    assert docs[10]["best_quality_ever"] == 0.5 and docs[10]["quality_ki_value"] == 0.4
    assert docs[5]["complete"] is True and docs[5]["measured_at_step"]["l1_loss_value"] == 10


def test_too_many_non_finite_steps_in_a_row_stop_before_any_decision(tmp_path):
    tracker = PlateauTracker()
    loop = core(tmp_path, terms=("l1",), log_every=4, plateau=tracker, max_nonfinite_streak=3)
    for step in range(1, 5):
        feed(loop, step, l1=1.0 if step == 1 else math.nan)
        out = loop.end_of_step(step)
    assert out is not None and out.stop == "nonfinite" and out.event is None
    assert tracker.state_dict()["n"] == 0


def test_scheduled_lr_follows_the_schedule_the_scale_and_the_live_bounds(tmp_path):
    class Halving:
        def lr(self, step):
            return 2.0 ** -(8 + step)

        def state_dict(self):
            return {"kind": "halving"}

    opt = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]},
         {"params": [torch.nn.Parameter(torch.zeros(1))]}],
        lr=1.0,
    )  # fmt: skip
    control = ScheduledLR(opt, Halving(), factors=[1.0, 0.25])
    live = {**example_settings(), "max_lr": 2.0**-10, "min_lr": 2.0**-20}
    loop = core(tmp_path, terms=("l1",), lr=control, runtime_config=live)
    loop.begin(1)
    assert [g["lr"] for g in opt.param_groups] == [2.0**-10, 2.0**-12]  # clamped to max_lr
    loop.state.lr_scale = 0.5
    loop.end_of_step(3)
    assert [g["lr"] for g in opt.param_groups] == [2.0**-12, 2.0**-14]
    loop.end_of_step(20)
    assert opt.param_groups[0]["lr"] == 2.0**-20  # floored at min_lr
    assert loop.state_dict()["loop"]["schedule"] == {"kind": "halving"}
    with pytest.raises(LoopError, match="2 factors for 1 parameter groups"):
        ScheduledLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), Halving(),
                    factors=[1.0, 2.0])  # fmt: skip


@pytest.mark.parametrize("factor", [0.5, 0.1, 2.0])
def test_a_new_lr_takes_effect_while_the_schedule_is_clamped(factor):
    """The schedule gives 1e-3, max_lr clamps it to 5e-4; a policy's answer (its factor
    times the LR it saw) is what the optimizer gets, clamped again: a reduce is not lost
    in the clamp, and a boost stays at max_lr."""

    class Constant:
        def lr(self, step):
            return 1e-3

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    control, state, live = ScheduledLR(opt, Constant()), LoopState(), {"max_lr": 5e-4}
    assert control.refresh(1, state, live) == [5e-4]
    got = control.set([5e-4 * factor], step=2, state=state, live=live)
    assert got == [pytest.approx(min(5e-4, 5e-4 * factor))]
    assert opt.param_groups[0]["lr"] == got[0]
    assert control.refresh(3, state, live) == got  # it stays


@pytest.mark.parametrize("factor", [0.5, 0.1, 2.0, 3.0])
def test_a_new_lr_moves_the_scale_only_in_its_direction_while_min_lr_holds(factor):
    """The schedule is 1e-7, min_lr holds the LR at 1e-6: a reduce must not raise the scale
    (it would show once the schedule rises), a boost must take effect."""

    class Rising:
        def lr(self, step):
            return 1e-7 if step < 10 else 1e-3

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    control, state, live = ScheduledLR(opt, Rising()), LoopState(), {"min_lr": 1e-6}
    assert control.refresh(1, state, live) == [1e-6]
    got = control.set([1e-6 * factor], step=2, state=state, live=live)
    if factor < 1:
        assert state.lr_scale <= factor and got == [1e-6]  # still held at min_lr
        assert control.refresh(10, state, live)[0] <= 1e-3 * factor
    else:
        assert got == [pytest.approx(1e-6 * factor)] and state.lr_scale >= 1.0


def test_a_plateau_decision_sets_the_optimizer_lr_through_the_control(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0**-10)
    tracker = PlateauTracker(patience=5, cooldown=0, warmup=0)
    loop = core(
        tmp_path, terms=("l1",), log_every=1, plateau=tracker,
        lr_policy=LRBoostPolicy(mode="reduce", factor=0.5), lr=OptimizerLR(opt),
    )  # fmt: skip
    changed = []
    for step in range(1, 40):
        feed(loop, step, l1=1.0)
        out = loop.end_of_step(step)
        if out.new_lrs:
            changed.append((step, out.new_lrs[0]))
    assert changed and changed[0][1] == 2.0**-11
    assert opt.param_groups[0]["lr"] == changed[-1][1]
    assert loop.state.lr_scale == pytest.approx(changed[-1][1] / 2.0**-10)


def test_state_round_trips_through_json_with_the_pending_statistics_file(tmp_path):
    def build(where):
        return core(
            where, terms=("l1",), log_every=5, plateau=PlateauTracker(patience=30),
            lr_policy=LRBoostPolicy(), clip=GradClipAdapter(min_history=1),
            runtime_config=example_settings(),
        )  # fmt: skip

    a = build(tmp_path)
    a.lr = OptimizerLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4))
    for step in range(1, 11):
        feed(a, step, l1=1.0 / step, norm=float(step))
        a.end_of_step(step)
    a.validation_end(10, {"quality_ki_value": 0.7})
    feed(a, 11)  # an open interval: its sums travel with the state
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    assert state["version"] == 2 and set(state["components"]) >= {"plateau", "statistics"}
    assert state["components"]["statistics"]["pending"][0]["step"] == 10
    assert not (tmp_path / "Statistik_10.json").exists()  # "killed" here
    b = build(tmp_path)
    b.load_state_dict(state)
    assert b.state_dict() == state
    assert b.state.best_quality == 0.7 and b.state.pending_quality == 0.7
    for step in range(12, 16):
        feed(b, step)
        b.end_of_step(step)
    doc = json.loads((tmp_path / "Statistik_10.json").read_text())
    assert doc["complete"] is True and doc["measured_at_step"]["l1_loss_value"] == 15
    assert doc["quality_ki_value"] == 0.7


def test_a_component_the_state_lacks_starts_fresh_with_a_warning(tmp_path, caplog):
    a = core(tmp_path / "a", terms=("x",), statistics=False)
    b = core(tmp_path / "b", terms=("x",), plateau=PlateauTracker(), statistics=False)
    with caplog.at_level(logging.WARNING, logger="vsrkit.loop"):
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert "no plateau state: it starts fresh" in caplog.text
    with pytest.raises(StateError, match="LoopCore state: version 7 is not supported"):
        b.load_state_dict({**a.state_dict(), "version": 7})
    with pytest.raises(StateError, match="LoopCore state: missing key.s. components"):
        b.load_state_dict({"version": 2, "loop": LoopState().state_dict()})
    with pytest.raises(StateError, match="LoopState state: lr_scale must be > 0"):
        b.load_state_dict({**a.state_dict(), "loop": {**a.state_dict()["loop"], "lr_scale": 0}})


def test_the_state_of_the_old_vsrkit_hooks_still_loads(tmp_path):
    tracker = PlateauTracker(patience=40)
    for step in range(30):
        tracker.update(step, 1.0 - step * 1e-3)
    old = {  # VsrkitHooks.state_dict() of vsrkit before the loop core, verbatim keys
        "version": 1, "plateau": tracker.state_dict(), "lr_policy": None, "loss_weights": None,
        "grad_monitor": None, "runtime_config": None, "statistics": {"version": 1, "pending": []},
        "pending_quality": 0.61, "config_version": 3,
        "applied_settings": {"plateau_patience": 320},
    }  # fmt: skip
    loop = core(
        tmp_path, terms=("x",), plateau=PlateauTracker(patience=250),
        runtime_config=example_settings(),
    )  # fmt: skip
    loop.load_state_dict(json.loads(json.dumps(old)))
    assert loop.plateau.state_dict() == tracker.state_dict()
    assert loop.plateau.patience == 320  # the setting in effect came back
    assert loop.state.pending_quality == 0.61 and loop.state.config_version == 3


def test_runtime_settings_in_effect_come_back_with_the_state_only_when_asked(tmp_path):
    def build(where):
        return core(
            where, terms=("x",), plateau=PlateauTracker(patience=250), lr_policy=LRBoostPolicy(),
            runtime_config=example_settings(), statistics=False, log_every=3,
        )  # fmt: skip

    a = build(tmp_path / "a")
    a.runtime.submit({"plateau_patience": 320, "log_every": 7, "max_lr": 3e-4})
    a.apply_changes(a.runtime.poll(10), 10)
    state = json.loads(json.dumps(a.state_dict()))
    assert state["loop"]["applied_settings"] == {
        "plateau_patience": 320,
        "log_every": 7,
        "max_lr": 3e-4,
    }
    b = build(tmp_path / "b")
    b.load_state_dict(state)
    assert b.plateau.patience == 320 and b.log_every == 7
    assert b.lr_policy.settings["max_lr"] == 3e-4 and b.live["max_lr"] == 3e-4
    c = build(tmp_path / "c")  # the reference recipe merges the settings itself
    c.load_state_dict(state, settings=False)
    assert c.plateau.patience == 250 and c.log_every == 3 and c.live["max_lr"] != 3e-4
    assert c.plateau.state_dict() == a.plateau.state_dict()


def test_a_state_loaded_before_bind_waits_for_it(tmp_path):
    a = core(tmp_path / "a", terms=("x",), plateau=PlateauTracker(), statistics=False)
    for step in range(1, 11):
        feed(a, step)
        a.end_of_step(step)
    b = LoopCore(run_dir=tmp_path / "b", terms=("x",), plateau=PlateauTracker(), statistics=False)
    b.load_state_dict(a.state_dict())
    b.bind(LocalOps())
    assert b.plateau.state_dict() == a.plateau.state_dict() and b.state.step == 10


finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), finite, st.text(max_size=3),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                   st.integers(), max_size=2))  # fmt: skip


@given(st.dictionaries(st.sampled_from(list(LoopState().state_dict())), values))
def test_loop_state_loads_or_refuses_with_one_state_error(patch):
    good = LoopState(step=3, best_quality=0.5).state_dict()
    state = LoopState(step=3, best_quality=0.5)
    try:
        state.load_state_dict({**good, **patch})
    except StateError as exc:
        assert str(exc).startswith("LoopState state: ")
        assert state == LoopState(step=3, best_quality=0.5)  # nothing changed
    else:
        assert state.state_dict() == json.loads(json.dumps(state.state_dict()))


def test_the_deprecated_hooks_keep_their_old_signatures(tmp_path):
    import vsrkit.integrations

    with pytest.warns(DeprecationWarning, match="vsrkit.loop.LoopCore"):
        hooks_cls = vsrkit.integrations.VsrkitHooks
    for name in ("DistOps", "LocalOps", "IntervalOutcome", "scale_lrs", "LossAccumulator"):
        with pytest.warns(DeprecationWarning, match=f"moved to vsrkit.(loop|stats).{name}"):
            getattr(vsrkit.integrations, name)
    hooks = hooks_cls(run_dir=tmp_path, terms=("x",), log_every=2, statistics=False,
                      plateau=PlateauTracker(), lr_policy=LRBoostPolicy())  # fmt: skip
    hooks.bind(LocalOps())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in (1, 2):
            hooks.accumulate({"x": torch.tensor(1.0)}, torch.tensor(1.0))
            out = hooks.end_of_step(step, opt, schedulers=[])
    assert out.lrs == [0.1] and isinstance(hooks.lr, OptimizerLR)


def test_the_non_finite_streak_runs_on_across_a_resume(tmp_path):
    """Two non-finite steps, a checkpoint right after a read, two more: the same stop as an
    uninterrupted run (the streak is part of the state, also with nothing summed)."""

    def build(where):
        return core(where, terms=("l1",), log_every=2, max_nonfinite_streak=4, statistics=False)

    def run(loop, steps):
        out = None
        for step in steps:
            feed(loop, step, l1=math.nan)
            out = loop.end_of_step(step)
        return out

    a = build(tmp_path / "a")
    run(a, [1, 2])  # read at step 2: nothing summed, the streak is 2
    b = build(tmp_path / "b")
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert run(b, [3, 4]).stop == "nonfinite"


def test_the_settings_in_effect_are_copied_only_when_they_change(tmp_path, monkeypatch):
    """The manager's ``current`` (a copy under its lock) is read at bind, when a change is
    applied and when a state is loaded: never per step, also not by the clip value."""
    from vsrkit.config import RuntimeConfigManager

    reads = []
    getter = RuntimeConfigManager.current.fget
    monkeypatch.setattr(
        RuntimeConfigManager, "current", property(lambda self: reads.append(1) or getter(self))
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    class Constant:
        def lr(self, step):
            return 1e-3

    live = {**example_settings(), "max_lr": 1e-3, "grad_clip": 2.0}
    loop = core(tmp_path, terms=("l1",), log_every=5, poll_every=10, runtime_config=live,
                lr=ScheduledLR(opt, Constant()), plateau=PlateauTracker(),
                lr_policy=LRBoostPolicy(), statistics=False)  # fmt: skip
    assert len(reads) == 1  # bind
    loop.begin(0)
    for step in range(1, 31):  # six intervals, three poll steps without a change
        feed(loop, step)
        loop.end_of_step(step)
        assert loop.clip_value == 2.0
    assert len(reads) == 1
    assert loop.apply_changes([], 30) == [] and len(reads) == 1
    loop.runtime.submit({"max_lr": 5e-4, "grad_clip": 3.0})
    for step in range(31, 41):  # the poll step 40 applies them: one read
        feed(loop, step)
        loop.end_of_step(step)
    assert len(reads) == 2
    assert opt.param_groups[0]["lr"] == 5e-4 and loop.clip_value == 3.0
    assert loop.live["max_lr"] == 5e-4
    loop.live["max_lr"] = 1.0  # a copy: the loop's settings stay
    assert loop.live["max_lr"] == 5e-4


def test_a_state_with_a_broken_last_component_loads_nothing(tmp_path):
    """The components load one by one; one that refuses its part puts the ones loaded before
    it back, so the loop is as it was (the same for the open interval's sums)."""

    def build(where):
        w = AdaptiveLossWeights(("l1", "ms"), initial={"l1": 0.5, "ms": 0.5})
        return core(where, log_every=5, loss_weights=w, plateau=PlateauTracker(patience=30),
                    lr_policy=LRBoostPolicy(), clip=GradClipAdapter(min_history=1),
                    runtime_config=example_settings())  # fmt: skip

    a = build(tmp_path / "a")
    for step in range(1, 21):
        feed(a, step, l1=1.0 / step, ms=2.0 / step, norm=float(step))
        a.end_of_step(step)
    a.validation_end(20, {"quality_ki_value": 0.7})
    good = json.loads(json.dumps(a.state_dict()))

    b = build(tmp_path / "b")
    for step in range(1, 8):  # b has a history of its own, and an open interval
        feed(b, step, l1=3.0, ms=1.0, norm=0.5)
        b.end_of_step(step)
    b.validation_end(5, {"quality_ki_value": 0.2})
    before = b.state_dict()
    assert before["components"] != good["components"]

    bad_last = json.loads(json.dumps(good))
    bad_last["components"]["statistics"] = {"version": 1, "pending": "not a list"}
    bad_interval = json.loads(json.dumps(good))
    bad_interval["loop"]["interval"] = {**good["loop"]["interval"], "sums": [1.0]}
    for bad in (bad_last, bad_interval):
        with pytest.raises(StateError):
            b.load_state_dict(bad)
        assert b.state_dict() == before
    b.load_state_dict(good)  # a good state still loads whole
    assert b.state_dict()["components"] == good["components"]


def test_a_component_that_fails_half_loaded_is_put_back_too(tmp_path):
    class Sloppy:  # a component of the user's that changes itself before it checks
        def __init__(self):
            self.value = 1

        def state_dict(self):
            return {"value": self.value}

        def load_state_dict(self, state):
            self.value = state.get("value")
            if not isinstance(self.value, int):
                raise TypeError("value must be an int")

        def read(self, step):
            return None

        def status(self):
            return {}

    tracker = PlateauTracker(patience=30)
    loop = core(tmp_path, terms=("l1",), plateau=tracker, grad_monitor=Sloppy(), statistics=False)
    fresh = tracker.state_dict()
    other = core(tmp_path / "o", terms=("l1",), plateau=PlateauTracker(patience=30),
                 log_every=1, statistics=False)  # fmt: skip
    for step in range(1, 6):
        feed(other, step, l1=1.0 / step)
        other.end_of_step(step)
    state = other.state_dict()
    state["components"]["grad_monitor"] = {"value": "x"}
    with pytest.raises(TypeError):
        loop.load_state_dict(state)
    assert tracker.state_dict() == fresh and loop.grad_monitor.value == 1
