"""ActionQueue: thread-safe, each action drained exactly once, unknown commands refused."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.errors import StateError, VsrkitError
from vsrkit.monitor import COMMANDS, ActionQueue, UnknownCommandError


@given(st.lists(st.sampled_from(COMMANDS), max_size=50))
def test_drain_returns_what_was_put_in_order(commands: list[str]) -> None:
    q = ActionQueue(maxlen=100)
    for c in commands:
        q.put(c, source="test")
    assert [a.command for a in q.drain()] == commands
    assert q.drain() == [] and len(q) == 0 and q.total == len(commands)


@given(st.text(max_size=20).filter(lambda s: s not in COMMANDS))
def test_unknown_command_is_refused_and_named(command: str) -> None:
    q = ActionQueue()
    with pytest.raises(UnknownCommandError, match="unknown command") as info:
        q.put(command, source="test")
    assert isinstance(info.value, VsrkitError)
    assert repr(command) in str(info.value)
    assert len(q) == 0


def test_maxlen_keeps_the_newest() -> None:
    q = ActionQueue(maxlen=3)
    for c in ("validate", "pause", "resume", "save"):
        q.put(c, source="test")
    assert [a.command for a in q.drain()] == ["pause", "resume", "save"]
    with pytest.raises(ValueError, match="maxlen"):
        ActionQueue(maxlen=0)


def test_concurrent_puts_are_each_drained_once() -> None:
    q = ActionQueue(maxlen=100_000)
    drained: list = []
    done = threading.Event()

    def producer(i: int) -> None:
        for _ in range(2000):
            q.put("validate", source=f"p{i}")

    def consumer() -> None:
        while not done.is_set():
            drained.extend(q.drain())
        drained.extend(q.drain())

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    reader = threading.Thread(target=consumer)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert len(drained) == 8000 and len({id(a) for a in drained}) == 8000
    assert {a.source for a in drained} == {"p0", "p1", "p2", "p3"}


def test_action_to_dict_is_json_safe() -> None:
    import json

    a = ActionQueue().put("save", source="terminal")
    assert json.loads(json.dumps(a.to_dict())) == {
        "command": "save",
        "source": "terminal",
        "time": a.time,
    }


@given(st.lists(st.sampled_from(COMMANDS), max_size=10))
def test_state_dict_round_trips_through_json(commands: list[str]) -> None:
    import json

    q = ActionQueue()
    for c in commands:
        q.put(c, source="web")
    state = json.loads(json.dumps(q.state_dict()))
    other = ActionQueue(maxlen=5)
    other.load_state_dict(state)
    assert other.state_dict() == q.state_dict() or len(commands) > 5
    assert [a.command for a in other.drain()] == commands[-5:]  # maxlen is a setting: kept
    assert other.total == len(commands)


@pytest.mark.parametrize(
    ("state", "key"),
    [
        ({"pending": [], "total": 0}, "version"),
        ({"version": 1, "pending": {}, "total": 0}, "pending"),
        ({"version": 1, "pending": [], "total": -1}, "total"),
        ({"version": 1, "pending": [{"command": "fly", "time": 1.0}], "total": 1}, "pending"),
    ],
)
def test_bad_state_is_refused_naming_the_key(state: dict, key: str) -> None:
    q = ActionQueue()
    q.put("save", source="web")
    with pytest.raises(StateError, match=f"ActionQueue state: .*{key}"):
        q.load_state_dict(state)
    assert [a.command for a in q.pending()] == ["save"]  # unchanged
