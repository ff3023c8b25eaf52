"""Fixtures of the monitor tests: a filled MetricsSnapshot and a real server on port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vsrkit.monitor import ActionQueue, MonitorServer
from vsrkit.stats import MetricsSnapshot


@pytest.fixture
def snapshot() -> MetricsSnapshot:
    snap = MetricsSnapshot()
    snap.update(
        120,
        step_current=120,
        step_max=1000,
        epoch_num=2,
        total_loss_value=0.0234,
        l1_loss_value=0.0156,
        ms_loss_value=0.0045,
        learning_rate_value=1e-4,
        l1_weight_current=0.6,
        ms_weight_current=0.4,
        iteration_duration=0.25,
        training_active=True,
        training_paused=False,
        validation_running=False,
        layer_activity_map={"Backward_Block_01": 0.4, "Forward_Block_01": 0.8, "Final_Fusion": 1.7},
    )
    return snap


@pytest.fixture
def server(snapshot: MetricsSnapshot) -> Iterator[MonitorServer]:
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), port=0, max_rate=50) as srv:
        yield srv
