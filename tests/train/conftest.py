"""Helpers for the end-to-end tests: run ``vsrkit train`` as a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Small enough for a test, big enough to exercise every part of the loop.
TINY = {
    "num_frames": 3,
    "crop_size": 32,
    "batch_size": 2,
    "train_clips": 8,
    "val_clips": 1,
    "warmup_steps": 2,
    "log_every": 5,
    "val_every": 10,
    "ckpt_every": 10,
    "monitor": False,
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="120")
    return env


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def train_cmd(config: Path, run_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vsrkit",
        "train",
        "--config",
        str(config),
        "--run-dir",
        str(run_dir),
        *args,
    ]


def run_train(
    config: Path, run_dir: Path, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        train_cmd(config, run_dir, *args),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


def wait_for(
    predicate: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 180
) -> None:
    """Poll until ``predicate()`` holds; fail if the child exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"child exited with {proc.returncode} before the condition held:\n{out}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the child")


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """A TensorBoard scalar read back from the run's event files (last value per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}
