"""GradientMonitor: per-module norms without per-step syncs, frozen and non-finite warnings."""

from __future__ import annotations

import doctest
import json
import logging
import subprocess
import sys

import pytest
import torch

from vsrkit.adaptive import AdaptiveError
from vsrkit.adaptive import gradients as gradients_module
from vsrkit.adaptive.gradients import GradientMonitor, log_gradient_norms
from vsrkit.errors import StateError


class TwoPart(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


def train_steps(net, mon, steps, *, scale=1.0):
    torch.manual_seed(0)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    for _ in range(steps):
        loss = net(torch.randn(16, 4)).pow(2).mean() * scale
        opt.zero_grad()
        loss.backward()
        mon.accumulate()
        opt.step()


def test_norms_are_the_mean_of_per_step_norms():
    net = TwoPart()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    expected = {"encoder": [], "head": []}
    torch.manual_seed(1)
    for _ in range(3):
        net.zero_grad()
        net(torch.randn(5, 4)).sum().backward()
        mon.accumulate()
        for name in expected:
            grads = [p.grad for p in getattr(net, name).parameters()]
            expected[name].append(
                float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            )
    report = mon.read(30)
    assert report.steps == 3 and report.step == 30
    for name, values in expected.items():
        assert report.norms[name] == pytest.approx(sum(values) / 3, rel=1e-5)
    assert report.alerts == [] and report.nonfinite == {"encoder": 0, "head": 0}
    # the interval restarts after a read
    assert mon.read(40).steps == 0


def test_deliberately_frozen_module_is_reported_after_n_checks(caplog):
    net = TwoPart()
    net.encoder.requires_grad_(False)  # the mistake
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head}, zero_checks=3)
    alerts = []
    with caplog.at_level(logging.WARNING, logger="vsrkit.adaptive.gradients"):
        for check in range(1, 6):
            train_steps(net, mon, 2)
            report = mon.read(check * 10)
            alerts.append(report.alerts)
    assert alerts[0] == alerts[1] == []
    assert len(alerts[2]) == 1 and "'encoder'" in alerts[2][0] and "3 checks" in alerts[2][0]
    assert alerts[3] == alerts[4] == []  # warned once per streak
    assert report.zero_streak == {"encoder": 5, "head": 0}
    assert report.norms["encoder"] == 0.0 and report.norms["head"] > 0
    assert sum("frozen by mistake" in r.message for r in caplog.records) == 1
    status = mon.status()
    assert status["gradient_zero_streak"]["encoder"] == 5
    json.dumps(status, allow_nan=False)


def test_module_frozen_on_purpose_is_not_reported():
    net = TwoPart()
    net.encoder.requires_grad_(False)
    mon = GradientMonitor(
        {"encoder": net.encoder, "head": net.head}, frozen=["encoder"], zero_checks=1
    )
    train_steps(net, mon, 2)
    assert mon.read(10).alerts == []


def test_a_gradient_ends_the_streak():
    net = TwoPart()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head}, zero_checks=2)
    net.encoder.requires_grad_(False)
    train_steps(net, mon, 1)
    assert mon.read(1).zero_streak["encoder"] == 1
    net.encoder.requires_grad_(True)
    train_steps(net, mon, 1)
    report = mon.read(2)
    assert report.zero_streak["encoder"] == 0 and report.alerts == []


def test_non_finite_gradient_is_reported_at_once_and_excluded_from_the_mean():
    net = TwoPart()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    train_steps(net, mon, 2)
    net.zero_grad()
    (net(torch.randn(3, 4)).sum() * float("inf")).backward()
    mon.accumulate()
    report = mon.read(7)
    assert report.steps == 3
    assert report.nonfinite["head"] == 1
    assert any("non-finite" in a and "'head'" in a for a in report.alerts)
    assert report.norms["head"] is not None and report.norms["head"] > 0


def test_all_steps_non_finite_gives_none_not_zero():
    net = TwoPart()
    mon = GradientMonitor({"head": net.head})
    net(torch.randn(3, 4)).sum().mul(float("nan")).backward()
    mon.accumulate()
    report = mon.read(1)
    assert report.norms == {"head": None} and report.nonfinite == {"head": 1}


def test_tensorboard_gets_gradients_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vsrkit.stats import TensorBoardLogger

    net = TwoPart()
    net.encoder.requires_grad_(False)
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    tb = TensorBoardLogger(tmp_path)
    for step in (10, 20):
        train_steps(net, mon, 2)
        log_gradient_norms(tb, mon.read(step))
    tb.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "Gradients/head" in tags and "Gradients/encoder" in tags
    assert [e.step for e in acc.Scalars("Gradients/head")] == [10, 20]
    assert all(e.value == 0.0 for e in acc.Scalars("Gradients/encoder"))
    log_gradient_norms(TensorBoardLogger(tmp_path / "off", is_main=False), mon.read(30))
    assert not (tmp_path / "off").exists()


