"""The two integration examples run as scripts (as in CI) and leave a complete run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(name, *args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_lightning_example_trains_saves_and_resumes(tmp_path):
    stdout = run_example("lightning_example.py", "--out", tmp_path, "--steps", 40)
    assert "first fit: step 40" in stdout
    assert "resumed fit: step 60 (intervals from 45)" in stdout
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pth"))
    assert ckpts == ["checkpoint_step_0000040.pth", "checkpoint_step_0000060.pth"]
    stats = sorted(tmp_path.glob("Statistik_*.json"))
    assert stats and all(json.loads(p.read_text())["quality_ki_value"] > 0 for p in stats)
    assert (tmp_path / "runtime_config.json").exists() and (tmp_path / "tensorboard").is_dir()


def test_accelerate_example_trains_saves_and_resumes(tmp_path):
    run_example("accelerate_example.py", "--out", tmp_path, "--steps", 40)
    stdout = run_example("accelerate_example.py", "--out", tmp_path, "--steps", 60)
    assert "resumed from step 40" in stdout and "step 60: loss" in stdout
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pth"))
    assert ckpts == ["checkpoint_step_0000040.pth", "checkpoint_step_0000060.pth"]
    docs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("Statistik_*.json"))]
    assert [d["step_current"] for d in sorted(docs, key=lambda d: d["step_current"])] == [
        10,
        30,
        50,
    ]
    assert all(d["complete"] for d in docs)
