"""End-to-end runs of ``vsrkit train`` on the CPU, in real child processes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.conftest import child_env, run_train, scalars, train_cmd, wait_for
from vsrkit.checkpoint import CheckpointManager, read_manifest
from vsrkit.stats import LOSS_FIELDS, load_statistics


def test_tiny_run_writes_checkpoints_statistics_and_events(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = run_train(tiny_config, run, "--steps", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run folder {run}" in proc.stdout

    records = CheckpointManager(run / "checkpoints").list()
    assert {r.step for r in records if r.type == "regular"} == {10, 20}
    assert all(r.valid for r in records)
    assert (run / "runtime_config_step_10.json").is_file()

    stats = {d["step_current"]: d for d in load_statistics(run)}
    first = stats[10]
    assert first["complete"] is True
    for field in LOSS_FIELDS:  # fresh: measured after the validation, never a 0 placeholder
        assert first["measured_at_step"][field] > 10
        assert first[field] is not None and first[field] > 0
    assert 0 < first["quality_ki_value"] <= 1
    assert first["learning_rate_value"] > 0

    losses = scalars(run, "Loss/total")
    assert sorted(losses) == [5, 10, 15, 20]
    assert all(v > 0 for v in losses.values())
    assert "Statistics saved: Statistik_10.json" in (run / "training.log").read_text()


def test_sigkill_then_resume_continues_the_same_losses(tiny_config: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert run_train(tiny_config, reference, "--steps", "30").returncode == 0

    run = tmp_path / "killed"
    child = subprocess.Popen(
        train_cmd(tiny_config, run, "--steps", "30"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    manifest = run / "checkpoints" / "checkpoint_step_0000020.json"
    wait_for(manifest.is_file, child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    resumed = run_train(tiny_config, run, "--steps", "30", "--resume", "latest")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    start = int(re.search(r"^resumed from step (\d+)", resumed.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert start >= 20

    want, got = scalars(reference, "Loss/total"), scalars(run, "Loss/total")
    assert sorted(got) == sorted(want) == [5, 10, 15, 20, 25, 30]
    for step in want:  # bit-identical on the CPU, before and after the resume point
        assert got[step] == want[step], (step, got[step], want[step])
    assert scalars(run, "LR") == scalars(reference, "LR")


def test_sigterm_writes_an_emergency_checkpoint_with_the_real_step(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    child = subprocess.Popen(
        train_cmd(tiny_config, run, "--steps", "100000"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for((run / "Statistik_10.json").is_file, child)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0, out

    emergency = [r for r in CheckpointManager(run / "checkpoints").list() if r.type == "emergency"]
    assert len(emergency) == 1
    rec = emergency[0]
    assert rec.valid and rec.step > 10
    assert read_manifest(rec.manifest_path)["step"] == rec.step
    assert f"stopped at step {rec.step}" in out
    log = (run / "training.log").read_text()
    assert f"stopping at step {rec.step} after SIGTERM" in log
    _, state = CheckpointManager(run / "checkpoints").restore()
    assert set(state) >= {"model", "optimizer", "rng", "train", "vsrkit"}


def test_runtime_max_lr_change_applies_at_next_poll_and_survives_resume(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    child = subprocess.Popen(
        train_cmd(tiny_config, run, "--steps", "40"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for((run / "checkpoints" / "checkpoint_step_0000010.json").is_file, child)
    cli = subprocess.run(
        [sys.executable, "-m", "vsrkit", "config", "set", str(run), "max_lr=1e-5"],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    out, _ = child.communicate(timeout=180)
    assert child.returncode == 0, out

    log = (run / "training.log").read_text()
    applied = [line for line in log.splitlines() if "Config Update: max_lr" in line]
    assert applied, log
    lrs = scalars(run, "LR")
    change_step = min(s for s, v in lrs.items() if v <= 1e-5 * 1.0001)
    assert 10 < change_step <= 30  # the next poll step (every 10) after the edit
    assert all(v <= 1e-5 * 1.0001 for s, v in lrs.items() if s >= change_step)
    assert json.loads((run / "runtime_config_step_40.json").read_text())["max_lr"] == 1e-5

    # resume from step 40 with the startup max_lr unchanged: the snapshot's value wins
    (run / "runtime_config.json").unlink()
    resumed = run_train(tiny_config, run, "--steps", "50", "--resume", "latest")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lrs = scalars(run, "LR")
    assert lrs[45] <= 1e-5 * 1.0001 and lrs[50] <= 1e-5 * 1.0001


def test_bad_flags_give_one_line_and_exit_code_2(tmp_path: Path) -> None:
    cases = [
        (["--steps", "0"], "--steps"),
        (["--data", str(tmp_path / "missing")], "is not a folder"),
        (["--resume", "latest"], "needs --run-dir"),
        (["--device", "tpu"], "--device"),
    ]
    if not torch.cuda.is_available():  # a CPU machine: --device cuda is a setting it lacks
        cases.append((["--device", "cuda", "--run-dir", str(tmp_path / "r")], "--device cuda"))
    for args, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "vsrkit", "train", *args],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before any run folder is made


@pytest.mark.skipif(
    shutil.which("torchrun") is None and sys.platform != "linux",
    reason="needs torch.distributed.run",
)
def test_torchrun_two_processes_on_gloo_end_with_identical_weights(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "vsrkit",
        "train",
        "--config",
        str(tiny_config),
        "--run-dir",
        str(run),
        "--steps",
        "10",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (run / "training.log").read_text()
    assert "world size 2" in log
    assert "weights identical on 2 ranks" in log
    assert (run / "checkpoints" / "checkpoint_step_0000010.json").is_file()


def test_mirror_dir_gets_every_checkpoint_and_resume_uses_it(
    tiny_config: Path, tmp_path: Path
) -> None:
    run, mirror = tmp_path / "run", tmp_path / "mirror"
    first = run_train(tiny_config, run, "--steps", "20", "--mirror-dir", str(mirror))
    assert first.returncode == 0, first.stdout + first.stderr
    assert {r.step for r in CheckpointManager(mirror).list()} == {10, 20}
    for path in (run / "checkpoints").glob("checkpoint_step_*"):
        path.unlink()  # the primary copies are gone
    resumed = run_train(
        tiny_config, run, "--steps", "30", "--resume", "latest", "--mirror-dir", str(mirror)
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from step 20" in resumed.stdout


def test_sigkill_between_a_validation_and_its_statistics_file_writes_that_file_on_resume(
    tmp_path: Path,
) -> None:
    """The file of a validation waits for losses measured after it; a run killed in between
    keeps the request in its checkpoint, and the resumed run writes the file, complete."""
    from tests.train.conftest import TINY

    config = tmp_path / "tiny.json"  # the file for step 10 waits for the interval at step 30
    config.write_text(json.dumps({**TINY, "log_every": 30, "val_every": 10, "ckpt_every": 10}))
    run = tmp_path / "run"
    child = subprocess.Popen(
        train_cmd(config, run, "--steps", "40"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for((run / "checkpoints" / "checkpoint_step_0000010.json").is_file, child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    stats_10 = run / "Statistik_10.json"
    assert not stats_10.exists(), "killed too late: the file of step 10 was already written"
    quality = scalars(run, "Quality/quality_ki_value")[10]  # what the validation measured

    resumed = run_train(config, run, "--steps", "40", "--resume", "latest")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    start = int(re.search(r"^resumed from step (\d+)", resumed.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert start in (10, 20)
    doc = json.loads(stats_10.read_text())
    assert doc["complete"] is True and doc["stale_fields"] == []
    assert doc["quality_ki_value"] == pytest.approx(quality, rel=1e-6)
    for field in LOSS_FIELDS:  # measured by the resumed run, after the validation
        assert doc[field] is not None and doc["measured_at_step"][field] == 30
    assert doc["learning_rate_value"] is not None
    assert "Statistics saved: Statistik_10.json" in (run / "training.log").read_text()
    assert sorted(d["step_current"] for d in load_statistics(run)) == [10, 20, 30, 40]
