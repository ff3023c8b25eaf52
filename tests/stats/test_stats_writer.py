"""DeferredStatsWriter: fresh data only, null with a reason, delays, failures, state."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vsrkit.errors import StateError
from vsrkit.stats import (
    DEFAULT_TRAINING_FIELDS,
    LOSS_FIELDS,
    STAT_FIELDS,
    DeferredStatsWriter,
    MetricsSnapshot,
    StatisticsError,
    validate_statistics,
)

LOSSES = {
    "total_loss_value": 0.0234,
    "l1_loss_value": 0.0156,
    "ms_loss_value": 0.0045,
    "gradient_loss_value": 0.0023,
    "perceptual_loss_value": 0.0010,
    "learning_rate_value": 3.456e-05,
    "l1_weight_current": 0.6,
    "ms_weight_current": 0.2,
    "gradient_weight_current": 0.2,
    "perceptual_weight_current": 0.123,
}
VALIDATION = {"quality_ki_value": 0.621, "quality_lr_value": 0.543}


def make(tmp_path: Path, **kwargs) -> tuple[DeferredStatsWriter, MetricsSnapshot]:
    snap = MetricsSnapshot()
    kwargs.setdefault("fsync", False)
    return DeferredStatsWriter(tmp_path, snapshot=snap, **kwargs), snap


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_file_waits_for_fresh_training_fields(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="vsrkit.stats.writer")
    w, snap = make(tmp_path)
    w.observe(7500, LOSSES)  # the step of the validation itself: not after V
    w.request(7500, VALIDATION)
    assert w.observe(7501, {"l1_loss_value": 0.02}) == []  # the others are still old
    assert w.pending == (7500,)
    snap.update(7502, {**LOSSES, "epoch_num": 8, "training_active": True})
    written = w.observe(7502)
    assert written == [tmp_path / "Statistik_7500.json"]
    assert w.pending == ()
    doc = read(written[0])
    validate_statistics(doc)
    assert list(doc)[: len(STAT_FIELDS)] == list(STAT_FIELDS)
    assert doc["complete"] is True and doc["stale_fields"] == []
    assert doc["step_current"] == 7500 and doc["written_at_step"] == 7502
    assert {k: doc[k] for k in LOSSES} == LOSSES
    assert all(doc["measured_at_step"][k] == 7502 for k in LOSSES)
    assert doc["quality_ki_value"] == 0.621 and doc["measured_at_step"]["quality_ki_value"] == 7500
    assert doc["epoch_num"] == 8 and doc["training_active"] is True
    assert doc["quality_improvement_value"] is None
    assert (
        "not given with the validation request"
        in doc["missing_reasons"]["quality_improvement_value"]
    )
    assert doc["step_max"] is None and doc["missing_reasons"]["step_max"] == "never measured"
    assert "Statistics saved: Statistik_7500.json" in caplog.messages


def test_file_format_is_two_space_utf8_with_newline(tmp_path: Path) -> None:
    w, _ = make(tmp_path, training_fields=[])
    w.request(5, VALIDATION)
    w.observe(6, {"adaptive_mode": "Stabil – ä", "layer_activity_map": {"Block_ü": 1.0}})
    raw = (tmp_path / "Statistik_5.json").read_bytes()
    text = raw.decode("utf-8")
    assert text.startswith('{\n  "step_current": 5,')
    assert "Stabil – ä" in text and text.endswith("}\n")


def test_values_measured_before_the_validation_step_are_null(tmp_path: Path) -> None:
    w, snap = make(tmp_path, training_fields=["l1_loss_value"])
    snap.update(90, epoch_num=1, vram_usage_gb=8.5, best_quality_ever=0.7)
    snap.update(100, epoch_num=2)
    w.request(100, VALIDATION)
    w.observe(101, {"l1_loss_value": 0.01})
    doc = read(tmp_path / "Statistik_100.json")
    assert doc["epoch_num"] == 2 and doc["measured_at_step"]["epoch_num"] == 100
    assert doc["vram_usage_gb"] is None
    assert doc["missing_reasons"]["vram_usage_gb"] == (
        "not measured at or after validation step 100 (last at step 90)"
    )
    # validation fields come from the request only, never from an older snapshot value
    assert doc["best_quality_ever"] is None


def test_max_delay_steps_writes_an_incomplete_file(tmp_path: Path) -> None:
    w, snap = make(tmp_path, max_delay_steps=10, max_delay_seconds=None)
    snap.update(50, LOSSES)
    w.request(100, VALIDATION)
    for step in range(101, 110):
        assert w.observe(step, {"l1_loss_value": 0.5, "total_loss_value": 0.7}) == []
    assert w.observe(110) == [tmp_path / "Statistik_100.json"]
    doc = read(tmp_path / "Statistik_100.json")
    fresh = {"l1_loss_value", "total_loss_value"}
    assert doc["complete"] is False
    assert doc["stale_fields"] == [f for f in DEFAULT_TRAINING_FIELDS if f not in fresh]
    for name in doc["stale_fields"]:
        assert doc[name] is None and doc["measured_at_step"][name] is None
        assert doc["missing_reasons"][name] == (
            "not measured after validation step 100 (last at step 50)"
        )
    assert doc["l1_loss_value"] == 0.5 and doc["measured_at_step"]["l1_loss_value"] == 109
    assert all(doc[f] != 0 for f in LOSS_FIELDS)


def test_max_delay_seconds_uses_the_clock(tmp_path: Path) -> None:
    now = [1000.0]
    w, _ = make(tmp_path, max_delay_steps=None, max_delay_seconds=30.0, clock=lambda: now[0])
    w.request(10, VALIDATION)
    assert w.observe(11) == []
    now[0] += 29.9
    assert w.observe(12) == []
    now[0] += 0.1
    assert w.observe(13) == [tmp_path / "Statistik_10.json"]
    assert read(tmp_path / "Statistik_10.json")["complete"] is False


def test_several_pending_requests_are_written_in_order(tmp_path: Path) -> None:
    w, _ = make(tmp_path, training_fields=["l1_loss_value"])
    w.request(10, {"quality_ki_value": 0.1})
    w.request(20, {"quality_ki_value": 0.2})
    assert w.pending == (10, 20)
    assert w.observe(15, {"l1_loss_value": 0.3}) == [tmp_path / "Statistik_10.json"]
    assert w.observe(21, {"l1_loss_value": 0.4}) == [tmp_path / "Statistik_20.json"]
    a, b = read(tmp_path / "Statistik_10.json"), read(tmp_path / "Statistik_20.json")
    assert (a["quality_ki_value"], a["l1_loss_value"]) == (0.1, 0.3)
    assert (b["quality_ki_value"], b["l1_loss_value"]) == (0.2, 0.4)


def test_close_flushes_pending_marks_stale_and_refuses_new_requests(tmp_path: Path) -> None:
    w, _ = make(tmp_path)
    w.request(10, VALIDATION)
    w.observe(12, {"l1_loss_value": 0.3})
    assert w.close() == [tmp_path / "Statistik_10.json"]
    doc = read(tmp_path / "Statistik_10.json")
    assert doc["complete"] is False and "l1_loss_value" not in doc["stale_fields"]
    assert doc["written_at_step"] == 12
    with pytest.raises(StatisticsError, match="closed"):
        w.request(20, VALIDATION)
    assert w.close() == []


def test_disabled_writer_writes_nothing_but_records(tmp_path: Path) -> None:
    run = tmp_path / "run"
    w, snap = make(run, is_main=False)
    w.request(10, VALIDATION)
    assert w.observe(11, LOSSES) == [] and w.pending == () and w.close() == []
    assert not run.exists()
    assert snap.get("quality_ki_value").step == 10


def test_nan_values_become_null_with_reason(tmp_path: Path) -> None:
    w, _ = make(tmp_path, training_fields=["l1_loss_value"])
    w.request(10, {"quality_ki_value": float("nan")})
    w.observe(11, {"l1_loss_value": float("inf")})
    doc = read(tmp_path / "Statistik_10.json")
    assert doc["l1_loss_value"] is None and doc["quality_ki_value"] is None
    assert "inf" in doc["missing_reasons"]["l1_loss_value"]
    assert "nan" in doc["missing_reasons"]["quality_ki_value"]
    assert doc["complete"] is True  # it was measured; the measurement was not finite


def test_failure_is_logged_and_training_goes_on(tmp_path: Path, caplog) -> None:
    run = tmp_path / "run"
    w, _ = make(run, training_fields=[])
    w.request(10, VALIDATION)
    run.rmdir()
    run.write_text("a file where the run folder was")  # every write now fails, even as root
    assert w.observe(11) == []
    assert any(
        m.startswith("Failed to save statistics JSON: Statistik_10.json") for m in caplog.messages
    )
    assert w.pending == ()  # dropped, not retried at every step
    run.unlink()
    run.mkdir()
    w.request(20, VALIDATION)
    assert w.observe(21) == [run / "Statistik_20.json"]


def test_invalid_value_type_fails_validation_and_names_the_field(tmp_path: Path, caplog) -> None:
    w, _ = make(tmp_path, training_fields=["l1_loss_value"])
    w.request(10, VALIDATION)
    assert w.observe(11, {"l1_loss_value": "low"}) == []
    msg = next(m for m in caplog.messages if m.startswith("Failed to save statistics JSON"))
    assert "l1_loss_value" in msg and "number" in msg
    assert not (tmp_path / "Statistik_10.json").exists()
    assert not [p for p in tmp_path.iterdir()]  # no temp file left behind


def test_request_rejects_unknown_none_and_training_fields(tmp_path: Path) -> None:
    w, snap = make(tmp_path)
    with pytest.raises(ValueError, match="'psnr' is not a validation field"):
        w.request(10, {"psnr": 30.0})
    with pytest.raises(ValueError, match="'l1_loss_value' is not a validation field"):
        w.request(10, {"l1_loss_value": 0.1})
    with pytest.raises(ValueError, match="None"):
        w.request(10, {"quality_ki_value": None})
    with pytest.raises(TypeError, match="quality_ki_value"):
        w.request(10, {"quality_ki_value": object()})
    assert w.pending == () and len(snap) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"training_fields": ["psnr"]}, "unknown field 'psnr'"),
        ({"training_fields": ["quality_ki_value"]}, "not measured by the training loop"),
        ({"max_delay_steps": 0}, "max_delay_steps"),
        ({"max_delay_seconds": 0}, "max_delay_seconds"),
        ({"filename_template": "Statistik.json"}, "step"),
        ({"filename_template": "sub/Statistik_{step}.json"}, "plain file name"),
    ],
)
def test_bad_settings_are_rejected(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DeferredStatsWriter(tmp_path, snapshot=MetricsSnapshot(), **kwargs)


def test_template_and_runtime_config_version(tmp_path: Path) -> None:
    versions = iter([3, 4])
    w, _ = make(
        tmp_path,
        training_fields=[],
        filename_template="stats_{step}.json",
        runtime_config_version=lambda: next(versions),
    )
    w.request(10, VALIDATION)
    w.request(20, VALIDATION)
    w.observe(21)
    assert read(tmp_path / "stats_10.json")["runtime_config_version"] == 3
    assert read(tmp_path / "stats_20.json")["runtime_config_version"] == 4


def test_state_dict_round_trip_resumes_pending_requests(tmp_path: Path) -> None:
    w, _ = make(tmp_path, training_fields=["l1_loss_value"], runtime_config_version=7)
    w.request(100, {"quality_ki_value": 0.6, "quality_lr_value": float("nan")})
    state = json.loads(json.dumps(w.state_dict(), allow_nan=False))
    assert state["version"] == 1 and [p["step"] for p in state["pending"]] == [100]
    # a new process: fresh snapshot, same settings
    w2, _ = make(tmp_path, training_fields=["l1_loss_value"], max_delay_steps=3)
    w2.load_state_dict(state)
    assert w2.pending == (100,) and w2.max_delay_steps == 3
    assert w2.observe(150, {"l1_loss_value": 0.2}) == [tmp_path / "Statistik_100.json"]
    doc = read(tmp_path / "Statistik_100.json")
    assert (doc["quality_ki_value"], doc["l1_loss_value"]) == (0.6, 0.2)
    assert doc["quality_lr_value"] is None and "nan" in doc["missing_reasons"]["quality_lr_value"]
    assert doc["runtime_config_version"] == 7


@pytest.mark.parametrize(
    "state",
    [
        {"version": 9, "pending": []},
        {"version": 1, "pending": {}},
        {"version": 1, "pending": [{"step": -1, "validation": {}}]},
        {"version": 1, "pending": [{"step": 1, "validation": {"psnr": 1.0}}]},
        {"version": 1, "pending": [{"step": 1, "validation": {}, "runtime_config_version": []}]},
    ],
)
def test_load_state_dict_rejects_bad_state(tmp_path: Path, state: dict) -> None:
    w, _ = make(tmp_path)
    w.request(5, VALIDATION)
    with pytest.raises(StateError, match="DeferredStatsWriter state: "):
        w.load_state_dict(state)
    assert w.pending == (5,)


def test_request_for_a_pending_step_replaces_its_metrics(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="vsrkit.stats.writer")
    w, _ = make(tmp_path, training_fields=["l1_loss_value"])
    w.request(10, {"quality_ki_value": 0.1})
    w.request(10, {"quality_ki_value": 0.2, "best_quality_ever": 0.2})
    assert w.pending == (10,)
    assert any("replaced" in m for m in caplog.messages)
    w.observe(11, {"l1_loss_value": 0.3})
    doc = read(tmp_path / "Statistik_10.json")
    assert (doc["quality_ki_value"], doc["best_quality_ever"]) == (0.2, 0.2)


def test_a_tensor_value_fails_the_file_with_a_clear_message(tmp_path: Path, caplog) -> None:
    torch = pytest.importorskip("torch")
    w, _ = make(tmp_path, training_fields=["l1_loss_value"])
    w.request(10, VALIDATION)
    assert w.observe(11, {"l1_loss_value": torch.tensor(0.5)}) == []  # stored, never synced
    msg = next(m for m in caplog.messages if m.startswith("Failed to save statistics JSON"))
    assert "'l1_loss_value'" in msg and ".item()" in msg
    with pytest.raises(TypeError, match="quality_ki_value"):
        w.request(20, {"quality_ki_value": torch.tensor(0.5)})


def test_written_files_load_back_without_warnings(tmp_path: Path, caplog) -> None:
    from vsrkit.stats import load_statistics

    w, snap = make(tmp_path)
    for v in (500, 1000):
        w.request(v, VALIDATION)
        w.observe(v + 1, LOSSES)
    caplog.clear()
    caplog.set_level(logging.WARNING)
    assert [r["step_current"] for r in load_statistics(tmp_path)] == [500, 1000]
    assert caplog.messages == []


def test_the_last_validation_of_a_run_is_complete_with_the_interval_that_ended_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snap = MetricsSnapshot()
    writer = DeferredStatsWriter(
        tmp_path, snapshot=snap, training_fields=["l1_loss_value", "learning_rate_value"]
    )
    writer.observe(5, {"l1_loss_value": 0.7, "learning_rate_value": 1e-4})
    writer.observe(10, {"l1_loss_value": 0.5})  # the log interval that ended at V
    writer.request(10, {"quality_ki_value": 0.6})
    with caplog.at_level(logging.INFO, logger="vsrkit.stats"):
        writer.close()  # the run ended at V
    doc = json.loads((tmp_path / "Statistik_10.json").read_text())
    assert doc["l1_loss_value"] == 0.5 and doc["measured_at_step"]["l1_loss_value"] == 10
    # measured before V only: stale even at the end, and said so
    assert doc["learning_rate_value"] is None
    assert doc["complete"] is False and doc["stale_fields"] == ["learning_rate_value"]
    assert (
        "not measured at or after validation step 10 (last at step 5)"
        in (doc["missing_reasons"]["learning_rate_value"])
    )
    (record,) = [r for r in caplog.records if "is incomplete" in r.getMessage()]
    assert record.levelno == logging.WARNING and "learning_rate_value" in record.getMessage()


def test_closing_after_the_run_went_past_the_validation_keeps_the_after_rule(
    tmp_path: Path,
) -> None:
    snap = MetricsSnapshot()
    writer = DeferredStatsWriter(tmp_path, snapshot=snap, training_fields=["l1_loss_value"])
    writer.observe(10, {"l1_loss_value": 0.5})
    writer.request(10, {"quality_ki_value": 0.6})
    writer.observe(15)  # the run went on (SIGTERM before the next log interval)
    writer.close()
    doc = json.loads((tmp_path / "Statistik_10.json").read_text())
    assert doc["complete"] is False and doc["l1_loss_value"] is None


def test_enabled_is_the_deprecated_name_of_is_main(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.warns(DeprecationWarning, match="is_main"):
        w, _ = make(run, enabled=False)
    assert w.is_main is False
    w.request(10, VALIDATION)
    assert w.observe(11, LOSSES) == [] and not run.exists()
