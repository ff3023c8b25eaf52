"""Fuzzing: random documents, random bytes and random patches never crash the manager and
never change the running settings unless the proposal is valid."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rc_helpers import read_jsonl

from vsrkit.config import (
    CONFIG_FILE,
    RuntimeConfigError,
    RuntimeConfigManager,
    describe_keys,
    example_settings,
    normalize_config,
    parse_json_strict,
    validate_config,
)

KEYS = [s.name for s in describe_keys()]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=0, max_value=2000)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
names = st.sampled_from(KEYS) | st.text(max_size=12)


@st.composite
def mutated_settings(draw: st.DrawFn) -> Any:
    """A valid document with a few keys replaced, dropped or added (near the boundary)."""
    doc = example_settings()
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        doc[key] = draw(scalars)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=1)):
        doc.pop(key, None)
    doc.update(draw(st.dictionaries(names, scalars, max_size=1)))
    return doc


documents = mutated_settings() | json_values


@st.composite
def corrupted_bytes(draw: st.DrawFn) -> bytes:
    """The valid file cut short, or with bytes overwritten or inserted."""
    data = bytearray(json.dumps(example_settings(), indent=2).encode())
    action = draw(st.sampled_from(["cut", "overwrite", "insert"]))
    pos = draw(st.integers(0, len(data) - 1))
    junk = draw(st.binary(min_size=1, max_size=4))
    if action == "cut":
        return bytes(data[:pos])
    if action == "overwrite":
        data[pos : pos + len(junk)] = junk
    else:
        data[pos:pos] = junk
    return bytes(data)


def expected_after(data: bytes, before: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The oracle: (settings after the poll, whether the bytes are a valid proposal)."""
    try:
        doc = parse_json_strict(data)
    except (ValueError, RuntimeConfigError):
        return before, False
    if validate_config(doc, current=before):
        return before, False
    return normalize_config(doc), True


def check_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        mgr = RuntimeConfigManager(run_dir, initial=example_settings())
        before = mgr.current
        (run_dir / CONFIG_FILE).write_bytes(data)
        changes = mgr.poll(10) + mgr.poll(20)  # the second look: "not ready yet" is over
        want, valid = expected_after(data, before)
        assert mgr.current == want
        assert {c.key: c.new for c in changes} == {k: v for k, v in want.items() if before[k] != v}
        assert all(c.accepted for c in changes)
        # every rejection is recorded; a valid file records exactly its accepted changes
        recorded = read_jsonl(run_dir)
        assert all(r["accepted"] == valid for r in recorded)
        if valid:
            assert len(recorded) == len(changes)
        else:
            assert recorded, "a rejected file must leave a record"


@settings(max_examples=120)
@given(doc=documents, allow_nan=st.booleans())
def test_random_json_documents(doc: Any, allow_nan: bool) -> None:
    try:
        text = json.dumps(doc, allow_nan=allow_nan)
    except ValueError:
        text = json.dumps(doc, allow_nan=True)  # NaN/Infinity tokens in the file
    check_file(text.encode())


@settings(max_examples=80)
@given(data=st.binary(max_size=64) | corrupted_bytes())
def test_random_bytes(data: bytes) -> None:
    check_file(data)


@settings(max_examples=80)
@given(patches=st.lists(st.dictionaries(names, scalars, max_size=3), min_size=1, max_size=4))
def test_random_submits(patches: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mgr = RuntimeConfigManager(tmp, initial=example_settings())
        for patch in patches:
            latest = mgr.latest
            result = mgr.submit(patch)
            proposal = {**latest, **patch}
            valid = not validate_config(proposal, current=latest)
            assert result.accepted == valid and (result.errors == {}) == valid
            assert mgr.latest == (normalize_config(proposal) if valid else latest)
        mgr.poll(10)
        assert mgr.current == mgr.latest
        assert validate_config(mgr.current) == {}


@settings(max_examples=60)
@given(data=st.binary(max_size=64) | corrupted_bytes() | documents.map(lambda d: _dumps(d)))
@example(data=b"Infinity")  # a non-finite constant in a snapshot once escaped as an exception
@example(data=b'{"max_lr": NaN}')
def test_random_snapshots_and_restarts(data: bytes) -> None:
    """A restart on a random live file and a resume from a random snapshot never crash."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / CONFIG_FILE).write_bytes(data)
        mgr = RuntimeConfigManager(run_dir, initial=example_settings())  # a restart
        before = mgr.current
        (run_dir / "runtime_config_step_5.json").write_bytes(data)
        (run_dir / CONFIG_FILE).write_bytes(json.dumps(before).encode())
        changes = mgr.restore_snapshot(5, step=5)
        try:
            doc = parse_json_strict(data)
        except (ValueError, RuntimeConfigError):
            doc = None
        startup = {s.name: before[s.name] for s in describe_keys() if not s.live}
        snap = (
            {**doc, **{k: v for k, v in startup.items() if k in doc}}
            if isinstance(doc, dict)
            else doc
        )
        valid = isinstance(snap, dict) and not validate_config(snap)
        # a usable snapshot is taken; the live file (still `before`) is a newer edit on top
        assert mgr.current == before
        assert all(c.accepted for c in changes)
        if valid:
            snap_keys = {k for k, v in normalize_config(snap).items() if v != before[k]}
            assert {c.key for c in changes if c.source == "snapshot"} == snap_keys
        else:
            assert changes == []


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()
