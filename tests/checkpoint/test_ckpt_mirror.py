"""Checkpoint mirror: background copies, restore fallback, mirrored retention, failures, kills."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import vsrkit.checkpoint.mirror as mirror_mod
from vsrkit.checkpoint import (
    CheckpointCorruptError,
    CheckpointManager,
    CheckpointMirror,
    CheckpointMirrorError,
    CheckpointNotFoundError,
    LatestN,
    read_manifest,
    scan_directory,
)
from vsrkit.cli import cli

from .helpers import check_state, make_state


def _committed(directory: Path) -> list[str]:
    return [r.filename for r in scan_directory(directory) if r.status == "committed"]


def _pth(step: int) -> str:
    return f"checkpoint_step_{step:07d}.pth"


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


def _saved(tmp_path: Path, steps: tuple[int, ...] = (100, 200, 300), **kw: Any) -> Path:
    mirror = tmp_path / "mirror"
    with CheckpointManager(tmp_path / "primary", mirror_dir=mirror, run_id="r", **kw) as mgr:
        for s in steps:
            mgr.save(s, make_state(s), metrics={"quality": s / 1000})
    return mirror


@contextlib.contextmanager
def _failing_mirror_writes(code: int, *, at_open: bool) -> Iterator[list[str]]:
    """Make the mirror's temp files fail with ``code`` (at open, or at the first write)."""
    real = mirror_mod.atomic_open
    tried: list[str] = []

    @contextlib.contextmanager
    def failing(path: Any, mode: str = "wb", *, fsync: bool = True) -> Iterator[Any]:
        tried.append(Path(path).name)
        if at_open:
            raise OSError(code, os.strerror(code), str(path))
        with real(path, mode, fsync=fsync) as fh:

            class Full:
                def write(self, data: Any) -> int:
                    fh.write(bytes(memoryview(data)[:10]))  # a partial write, then the error
                    raise OSError(code, os.strerror(code))

                def __getattr__(self, name: str) -> Any:
                    return getattr(fh, name)

            yield Full()

    mirror_mod.atomic_open = failing  # type: ignore[assignment]
    try:
        yield tried
    finally:
        mirror_mod.atomic_open = real  # type: ignore[assignment]


# ---------------------------------------------------------------- copies and restore
def test_each_commit_is_copied_with_the_same_bytes_and_manifest(tmp_path: Path) -> None:
    mirror = _saved(tmp_path, (100, 200))
    primary = tmp_path / "primary"
    assert _committed(mirror) == [_pth(100), _pth(200)]
    for step in (100, 200):
        name = _pth(step)
        assert (mirror / name).read_bytes() == (primary / name).read_bytes()
        m = read_manifest(mirror / name.replace(".pth", ".json"))
        assert m == read_manifest(primary / name.replace(".pth", ".json"))
        assert m["sha256"] == hashlib.sha256((mirror / name).read_bytes()).hexdigest()
    assert _no_temp_files(mirror)


def test_primary_deleted_restores_from_the_mirror(tmp_path: Path) -> None:
    mirror = _saved(tmp_path)
    shutil.rmtree(tmp_path / "primary")
    mgr = CheckpointManager(tmp_path / "primary", mirror_dir=mirror)
    assert mgr.list() == []  # list() shows the primary only
    assert mgr.latest_step() == 300
    assert mgr.manifest(300)["run_id"] == "r"
    step, state = mgr.restore()
    assert step == 300
    check_state(300, state)
    assert mgr.run_id == "r"  # resuming the newest checkpoint continues the run
    step, state = mgr.restore(200)
    check_state(200, state)
    with pytest.raises(CheckpointNotFoundError, match="step 250"):
        mgr.restore(250)


