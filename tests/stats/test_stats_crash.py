"""A writer process killed with SIGKILL in the middle of a write leaves the previous files
intact and never a half file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsrkit.stats import load_statistics, validate_statistics

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = r"""
import os, sys, time
from vsrkit.stats import DeferredStatsWriter, MetricsSnapshot

run_dir, mode, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
snap = MetricsSnapshot()
w = DeferredStatsWriter(run_dir, snapshot=snap, training_fields=["l1_loss_value"],
                        max_delay_steps=None, max_delay_seconds=None)
big = {f"Layer_{i:06d}": i * 0.25 for i in range(layers)}  # makes every write take a while
real_fsync, armed = os.fsync, [False]

def fsync(fd):
    if armed[0]:
        print("IN_FSYNC", flush=True)  # the temp file is written, not yet renamed
        time.sleep(60)
    real_fsync(fd)

os.fsync = fsync
for k in range(1, 10_000):
    step = 10 * k
    if mode == "overwrite" and k == 4:
        step, armed[0] = 20, True  # rewrite an existing file with new values
    w.request(step, {"quality_ki_value": k / 1000})
    snap.update(step, layer_activity_map=big)
    w.observe(step + 1, {"l1_loss_value": k / 100})
    print("SAVED", step, k, flush=True)
"""


def _start(run_dir: Path, mode: str, layers: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), mode, str(layers)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _check_folder(run_dir: Path, saved: dict[int, int]) -> None:
    files = sorted(run_dir.glob("Statistik_*.json"))
    for path in files:  # every visible file is whole and valid
        validate_statistics(json.loads(path.read_text(encoding="utf-8")), source=path.name)
    for step, k in saved.items():  # every file reported saved is intact
        doc = json.loads((run_dir / f"Statistik_{step}.json").read_text(encoding="utf-8"))
        assert (doc["quality_ki_value"], doc["l1_loss_value"]) == (k / 1000, k / 100)
    assert [r["step_current"] for r in load_statistics(run_dir)] == sorted(
        int(p.stem.split("_")[1]) for p in files
    )


def test_kill_during_overwrite_keeps_the_previous_file(tmp_path: Path) -> None:
    proc = _start(tmp_path, "overwrite", 2000)
    saved: dict[int, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("SAVED"):
            _, step, k = line.split()
            saved[int(step)] = int(k)
        elif line.strip() == "IN_FSYNC":
            break
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert saved == {10: 1, 20: 2, 30: 3}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-Statistik_20")]
    assert leftovers, "the child was not killed in the middle of writing Statistik_20.json"
    _check_folder(tmp_path, saved)  # Statistik_20.json still holds k=2, whole


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_kill_at_a_random_moment_never_leaves_a_half_file(tmp_path: Path, delay: float) -> None:
    proc = _start(tmp_path, "loop", 15_000)
    saved: dict[int, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        _, step, k = line.split()
        saved[int(step)] = int(k)
        if len(saved) == 2:
            break
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _check_folder(tmp_path, saved)
