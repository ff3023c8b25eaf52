"""Snapshots and resume: the settings come back exactly, after the optimizer and scheduler."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from rc_helpers import FakeGroup, edit, live_doc, read_jsonl

from vsrkit.config import RuntimeConfigManager, example_settings, snapshot_name


def make_training(settings: dict[str, Any]) -> tuple[torch.optim.Optimizer, Any]:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=settings["max_lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=settings["min_lr"])
    return opt, sched


def apply(settings: dict[str, Any], opt: torch.optim.Optimizer, sched: Any) -> None:
    """What the loop does with accepted changes (the manager never touches these)."""
    sched.eta_min = settings["min_lr"]
    sched.base_lrs = [settings["max_lr"] for _ in opt.param_groups]


def first_run(run_dir: Path, tmp: Path, *, edit_after_checkpoint: bool) -> Path:
    """Train 30 steps: a web change at step 10, a checkpoint at 20, a file edit at 30."""
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    opt, sched = make_training(mgr.current)
    for step in range(1, 31):
        if step == 5:
            assert mgr.submit({"min_lr": 5e-6, "plateau_patience": 300}).accepted
        if step == 25 and edit_after_checkpoint:
            edit(run_dir, min_lr=8e-6, max_lr=3e-4)
        if mgr.poll(step):
            apply(mgr.current, opt, sched)
        opt.step()
        sched.step()
        if step == 20:
            ckpt = tmp / "checkpoint_step_20.pth"
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, ckpt)
            assert mgr.snapshot(20).name == snapshot_name(20)
    return ckpt


@pytest.mark.parametrize("edit_after_checkpoint", [False, True])
def test_resume_restores_snapshot_after_the_scheduler(
    run_dir: Path, tmp_path: Path, edit_after_checkpoint: bool
) -> None:
    ckpt = first_run(run_dir, tmp_path, edit_after_checkpoint=edit_after_checkpoint)
    state = torch.load(ckpt, weights_only=True)
    assert state["sched"]["eta_min"] == 5e-6  # the scheduler carries the value of step 20

    mgr = RuntimeConfigManager(run_dir, initial=example_settings())  # startup values again
    opt, sched = make_training(mgr.current)
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    changes = mgr.restore_snapshot(20, step=20)  # after the scheduler: it cannot revert us
    apply(mgr.current, opt, sched)

    got = [(c.source, c.key, c.old, c.new, c.step) for c in changes]
    expected = [
        ("snapshot", "plateau_patience", 250, 300, 20),
        ("snapshot", "min_lr", 1e-6, 5e-6, 20),
    ]
    if edit_after_checkpoint:  # the live file is newer than the snapshot: a change at 20
        expected += [("file", "max_lr", 1.5e-4, 3e-4, 20), ("file", "min_lr", 5e-6, 8e-6, 20)]
    assert sorted(got) == sorted(expected)
    want_min = 8e-6 if edit_after_checkpoint else 5e-6
    assert sched.eta_min == mgr.get("min_lr") == want_min
    assert sched.base_lrs == [3e-4 if edit_after_checkpoint else 1.5e-4]
    assert live_doc(run_dir) == mgr.current
    resumed = [r for r in read_jsonl(run_dir) if r["step"] == 20]
    assert len(resumed) == len(expected) and all(r["accepted"] for r in resumed)
    assert mgr.poll(30) == []  # nothing left over for the first poll step


def test_restoring_before_the_scheduler_would_be_reverted(run_dir: Path, tmp_path: Path) -> None:
    ckpt = first_run(run_dir, tmp_path, edit_after_checkpoint=True)
    state = torch.load(ckpt, weights_only=True)
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    opt, sched = make_training(mgr.current)
    mgr.restore_snapshot(20, step=20)
    apply(mgr.current, opt, sched)
    sched.load_state_dict(state["sched"])  # wrong order: the old value comes back
    assert sched.eta_min == 5e-6 != mgr.get("min_lr")


def test_missing_snapshot_warns_and_keeps_the_live_file(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RuntimeConfigManager(run_dir, initial=example_settings())
    edit(run_dir, grad_clip=4.0)
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    with caplog.at_level(logging.WARNING, logger="vsrkit.config"):
        changes = mgr.restore_snapshot(4000, step=4000)
    assert any("no config snapshot" in m and snapshot_name(4000) in m for m in caplog.messages)
    assert [(c.source, c.key, c.new, c.step) for c in changes] == [("file", "grad_clip", 4.0, 4000)]
    assert mgr.get("grad_clip") == 4.0


def test_unusable_snapshot_is_recorded_and_skipped(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    bad = run_dir / snapshot_name(10)
    bad.write_text(json.dumps(example_settings(max_lr=7.0)))
    with caplog.at_level(logging.WARNING, logger="vsrkit.config"):
        assert mgr.restore_snapshot(bad, step=10) == []
    assert mgr.current == example_settings()
    [row] = read_jsonl(run_dir)
    assert (row["source"], row["key"], row["accepted"]) == ("snapshot", None, False)
    assert "max_lr: got 7, expected" in row["reason"]
    (run_dir / snapshot_name(11)).write_text('{"max_lr": ')
    assert mgr.restore_snapshot(11, step=11) == []
    assert read_jsonl(run_dir)[-1]["reason"].startswith(f"{snapshot_name(11)}: Expecting value")


def test_snapshot_startup_keys_yield_to_this_runs_startup(run_dir: Path) -> None:
    first = RuntimeConfigManager(run_dir, initial=example_settings(batch_size=4))
    first.submit({"cooldown_duration": 120})
    first.poll(10)
    first.snapshot(10)
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(batch_size=16, n_blocks=20))
    changes = mgr.restore_snapshot(10, step=10)
    assert [(c.key, c.new) for c in changes] == [("cooldown_duration", 120)]
    assert mgr.get("batch_size") == 16 and live_doc(run_dir)["batch_size"] == 16


def test_restore_is_the_same_on_every_rank(run_dir: Path) -> None:
    first = RuntimeConfigManager(run_dir, initial=example_settings())
    first.submit({"max_lr": 4e-4})
    first.poll(10)
    first.snapshot(10)
    edit(run_dir, plateau_patience=900)
    group = FakeGroup()
    ranks = [
        RuntimeConfigManager(
            run_dir, initial=example_settings(), broadcast=group.broadcast_for(r), is_main=r == 0
        )
        for r in range(2)
    ]
    out: list[Any] = [None, None]

    def resume(rank: int) -> None:
        out[rank] = ranks[rank].restore_snapshot(10, step=10)

    threads = [threading.Thread(target=resume, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out[0] == out[1] and [c.key for c in out[0]] == ["max_lr", "plateau_patience"]
    assert ranks[1].current == ranks[0].current == live_doc(run_dir)


def test_broken_live_file_at_resume_is_recorded_then_replaced(run_dir: Path) -> None:
    first = RuntimeConfigManager(run_dir, initial=example_settings())
    first.submit({"grad_clip": 2.0})
    first.poll(10)
    first.snapshot(10)
    (run_dir / "runtime_config.json").write_text('{"grad_clip": 3.')  # left broken
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    assert [(c.key, c.new) for c in mgr.restore_snapshot(10, step=10)] == [("grad_clip", 2.0)]
    row = read_jsonl(run_dir)[-1]
    assert (row["step"], row["source"], row["key"], row["accepted"]) == (10, "file", None, False)
    assert "not valid JSON" in row["reason"]
    assert live_doc(run_dir) == mgr.current  # the file shows the settings in effect again


def test_resume_without_live_file_takes_the_snapshot(run_dir: Path) -> None:
    """A live file the manager wrote itself from startup values is no user's edit."""
    first = RuntimeConfigManager(run_dir, initial=example_settings())
    assert first.submit({"max_lr": 2e-5}).accepted
    first.poll(10)
    first.snapshot(20)
    (run_dir / "runtime_config.json").unlink()  # e.g. checkpoints copied to a new folder

    resumed = RuntimeConfigManager(run_dir, initial=example_settings())
    changes = resumed.restore_snapshot(20, step=20)
    assert [(c.key, c.new, c.source) for c in changes] == [("max_lr", 2e-5, "snapshot")]
    assert resumed.current["max_lr"] == 2e-5
    assert live_doc(run_dir)["max_lr"] == 2e-5
