"""Real processes: a child saving in a loop is SIGKILLed at random moments, dozens of times.

After every kill ``restore()`` must return a complete state whose step matches its manifest,
and the restored step never goes backwards (retention keeps the latest valid checkpoint).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vsrkit.checkpoint import CheckpointManager, CheckpointNotFoundError, LatestN

from .helpers import check_state, make_state

KILLS = 36


def _child(directory: str, async_save: bool, seed: int) -> None:
    import torch

    torch.set_num_threads(1)
    rng = random.Random(seed)
    mgr = CheckpointManager(directory, keep=LatestN(2), async_save=async_save, min_free_mb=0)
    try:
        step, _ = mgr.restore()
    except CheckpointNotFoundError:
        step = 0
    while True:  # until SIGKILL
        step += 1
        tag = "emergency" if rng.random() < 0.1 else None
        mgr.save(
            step,
            make_state(step, n=rng.choice([16, 20_000, 1_000_000])),
            metrics={"loss": 1 / step},
            tag=tag,
        )


def _n(state: dict) -> int:
    return int(state["model"]["w"].numel())


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_last_good_checkpoint(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # a real process, started without re-importing torch
    rng = random.Random(1234)
    last = 0
    restored_steps = []
    for i in range(KILLS):
        proc = ctx.Process(target=_child, args=(str(tmp_path), i % 3 == 2, i), daemon=True)
        proc.start()
        time.sleep(rng.uniform(0.05, 0.35))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
        mgr = CheckpointManager(tmp_path)
        try:
            step, state = mgr.restore()
        except CheckpointNotFoundError:
            assert last == 0, "a checkpoint was committed before and is now lost"
            continue
        check_state(step, state, n=_n(state))
        assert mgr.manifest(step)["step"] == step
        assert step >= last
        last = step
        restored_steps.append(step)
        assert not list(tmp_path.glob("*.corrupt")), "a committed checkpoint was damaged"
        # the killed save's temp file at most; earlier ones were removed by the next child
        assert len(list(tmp_path.glob(".tmp-*"))) <= 1
    assert len(restored_steps) >= KILLS - 3
    assert last > KILLS  # the children made progress across kills


def test_sigterm_in_a_real_process_gives_an_emergency_save_with_the_real_step(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from vsrkit.checkpoint import CheckpointManager
        from vsrkit.loop import StopSignal
        import torch
        mgr = CheckpointManager({str(tmp_path)!r}, min_free_mb=0)
        with StopSignal() as stop:
            step = 0
            print("ready", flush=True)
            while True:
                step += 1
                time.sleep(0.001)  # a training step
                if stop.requested:
                    mgr.save(step, {{"step": step, "w": torch.ones(3)}}, tag="emergency")
                    print("saved", step, stop.signal_name, flush=True)
                    break
        mgr.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    _, step_s, name = out.split()
    assert name == "SIGTERM" and int(step_s) > 1
    mgr = CheckpointManager(tmp_path)
    (rec,) = mgr.list()
    assert (rec.step, rec.type) == (int(step_s), "emergency")
    assert rec.filename == f"checkpoint_step_{int(step_s):07d}_emergency.pth"
    step, state = mgr.restore()
    assert step == state["step"] == int(step_s)
