"""TensorBoardLogger: events read back with the event accumulator (size guidance 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

from vsrkit.stats import TensorBoardLogger  # noqa: E402

GUIDANCE = {"scalars": 0, "tensors": 0, "histograms": 0, "compressedHistograms": 0}


def accumulate(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance=GUIDANCE)
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, pytest.approx(e.value)) for e in acc.Scalars(tag)]


def texts(acc: EventAccumulator, tag: str) -> list[tuple[int, str]]:
    # SummaryWriter.add_text stores text under "<tag>/text_summary"
    events = acc.Tensors(f"{tag}/text_summary")
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in events]


def test_categories_are_written_and_read_back(tmp_path: Path) -> None:
    tb = TensorBoardLogger(tmp_path)
    tb.log_losses({"l1": 0.0156, "total": 0.0234}, step=10)
    tb.log_losses({"l1": 0.0150, "total": 0.0230}, step=20)
    tb.log_lr(3e-4, step=10)
    tb.log_lr({"generator": 1e-4}, step=10)
    tb.log_quality({"KI": 0.62, "LR": 0.54, "Improvement": 0.08}, step=20)
    tb.log_initial_config({"max_lr": 1.5e-4, "plateau_patience": 250, "mode": "auto"})
    tb.log_config_change("plateau_patience", 250, 350, step=15)
    tb.log_plateau_state(
        SimpleNamespace(counter=42, ema_loss=0.021, best_quality=0.66, patience=84), step=20
    )
    tb.log_plateau_state({"plateau_counter": 7, "progress_percent": 5.0}, step=30)
    tb.log_weights({"L1": 0.6, "MS": 0.2, "Grad": 0.2}, step=20)
    tb.log_validation({"KI": 0.62, "LR": 0.54}, step=20)
    tb.log_event("LR boost x2", step=25)
    tb.close()

    acc = accumulate(tmp_path)
    assert scalars(acc, "Loss/l1") == [(10, 0.0156), (20, 0.0150)]
    assert scalars(acc, "Loss/total")[-1] == (20, 0.0230)
    assert scalars(acc, "LR") == [(10, 3e-4)]
    assert scalars(acc, "LR/generator") == [(10, 1e-4)]
    assert scalars(acc, "Quality/Improvement") == [(20, 0.08)]
    assert scalars(acc, "Config/Parameters/plateau_patience") == [(0, 250), (15, 350)]
    assert scalars(acc, "Config/Parameters/max_lr") == [(0, 1.5e-4)]
    assert "Config/Parameters/mode" not in acc.Tags()["scalars"]
    initial = texts(acc, "Config/Initial_Configuration")[0][1]
    assert "| mode | auto |" in initial and "| plateau_patience | 250 |" in initial
    assert texts(acc, "Config/Changes") == [(15, "Step 15: plateau_patience 250 → 350")]
    assert scalars(acc, "Events/Config_Change") == [(15, 1.0)]
    assert scalars(acc, "Plateau/Counter") == [(20, 42), (30, 7)]
    assert scalars(acc, "Plateau/EMA_Loss") == [(20, 0.021)]
    assert scalars(acc, "Plateau/Best_Quality") == [(20, 0.66)]
    assert scalars(acc, "Plateau/Progress_Percent") == [(20, 50.0), (30, 5.0)]
    assert scalars(acc, "Weights/Sum") == [(20, 1.0)]
    assert scalars(acc, "Weights/Distribution/L1_percent") == [(20, 60.0)]
    assert scalars(acc, "Weights/Distribution/MS_percent") == [(20, 20.0)]
    hist = acc.Histograms("Weights/Distribution")[0]
    assert hist.step == 20 and hist.histogram_value.num == 3
    assert hist.histogram_value.sum == pytest.approx(1.0)
    assert scalars(acc, "Events/Validation_Run") == [(20, 1.0)]
    ((step, text),) = texts(acc, "Events/Validation")
    assert step == 20 and "- KI: 0.62" in text and "- LR: 0.54" in text
    timeline = [t for _, t in texts(acc, "Events/Timeline")]
    assert timeline == [
        "Step 15: config plateau_patience → 350",
        "Step 20: validation",
        "Step 25: LR boost x2",
    ]


def test_hyperparameters_go_into_the_same_folder(tmp_path: Path) -> None:
    with TensorBoardLogger(tmp_path) as tb:
        tb.log_hyperparameters(
            {"max_lr": 1.5e-4, "batch": 8, "amp": True, "model": "brvsr", "blocks": (4, 4)},
            {"hparam/best_quality": 0.66},
        )
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []  # no stray sub-folder
    acc = accumulate(tmp_path)
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["max_lr"].number_value == pytest.approx(1.5e-4)
    assert start.hparams["amp"].number_value == 1.0  # torch writes bools as numbers
    assert start.hparams["blocks"].string_value == "(4, 4)"
    assert scalars(acc, "hparam/best_quality") == [(0, 0.66)]


def test_purge_step_hides_events_of_the_crashed_run(tmp_path: Path) -> None:
    first = TensorBoardLogger(tmp_path)
    for step in range(10):
        first.log_losses({"l1": 1.0}, step)
    first.close()
    resumed = TensorBoardLogger(tmp_path, purge_step=5)
    for step in range(5, 8):
        resumed.log_losses({"l1": 2.0}, step)
    resumed.close()
    values = scalars(accumulate(tmp_path), "Loss/l1")
    assert values == [(s, 1.0) for s in range(5)] + [(s, 2.0) for s in range(5, 8)]


def test_bad_values_are_refused_with_the_tag(tmp_path: Path) -> None:
    with TensorBoardLogger(tmp_path) as tb:
        with pytest.raises(TypeError, match="Loss/l1"):
            tb.log_losses({"l1": "low"}, 1)
        with pytest.raises(ValueError, match="counter"):
            tb.log_plateau_state(SimpleNamespace(mode="x"), 1)
        with pytest.raises(TypeError, match="'L1'"):
            tb.log_weights({"L1": None}, 1)  # type: ignore[dict-item]


def test_zero_weight_sum_writes_no_percentages(tmp_path: Path) -> None:
    with TensorBoardLogger(tmp_path) as tb:
        tb.log_weights({"L1": 0.0, "MS": 0.0}, 3)
    acc = accumulate(tmp_path)
    assert scalars(acc, "Weights/Sum") == [(3, 0.0)]
    assert not [t for t in acc.Tags()["scalars"] if t.endswith("_percent")]


def test_disabled_logger_writes_nothing_and_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from vsrkit.stats import TensorBoardLogger\n"
        f"tb = TensorBoardLogger({str(tmp_path / 'tb')!r}, is_main=False)\n"
        "tb.log_losses({'l1': 1.0}, 1); tb.log_validation({'KI': 1.0}, 1)\n"
        "tb.log_plateau_state(object(), 1); tb.log_hyperparameters({}, {}); tb.close()\n"
        "print('torch' in sys.modules, 'tensorboard' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert not (tmp_path / "tb").exists()


def test_no_folder_or_another_rank_writes_nothing_and_enabled_is_deprecated(
    tmp_path: Path,
) -> None:
    off = TensorBoardLogger(None)
    off.log_losses({"l1": 1.0}, 1)
    off.close()
    assert off.enabled is False and off.log_dir is None
    with pytest.warns(DeprecationWarning, match="is_main"):
        old = TensorBoardLogger(tmp_path / "tb", enabled=False)
    assert old.is_main is False and old.enabled is False
    old.log_losses({"l1": 1.0}, 1)
    old.close()
    assert not (tmp_path / "tb").exists()
