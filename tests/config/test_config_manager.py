"""RuntimeConfigManager: the watched file, submits, history, state and DDP broadcast."""

from __future__ import annotations

import json
import logging
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from rc_helpers import FakeGroup, edit, live_doc, read_jsonl

from vsrkit.config import (
    CONFIG_FILE,
    ConfigChange,
    RuntimeConfigError,
    RuntimeConfigManager,
    example_settings,
    snapshot_name,
    validate_config,
)
from vsrkit.errors import StateError


def test_first_run_creates_the_file_from_initial(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(max_lr=2e-4))
    assert live_doc(run_dir) == example_settings(max_lr=2e-4) == mgr.current
    assert mgr.poll(0) == [] and mgr.changes == []


def test_invalid_initial_is_refused_with_the_key(run_dir: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="plateau_patience: got 5, expected an integer"):
        RuntimeConfigManager(run_dir, initial=example_settings(plateau_patience=5))
    settings = example_settings()
    del settings["grad_clip"]
    with pytest.raises(RuntimeConfigError, match="grad_clip: missing key"):
        RuntimeConfigManager(run_dir, initial=settings)
    with pytest.raises(RuntimeConfigError, match="poll_every must be >= 1"):
        RuntimeConfigManager(run_dir, initial=example_settings(), poll_every=0)


