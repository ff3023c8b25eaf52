"""Shared helpers of the checkpoint tests."""

from __future__ import annotations

from typing import Any

import torch


def make_state(step: int, n: int = 64) -> dict[str, Any]:
    """A small state whose every part encodes ``step``, so a mixed-up restore is detected."""
    return {
        "step": step,
        "model": {"w": torch.full((n,), float(step)), "b": torch.arange(n) + step},
        "optimizer": {
            "lr": [1e-4 * step],
            "state": {0: {"exp_avg": torch.full((4,), float(-step))}},
        },
        "note": f"state of step {step}",
    }


def check_state(step: int, state: dict[str, Any], n: int = 64) -> None:
    assert state["step"] == step
    assert torch.equal(state["model"]["w"], torch.full((n,), float(step)))
    assert torch.equal(state["model"]["b"], torch.arange(n) + step)
    assert torch.equal(state["optimizer"]["state"][0]["exp_avg"], torch.full((4,), float(-step)))
    assert state["note"] == f"state of step {step}"
