"""RNG capture, the resume prompt and retention policies."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.checkpoint import (
    AnyOf,
    BestN,
    CheckpointManager,
    CheckpointRecord,
    EveryNSteps,
    KeepAll,
    KeepTagged,
    LatestN,
    ResumeCandidate,
    capture_rng_state,
    prune_checkpoints,
    restore_rng_state,
    standard_retention,
)
from vsrkit.checkpoint.retention import rank_best
from vsrkit.cli.prompt import prompt_for_checkpoint
from vsrkit.errors import StateError

from .helpers import make_state


# ----------------------------------------------------------------------- RNG
def _draw() -> tuple[float, float, float, list[float]]:
    return (random.random(), random.gauss(0, 1), float(np.random.rand()), torch.rand(3).tolist())


def test_rng_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.standard_normal()
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, {"rng": capture_rng_state()})
    expected = _draw()
    _draw()
    _, state = mgr.restore()  # weights_only=True
    restore_rng_state(state["rng"])
    assert _draw() == expected


def test_rng_state_holds_only_weights_only_safe_types() -> None:
    def walk(x: object) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        else:
            assert x is None or isinstance(x, (torch.Tensor, int, float, str)), type(x)

    walk(capture_rng_state())


def test_restore_rng_rejects_foreign_dicts() -> None:
    with pytest.raises(StateError, match="RNG state: no 'version' key"):
        restore_rng_state({"python": 1})
    state = capture_rng_state()
    del state["numpy"]
    with pytest.raises(StateError, match="RNG state: missing key.s. numpy"):
        restore_rng_state(state)


# -------------------------------------------------------------------- prompt
def _rec(
    step: int, tag: str | None = None, quality: float | None = None, **metrics: float
) -> CheckpointRecord:
    ts = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
    m = dict(metrics)
    if quality is not None:
        m["quality"] = quality
    return CheckpointRecord(
        directory=Path("/x"),
        filename=f"{step}-{tag}.pth",
        step=step,
        type=tag or "regular",
        tag=tag,
        quality=quality,
        loss=m.get("loss"),
        size_mb=1.0,
        timestamp=ts,
        date_str="2026-01-02 03:04",
        valid=True,
        status="committed",
        metrics=m,
    )


def test_prompt_shows_last_ten_and_enter_picks_newest() -> None:
    recs = [_rec(s * 1000, quality=0.5 + s / 100, loss=0.01) for s in range(1, 13)]
    lines: list[str] = []
    chosen = prompt_for_checkpoint(recs, input_fn=lambda _: "", echo=lines.append)
    assert chosen is recs[-1]
    table = "\n".join(lines)
    assert table.split("\n")[3].split() == ["#", "Step", "Type", "Quality", "Loss", "Date"]
    rows = [ln.split() for ln in table.split("\n")[5:-1]]
    assert [r[1] for r in rows] == [f"{s:,}" for s in range(3000, 13000, 1000)]  # the last 10
    assert [r[0] for r in rows] == [str(i) for i in range(1, 11)]
    assert (
        "0.5300" in table and "%" not in table and "0.0100" in table and "2026-01-02 03:04" in table
    )


def test_prompt_number_picks_a_row_and_invalid_falls_back_with_warning() -> None:
    recs = [_rec(s) for s in (10, 20, 30)]
    assert prompt_for_checkpoint(recs, input_fn=lambda _: " 2 ", echo=lambda _: None) is recs[1]
    lines: list[str] = []
    assert prompt_for_checkpoint(recs, input_fn=lambda _: "7", echo=lines.append) is recs[-1]
    assert any("invalid choice '7'" in ln for ln in lines)
    assert (
        prompt_for_checkpoint(recs, default=recs[0], input_fn=lambda _: "x", echo=lambda _: None)
        is recs[0]
    )


def test_prompt_eof_means_enter_and_empty_means_none() -> None:
    def eof(_: str) -> str:
        raise EOFError

    recs = [_rec(1), _rec(2)]
    assert prompt_for_checkpoint(recs, input_fn=eof, echo=lambda _: None) is recs[-1]
    assert prompt_for_checkpoint([], input_fn=eof, echo=lambda _: None) is None


@given(st.text(max_size=8))
def test_prompt_any_answer_returns_one_of_the_shown_records(answer: str) -> None:
    recs = [_rec(s) for s in range(1, 15)]
    chosen = prompt_for_checkpoint(recs, input_fn=lambda _: answer, echo=lambda _: None)
    assert chosen in recs[-10:]


# ----------------------------------------------------------------- retention
records_strategy = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.sampled_from([None, "best", "emergency"]),
        st.none() | st.floats(0, 1),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda t: (t[0], t[1]),
)


@given(records_strategy, st.integers(1, 5))
def test_policies_keep_what_they_promise(raw: list, n: int) -> None:
    recs = [_rec(s, tag, q) for s, tag, q in raw]
    steps_desc = sorted((r.step, r.filename) for r in recs)
    assert LatestN(n, kind="any").keep(recs) == {f for _, f in steps_desc[-n:]}
    for kind in ("regular", "best", "emergency"):  # each kind counted apart from the others
        mine = sorted((r.step, r.filename) for r in recs if r.type == kind)
        assert LatestN(n, kind=kind).keep(recs) == {f for _, f in mine[-n:]}
    assert LatestN(n).keep(recs) == LatestN(n, kind="regular").keep(recs)
    scored = [r for r in recs if r.quality is not None]
    best = BestN(n).keep(recs)
    assert len(best) == min(n, len(scored))
    if scored:
        assert max(r.quality for r in scored) in {r.quality for r in recs if r.filename in best}  # type: ignore[misc]
    assert EveryNSteps(1000).keep(recs) == {r.filename for r in recs if r.step % 1000 == 0}
    assert KeepTagged("emergency").keep(recs) == {r.filename for r in recs if r.tag == "emergency"}
    assert KeepTagged().keep(recs) == {r.filename for r in recs if r.tag}
    union = AnyOf(LatestN(n), KeepTagged("best")).keep(recs)
    assert union == LatestN(n).keep(recs) | KeepTagged("best").keep(recs)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_policies_reject_bad_counts(bad: object) -> None:
    for cls in (LatestN, BestN, EveryNSteps):
        with pytest.raises(ValueError, match="int >= 1"):
            cls(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        BestN(1, mode="up")
    with pytest.raises(ValueError, match="at least one"):
        AnyOf()
    with pytest.raises(TypeError, match="keep"):
        AnyOf(3)  # type: ignore[arg-type]


def test_manager_retention_keeps_what_the_policy_says_after_commit(tmp_path: Path) -> None:
    keep = AnyOf(LatestN(2), EveryNSteps(500), KeepTagged("emergency"), BestN(1))
    mgr = CheckpointManager(tmp_path, keep=keep)
    quality = {100: 0.9, 200: 0.1, 300: 0.2, 400: 0.3, 500: 0.4, 600: 0.5, 700: 0.6}
    for s, q in quality.items():
        mgr.save(s, make_state(s), metrics={"quality": q}, tag="emergency" if s == 300 else None)
    # 100 is the best (BestN), 300 tagged, 500 milestone, 600/700 latest; 200, 400 gone
    assert [r.step for r in mgr.list()] == [100, 300, 500, 600, 700]
    assert not [
        p
        for p in tmp_path.iterdir()
        if p.suffix == ".json" and not (tmp_path / (p.stem + ".pth")).exists()
    ]


def test_retention_never_deletes_uncommitted_files(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=LatestN(1))
    (tmp_path / "checkpoint_step_0000001.pth").write_bytes(b"half a save")
    for s in (2, 3):
        mgr.save(s, make_state(s))
    assert [(r.step, r.status) for r in mgr.list()] == [(1, "uncommitted"), (3, "committed")]


def test_nothing_is_kept_besides_the_policy_and_the_default_keeps_all(tmp_path: Path) -> None:
    only = CheckpointManager(tmp_path / "a", keep=LatestN(1))
    for s, q in ((1, 0.9), (2, 0.1), (3, 0.2)):
        only.save(s, make_state(s), metrics={"quality": q})
    assert [r.step for r in only.list()] == [3]  # the best (1) was not in the policy
    assert repr(CheckpointManager(tmp_path / "b").keep) == "KeepAll()"
    every = CheckpointManager(tmp_path / "b")
    for s in (1, 2, 3):
        every.save(s, make_state(s))
    assert [r.step for r in every.list()] == [1, 2, 3]
    assert CheckpointManager(tmp_path / "c", keep=None).keep.__class__ is KeepAll


def test_the_resume_candidate_is_a_policy_of_its_own(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=AnyOf(LatestN(1), ResumeCandidate()))
    mgr.save(10, make_state(10))
    mgr.save(12, make_state(12), tag="emergency")  # newer than any regular one
    mgr.save(11, make_state(11))  # e.g. a save after resuming from an older step
    # LatestN(1) keeps 11; the resume candidate is the emergency save of step 12
    assert [(r.step, r.type) for r in mgr.list()] == [(11, "regular"), (12, "emergency")]
    assert ResumeCandidate().keep([]) == set()


@given(records_strategy, st.integers(1, 4))
def test_best_is_defined_once(raw: list, n: int) -> None:
    recs = [_rec(s, tag, q) for s, tag, q in raw]
    ranked = rank_best(recs, "quality", "max")
    assert {r.filename for r in ranked[:n]} == BestN(n).keep(recs)
    keys = [(-(r.quality or 0.0), -r.step) for r in ranked]
    assert keys == sorted(keys)  # best first, ties to the higher step
    assert rank_best(recs, "quality", "min") == sorted(ranked, key=lambda r: (r.quality, -r.step))


def test_prune_uses_the_policy_the_manager_uses(tmp_path: Path) -> None:
    """The same folder: what prune keeps is what a manager with standard_retention keeps."""
    saves = [
        (100, None, 0.5), (200, None, 0.9), (300, "emergency", None), (400, None, 0.2),
        (500, "best", 0.95), (600, None, 0.1), (700, "emergency", None), (800, None, 0.3),
    ]  # fmt: skip
    kept = {}
    for how in ("manager", "prune"):
        folder = tmp_path / how
        keep = standard_retention(2) if how == "manager" else None
        with CheckpointManager(folder, keep=keep, run_id="r") as mgr:
            for s, tag, q in saves:
                mgr.save(s, make_state(s), tag=tag, metrics={} if q is None else {"quality": q})
        if how == "prune":
            prune_checkpoints(folder, keep_last=2)
        kept[how] = [(r.step, r.type) for r in CheckpointManager(folder).list()]
    assert kept["manager"] == kept["prune"] == [
        (500, "best"), (600, "regular"), (700, "emergency"), (800, "regular")
    ]  # fmt: skip


def test_the_prompt_moved_to_the_cli_and_the_old_path_warns() -> None:
    import vsrkit
    import vsrkit.checkpoint
    import vsrkit.checkpoint.prompt
    from vsrkit.cli.prompt import format_checkpoint_table

    for module in (vsrkit.checkpoint, vsrkit.checkpoint.prompt):
        with pytest.warns(DeprecationWarning, match="moved to vsrkit.cli.prompt"):
            assert module.prompt_for_checkpoint is prompt_for_checkpoint
        with pytest.warns(DeprecationWarning, match="moved to vsrkit.cli.prompt"):
            assert module.format_checkpoint_table is format_checkpoint_table
    with pytest.warns(DeprecationWarning, match="moved to vsrkit.cli.prompt"):
        assert vsrkit.prompt_for_checkpoint is prompt_for_checkpoint
