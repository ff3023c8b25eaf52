"""Property: with random validation and logging intervals, no file holds a value measured
before its validation step, and no loss field is ever 0 in place of a missing value."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.stats import (
    DEFAULT_TRAINING_FIELDS,
    LOSS_FIELDS,
    STAT_FIELDS,
    VALIDATION_FIELDS,
    DeferredStatsWriter,
    MetricsSnapshot,
    load_statistics,
    validate_statistics,
)

TRAINING = list(DEFAULT_TRAINING_FIELDS)
PROGRESS = ["epoch_num", "adaptive_plateau_counter", "training_active"]


@settings(max_examples=60)
@given(
    val_every=st.integers(1, 25),
    log_every=st.integers(1, 12),
    rare_every=st.integers(1, 40),
    progress_every=st.integers(1, 30),
    max_delay=st.one_of(st.none(), st.integers(1, 40)),
    total=st.integers(1, 160),
    observe_first=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_files_hold_only_fresh_values_and_never_zero_losses(
    val_every: int,
    log_every: int,
    rare_every: int,
    progress_every: int,
    max_delay: int | None,
    total: int,
    observe_first: bool,
    seed: int,
) -> None:
    rnd = random.Random(seed)
    # (field, step) -> value, as the loop measured them; losses are never 0
    logged: dict[str, dict[int, object]] = {}
    requested: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as d:
        snap = MetricsSnapshot()
        w = DeferredStatsWriter(
            d, snapshot=snap, max_delay_steps=max_delay, max_delay_seconds=None, fsync=False
        )
        for step in range(1, total + 1):
            metrics: dict[str, object] = {}
            if step % log_every == 0:
                for name in TRAINING:
                    if name == "perceptual_loss_value" and step % rare_every:
                        continue  # a term logged less often than the others
                    metrics[name] = rnd.uniform(1e-4, 1.0)
            if step % progress_every == 0:
                metrics.update(epoch_num=step // 50 + 1, adaptive_plateau_counter=step % 7)
                metrics["training_active"] = rnd.random() < 0.5
            for name, value in metrics.items():
                logged.setdefault(name, {})[step] = value
            validate = step % val_every == 0
            if validate and not observe_first:
                requested[step] = rnd.random()
                w.request(step, {"quality_ki_value": requested[step]})
            # the display update after a validation has no losses: it cannot write zeros
            snap.update(step, {"validation_running": False})
            logged.setdefault("validation_running", {})[step] = False
            w.observe(step, metrics)
            if validate and observe_first:
                requested[step] = rnd.random()
                w.request(step, {"quality_ki_value": requested[step]})
        w.close()
        files = {int(p.stem.split("_")[1]): json.loads(p.read_text()) for p in Path(d).iterdir()}
        assert [r["step_current"] for r in load_statistics(d)] == sorted(files)

    assert sorted(files) == sorted(requested)
    for v, doc in files.items():
        validate_statistics(doc)
        written = doc["written_at_step"]
        # the run ended at V: the log interval that ended at V is as fresh as it gets
        ended = v == total
        first = v if ended else v + 1  # the first step whose training values count
        # when the file was written: as soon as fresh, at the delay, or at close()
        first_fresh = [
            min((s for s in logged.get(f, {}) if s >= first), default=None) for f in TRAINING
        ]
        due = [s for s in first_fresh if s is not None]
        fresh_at = max(due) if len(due) == len(TRAINING) else None
        candidates = [s for s in (fresh_at, None if max_delay is None else v + max_delay) if s]
        expected_written = min([s for s in candidates if s <= total], default=max(total, v))
        assert written == expected_written

        for name in STAT_FIELDS:
            value, at = doc[name], doc["measured_at_step"][name]
            if value is None:
                assert at is None and doc["missing_reasons"][name]
                continue
            assert at is not None and at >= v, (name, at, v)  # never measured before V
            if name in TRAINING:
                assert at >= first
            if name in logged:
                # the latest value measured up to the write, and exactly that value
                latest = max(s for s in logged[name] if s <= written)
                assert at == latest and logged[name][at] == value
        for name in TRAINING:
            seen = [s for s in logged.get(name, {}) if first <= s <= written]
            assert (doc[name] is not None) == bool(seen), name
        for name in LOSS_FIELDS:
            assert doc[name] != 0  # null with a reason, never 0
        for name in PROGRESS:
            seen = [s for s in logged.get(name, {}) if v <= s <= written]
            assert (doc[name] is not None) == bool(seen), name
        assert doc["stale_fields"] == [f for f in TRAINING if doc[f] is None]
        assert doc["complete"] == (not doc["stale_fields"])
        assert doc["quality_ki_value"] == requested[v]  # frozen at the request
        assert doc["measured_at_step"]["quality_ki_value"] == v
        for name in VALIDATION_FIELDS:
            if name != "quality_ki_value":
                assert doc[name] is None