def test_state_round_trips_through_json_and_keeps_settings():
    net = TwoPart()
    net.encoder.requires_grad_(False)
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head}, zero_checks=4)
    for step in (1, 2):
        train_steps(net, mon, 1)
        mon.read(step)
    state = json.loads(json.dumps(mon.state_dict(), allow_nan=False))
    other = GradientMonitor({"encoder": net.encoder, "head": net.head}, zero_checks=2)
    other.load_state_dict(state)
    assert other.state_dict() == mon.state_dict() and other.zero_checks == 2
    train_steps(net, other, 1)
    assert other.read(3).zero_streak["encoder"] == 3


@pytest.mark.parametrize(
    "state, match",
    [
        ({"version": 2, "zero_streak": {}, "checks": 0}, "version"),
        ({"version": 1, "checks": 0}, "zero_streak"),
        ({"version": 1, "zero_streak": {"head": 1}, "checks": 0}, "exactly the modules"),
        ({"version": 1, "zero_streak": {"encoder": -1, "head": 0}, "checks": 0}, "encoder"),
    ],
)
def test_bad_state_is_refused_with_the_key(state, match):
    net = TwoPart()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    with pytest.raises(StateError, match=f"GradientMonitor state: .*{match}"):
        mon.load_state_dict(state)


def test_bad_settings_name_the_field():
    net = TwoPart()
    with pytest.raises(AdaptiveError, match="non-empty mapping"):
        GradientMonitor({})
    with pytest.raises(AdaptiveError, match="torch module"):
        GradientMonitor({"x": 3})
    with pytest.raises(AdaptiveError, match="unknown module"):
        GradientMonitor({"head": net.head}, frozen=["body"])
    with pytest.raises(AdaptiveError, match="zero_checks"):
        GradientMonitor({"head": net.head}, zero_checks=0)
    with pytest.raises(AdaptiveError, match="no parameters"):
        GradientMonitor({"relu": torch.nn.ReLU()})


def test_accumulate_makes_no_host_sync(monkeypatch):
    net = TwoPart()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    net(torch.randn(2, 4)).sum().backward()

    def boom(*a, **k):
        raise AssertionError("host sync in accumulate")

    monkeypatch.setattr(torch.Tensor, "item", boom)
    monkeypatch.setattr(torch.Tensor, "tolist", boom)
    monkeypatch.setattr(torch.Tensor, "__bool__", boom)
    mon.accumulate()
    monkeypatch.undo()
    assert mon.read(1).steps == 1


def test_import_does_not_import_torch():
    code = "import sys, vsrkit.adaptive.gradients; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docstring_example_runs():
    result = doctest.testmod(gradients_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accumulate_on_cuda_makes_no_device_sync():
    net = TwoPart().cuda()
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head})
    net(torch.randn(8, 4, device="cuda")).sum().backward()
    mon.accumulate()  # warm-up: allocates the sums
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mon.accumulate()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    report = mon.read(1)
    assert report.steps == 2 and report.norms["head"] > 0


def test_mixed_precision_modules_are_measured_alike():
    low, high = torch.nn.Linear(3, 3).to(torch.bfloat16), torch.nn.Linear(3, 1)
    high(low(torch.randn(2, 3).bfloat16()).float()).sum().backward()
    mon = GradientMonitor({"low": low, "high": high})
    mon.accumulate()
    norms = mon.read(1).norms
    for name, module in (("low", low), ("high", high)):
        flat = torch.cat([p.grad.float().flatten() for p in module.parameters()])
        assert norms[name] == pytest.approx(float(flat.norm()), rel=1e-2)


def test_the_web_monitor_serves_the_figures():
    import urllib.request

    from vsrkit.monitor import MonitorServer
    from vsrkit.stats import MetricsSnapshot

    net = TwoPart()
    net.encoder.requires_grad_(False)
    mon = GradientMonitor({"encoder": net.encoder, "head": net.head}, zero_checks=1)
    train_steps(net, mon, 2)
    mon.read(10)
    server = MonitorServer(snapshot=MetricsSnapshot(), actions=None, extra=mon.status, port=0)
    server.start()
    try:
        req = urllib.request.Request(
            server.url + "api/status", headers={"X-Vsrkit-Token": server.token}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
    finally:
        server.stop()
    assert doc["gradient_norms"]["head"] > 0 and doc["gradient_norms"]["encoder"] == 0.0
    assert doc["gradient_zero_streak"] == {"encoder": 1, "head": 0}
    assert "'encoder'" in doc["gradient_alerts"][0]
