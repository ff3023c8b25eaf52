"""status_document and its parts: seed keys, nulls for missing values, distributions, peaks."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.monitor import status_document
from vsrkit.monitor.sources import read_snapshot
from vsrkit.monitor.status import (
    LOSS_TERMS,
    SEED_KEYS,
    activity_level,
    distribution,
    peak_activity,
    stream_overview,
)
from vsrkit.stats import MetricsSnapshot

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
loss_fields = st.dictionaries(
    st.sampled_from([f for pair in LOSS_TERMS.values() for f in pair]), finite, max_size=8
)


def test_seed_keys_come_from_the_statistics_fields() -> None:
    snap = MetricsSnapshot()
    snap.update(
        12345,
        step_current=12345,
        total_loss_value=0.0123,
        learning_rate_value=0.00015,
        eta_total_formatted="2:34:56",
        iteration_duration=2.5,
        vram_usage_gb=7.8,
        best_quality_ever=0.85,
        validation_running=False,
        training_active=True,
        last_update_time=1707159550.123,
    )
    values, measured = read_snapshot(snap)
    doc = status_document(values, measured_at_step=measured)
    assert {k: doc[k] for k in (*SEED_KEYS, "iter_speed", "timestamp")} == {
        "iteration": 12345,
        "total_loss": 0.0123,
        "learn_rate": 0.00015,
        "time_remaining": "2:34:56",
        "iter_speed": 0.4,
        "gpu_memory": 7.8,
        "best_score": 0.85,
        "is_validating": False,
        "is_training": True,
        "timestamp": 1707159550.123,
    }
    assert doc["measured_at_step"]["vram_usage_gb"] == 12345


@given(st.dictionaries(st.sampled_from(list(SEED_KEYS.values())), st.integers(1, 9), max_size=3))
def test_a_missing_field_is_null_never_zero(values: dict) -> None:
    doc = status_document(values, now=1.0)
    for key, field in SEED_KEYS.items():
        assert doc[key] == values.get(field)  # None when absent
    assert doc["iter_speed"] is None


@given(loss_fields, st.sampled_from([0, 1]))
def test_distribution_percentages(values: dict, which: int) -> None:
    dist = distribution(values, which)
    present = [t for t, f in LOSS_TERMS.items() if f[which] in values]
    for term in LOSS_TERMS:
        if term not in present:
            assert dist["values"][term] is None and dist["percent"][term] is None
    total = sum(values[LOSS_TERMS[t][which]] for t in present)
    if total > 0:
        assert math.isclose(sum(dist["percent"][t] for t in present), 100.0, rel_tol=1e-9)
    for t in present:
        assert 0.0 <= dist["percent"][t] <= 100.0


def test_distribution_ignores_non_numbers() -> None:
    dist = distribution(
        {"l1_loss_value": True, "ms_loss_value": float("nan"), "gradient_loss_value": 3.0}, 0
    )
    assert dist["values"] == {"l1": None, "ms": None, "grad": 3.0, "perceptual": None}
    assert dist["percent"]["grad"] == 100.0


activity_maps = st.dictionaries(
    st.sampled_from(
        ["Backward_Block_01", "Backward_Block_02", "Forward_Block_01", "Final_Fusion", "head"]
    ),
    st.floats(min_value=0, max_value=5, allow_nan=False),
    max_size=5,
)


@given(activity_maps)
def test_peak_is_the_largest_activity(activity: dict) -> None:
    peak = peak_activity(activity)
    if not activity:
        assert peak is None
        return
    assert peak is not None and peak["value"] == max(activity.values())
    assert activity[peak["layer"]] == peak["value"]
    assert peak["level"] == activity_level(peak["value"])
    assert (peak["warning"] is not None) == (peak["value"] > 1.5)


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (0.0, "low"),
        (0.49, "low"),
        (0.5, "moderate"),
        (0.99, "moderate"),
        (1.0, "elevated"),
        (1.49, "elevated"),
        (1.5, "high"),
        (2.5, "high"),
    ],
)
def test_activity_bands(value: float, level: str) -> None:
    assert activity_level(value) == level


@given(activity_maps)
def test_stream_overview_averages(activity: dict) -> None:
    streams = stream_overview(activity)
    for name, needle in (("backward", "backward"), ("forward", "forward"), ("fusion", "fusion")):
        vals = [v for k, v in activity.items() if needle in k.lower()]
        assert streams[name]["layers"] == len(vals)
        if vals:
            assert streams[name]["average"] == pytest.approx(sum(vals) / len(vals))
        else:
            assert streams[name]["average"] is None


def test_read_snapshot_accepts_a_plain_mapping_callable() -> None:
    values, measured = read_snapshot(lambda: {"step_current": 3, "measured_at_step": {"x": 2}})
    assert values == {"step_current": 3} and measured == {"x": 2}


@given(st.integers(3, 50), st.lists(st.integers(1, 5), min_size=1, max_size=400))
def test_loss_history_is_bounded_and_spans_the_run(maxlen: int, gaps: list[int]) -> None:
    from vsrkit.monitor.server import _History

    history = _History(maxlen)
    step = 0
    for gap in gaps:
        step += gap
        history.observe({"step_current": step, "total_loss_value": 1.0 / step}, {})
    steps = [p[0] for p in history.loss]
    assert 1 <= len(steps) <= maxlen
    assert steps == sorted(set(steps)) and steps[0] == gaps[0]  # the start is kept
    assert step - steps[-1] < history.stride  # and the recent end
    assert all(p[1] == 1.0 / p[0] for p in history.loss)


def test_peak_prefers_the_raw_peak_field_over_the_percent_map() -> None:
    values = {
        "layer_activity_map": {"Backward_Block_01": 40.0, "Final_Fusion": 100.0},
        "layer_activity_peak": {"layer": "Final_Fusion", "value": 1.7},
    }
    peak = status_document(values)["peak_activity"]
    assert peak == {
        "layer": "Final_Fusion",
        "value": 1.7,
        "level": "high",
        "warning": "Unusually high activity",
    }


percent_maps = st.dictionaries(
    st.sampled_from(
        ["Backward_Block_01", "Backward_Block_02", "Forward_Block_01", "Forward_Block_02"]
    ),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    max_size=4,
)


@given(percent_maps, st.floats(min_value=0.001, max_value=5, allow_nan=False))
def test_activity_is_on_one_scale_everywhere(others: dict, raw_peak: float) -> None:
    """The loop's map is in percent of the peak layer; every panel shows mean |activation|."""
    activity = {**others, "Final_Fusion": 100.0}
    doc = status_document(
        {
            "layer_activity_map": activity,
            "layer_activity_peak": {"layer": "Final_Fusion", "value": raw_peak},
        }
    )
    assert doc["activity_scale"]["scale"] == "mean_abs" and doc["activity_scale"]["full"] == 2.0
    assert "mean |activation|" in doc["activity_scale"]["legend"]
    layers, levels = doc["layers"], doc["layer_levels"]
    assert layers["Final_Fusion"] == pytest.approx(raw_peak)
    for name, percent in activity.items():
        assert layers[name] == pytest.approx(percent / 100 * raw_peak)
        assert levels[name] == activity_level(layers[name])
        assert layers[name] <= doc["peak_activity"]["value"] * (1 + 1e-12)
    assert doc["peak_activity"]["level"] == activity_level(raw_peak)
    for stream, needle in (("backward", "Backward"), ("forward", "Forward")):
        values = [v for k, v in layers.items() if k.startswith(needle)]
        entry = doc["streams"][stream]
        if values:
            assert entry["average"] == pytest.approx(sum(values) / len(values))
            assert entry["level"] == activity_level(entry["average"])
    assert doc["streams"]["fusion"]["average"] == pytest.approx(raw_peak)


