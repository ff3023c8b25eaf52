"""MetricsSnapshot: latest value with its step, no None, thread-safe, JSON state."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.errors import StateError
from vsrkit.stats import Measurement, MetricsSnapshot

NAMES = st.sampled_from(["l1_loss_value", "ms_loss_value", "epoch_num", "lr_phase_name"])
VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-1000, 1000), st.text(max_size=5)
)


def test_update_records_value_step_and_time() -> None:
    snap = MetricsSnapshot()
    snap.update(10, {"l1_loss_value": 0.5}, epoch_num=2)
    m = snap.get("l1_loss_value")
    assert isinstance(m, Measurement)
    assert (m.value, m.step) == (0.5, 10)
    assert m.time > 1e9
    assert snap.values() == {"l1_loss_value": 0.5, "epoch_num": 2}
    assert snap.get("ms_loss_value") is None
    assert "epoch_num" in snap and len(snap) == 2


@pytest.mark.parametrize("bad", [{"l1_loss_value": None}, {"": 1.0}])
def test_update_rejects_missing_values_and_bad_names(bad: dict) -> None:
    snap = MetricsSnapshot()
    snap.update(1, ms_loss_value=0.1)
    with pytest.raises(ValueError, match="None|names"):
        snap.update(2, bad)
    # nothing of the rejected update was recorded
    assert snap.values() == {"ms_loss_value": 0.1}
    assert snap.revision == 1


@pytest.mark.parametrize("step", [-1, 1.5, True, "3", None])
def test_update_rejects_bad_steps(step: object) -> None:
    with pytest.raises(ValueError, match="step"):
        MetricsSnapshot().update(step, x=1.0)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.integers(0, 10_000), st.dictionaries(NAMES, VALUES)), max_size=30))
def test_get_returns_the_last_update_of_each_field(updates: list) -> None:
    snap = MetricsSnapshot()
    expected: dict = {}
    for step, values in updates:
        snap.update(step, values)
        for name, value in values.items():
            expected[name] = (value, step)
    assert {n: (m.value, m.step) for n, m in snap.measurements().items()} == expected
    assert snap.steps(["l1_loss_value"]) == {
        "l1_loss_value": expected.get("l1_loss_value", (None, None))[1]
    }
    assert snap.revision == len(updates)


def test_concurrent_updates_and_reads_are_consistent() -> None:
    snap = MetricsSnapshot()
    errors: list[Exception] = []

    def writer(k: int) -> None:
        for step in range(500):
            snap.update(step, {f"f{k}": float(step), "shared": float(k)})

    def reader() -> None:
        try:
            for _ in range(500):
                json.dumps(snap.as_dict())
                for m in snap.measurements().values():
                    assert isinstance(m.step, int)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert snap.revision == 4 * 500
    assert all(snap.get(f"f{k}") == (499.0, 499, snap.get(f"f{k}").time) for k in range(4))


def test_as_dict_is_json_safe_and_never_turns_nan_into_zero() -> None:
    snap = MetricsSnapshot()
    snap.update(3, l1_loss_value=float("nan"), vram=np.float32(1.5), obj=object(), ok=True)
    out = json.loads(json.dumps(snap.as_dict(), allow_nan=False))
    assert out["revision"] == 1
    assert out["fields"]["l1_loss_value"]["value"] is None
    assert "nan" in out["fields"]["l1_loss_value"]["note"]
    assert out["fields"]["vram"]["value"] == 1.5
    assert out["fields"]["obj"]["value"] is None and "object" in out["fields"]["obj"]["note"]
    assert out["fields"]["ok"] == {"value": True, "step": 3, "time": out["fields"]["ok"]["time"]}


def test_state_dict_json_round_trip() -> None:
    snap = MetricsSnapshot()
    snap.update(7, l1_loss_value=0.25, layer_activity_map={"a": 1.0}, mode="Stable")
    snap.update(9, bad=float("inf"))
    state = json.loads(json.dumps(snap.state_dict()))
    assert state["version"] == 1
    assert "bad" not in state["fields"]  # not representable: left out, never 0
    restored = MetricsSnapshot()
    restored.load_state_dict(state)
    assert restored.values() == {
        "l1_loss_value": 0.25,
        "layer_activity_map": {"a": 1.0},
        "mode": "Stable",
    }
    assert restored.get("l1_loss_value").step == 7
    assert restored.revision > 0


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"version": 2, "fields": {}}, "version"),
        ({"version": 1, "fields": []}, "fields"),
        ({"version": 1, "fields": {"x": {"value": None, "step": 1, "time": 1.0}}}, "'x'"),
        ({"version": 1, "fields": {"x": {"value": 1, "step": -1, "time": 1.0}}}, "'x'"),
        ({"version": 1, "fields": {"x": {"value": 1, "step": 1, "time": "t"}}}, "time"),
    ],
)
def test_load_state_dict_rejects_bad_state_and_keeps_current(state: dict, match: str) -> None:
    snap = MetricsSnapshot()
    snap.update(1, keep=1.0)
    with pytest.raises(StateError, match=f"MetricsSnapshot state: .*{match}"):
        snap.load_state_dict(state)
    assert snap.values() == {"keep": 1.0}


def test_nan_measurement_is_kept_as_nan() -> None:
    snap = MetricsSnapshot()
    snap.update(1, l1_loss_value=float("nan"))
    assert math.isnan(snap.get("l1_loss_value").value)
