"""CheckpointManager: save/list/restore, manifests, async saves, run ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from vsrkit.checkpoint import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    LatestN,
    format_checkpoint_name,
    read_manifest,
)

from .helpers import check_state, make_state


def test_save_writes_file_and_manifest_last_and_restore_round_trips(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path, run_id="r1") as mgr:
        path = mgr.save(
            1234,
            make_state(1234),
            metrics={"quality": 0.75, "loss": 0.0123},
            runtime_config="runtime_config_step_1234.json",
        )
        assert path == tmp_path / "checkpoint_step_0001234.pth"
        manifest = mgr.manifest(1234)
        assert manifest["step"] == 1234 and manifest["file"] == path.name
        assert manifest["size_bytes"] == path.stat().st_size
        assert manifest["metrics"] == {"quality": 0.75, "loss": 0.0123}
        assert manifest["run_id"] == "r1"
        assert manifest["runtime_config"] == "runtime_config_step_1234.json"
        assert manifest["torch_version"] == torch.__version__
        import hashlib

        assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        step, state = mgr.restore()
        assert step == 1234
        check_state(1234, state)
    # nothing but the checkpoint and its manifest is left in the folder (no temp files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_step_0001234.json",
        "checkpoint_step_0001234.pth",
    ]


def test_list_records_fields(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(10, make_state(10), metrics={"quality": 0.5, "loss": 2.0})
    mgr.save(20, make_state(20), tag="best", metrics={"quality": 0.9})
    mgr.save(25, make_state(25), tag="emergency")
    recs = mgr.list()
    assert [(r.step, r.type, r.tag) for r in recs] == [
        (10, "regular", None),
        (20, "best", "best"),
        (25, "emergency", "emergency"),
    ]
    r10 = recs[0]
    assert (r10.quality, r10.loss, r10.valid, r10.status) == (0.5, 2.0, True, "committed")
    assert recs[2].quality is None and recs[2].loss is None
    assert r10.size_mb == round(r10.path.stat().st_size / 1e6, 3)
    assert r10.timestamp is not None and r10.date_str == r10.timestamp.strftime("%Y-%m-%d %H:%M")
    assert json.loads(json.dumps(r10.to_dict()))["filename"] == "checkpoint_step_0000010.pth"
    assert mgr.latest_step() == 25
    assert mgr.best_step() == 20
    assert mgr.best_step("loss", "min") == 10


def test_list_never_loads_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, make_state(1))

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("list() must not torch.load")

    monkeypatch.setattr(torch, "load", boom)
    assert [r.step for r in mgr.list()] == [1]


def test_other_files_are_ignored_with_a_debug_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(5, make_state(5))
    for junk in (
        "checkpoint_step_abc.pth",
        ".hidden",
        "notes.txt",
        ".tmp-checkpoint_step_0000009.pth.x",
    ):
        (tmp_path / junk).write_text("junk")
    (tmp_path / "subdir").mkdir()
    with caplog.at_level(logging.DEBUG, logger="vsrkit.checkpoint"):
        assert [r.step for r in mgr.list()] == [5]
    assert "checkpoint_step_abc.pth" in caplog.text
    assert mgr.restore()[0] == 5


def test_mixed_legacy_names_restore_by_int_step(tmp_path: Path) -> None:
    torch.save(make_state(99), tmp_path / "checkpoint_step_99.pth")
    torch.save(make_state(0), tmp_path / "checkpoint_emergency.pth")
    torch.save(make_state(100), tmp_path / "checkpoint_step_100.pth")
    mgr = CheckpointManager(tmp_path)
    recs = mgr.list()
    assert [(r.step, r.type, r.status) for r in recs] == [
        (0, "emergency", "legacy"),
        (99, "regular", "legacy"),
        (100, "regular", "legacy"),
    ]
    step, state = mgr.restore()
    check_state(100, state)
    assert step == 100
    # a new-format save at a higher step is preferred (it has a manifest from a newer run)
    mgr.save(150, make_state(150))
    assert mgr.restore()[0] == 150
    assert CheckpointManager(tmp_path).restore()[0] == 150


def test_restore_specific_step_and_missing_step(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    for s in (1, 2, 3):
        mgr.save(s, make_state(s))
    step, state = mgr.restore(2)
    assert step == 2
    check_state(2, state)
    with pytest.raises(CheckpointNotFoundError, match="step 7"):
        mgr.restore(7)
    with pytest.raises(CheckpointNotFoundError, match="step 7"):
        mgr.manifest(7)


def test_empty_folder(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "new")
    assert mgr.list() == [] and mgr.latest_step() is None and mgr.best_step() is None
    with pytest.raises(CheckpointNotFoundError):
        mgr.restore()


def test_async_save_snapshots_on_the_callers_thread(tmp_path: Path) -> None:
    state = make_state(7)
    with CheckpointManager(tmp_path, async_save=True) as mgr:
        path = mgr.save(7, state)
        state["model"]["w"].fill_(-1.0)  # the loop goes on mutating its tensors
        state["step"] = 8
        mgr.wait()
        assert path.exists()
        step, restored = mgr.restore()
        check_state(7, restored)
        # buffers are reused by the next snapshot but the committed file is unaffected
        mgr.save(8, make_state(8))
        mgr.save(9, make_state(9))  # waits for 8 first: one save in flight
        mgr.wait()
        check_state(8, mgr.restore(8)[1])
        check_state(9, mgr.restore(9)[1])
    assert mgr.manifest(9)["async"] is True


def test_async_error_is_raised_at_wait_and_next_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = CheckpointManager(tmp_path, async_save=True)
    calls = {"n": 0}
    real = torch.save

    def flaky(obj: object, f: object, *a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("serializer exploded")
        real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", flaky)
    mgr.save(1, make_state(1))
    with pytest.raises(RuntimeError, match="serializer exploded"):
        mgr.wait()
    mgr.wait()  # reported once
    mgr.save(2, make_state(2))
    mgr.wait()
    calls["n"] = 0
    mgr.save(3, make_state(3))
    with pytest.raises(RuntimeError, match="serializer exploded"):
        mgr.save(4, make_state(4))
    mgr.close()
    assert [r.step for r in mgr.list()] == [2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_closed_manager_refuses_saves(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.close()
    with pytest.raises(CheckpointError, match="closed"):
        mgr.save(1, make_state(1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"quality": "high"}}, "quality"),
        ({"metrics": {3: 1.0}}, "keys"),
        ({"tag": "bad tag"}, "tag"),
    ],
)
def test_bad_save_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CheckpointManager(tmp_path).save(1, make_state(1), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_constructor_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="retention policy"):
        CheckpointManager(tmp_path, keep=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="best_mode"):
        CheckpointManager(tmp_path, best_mode="up")
    with pytest.raises(TypeError, match="mapping"):
        CheckpointManager(tmp_path).save(1, [1, 2])  # type: ignore[arg-type]


def test_nan_metric_is_written_as_null_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = CheckpointManager(tmp_path)
    with caplog.at_level(logging.WARNING):
        mgr.save(1, make_state(1), metrics={"quality": float("nan"), "loss": torch.tensor(0.25)})
    assert mgr.manifest(1)["metrics"] == {"quality": None, "loss": 0.25}
    assert "null" in caplog.text


def test_weights_only_refusal_is_not_mistaken_for_corruption(tmp_path: Path) -> None:
    import datetime

    mgr = CheckpointManager(tmp_path)
    mgr.save(1, {"obj": datetime.date(2020, 1, 1)})  # not an allowed global for weights_only
    with pytest.raises(CheckpointError, match="Python objects .*datetime.date") as info:
        mgr.restore(1)
    assert "weights_only" not in str(info.value).split(": ", 1)[1]  # never torch's advice
    assert not isinstance(info.value, CheckpointCorruptError)
    assert (tmp_path / format_checkpoint_name(1)).exists()  # not renamed


# ------------------------------------------------------------------- run ids
def test_stale_higher_step_of_an_earlier_run_does_not_shadow_the_new_run(tmp_path: Path) -> None:
    old = CheckpointManager(tmp_path, run_id="old")
    for s in (8000, 9000):
        old.save(s, make_state(s))
    new = CheckpointManager(tmp_path)  # a fresh run in the same folder
    new.save(1000, make_state(1000))
    new.save(2000, make_state(2000))
    assert new.latest_step() == 2000
    assert new.restore()[0] == 2000
    # after a crash, a fresh manager resumes the run that committed last, not step 9000
    resumed = CheckpointManager(tmp_path)
    assert resumed.latest_step() == 2000
    step, state = resumed.restore()
    check_state(2000, state)
    assert resumed.run_id == new.run_id  # it continues that run
    # the old run's checkpoints are still listed and restorable explicitly
    assert resumed.restore(9000)[0] == 9000
    assert read_manifest(tmp_path / "checkpoint_step_0009000.json")["run_id"] == "old"


def test_restoring_an_older_step_starts_a_new_run(tmp_path: Path) -> None:
    first = CheckpointManager(tmp_path)
    for s in (100, 200, 300):
        first.save(s, make_state(s))
    rollback = CheckpointManager(tmp_path)
    assert rollback.restore(100)[0] == 100
    assert rollback.run_id != first.run_id
    rollback.save(150, make_state(150))
    # a later crash-resume continues the rollback, not the abandoned step 300
    assert CheckpointManager(tmp_path).restore()[0] == 150


def test_retention_only_touches_its_own_run(tmp_path: Path) -> None:
    old = CheckpointManager(tmp_path, run_id="old")
    for s in (1, 2, 3):
        old.save(s, make_state(s))
    new = CheckpointManager(tmp_path, run_id="new", keep=LatestN(1))
    for s in (10, 20, 30):
        new.save(s, make_state(s))
    assert [r.step for r in new.list()] == [1, 2, 3, 30]


def test_explicit_run_id_is_never_replaced(tmp_path: Path) -> None:
    CheckpointManager(tmp_path, run_id="a").save(5, make_state(5))
    mgr = CheckpointManager(tmp_path, run_id="b")
    assert mgr.restore()[0] == 5
    assert mgr.run_id == "b"


def test_checksum_false_writes_null_sha256_and_still_checks_size(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vsrkit.cli import cli

    mgr = CheckpointManager(tmp_path, checksum=False)
    mgr.save(1, make_state(1))
    mgr.save(2, make_state(2))
    assert mgr.manifest(2)["sha256"] is None
    assert [r.status for r in mgr.list()] == ["committed", "committed"]
    check_state(2, mgr.restore(verify=True)[1])
    result = CliRunner().invoke(cli, ["checkpoints", "verify", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "(size only: no sha256)" in result.output
    p = tmp_path / "checkpoint_step_0000002.pth"
    p.write_bytes(p.read_bytes()[:-10])
    result = CliRunner().invoke(cli, ["checkpoints", "verify", str(tmp_path)])
    assert result.exit_code == 1 and "CORRUPT" in result.output


def test_temp_files_of_killed_saves_are_removed_at_the_first_save_only(tmp_path: Path) -> None:
    leftover = tmp_path / ".tmp-checkpoint_step_0000003.pth.abc123"
    leftover.write_bytes(b"half")
    other = tmp_path / ".tmp-runtime_config.json.x"
    other.write_text("{}")
    reader = CheckpointManager(tmp_path)
    assert reader.list() == [] and leftover.exists()  # a reader never deletes anything
    reader.save(1, make_state(1))
    assert not leftover.exists() and other.exists()