def test_the_reviews_run_reads_low_in_every_panel() -> None:
    """Peak 0.10 with streams at 62.4 / 82.4 / 100 percent: all low, never 'high'."""
    doc = status_document(
        {
            "layer_activity_map": {"Backward_1": 62.4, "Forward_1": 82.4, "Final_Fusion": 100.0},
            "layer_activity_peak": {"layer": "Final_Fusion", "value": 0.10},
        }
    )
    assert doc["peak_activity"]["level"] == "low"
    assert [round(doc["streams"][s]["average"], 4) for s in ("backward", "forward", "fusion")] == [
        0.0624,
        0.0824,
        0.1,
    ]
    assert set(doc["layer_levels"].values()) == {"low"}
    assert {s["level"] for s in doc["streams"].values()} == {"low"}


def test_a_percent_map_without_the_peak_keeps_its_own_scale() -> None:
    doc = status_document({"layer_activity_map": {"Backward_1": 40.0, "Final_Fusion": 100.0}})
    assert doc["activity_scale"]["scale"] == "percent_of_peak"
    assert doc["activity_scale"]["full"] == 100.0 and doc["activity_scale"]["bands"] == []
    assert doc["peak_activity"] == {
        "layer": "Final_Fusion",
        "value": 100.0,
        "level": None,
        "warning": None,
    }
    assert doc["layer_levels"] == {"Backward_1": None, "Final_Fusion": None}


