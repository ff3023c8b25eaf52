"""Shared helpers of the inference tests: small models whose every part acts, a trained run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vsrkit.vsr import BidirectionalRecurrentVSR, build_model

# A run of a few seconds that still writes regular and best checkpoints and validates.
TINY_RUN = {
    "num_frames": 3,
    "crop_size": 32,
    "batch_size": 2,
    "train_clips": 4,
    "val_clips": 2,
    "warmup_steps": 2,
    "log_every": 5,
    "val_every": 5,
    "ckpt_every": 5,
    "steps": 10,
    "monitor": False,
    "tensorboard": False,
    "terminal_view": False,
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="120")
    return env


def perturbed_model(seed: int = 0, preset: str = "tiny") -> BidirectionalRecurrentVSR:
    """A model whose flow, trunks and output layer all contribute (none starts at zero)."""
    torch.manual_seed(seed)
    model = build_model(preset)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder written by ``vsrkit train`` (checkpoints at steps 5 and 10)."""
    root = tmp_path_factory.mktemp("infer-run")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY_RUN))
    run = root / "run"
    cmd = [sys.executable, "-m", "vsrkit", "train", "--config", str(config), "--run-dir", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run