def test_truncated_primary_is_restored_from_the_mirror_not_the_older_step(
    tmp_path: Path,
) -> None:
    mirror = _saved(tmp_path)
    newest = tmp_path / "primary" / _pth(300)
    newest.write_bytes(newest.read_bytes()[:1000])
    step, state = CheckpointManager(tmp_path / "primary", mirror_dir=mirror).restore()
    assert step == 300
    check_state(300, state)
    # without the mirror the same folder falls back to the previous step
    assert CheckpointManager(tmp_path / "primary").restore()[0] == 200


def test_damaged_primary_with_right_size_falls_back_to_the_mirror_copy(tmp_path: Path) -> None:
    mirror = _saved(tmp_path)
    primary = tmp_path / "primary"
    data = bytearray((primary / _pth(300)).read_bytes())
    data[-60:] = bytes(60)  # same size, unloadable zip
    (primary / _pth(300)).write_bytes(bytes(data))
    mgr = CheckpointManager(primary, mirror_dir=mirror)
    assert mgr.restore(300)[0] == 300  # explicit step: the mirror copy, nothing renamed
    assert (primary / _pth(300)).exists()
    step, state = mgr.restore()
    assert step == 300
    check_state(300, state)
    assert (primary / (_pth(300) + ".corrupt")).exists()  # the bad primary is quarantined
    assert _committed(mirror)[-1] == _pth(300)


def test_mirror_copy_is_verified_by_sha256_before_loading(tmp_path: Path) -> None:
    mirror = _saved(tmp_path)
    shutil.rmtree(tmp_path / "primary")
    data = bytearray((mirror / _pth(300)).read_bytes())
    data[data.index(torch.full((64,), 300.0).numpy().tobytes()) + 8] ^= 0x01  # loads silently
    (mirror / _pth(300)).write_bytes(bytes(data))
    mgr = CheckpointManager(tmp_path / "primary", mirror_dir=mirror)
    with pytest.raises(CheckpointCorruptError, match="sha256"):
        mgr.restore(300)
    step, state = mgr.restore()
    assert step == 200
    check_state(200, state)
    assert (mirror / (_pth(300) + ".corrupt")).exists()


def test_a_mirror_copy_of_another_commit_is_not_used_as_a_fallback(tmp_path: Path) -> None:
    mirror = _saved(tmp_path, (100, 200))
    primary = tmp_path / "primary"
    # step 200 saved again by a later run; its mirror copy is still the old commit
    later = CheckpointManager(primary, run_id="later")
    later.save(200, make_state(7))
    data = bytearray((primary / _pth(200)).read_bytes())
    data[-60:] = bytes(60)
    (primary / _pth(200)).write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError):
        CheckpointManager(primary, mirror_dir=mirror).restore(200)


def test_async_saves_are_mirrored_and_wait_covers_both(tmp_path: Path) -> None:
    with CheckpointManager(
        tmp_path / "p", mirror_dir=tmp_path / "m", async_save=True, keep=LatestN(2)
    ) as mgr:
        for s in range(1, 6):
            mgr.save(s, make_state(s))
        mgr.wait()
        assert _committed(tmp_path / "m") == _committed(tmp_path / "p") == [_pth(4), _pth(5)]


def test_save_never_waits_for_the_mirror_and_copies_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, copied = threading.Event(), []
    real = CheckpointMirror._copy

    def slow_copy(self: CheckpointMirror, job: Any) -> None:
        gate.wait(30)
        copied.append(job.name)
        real(self, job)

    monkeypatch.setattr(CheckpointMirror, "_copy", slow_copy)
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m")
    for s in (1, 2, 3, 2):  # step 2 saved again while its first copy still waits in the queue
        mgr.save(s, make_state(s))
    assert mgr.mirror is not None and not mgr.mirror.wait(timeout=0.2)  # stuck, save was not
    assert _committed(tmp_path / "p") == [_pth(1), _pth(2), _pth(3)]
    gate.set()
    mgr.close()
    assert copied == [_pth(1), _pth(3), _pth(2)]  # one copy per name; the queued one replaced
    assert _committed(tmp_path / "m") == [_pth(1), _pth(2), _pth(3)]
    check_state(2, torch.load(tmp_path / "m" / _pth(2), weights_only=True))


