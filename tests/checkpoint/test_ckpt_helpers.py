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
    KeepTagged,
    LatestN,
    capture_rng_state,
    prompt_for_checkpoint,
    restore_rng_state,
)

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
    with pytest.raises(ValueError, match="version"):
        restore_rng_state({"python": 1})
    state = capture_rng_state()
    del state["numpy"]
    with pytest.raises(ValueError, match="numpy"):
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


def test_manager_retention_keeps_latest_best_and_policy_after_commit(tmp_path: Path) -> None:
    keep = AnyOf(LatestN(2), EveryNSteps(500), KeepTagged("emergency"))
    mgr = CheckpointManager(tmp_path, keep=keep)
    quality = {100: 0.9, 200: 0.1, 300: 0.2, 400: 0.3, 500: 0.4, 600: 0.5, 700: 0.6}
    for s, q in quality.items():
        mgr.save(s, make_state(s), metrics={"quality": q}, tag="emergency" if s == 300 else None)
    # 100 is the best (always kept), 300 tagged, 500 milestone, 600/700 latest; 200, 400 gone
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
