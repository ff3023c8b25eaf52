"""Damaged folders and failing disks: restore skips what it cannot trust, saves fail cleanly."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.checkpoint import (
    CheckpointCorruptError,
    CheckpointManager,
    CheckpointNotFoundError,
    CheckpointWriteError,
    LatestN,
)

from .helpers import check_state, make_state


def _three(tmp_path: Path) -> CheckpointManager:
    mgr = CheckpointManager(tmp_path)
    for s in (100, 200, 300):
        mgr.save(s, make_state(s))
    return mgr


def test_truncated_newest_is_renamed_and_the_previous_one_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = _three(tmp_path)
    newest = tmp_path / "checkpoint_step_0000300.pth"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.DEBUG, logger="vsrkit.checkpoint"):
        assert [r.valid for r in mgr.list()] == [True, True, False]  # size disagrees
        assert mgr.latest_step() == 200
        step, state = CheckpointManager(tmp_path).restore()
    assert step == 200
    check_state(200, state)
    assert (tmp_path / "checkpoint_step_0000300.pth.corrupt").exists()
    assert (tmp_path / "checkpoint_step_0000300.json.corrupt").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "checkpoint_step_0000300.pth" in warnings[0]
    assert "the manifest says" in warnings[0] and "renamed to *.corrupt" in warnings[0]
    assert CheckpointManager(tmp_path).restore()[0] == 200  # set aside once: nothing left to do


def test_damaged_zip_with_matching_size_is_caught_by_loading(tmp_path: Path) -> None:
    _three(tmp_path)
    newest = tmp_path / "checkpoint_step_0000300.pth"
    data = bytearray(newest.read_bytes())
    data[-60:] = bytes(60)  # the zip's central directory: same size, unloadable
    newest.write_bytes(bytes(data))
    fresh = CheckpointManager(tmp_path)
    assert fresh.restore()[0] == 200
    assert (tmp_path / "checkpoint_step_0000300.pth.corrupt").exists()
    assert (tmp_path / "checkpoint_step_0000300.json.corrupt").exists()
    assert [r.step for r in fresh.list()] == [100, 200]


def test_explicit_corrupt_step_raises_and_renames_nothing(tmp_path: Path) -> None:
    mgr = _three(tmp_path)
    (tmp_path / "checkpoint_step_0000200.pth").write_bytes(b"garbage" * 100)
    fresh = CheckpointManager(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="step 200"):
        fresh.restore(200)  # size mismatch: not valid at all
    data = (tmp_path / "checkpoint_step_0000100.pth").read_bytes()
    (tmp_path / "checkpoint_step_0000100.pth").write_bytes(b"\0" * len(data))
    with pytest.raises(CheckpointCorruptError, match="checkpoint_step_0000100.pth"):
        fresh.restore(100)
    assert (tmp_path / "checkpoint_step_0000100.pth").exists()
    assert mgr.restore()[0] == 300


def test_bit_flip_in_a_tensor_is_caught_by_verify(tmp_path: Path) -> None:
    # torch.load does not check zip CRCs: a flipped bit in tensor data loads silently.
    # restore(verify=True) compares the sha256 of the manifest and moves on.
    _three(tmp_path)
    newest = tmp_path / "checkpoint_step_0000300.pth"
    data = bytearray(newest.read_bytes())
    data[bytes(data).index(torch.full((64,), 300.0).numpy().tobytes()) + 8] ^= 0x01
    newest.write_bytes(bytes(data))
    assert CheckpointManager(tmp_path).restore(300)[0] == 300  # undetected without verify
    step, state = CheckpointManager(tmp_path).restore(verify=True)
    assert step == 200
    check_state(200, state)
    assert (tmp_path / "checkpoint_step_0000300.pth.corrupt").exists()


def test_missing_manifest_means_uncommitted_and_is_skipped(tmp_path: Path) -> None:
    mgr = _three(tmp_path)
    (tmp_path / "checkpoint_step_0000300.json").unlink()
    rec = mgr.list()[-1]
    assert (rec.step, rec.valid, rec.status) == (300, False, "uncommitted")
    assert mgr.latest_step() == 200
    assert CheckpointManager(tmp_path).restore()[0] == 200
    assert (tmp_path / "checkpoint_step_0000300.pth").exists()  # left for a human, not renamed


def test_garbage_manifest_is_a_mismatch(tmp_path: Path) -> None:
    mgr = _three(tmp_path)
    (tmp_path / "checkpoint_step_0000300.json").write_text("{not json")
    (tmp_path / "checkpoint_step_0000200.json").write_text('{"format": "other"}')
    assert [r.status for r in mgr.list()] == ["committed", "mismatch", "mismatch"]
    assert CheckpointManager(tmp_path).restore()[0] == 100


def test_unreadable_checkpoint_is_skipped_not_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = _three(tmp_path)
    newest = tmp_path / "checkpoint_step_0000300.pth"
    real_load = torch.load

    def load(f: object, *a: object, **k: object) -> object:
        if Path(str(f)) == newest:
            raise PermissionError(errno.EACCES, "Permission denied", str(f))
        return real_load(f, *a, **k)

    monkeypatch.setattr(torch, "load", load)
    assert CheckpointManager(tmp_path).restore()[0] == 200
    assert newest.exists()
    del mgr


def test_legacy_directory_named_like_a_checkpoint_is_unreadable(tmp_path: Path) -> None:
    torch.save(make_state(5), tmp_path / "checkpoint_step_5.pth")
    (tmp_path / "checkpoint_step_9.pth").mkdir()  # open() fails for real, even as root
    step, state = CheckpointManager(tmp_path).restore()
    assert step == 5
    check_state(5, state)


def test_every_checkpoint_corrupt_raises_not_found(tmp_path: Path) -> None:
    (tmp_path / "checkpoint_step_1.pth").write_bytes(b"nope")
    (tmp_path / "checkpoint_step_2.pth").write_bytes(b"")
    with pytest.raises(CheckpointNotFoundError, match="no valid checkpoint"):
        CheckpointManager(tmp_path).restore()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_step_1.pth.corrupt",
        "checkpoint_step_2.pth.corrupt",
    ]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_write_error_removes_temp_keeps_previous_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    mgr = CheckpointManager(tmp_path, keep=LatestN(1))
    mgr.save(1, make_state(1, n=300_000))
    before = sorted(p.name for p in tmp_path.iterdir())
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, fh: object) -> None:
            self._fh, self.written = fh, 0

        def write(self, data: object) -> int:
            self.written += memoryview(data).nbytes  # type: ignore[arg-type]
            if self.written > 100_000:  # fails part-way through, like a filling disk
                raise OSError(code, os.strerror(code))
            return self._fh.write(data)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self._fh, name)

        def __enter__(self) -> Failing:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    with pytest.raises(CheckpointWriteError, match=errno.errorcode[code]) as info:
        mgr.save(2, make_state(2, n=300_000))
    assert "checkpoint_step_0000002.pth" in str(info.value)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    step, state = mgr.restore()
    check_state(1, state, n=300_000)


def test_failed_overwrite_of_the_same_step_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, make_state(1), tag="best")
    real = torch.save

    def full_disk(obj: object, f: object, *a: object, **k: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match="ENOSPC"):
        mgr.save(1, make_state(1), tag="best")
    monkeypatch.setattr(torch, "save", real)
    (rec,) = mgr.list()
    assert rec.status == "committed"
    check_state(1, mgr.restore(verify=True)[1])


def test_manifest_write_failure_leaves_no_uncommitted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vsrkit.checkpoint.writer as manager_mod

    mgr = CheckpointManager(tmp_path)
    mgr.save(1, make_state(1))

    def no_space(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manager_mod, "atomic_write_json", no_space)
    with pytest.raises(CheckpointWriteError, match="ENOSPC"):
        mgr.save(2, make_state(2))
    assert [r.step for r in mgr.list()] == [1]


def test_free_space_guard_refuses_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = CheckpointManager(tmp_path, min_free_mb=10)
    mgr.save(1, make_state(1))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=5_000_000))
    with pytest.raises(CheckpointWriteError, match="not enough free space"):
        mgr.save(2, make_state(2))
    assert [r.step for r in mgr.list()] == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    mgr = CheckpointManager(tmp_path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CheckpointWriteError):
            mgr.save(1, make_state(1))
    finally:
        tmp_path.chmod(0o700)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {"format": st.sampled_from(["vsrkit-checkpoint", "other"])},
        optional={
            "step": json_values,
            "file": json_values,
            "size_bytes": json_values,
            "sha256": json_values,
        },
    )
    | json_values
)
def test_any_json_manifest_is_accepted_only_when_well_formed(data: object) -> None:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        name = "checkpoint_step_0000001"
        Path(d, name + ".pth").write_bytes(b"x" * 7)
        Path(d, name + ".json").write_text(json.dumps(data))
        (rec,) = CheckpointManager(d).list()  # never raises
        well_formed = (
            isinstance(data, dict)
            and data.get("format") == "vsrkit-checkpoint"
            and data.get("step") == 1
            and type(data.get("step")) is int
            and data.get("file") == name + ".pth"
            and data.get("size_bytes") == 7
            and type(data.get("size_bytes")) is int
            and (
                isinstance(data.get("sha256"), str) or ("sha256" in data and data["sha256"] is None)
            )
        )
        assert rec.valid == well_formed
        assert rec.status == ("committed" if well_formed else "mismatch")


def _damage(path: Path, start: int, length: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + length] = bytes(length)  # same size: only loading or sha256 tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["tensor data", "pickle", "zip directory"])
def test_zeroed_bytes_anywhere_are_set_aside_with_one_warning_and_no_torch_advice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    _three(tmp_path)
    newest = tmp_path / "checkpoint_step_0000300.pth"
    raw = newest.read_bytes()
    start = {
        "tensor data": raw.index(torch.full((64,), 300.0).numpy().tobytes()),
        "pickle": raw.index(b"data.pkl") + 40,  # torch: "Weights only load failed ..."
        "zip directory": len(raw) - 64,
    }[where]
    _damage(newest, start)
    for verify in (False, True):  # without verify, a failed load checks the sha256 itself
        folder = tmp_path / f"v{verify}"
        shutil.copytree(tmp_path, folder, ignore=shutil.ignore_patterns("v*"))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vsrkit.checkpoint"):
            step, state = CheckpointManager(folder).restore(verify=verify)
        if where == "tensor data" and not verify:
            assert step == 300  # loads silently: this is why a resume verifies
            continue
        assert step == 200
        check_state(200, state)
        (message,) = caplog.messages
        assert "checkpoint_step_0000300.pth" in message and "renamed to *.corrupt" in message
        assert "sha256 differs" in message
        assert "weights_only" not in message and "arbitrary code" not in message
        assert (folder / "checkpoint_step_0000300.pth.corrupt").exists()


def test_damage_without_a_checksum_is_described_without_torch_advice(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, checksum=False)
    for s in (100, 200):
        mgr.save(s, make_state(s))
    newest = tmp_path / "checkpoint_step_0000200.pth"
    _damage(newest, newest.read_bytes().index(b"data.pkl") + 40)
    with pytest.raises(CheckpointCorruptError) as info:
        CheckpointManager(tmp_path).restore(200)
    assert "cannot be loaded" in str(info.value) and "weights_only" not in str(info.value)
    assert "\n" not in str(info.value)


def test_objects_refused_by_safe_loading_are_set_aside_when_resuming(tmp_path: Path) -> None:
    import datetime

    mgr = CheckpointManager(tmp_path)
    mgr.save(1, make_state(1))
    mgr.save(2, {**make_state(2), "when": datetime.date(2020, 1, 1)})
    assert CheckpointManager(tmp_path).restore()[0] == 1
    assert (tmp_path / "checkpoint_step_0000002.pth.corrupt").exists()


def test_restore_best_falls_back_to_the_next_best(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    for s, q in ((100, 0.5), (200, 0.9), (300, 0.7)):
        mgr.save(s, make_state(s), metrics={"quality": q})
    mgr.save(400, make_state(400))  # no quality: never the best
    assert CheckpointManager(tmp_path).restore(best=True)[0] == 200
    _damage(tmp_path / "checkpoint_step_0000200.pth", 200)
    reader = CheckpointManager(tmp_path)
    assert reader.restored_from is None
    assert reader.restore(best=True, verify=True)[0] == 300
    assert reader.restored_from == tmp_path / "checkpoint_step_0000300.pth"
    empty = CheckpointManager(tmp_path / "none")
    empty.save(1, make_state(1))
    with pytest.raises(CheckpointNotFoundError, match="'quality' metric"):
        empty.restore(best=True)


def test_a_run_whose_newest_file_was_set_aside_continues_its_retention(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=LatestN(2))
    for s in (100, 200, 300):
        mgr.save(s, make_state(s))
    _damage(tmp_path / "checkpoint_step_0000300.pth", 100)
    resumed = CheckpointManager(tmp_path, keep=LatestN(2))
    assert resumed.restore(verify=True)[0] == 200
    assert resumed.run_id == mgr.run_id  # the same run goes on
    for s in (300, 400):
        resumed.save(s, make_state(s))
    assert [r.step for r in resumed.list()] == [300, 400]  # its old files were retained away
