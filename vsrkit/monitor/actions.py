"""The queue between the monitor (web page, terminal) and the training loop.

The monitor never acts on the run itself: a button press or a key only *queues* a command,
and the loop drains the queue at a step boundary and acts (components decide, the loop acts).

Thread-safety: every method may be called from any thread; ``put`` never blocks for long and
``drain`` returns each queued action exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vsrkit._state import check_state
from vsrkit.errors import StateError
from vsrkit.monitor.errors import UnknownCommandError

__all__ = ["COMMANDS", "Action", "ActionQueue", "UnknownCommandError", "pause_state"]

logger = logging.getLogger(__name__)

#: Every command the loop understands. ``stop`` means "save, then end the run" (terminal ``q``).
COMMANDS: tuple[str, ...] = ("validate", "pause", "resume", "save", "stop")

STATE_VERSION = 1


def pause_state(commands: Iterable[str], paused: bool) -> bool:
    """Whether the run is paused after ``commands`` (oldest first): the last of ``pause`` and
    ``resume`` wins, so Pause then Resume pressed within one step leaves the run going.

    Example:
        >>> pause_state(["pause", "resume"], False), pause_state(["resume", "pause"], False)
        (False, True)
        >>> pause_state(["validate"], True)
        True
    """
    for command in commands:
        if command == "pause":
            paused = True
        elif command == "resume":
            paused = False
    return paused


@dataclass(frozen=True)
class Action:
    """One queued command.

    Attributes:
        command: One of :data:`COMMANDS`.
        source: Who asked (``"web"``, ``"terminal"``, ...), for the log.
        time: Wall-clock time (``time.time()``) when it was queued.
    """

    command: str
    source: str
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"command": self.command, "source": self.source, "time": self.time}


class ActionQueue:
    """A thread-safe FIFO of :class:`Action` s, drained by the loop at a step boundary.

    Args:
        maxlen: At most this many actions wait; a ``put`` beyond it drops the oldest one
            (a page hammering a button must not grow memory without bound).

    Example:
        >>> q = ActionQueue()
        >>> q.put("validate", source="web").command
        'validate'
        >>> [a.command for a in q.drain()]
        ['validate']
        >>> q.drain()
        []
    """

    def __init__(self, *, maxlen: int = 64) -> None:
        if maxlen < 1:
            raise ValueError(f"ActionQueue maxlen must be >= 1, got {maxlen}")
        self._items: deque[Action] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._total = 0

    def put(self, command: str, *, source: str) -> Action:
        """Queue ``command``; the loop acts on it at its next step boundary.

        Raises:
            UnknownCommandError: ``command`` is not one of :data:`COMMANDS`.
        """
        if not isinstance(command, str) or command not in COMMANDS:
            raise UnknownCommandError(
                f"unknown command {command!r}: expected one of {', '.join(COMMANDS)}"
            )
        action = Action(command=command, source=str(source))
        with self._lock:
            self._items.append(action)
            self._total += 1
        logger.info("queued action %s from %s", command, source)
        return action

    def drain(self) -> list[Action]:
        """Remove and return every queued action, oldest first (cheap when empty)."""
        if not self._items:  # lock-free fast path: the loop calls this every step
            return []
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def pending(self) -> list[Action]:
        """A copy of the queued actions, without removing them."""
        with self._lock:
            return list(self._items)

    @property
    def total(self) -> int:
        """How many actions were ever queued (for the page's 'queued' counter)."""
        return self._total

    def __len__(self) -> int:
        return len(self._items)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: the actions not drained yet, and the running total."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "pending": [a.to_dict() for a in self._items],
                "total": self._total,
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (``maxlen`` stays as constructed).

        Raises:
            StateError: Naming the key that is missing or malformed (the queue is unchanged).
        """
        check_state("ActionQueue", state, STATE_VERSION, ("pending", "total"))
        pending, total = state.get("pending"), state.get("total")
        if not isinstance(pending, list):
            raise StateError("ActionQueue state: 'pending' must be a list of actions")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise StateError(f"ActionQueue state: 'total' must be an int >= 0, got {total!r}")
        items = []
        for i, entry in enumerate(pending):
            ok = isinstance(entry, Mapping) and entry.get("command") in COMMANDS
            stamp = entry.get("time") if isinstance(entry, Mapping) else None
            if not ok or not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
                raise StateError(
                    f"ActionQueue state: 'pending'[{i}] must be {{'command': one of "
                    f"{', '.join(COMMANDS)}, 'source': str, 'time': number}}, got {entry!r}"
                )
            items.append(Action(entry["command"], str(entry.get("source", "")), float(stamp)))
        with self._lock:
            self._items.clear()
            self._items.extend(items)
            self._total = total