# ---------------------------------------------------------------- retention
def test_retention_is_mirrored(tmp_path: Path) -> None:
    mirror = _saved(tmp_path, (1, 2, 3, 4, 5), keep=LatestN(2))
    assert _committed(mirror) == _committed(tmp_path / "primary") == [_pth(4), _pth(5)]
    assert sorted(p.name for p in mirror.iterdir()) == [
        "checkpoint_step_0000004.json",
        "checkpoint_step_0000004.pth",
        "checkpoint_step_0000005.json",
        "checkpoint_step_0000005.pth",
    ]


def test_mirror_deletes_only_after_the_newer_copy_committed(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m", keep=LatestN(2))
    mgr.save(1, make_state(1))
    mgr.save(2, make_state(2))
    mgr.wait()
    with _failing_mirror_writes(errno.ENOSPC, at_open=False):
        mgr.save(3, make_state(3))  # primary deletes step 1; its mirror copy fails
        mgr.wait()
    assert _committed(tmp_path / "p") == [_pth(2), _pth(3)]
    assert _committed(tmp_path / "m") == [_pth(1), _pth(2)]  # nothing deleted yet
    mgr.save(4, make_state(4))
    mgr.close()
    assert _committed(tmp_path / "m") == [_pth(4)]  # 1 and 2 deleted after 4 committed
    assert _committed(tmp_path / "p") == [_pth(3), _pth(4)]


def test_mirror_retention_leaves_other_runs_alone(tmp_path: Path) -> None:
    old = CheckpointManager(tmp_path / "m", run_id="old")
    old.save(1, make_state(1))  # another run's step 1, already in the mirror folder
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m", keep=LatestN(1))
    with _failing_mirror_writes(errno.EIO, at_open=True):
        mgr.save(1, make_state(1))  # not mirrored: the mirror's step 1 stays the old run's
        mgr.wait()
    mgr.save(2, make_state(2))  # retention deletes step 1 in the primary
    mgr.close()
    assert _committed(tmp_path / "p") == [_pth(2)]
    assert _committed(tmp_path / "m") == [_pth(1), _pth(2)]
    assert read_manifest(tmp_path / "m" / "checkpoint_step_0000001.json")["run_id"] == "old"


@settings(max_examples=12)
@given(
    steps=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    keep=st.integers(1, 3),
    tags=st.lists(st.sampled_from([None, None, "best", "emergency"]), min_size=8, max_size=8),
)
def test_after_wait_the_mirror_holds_exactly_the_primary_checkpoints(
    steps: list[int], keep: int, tags: list[str | None]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        p, m = Path(d) / "p", Path(d) / "m"
        with CheckpointManager(p, mirror_dir=m, keep=LatestN(keep), min_free_mb=0) as mgr:
            for s, tag in zip(steps, tags, strict=False):
                mgr.save(s, {"s": torch.tensor([s])}, tag=tag)
        assert _committed(m) == _committed(p)
        for name in _committed(p):
            assert (m / name).read_bytes() == (p / name).read_bytes()
        assert _no_temp_files(m)


# ---------------------------------------------------------------- failures
@pytest.mark.parametrize(
    ("code", "at_open"),
    [(errno.ENOSPC, False), (errno.EROFS, True), (errno.EACCES, True)],
)
def test_failing_mirror_keeps_the_primary_and_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, code: int, at_open: bool
) -> None:
    name = errno.errorcode[code]
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m", run_id="r")
    mgr.save(1, make_state(1))
    mgr.wait()
    with caplog.at_level(logging.ERROR), _failing_mirror_writes(code, at_open=at_open) as tried:
        path = mgr.save(2, make_state(2))  # does not raise
        mgr.wait()  # does not raise either (mirror_strict=False)
    assert tried == [_pth(2)]
    (err,) = mgr.mirror_errors
    assert isinstance(err, CheckpointMirrorError)
    assert err.filename == _pth(2) and name in str(err) and "primary copy" in str(err)
    assert any(name in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert path.exists() and _committed(tmp_path / "p") == [_pth(1), _pth(2)]
    assert _committed(tmp_path / "m") == [_pth(1)]
    assert _no_temp_files(tmp_path / "m")
    step, state = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m").restore(verify=True)
    assert step == 2
    check_state(2, state)
    mgr.save(3, make_state(3))  # the mirror works again once the disk is back
    mgr.close()
    assert _committed(tmp_path / "m") == [_pth(1), _pth(3)]
    assert len(mgr.mirror_errors) == 1


def test_no_thread_for_the_mirror_is_reported_not_raised_and_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m", keep=LatestN(1))
    mgr.save(1, make_state(1))
    mgr.wait()

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(mirror_mod.threading.Thread, "start", no_thread)
    mgr.save(2, make_state(2))  # primary deletes step 1; the copy cannot even start
    assert mgr.mirror is not None and mgr.mirror.wait(timeout=5)  # nothing left hanging
    (err,) = mgr.mirror_errors
    assert "can't start new thread" in str(err) and err.filename == _pth(2)
    assert _committed(tmp_path / "m") == [_pth(1)]
    monkeypatch.undo()
    mgr.save(3, make_state(3))
    mgr.close()
    assert _committed(tmp_path / "m") == _committed(tmp_path / "p") == [_pth(3)]


def test_too_little_free_space_in_the_mirror_is_an_error_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "m", min_free_mb=1)
    real = shutil.disk_usage

    def usage(path: Any) -> Any:
        u = real(path)
        return u._replace(free=500_000) if Path(path) == tmp_path / "m" else u

    monkeypatch.setattr(mirror_mod.shutil, "disk_usage", usage)
    mgr.save(1, make_state(1))
    mgr.close()
    (err,) = mgr.mirror_errors
    assert "ENOSPC" in str(err) and "min_free_mb" in str(err)
    assert list((tmp_path / "m").iterdir()) == []
    assert _committed(tmp_path / "p") == [_pth(1)]


def test_missing_mirror_drive_is_reported_and_strict_mode_raises_once(tmp_path: Path) -> None:
    (tmp_path / "not_a_drive").write_text("a file where the mount point should be")
    mgr = CheckpointManager(
        tmp_path / "p", mirror_dir=tmp_path / "not_a_drive" / "ckpt", mirror_strict=True
    )
    mgr.save(1, make_state(1))  # never raises for the mirror
    with pytest.raises(CheckpointMirrorError, match="ENOTDIR") as info:
        mgr.wait()
    assert info.value.filename == _pth(1)
    mgr.wait()  # already reported: not raised again
    mgr.save(2, make_state(2))
    mgr.save(3, make_state(3))
    with pytest.raises(CheckpointMirrorError, match="2 mirror copies failed"):
        mgr.close()
    assert len(mgr.mirror_errors) == 3
    assert CheckpointManager(tmp_path / "p").restore()[0] == 3
    # an unreadable mirror never stops a restore either
    step, _ = CheckpointManager(tmp_path / "p", mirror_dir=tmp_path / "not_a_drive").restore()
    assert step == 3


def test_primary_file_changed_after_commit_is_not_mirrored(tmp_path: Path) -> None:
    p = tmp_path / "p"
    with CheckpointManager(p) as mgr:
        mgr.save(1, make_state(1))
    manifest = read_manifest(p / "checkpoint_step_0000001.json")
    data = bytearray((p / _pth(1)).read_bytes())
    data[100] ^= 0xFF  # bit rot between the commit and the copy
    (p / _pth(1)).write_bytes(bytes(data))
    mirror = CheckpointMirror(p, tmp_path / "m")
    mirror.submit(_pth(1), manifest)
    mirror.close()
    (err,) = mirror.errors
    assert "does not match its manifest" in str(err)
    assert list((tmp_path / "m").iterdir()) == []
    with pytest.raises(CheckpointMirrorError, match="closed"):
        mirror.submit(_pth(1), manifest)


def test_mirror_must_be_another_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mirror_dir must differ"):
        CheckpointManager(tmp_path, mirror_dir=tmp_path / "." / "")


def test_cli_verify_and_list_work_on_the_mirror_folder(tmp_path: Path) -> None:
    mirror = _saved(tmp_path, (100, 200))
    result = CliRunner().invoke(cli, ["checkpoints", "verify", str(mirror)])
    assert result.exit_code == 0, result.output
    assert "2 checkpoint(s), 0 corrupt" in result.output
    result = CliRunner().invoke(cli, ["checkpoints", "list", "--json", str(mirror)])
    assert [r["step"] for r in json.loads(result.output)] == [100, 200]


def test_cli_verify_mirror_reports_missing_copies_and_corrupt_ones(tmp_path: Path) -> None:
    mirror = _saved(tmp_path, (100, 200, 300))
    primary = tmp_path / "primary"
    args = ["checkpoints", "verify", str(primary), "--mirror", str(mirror)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "NOT MIRRORED" not in result.output and "MIRROR ONLY" not in result.output
    assert "mirror: 3 checkpoint(s), 0 corrupt" in result.output
    (mirror / _pth(100)).unlink()  # a lost copy
    (primary / _pth(300)).unlink()  # primary gone, the mirror still has it
    (primary / "checkpoint_step_0000300.json").unlink()
    data = bytearray((mirror / _pth(200)).read_bytes())
    data[200] ^= 0x01
    (mirror / _pth(200)).write_bytes(bytes(data))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"NOT MIRRORED {_pth(100)}" in lines
    assert f"MIRROR ONLY  {_pth(300)} (restore can use it)" in lines
    assert f"CORRUPT      {_pth(200)}: sha256 differs from the manifest" in lines
    assert "mirror: 2 checkpoint(s), 1 corrupt" in lines


# ---------------------------------------------------------------- real kills
def _child(primary: str, mirror: str, seed: int) -> None:
    torch.set_num_threads(1)
    rng = random.Random(seed)
    mgr = CheckpointManager(primary, mirror_dir=mirror, keep=LatestN(2), min_free_mb=0)
    try:
        step, _ = mgr.restore()
    except CheckpointNotFoundError:
        step = 0
    while True:  # until SIGKILL
        step += 1
        mgr.save(step, make_state(step, n=rng.choice([16, 300_000, 1_000_000])))


@pytest.mark.slow
def test_sigkill_during_mirroring_leaves_only_committed_copies(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(99)
    primary, mirror = tmp_path / "p", tmp_path / "m"
    seen_temp = 0
    for i in range(8):
        proc = ctx.Process(target=_child, args=(str(primary), str(mirror), i), daemon=True)
        proc.start()
        time.sleep(rng.uniform(0.3, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
        seen_temp += any(p.name.startswith(".tmp-") for p in mirror.glob("*"))
        for rec in scan_directory(mirror):
            if rec.manifest_path is None:
                continue  # a file renamed before its manifest: uncommitted, never restored
            manifest = read_manifest(rec.manifest_path)
            assert rec.status == "committed", rec
            assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == manifest["sha256"]
        # the mirror alone restores a complete state
        with tempfile.TemporaryDirectory() as empty:
            step, state = CheckpointManager(empty, mirror_dir=mirror).restore()
        check_state(step, state, n=int(state["model"]["w"].numel()))
    assert seen_temp >= 1, "no kill landed during a mirror copy: the test proved nothing"
    assert len(_committed(mirror)) >= 1