@given(
    st.integers(0, 10**6),
    st.integers(1, 10**6),
    st.floats(min_value=1e-3, max_value=1e3, allow_nan=False),
)
def test_the_eta_uses_the_speed_cards_rate(step: int, total: int, duration: float) -> None:
    doc = status_document(
        {
            "step_current": min(step, total),
            "step_max": total,
            "iteration_duration": duration,
            "training_active": True,
            "eta_total_formatted": "99:99:99",  # the loop's own figure: not used when computable
        }
    )
    expected = (total - min(step, total)) / doc["iter_speed"]
    assert doc["eta_seconds"] == pytest.approx(expected)
    h, m, s = (int(x) for x in doc["time_remaining"].split(":"))
    assert abs(h * 3600 + m * 60 + s - expected) <= 0.5 + 1e-6


def test_the_reviews_eta_case() -> None:
    doc = status_document(
        {
            "step_current": 85,
            "step_max": 5000,
            "iteration_duration": 1 / 0.28,
            "training_active": True,
            "eta_total_formatted": "00:06:47",
        }
    )
    assert doc["time_remaining"] == "04:52:34"  # 4,915 steps at 0.28 it/s


@pytest.mark.parametrize(
    ("values", "age", "state"),
    [
        ({"training_active": True}, None, "training"),
        ({"training_active": True, "training_paused": True}, None, "paused"),
        ({"training_active": True, "validation_running": True}, None, "validating"),
        ({"training_active": True}, 10.0, "training"),
        ({"training_active": True, "step_current": 5, "step_max": 9}, 900.0, "stopped"),
        ({"training_active": True, "step_current": 9, "step_max": 9}, 900.0, "finished"),
        ({"training_active": True, "step_current": 9, "step_max": 9}, 5.0, "finished"),
        ({"training_active": True, "step_current": 9, "step_max": 9}, None, "training"),
        ({"training_active": False, "step_current": 5, "step_max": 9}, None, "stopped"),
        ({"training_active": False, "step_current": 9, "step_max": 9}, None, "finished"),
        ({}, None, "unknown"),
        ({}, 900.0, "stopped"),
    ],
)
def test_run_state(values: dict, age, state: str) -> None:
    doc = status_document(values, heartbeat_age=age, stale_after=300)
    assert doc["run_state"]["state"] == state
    if state in ("stopped", "finished"):
        assert doc["time_remaining"] is None and doc["eta_seconds"] is None


def test_non_finite_values_become_null_with_a_reason() -> None:
    doc = status_document(
        {"total_loss_value": float("nan"), "layer_activity_map": {"a": float("inf")}, "big": 10**40}
    )
    assert doc["total_loss"] is None and doc["fields"]["big"] is None
    assert doc["missing_reasons"]["total_loss_value"] == "NaN is not a number JSON can hold"
    assert doc["missing_reasons"]["layer_activity_map.a"].startswith("inf")
    json.dumps(doc, allow_nan=False)  # strict JSON, whatever came in