def test_file_edit_is_picked_up_only_at_poll_steps(
    mgr: RuntimeConfigManager, run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edit(run_dir, plateau_patience=350, max_lr=2e-4)
    assert mgr.poll(5) == [] and mgr.get("plateau_patience") == 250
    with caplog.at_level(logging.INFO, logger="vsrkit.config"):
        changes = mgr.poll(10)
    assert [(c.key, c.old, c.new, c.step, c.source, c.accepted) for c in changes] == [
        ("plateau_patience", 250, 350, 10, "file", True),
        ("max_lr", 1.5e-4, 2e-4, 10, "file", True),
    ]
    assert "Config Update: plateau_patience 250 -> 350" in caplog.messages
    assert "Config Update: max_lr 0.00015 -> 0.0002" in caplog.messages
    assert mgr.current["plateau_patience"] == 350 and mgr.get("max_lr") == 2e-4
    assert [ConfigChange.from_dict(r) for r in read_jsonl(run_dir)] == changes == mgr.changes
    assert mgr.poll(20) == [] and len(read_jsonl(run_dir)) == 2  # unchanged file: nothing new


def test_rejected_edit_is_whole_logged_once_and_keeps_settings(
    mgr: RuntimeConfigManager, run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = mgr.current
    edit(run_dir, plateau_patience=350, max_lr=5.0)
    with caplog.at_level(logging.WARNING, logger="vsrkit.config"):
        assert mgr.poll(10) == []
    assert mgr.current == before
    rows = {r["key"]: r for r in read_jsonl(run_dir)}
    assert rows["max_lr"]["reason"] == "got 5, expected a number in [1e-05, 0.001]"
    assert rows["max_lr"]["accepted"] is False and rows["max_lr"]["new"] == 5.0
    assert rows["plateau_patience"]["reason"] == "rejected with the rest of the proposal (max_lr)"
    assert any(m.startswith("Config Rejected: max_lr 0.00015 -> 5") for m in caplog.messages)
    assert mgr.poll(20) == [] and len(read_jsonl(run_dir)) == 2  # reported once


def test_unknown_key_in_file_suggests_a_name(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    doc = live_doc(run_dir)
    doc["grad_clipp"] = doc.pop("grad_clip")
    (run_dir / CONFIG_FILE).write_text(json.dumps(doc))
    assert mgr.poll(10) == []
    reasons = {r["key"]: r["reason"] for r in read_jsonl(run_dir)}
    assert reasons["grad_clipp"] == "unknown key; did you mean 'grad_clip'?"
    assert reasons["grad_clip"].startswith("missing key")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_at_once(
    mgr: RuntimeConfigManager, run_dir: Path, token: str
) -> None:
    text = (run_dir / CONFIG_FILE).read_text().replace('"max_lr": 0.00015', f'"max_lr": {token}')
    (run_dir / CONFIG_FILE).write_text(text)
    assert mgr.poll(10) == [] and mgr.get("max_lr") == 1.5e-4
    [row] = read_jsonl(run_dir)
    assert row["key"] is None and f"{token} is not allowed" in row["reason"]


def test_editor_writing_the_file_in_two_halves(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    text = json.dumps({**live_doc(run_dir), "cooldown_duration": 80}, indent=2).encode()
    path = run_dir / CONFIG_FILE
    with open(path, "wb") as fh:  # in place, like an editor without atomic saves
        fh.write(text[: len(text) // 2])
        fh.flush()
        assert mgr.poll(10) == []  # not ready yet: neither applied nor reported
        assert read_jsonl(run_dir) == []
        fh.write(text[len(text) // 2 :])
    [change] = mgr.poll(20)
    assert (change.key, change.old, change.new, change.step) == ("cooldown_duration", 50, 80, 20)
    assert [r["accepted"] for r in read_jsonl(run_dir)] == [True]


def test_file_that_stays_invalid_is_reported_once(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    (run_dir / CONFIG_FILE).write_text('{"max_lr": 0.000')
    assert mgr.poll(10) == [] and read_jsonl(run_dir) == []
    assert mgr.poll(20) == []
    [row] = read_jsonl(run_dir)
    assert (row["step"], row["key"], row["accepted"]) == (20, None, False)
    assert "runtime_config.json is not valid JSON" in row["reason"]
    assert mgr.poll(30) == [] and len(read_jsonl(run_dir)) == 1
    edit_doc = {**example_settings(), "grad_clip": 2.0}
    (run_dir / CONFIG_FILE).write_text(json.dumps(edit_doc))
    assert [c.new for c in mgr.poll(40)] == [2.0]


def test_startup_only_edit_needs_a_restart(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    edit(run_dir, batch_size=16)
    assert mgr.poll(10) == [] and mgr.get("batch_size") == 4
    [row] = read_jsonl(run_dir)
    assert row["reason"] == "batch_size is startup-only: changing it from 4 to 16 needs a restart"


def test_removed_file_keeps_settings(
    mgr: RuntimeConfigManager, run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (run_dir / CONFIG_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="vsrkit.config"):
        assert mgr.poll(10) == [] and mgr.poll(20) == []
    assert mgr.current == example_settings()
    assert sum("is missing" in m for m in caplog.messages) == 1


def test_existing_file_on_restart(run_dir: Path) -> None:
    RuntimeConfigManager(run_dir, initial=example_settings())
    edit(run_dir, plateau_patience=400, batch_size=4)
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(batch_size=8))
    assert live_doc(run_dir)["batch_size"] == 8  # a restart takes the new startup values
    assert mgr.get("plateau_patience") == 250  # the file's live values come at a poll step
    assert [(c.key, c.new, c.step) for c in mgr.poll(0)] == [("plateau_patience", 400, 0)]


def test_submit_is_queued_until_the_next_poll_step(
    mgr: RuntimeConfigManager, run_dir: Path
) -> None:
    result = mgr.submit({"plateau_patience": 300, "grad_clip": 2}, source="terminal")
    assert result.accepted and result.errors == {}
    assert live_doc(run_dir)["plateau_patience"] == 300  # written at once, atomically
    assert mgr.get("plateau_patience") == 250 and mgr.latest["plateau_patience"] == 300
    assert mgr.poll(7) == []
    changes = mgr.poll(10)
    assert [(c.key, c.new, c.step, c.source) for c in changes] == [
        ("plateau_patience", 300, 10, "terminal"),
        ("grad_clip", 2.0, 10, "terminal"),
    ]
    assert mgr.current == mgr.latest == live_doc(run_dir)
    assert mgr.poll(20) == []  # its own write is not a second change


def test_submit_rejections(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    result = mgr.submit({"max_lr": float("nan"), "cooldown_duration": 30})
    assert not result.accepted and result.errors == {"max_lr": "got nan, expected a finite number"}
    assert [c.step for c in result.changes] == [None, None]  # the step comes with the poll
    assert mgr.latest == example_settings() == live_doc(run_dir)
    assert read_jsonl(run_dir) == [] and mgr.poll(10) == []
    rows = read_jsonl(run_dir)
    assert [(r["key"], r["step"], r["new"], r["accepted"]) for r in rows] == [
        ("max_lr", 10, "nan", False),
        ("cooldown_duration", 10, 30, False),
    ]
    assert rows[1]["reason"] == "rejected with the rest of the proposal (max_lr)"
    assert mgr.submit({"min_lr": 1e-5}).accepted
    errors = mgr.submit({"max_lr": 1e-5 / 2}).errors  # against the latest accepted min_lr
    assert errors["max_lr"].startswith("got 5e-06, expected")
    assert mgr.submit({"max_lr": 9e-6 + 1e-5}).accepted
    assert "did you mean 'l1_weight'" in mgr.submit({"l1_wieght": 0.5}).errors["l1_wieght"]
    assert mgr.submit(["max_lr"]).errors == {  # type: ignore[arg-type]
        "(document)": "expected a mapping of settings, got list"
    }
    out = mgr.submit({"l1_weight": 0.5, "ms_weight": 0.3})  # sum 1.0: fine together
    assert out.accepted and {c.key for c in out.changes} == {"l1_weight", "ms_weight"}


def test_submit_takes_in_an_unseen_file_edit(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    edit(run_dir, cooldown_duration=150)  # not polled yet
    assert mgr.submit({"grad_clip": 3.0}).accepted
    assert live_doc(run_dir)["cooldown_duration"] == 150  # the rewrite kept the edit
    changes = mgr.poll(10)
    assert [(c.source, c.key, c.new) for c in changes] == [
        ("file", "cooldown_duration", 150),
        ("web", "grad_clip", 3.0),
    ]
    edit(run_dir, cooldown_duration=500)  # rejected edit, then a submit
    assert mgr.submit({"grad_clip": 4.0}).accepted
    assert live_doc(run_dir)["cooldown_duration"] == 150
    assert [c.key for c in mgr.poll(20)] == ["grad_clip"]
    assert [(r["step"], r["key"], r["accepted"]) for r in read_jsonl(run_dir)[2:]] == [
        (20, "cooldown_duration", False),
        (20, "grad_clip", True),
    ]


def test_concurrent_submits_from_threads(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    keys = ["plateau_patience", "cooldown_duration", "grad_clip", "max_lr", "l1_weight"]
    results: list[Any] = []
    polled: list[ConfigChange] = []
    done = threading.Event()

    def web(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(15):
            key = rng.choice(keys)
            value = {
                "plateau_patience": rng.randint(0, 1200),
                "cooldown_duration": rng.randint(0, 250),
                "grad_clip": rng.uniform(0, 12),
                "max_lr": rng.uniform(0, 2e-3),
                "l1_weight": rng.uniform(0.5, 0.7),
            }[key]
            results.append(mgr.submit({key: value}, source=f"web{seed}"))

    def loop() -> None:
        step = 0
        while not done.is_set():
            step += 10
            polled.extend(mgr.poll(step))
        polled.extend(mgr.poll(step + 10))

    threads = [threading.Thread(target=web, args=(i,)) for i in range(6)]
    poller = threading.Thread(target=loop)
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    poller.join()
    accepted = [c for r in results if r.accepted for c in r.changes]
    assert len(results) == 90 and 0 < len(accepted) < 90
    # every accepted submit reaches the loop exactly once, in the order it was accepted
    assert [(c.key, c.new, c.source) for c in polled] == [
        (c.key, c.new, c.source) for c in accepted
    ]
    replay = example_settings()
    for c in polled:
        assert replay[c.key] == c.old
        replay[c.key] = c.new
    assert validate_config(replay) == {}
    assert mgr.current == replay == live_doc(run_dir)
    rows = read_jsonl(run_dir)
    assert sum(r["accepted"] for r in rows) == len(accepted)
    assert {r["source"] for r in rows if not r["accepted"]} <= {f"web{i}" for i in range(6)}


def test_submit_only_on_the_main_rank(run_dir: Path) -> None:
    rank1 = RuntimeConfigManager(run_dir, initial=example_settings(), is_main=False)
    assert not run_dir.exists()  # the other ranks never touch files
    with pytest.raises(RuntimeConfigError, match="main rank"):
        rank1.submit({"grad_clip": 2.0})


def test_every_rank_returns_the_same_changes_at_the_same_step(run_dir: Path) -> None:
    group = FakeGroup()
    ranks = [
        RuntimeConfigManager(
            run_dir, initial=example_settings(), broadcast=group.broadcast_for(r), is_main=r == 0
        )
        for r in range(2)
    ]
    seen: list[dict[int, list[ConfigChange]]] = [{}, {}]

    def train(rank: int) -> None:
        for step in range(1, 61):
            if rank == 0 and step == 13:
                edit(run_dir, plateau_patience=600)
            if rank == 0 and step == 33:
                assert ranks[0].submit({"grad_clip": 3.0}).accepted
                assert not ranks[0].submit({"batch_size": 2}).accepted  # in every history
            if rank == 0 and step == 44:
                edit(run_dir, grad_clip=50.0)  # rejected: no rank applies it
            seen[rank][step] = ranks[rank].poll(step)

    threads = [threading.Thread(target=train, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen[0] == seen[1]
    assert {s: [c.key for c in v] for s, v in seen[0].items() if v} == {
        20: ["plateau_patience"],
        40: ["grad_clip"],
    }
    assert group.calls == [6, 6]  # one broadcast per poll step, none in between
    assert ranks[0].current == ranks[1].current and ranks[1].get("grad_clip") == 3.0
    assert ranks[0].state_dict() == ranks[1].state_dict()
    assert [(c.step, c.key, c.accepted) for c in ranks[1].changes] == [
        (20, "plateau_patience", True),
        (40, "grad_clip", True),
        (40, "batch_size", False),
        (50, "grad_clip", False),
    ]


def test_state_dict_json_round_trip(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    mgr.submit({"plateau_patience": 300})
    mgr.poll(10)
    edit(run_dir, grad_clip=99.0)
    mgr.poll(20)
    state = json.loads(json.dumps(mgr.state_dict()))
    assert state["version"] == 1 and len(state["changes"]) == 2
    other = RuntimeConfigManager(
        run_dir / "b", initial=example_settings(batch_size=8), poll_every=5
    )
    other.load_state_dict(state)
    assert other.changes == mgr.changes
    assert other.current == {**mgr.current, "batch_size": 8}  # startup-only: this run's value
    assert other.poll_every == 5  # settings are not state
    assert json.loads(json.dumps(other.state_dict()))["config"] == other.current


def test_restore_snapshot_by_path_or_integer(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    mgr.submit({"grad_clip": 2.0})
    mgr.poll(10)
    path = mgr.snapshot(10)
    mgr.submit({"grad_clip": 3.0})
    mgr.poll(20)
    (run_dir / CONFIG_FILE).write_text(path.read_text())  # live file back to step 10 too
    assert [c.new for c in mgr.restore_snapshot(np.int64(10), step=10)] == [2.0]
    assert mgr.restore_snapshot(str(path), step=10) == []


def test_load_state_dict_refuses_bad_state(mgr: RuntimeConfigManager) -> None:
    good = mgr.state_dict()
    with pytest.raises(StateError, match="RuntimeConfigManager state: version 7 is not supp"):
        mgr.load_state_dict({**good, "version": 7})
    with pytest.raises(StateError, match="missing key.s. changes"):
        mgr.load_state_dict({"version": 1, "config": good["config"]})
    with pytest.raises(StateError, match="max_lr: got 1, expected"):
        mgr.load_state_dict({**good, "config": {**good["config"], "max_lr": 1}})
    with pytest.raises(StateError, match="lacks field"):
        mgr.load_state_dict({**good, "changes": [{"step": 1}]})
    with pytest.raises(StateError, match="must be an object, got 3"):
        mgr.load_state_dict({**good, "changes": [3], "config": {**good["config"], "min_lr": 2e-6}})
    assert mgr.current == example_settings()


def test_snapshot_file(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    mgr.submit({"max_lr": 3e-4})
    pending = mgr.snapshot(4000)
    assert pending.name == "runtime_config_step_4000.json" == snapshot_name(4000)
    assert json.loads(pending.read_text())["max_lr"] == 1.5e-4  # what is in effect, not queued
    mgr.poll(4010)
    assert json.loads(mgr.snapshot(4010).read_text()) == mgr.current
    rank1 = RuntimeConfigManager(run_dir / "r1", initial=example_settings(), is_main=False)
    assert not rank1.snapshot(4000).exists()


def test_get_unknown_key(mgr: RuntimeConfigManager) -> None:
    with pytest.raises(RuntimeConfigError, match="max_LR: unknown key"):
        mgr.get("max_LR")


def test_submit_does_not_wait_for_a_slow_broadcast(run_dir: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_broadcast(obj: Any) -> Any:
        entered.set()
        assert release.wait(10)
        return obj

    mgr = RuntimeConfigManager(run_dir, initial=example_settings(), broadcast=slow_broadcast)
    poller = threading.Thread(target=mgr.poll, args=(10,))
    poller.start()
    assert entered.wait(10)  # the loop is inside the broadcast (other ranks are late)
    answered = []
    web = threading.Thread(target=lambda: answered.append(mgr.submit({"grad_clip": 5.0})))
    web.start()
    web.join(5)
    release.set()
    poller.join(10)
    assert answered and answered[0].accepted  # answered while the broadcast was pending
    assert [c.new for c in mgr.poll(20)] == [5.0]
