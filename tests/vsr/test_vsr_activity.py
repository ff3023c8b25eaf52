"""Layer activity: hand-computed values, typed peak record, streams, reset/enabled, JSON field."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vsrkit.vsr import LayerActivityMonitor, PeakLayer, build_model


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Toy(nn.Module):
    """Known activations: mean |x| times 1, 2, 4 and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.Backward_Block_01 = Scale(1.0)
        self.Backward_Block_02 = Scale(2.0)
        self.Forward_Block_01 = Scale(4.0)
        self.Final_Fusion = Scale(3.0)
        self.other = Scale(100.0)  # not watched by default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in (self.Backward_Block_01, self.Backward_Block_02, self.Forward_Block_01):
            m(x)
        self.other(x)
        return self.Final_Fusion(x)


def test_hand_computed_percent_of_peak_and_streams() -> None:
    toy = Toy()
    mon = LayerActivityMonitor(toy)
    assert mon.names == (
        "Backward_Block_01",
        "Backward_Block_02",
        "Forward_Block_01",
        "Final_Fusion",
    )
    toy(torch.full((2, 3), -0.5))  # mean |x| = 0.5
    toy(torch.full((2, 3), 1.5))  # mean |x| = 1.5 -> average over the two calls: 1.0
    report = mon.read()
    by_name = {r.name: r for r in report.layers}
    assert by_name["Backward_Block_01"].mean_abs == pytest.approx(1.0)
    assert by_name["Forward_Block_01"].mean_abs == pytest.approx(4.0)
    assert by_name["Backward_Block_01"].calls == 2
    assert report.peak == PeakLayer("Forward_Block_01", "Forward", pytest.approx(4.0))
    assert report.as_stats_field() == {
        "Backward_Block_01": 25.0,
        "Backward_Block_02": 50.0,
        "Forward_Block_01": 100.0,
        "Final_Fusion": 75.0,
    }
    assert report.streams["Backward"].percent_of_peak == pytest.approx(37.5)
    assert report.streams["Backward"].num_layers == 2
    assert report.streams["Fusion"].mean_abs == pytest.approx(3.0)
    # the peak value is a float that can be divided (the seed system's tuple crash)
    assert report.peak is not None and report.peak.value / 2.0 == pytest.approx(2.0)


def test_reset_enabled_and_close() -> None:
    toy = Toy()
    mon = LayerActivityMonitor(toy)
    assert mon.read().empty and mon.read().as_stats_field() == {} and mon.read().peak is None
    toy(torch.ones(2))
    assert not mon.read(reset=True).empty
    assert mon.read().empty
    mon.enabled = False
    toy(torch.ones(2))
    assert mon.read().empty
    mon.enabled = True
    mon.close()
    toy(torch.ones(2))
    assert mon.read().empty


def test_explicit_names_and_unknown_names() -> None:
    toy = Toy()
    mon = LayerActivityMonitor(toy, names=["other", "Final_Fusion"])
    toy(torch.ones(3))
    assert mon.read().as_stats_field() == {"other": 100.0, "Final_Fusion": 3.0}
    with pytest.raises(ValueError, match="'nope' matches no module"):
        LayerActivityMonitor(toy, names=["nope"])
    with pytest.raises(ValueError, match="no layer to watch"):
        LayerActivityMonitor(nn.Linear(2, 2))


def test_reference_model_layers_and_json_field() -> None:
    model = build_model("tiny")
    mon = LayerActivityMonitor(model)
    n = model.num_blocks
    assert len(mon.names) == 2 * n + 1
    with torch.no_grad():
        model(torch.rand(1, 3, 3, 8, 8))
    report = mon.read()
    assert all(r.calls == 3 for r in report.layers)  # each block runs once per frame
    assert set(report.streams) == {"Backward", "Forward", "Fusion"}
    assert max(r.percent_of_peak for r in report.layers) == pytest.approx(100.0)
    assert all(0 < r.percent_of_peak <= 100 for r in report.layers)
    field = report.as_stats_field()
    assert json.loads(json.dumps(field)) == field
    # accumulation stays on the device until read(): the sums are tensors, not floats
    with torch.no_grad():
        model(torch.rand(1, 2, 3, 8, 8))
    assert all(isinstance(v, torch.Tensor) for v in mon._sums.values())
    mon.close()
