"""LossAccumulator: means over finite steps, the non-finite streak, no host sync, resumable."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.errors import StateError, VsrkitError
from vsrkit.stats import LossAccumulator

TERMS = ("l1", "ms")
finite = st.floats(-1e6, 1e6, allow_nan=False)


def step(acc: LossAccumulator, l1: float, ms: float, norm: float = 1.0) -> bool:
    total = torch.tensor(l1 + ms)
    losses = {"l1": torch.tensor(l1), "ms": torch.tensor(ms)}
    return bool(acc.add(losses, total, grad_norm=torch.tensor(norm)))


def test_non_finite_steps_are_skipped_and_counted() -> None:
    acc = LossAccumulator(TERMS)
    assert step(acc, 1.0, 2.0, norm=0.5) is False
    for _ in range(3):
        assert step(acc, math.nan, 1.0) is True
    assert step(acc, 1.0, 1.0, norm=math.inf) is True  # an infinite grad norm skips too
    m = acc.read()
    assert (m["l1"], m["ms"], m["total"], m["grad_norm"]) == (1.0, 2.0, 3.0, 0.5)
    assert (m["finite_steps"], m["skipped"], m["max_streak"]) == (1, 4, 4)
    assert acc.read() is None


def test_the_streak_runs_across_reads_and_restarts_after_a_finite_step() -> None:
    acc = LossAccumulator(TERMS)
    step(acc, math.nan, 0.0)
    step(acc, math.nan, 0.0)
    first = acc.read()
    assert math.isnan(first["l1"]) and first["max_streak"] == 2  # NaN, never a 0 in its place
    step(acc, math.nan, 0.0)
    assert acc.read()["max_streak"] == 3
    step(acc, 1.0, 1.0)
    step(acc, math.nan, 0.0)
    assert acc.read()["max_streak"] == 3  # the longest run of this interval started earlier
    step(acc, 1.0, 1.0)
    assert acc.read()["max_streak"] == 1  # the run of one carried in, ended by this step
    step(acc, 1.0, 1.0)
    assert acc.read()["max_streak"] == 0


@given(
    st.lists(st.tuples(finite, finite, st.booleans()), min_size=1, max_size=30), st.integers(0, 30)
)
def test_state_round_trip_through_json_gives_the_same_read(rows, split) -> None:
    whole, first = LossAccumulator(TERMS), LossAccumulator(TERMS)
    for i, (a, b, bad) in enumerate(rows):
        target = whole
        step(target, math.nan if bad else a, b)
        if i < split:
            step(first, math.nan if bad else a, b)
    resumed = LossAccumulator(TERMS)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for a, b, bad in rows[split:]:
        step(resumed, math.nan if bad else a, b)
    want, got = whole.read(), resumed.read()
    assert want.keys() == got.keys()
    for k in want:
        assert (math.isnan(want[k]) and math.isnan(got[k])) or got[k] == pytest.approx(want[k])


def test_add_makes_no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    acc = LossAccumulator(TERMS)

    def sync(*_a: object, **_k: object) -> None:
        raise AssertionError("host sync")

    for name in ("item", "tolist", "__bool__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    acc.add({"l1": torch.tensor(1.0), "ms": torch.tensor(2.0)}, torch.tensor(3.0))
    monkeypatch.undo()
    assert acc.read()["total"] == 3.0


def test_errors_name_what_is_wrong() -> None:
    acc = LossAccumulator(TERMS)
    with pytest.raises(VsrkitError, match="no loss for term.*ms"):
        acc.add({"l1": torch.tensor(1.0)}, torch.tensor(1.0))
    with pytest.raises(StateError, match="it is for the terms \\['x'\\], this accumulator sums"):
        acc.load_state_dict(LossAccumulator(("x",)).state_dict())
    good = acc.state_dict()
    with pytest.raises(StateError, match="LossAccumulator state: version 9 is not supported"):
        acc.load_state_dict({**good, "version": 9})
    with pytest.raises(StateError, match="sums must be null or 8 numbers"):
        acc.load_state_dict({**good, "sums": [1.0, "x"]})


def test_a_mean_over_ranks_is_applied_before_reading() -> None:
    acc = LossAccumulator(TERMS)
    step(acc, 2.0, 4.0)
    m = acc.read(lambda t: t / 2)  # e.g. two ranks, the other one all zeros
    assert (m["l1"], m["total"]) == (2.0, 6.0)  # ratios of sums are unchanged


@given(st.lists(st.tuples(finite, finite, st.booleans()), min_size=1, max_size=20))
def test_means_leave_out_the_non_finite_steps(rows) -> None:
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


def test_sums_restored_on_the_cpu_follow_the_losses_to_their_device() -> None:
    acc = LossAccumulator(TERMS)
    step(acc, 2.0, 4.0)
    again = LossAccumulator(TERMS)
    again.load_state_dict(acc.state_dict())  # onto the CPU, as the loop core restores it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    one = {t: torch.tensor(1.0, device=device) for t in TERMS}
    again.add(one, torch.tensor(2.0, device=device))
    m = again.read()
    assert m["l1"] == pytest.approx(1.5) and m["finite_steps"] == 2  # nothing was dropped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_add_on_cuda_makes_no_device_sync() -> None:
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
