"""The framework-free glue: loss sums, LR scaling, runtime changes, warm-up, state."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker
from vsrkit.adaptive.warmup import LossWarmup
from vsrkit.config import ConfigChange, example_settings
from vsrkit.errors import VsrkitError
from vsrkit.integrations._common import (
    IntegrationError,
    LocalOps,
    LossAccumulator,
    VsrkitHooks,
    scale_lrs,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(st.tuples(finite, finite, st.booleans()), min_size=1, max_size=20))
def test_accumulator_means_skip_non_finite_steps(rows):
    acc = LossAccumulator(("a", "b"))
    for a, b, bad in rows:
        total = torch.tensor(float("nan") if bad else a + b)
        acc.add({"a": torch.tensor(a), "b": torch.tensor(b)}, total)
    m = acc.read()
    good = [(a, b) for a, b, bad in rows if not bad]
    assert m["finite_steps"] == len(good) and m["skipped"] == len(rows) - len(good)
    if good:
        assert m["a"] == pytest.approx(sum(a for a, _ in good) / len(good), rel=1e-4, abs=1e-2)
        assert m["total"] == pytest.approx(
            sum(a + b for a, b in good) / len(good), rel=1e-4, abs=1e-2
        )
    else:
        assert math.isnan(m["a"]) and math.isnan(m["total"])  # never a 0 in their place
    assert acc.read() is None


def test_accumulator_names_a_missing_term_and_makes_no_host_sync(monkeypatch):
    acc = LossAccumulator(("a", "b"))
    with pytest.raises(VsrkitError, match="no loss for term"):
        acc.add({"a": torch.tensor(1.0)}, torch.tensor(1.0))

    def boom(*a, **k):
        raise AssertionError("host sync")

    monkeypatch.setattr(torch.Tensor, "item", boom)
    monkeypatch.setattr(torch.Tensor, "tolist", boom)
    monkeypatch.setattr(torch.Tensor, "__bool__", boom)
    acc.add({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, torch.tensor(3.0))
    monkeypatch.undo()
    assert acc.read()["total"] == 3.0


def test_scale_lrs_keeps_a_lambda_scheduler_on_the_new_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    scale_lrs(opt, [0.1], [sched])
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def hooks(tmp_path, **kw):
    h = VsrkitHooks(run_dir=tmp_path, **kw)
    h.bind(LocalOps())
    return h


def change(key, old, new, step=10):
    return ConfigChange(step, 0.0, "file", key, old, new, True, "")


def test_runtime_changes_go_to_the_owning_component(tmp_path):
    terms = ("l1", "ms", "grad", "perceptual")
    w = AdaptiveLossWeights(terms, initial={"l1": 0.6, "ms": 0.2, "grad": 0.2, "perceptual": 0.0})
    tracker, policy = PlateauTracker(patience=250), LRBoostPolicy()
    live = example_settings()
    h = hooks(tmp_path, loss_weights=w, plateau=tracker, lr_policy=policy, runtime_config=live)
    h.runtime.submit(
        {"plateau_patience": 300, "cooldown_duration": 70, "max_lr": 2e-4, "log_every": 5,
         "l1_weight": 0.5, "perceptual_weight": 0.1}
    )  # fmt: skip
    applied = h.apply_changes(h.runtime.poll(10), 10)
    assert sorted(applied) == sorted(
        [
            "plateau_patience",
            "cooldown_duration",
            "max_lr",
            "log_every",
            "l1_weight",
            "perceptual_weight",
        ]
    )
    assert tracker.patience == 300 and tracker.settings["cooldown"] == 70
    assert policy.settings["cooldown"] == 70 and policy.settings["max_lr"] == 2e-4
    assert h.log_every == 5
    assert w.weights == pytest.approx({"l1": 0.5, "ms": 0.2, "grad": 0.2, "perceptual": 0.1})


def test_a_change_a_component_refuses_is_logged_and_skipped(tmp_path, caplog):
    w = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 1.0, "perceptual": 0.0})
    h = hooks(tmp_path, loss_weights=w, runtime_config=example_settings())
    # the runtime config accepts it, but these two terms alone would not sum to 1
    applied = h.apply_changes([change("perceptual_weight", 0.0, 0.5)], 10)
    assert applied == [] and w.weights == {"l1": 1.0, "perceptual": 0.0}
    assert "not applied" in caplog.text


def test_combine_with_a_warm_up_follows_the_step(tmp_path):
    base = AdaptiveLossWeights(("l1", "perceptual"), initial={"l1": 0.5, "perceptual": 0.5})
    warm = LossWarmup(base, schedules={"perceptual": {"length": 10}})
    h = hooks(tmp_path, loss_weights=warm, statistics=False)
    one = {"l1": torch.tensor(1.0), "perceptual": torch.tensor(3.0)}
    assert float(h.combine(one, step=0)) == pytest.approx(1.0)
    assert float(h.combine(one, step=10)) == pytest.approx(2.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    h.accumulate(one, torch.tensor(2.0))
    out = h.end_of_step(10, opt)
    assert out.weights == pytest.approx({"l1": 0.5, "perceptual": 0.5})
    assert h.snapshot.get("perceptual_weight_current").value == pytest.approx(0.5)


def test_end_of_step_before_bind_and_bad_settings_are_errors(tmp_path):
    h = VsrkitHooks(run_dir=tmp_path, terms=("a",))
    with pytest.raises(IntegrationError, match="bind"):
        h.end_of_step(1, None)
    with pytest.raises(IntegrationError, match="log_every"):
        VsrkitHooks(run_dir=tmp_path, log_every=0)
    with pytest.raises(IntegrationError, match="differ"):
        VsrkitHooks(run_dir=tmp_path, terms=("x",), loss_weights=AdaptiveLossWeights(("a", "b")))
    with pytest.raises(IntegrationError, match="needs loss_weights"):
        hooks(tmp_path / "c", terms=("a",)).combine({"a": 1.0}, step=0)


def test_state_needs_every_present_component(tmp_path):
    a = hooks(tmp_path / "a", terms=("x",), statistics=False)
    b = hooks(tmp_path / "b", terms=("x",), plateau=PlateauTracker(), statistics=False)
    state = json.loads(json.dumps(a.state_dict()))
    with pytest.raises(IntegrationError, match="no 'plateau' state"):
        b.load_state_dict(state)
    with pytest.raises(IntegrationError, match="lacks key"):
        b.load_state_dict({"version": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accumulator_on_cuda_makes_no_device_sync():
    acc = LossAccumulator(("a", "b"))
    one = {"a": torch.ones((), device="cuda"), "b": torch.ones((), device="cuda") * 2}
    acc.add(one, one["a"] + one["b"])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        acc.add(one, one["a"] + one["b"])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert acc.read()["total"] == 3.0


def test_runtime_settings_in_effect_come_back_with_the_state(tmp_path):
    def build(where):
        return hooks(
            where, terms=("x",), plateau=PlateauTracker(patience=250), lr_policy=LRBoostPolicy(),
            runtime_config=example_settings(), statistics=False, log_every=3,
        )  # fmt: skip

    a = build(tmp_path / "a")
    a.runtime.submit({"plateau_patience": 320, "log_every": 7, "max_lr": 3e-4})
    a.apply_changes(a.runtime.poll(10), 10)
    state = json.loads(json.dumps(a.state_dict()))
    assert state["applied_settings"] == {"plateau_patience": 320, "log_every": 7, "max_lr": 3e-4}
    b = build(tmp_path / "b")
    b.load_state_dict(state)
    assert b.plateau.patience == 320 and b.log_every == 7
    assert b.lr_policy.settings["max_lr"] == 3e-4
    c = build(tmp_path / "c")  # a key never changed keeps the constructor's value
    c.load_state_dict({**state, "applied_settings": {}})
    assert c.plateau.patience == 250 and c.log_every == 3
    with pytest.raises(IntegrationError, match="applied_settings"):
        c.load_state_dict({**state, "applied_settings": [1]})


def test_docstring_examples_run():
    import doctest

    from vsrkit.integrations import _common

    result = doctest.testmod(_common, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
