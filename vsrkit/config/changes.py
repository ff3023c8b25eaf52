"""Change records of the runtime config: ``ConfigChange``, ``SubmitResult``, the jsonl log.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> append_changes(d, [ConfigChange(10, 0.0, "file", "max_lr", 1e-4, 2e-4, True, "")])
    >>> [c.new for c in read_changes(d)]
    [0.0002]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsrkit._text import printable
from vsrkit.config.schema import RuntimeConfigError

__all__ = [
    "CHANGES_FILE",
    "CONFIG_FILE",
    "ConfigChange",
    "SubmitResult",
    "append_changes",
    "read_changes",
    "snapshot_name",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "runtime_config.json"
CHANGES_FILE = "config_changes.jsonl"


def _json_safe(value: Any) -> Any:
    """``value`` if it is strict JSON, else its ``repr`` (for rejected values in the log)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def snapshot_name(step: int) -> str:
    """File name of the snapshot taken at ``step``: ``runtime_config_step_4000.json``."""
    return f"runtime_config_step_{int(step)}.json"


@dataclass(frozen=True)
class ConfigChange:
    """One accepted or rejected change of one key (a line of ``config_changes.jsonl``).

    ``key`` is ``None`` when the whole document was unusable (not JSON, not an object).
    ``step`` is the step at which the loop saw it (``None`` only inside a fresh
    ``SubmitResult``: a submit gets its step at the next poll step).

    Example:
        >>> c = ConfigChange(step=10, time=0.0, source="file", key="max_lr", old=1e-4,
        ...                  new=2e-4, accepted=True, reason="")
        >>> ConfigChange.from_dict(c.to_dict()) == c
        True
    """

    step: int | None
    time: float
    source: str
    key: str | None
    old: Any
    new: Any
    accepted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the jsonl line)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigChange:
        """Inverse of :meth:`to_dict`; raises ``RuntimeConfigError`` naming a missing field."""
        if not isinstance(data, Mapping):
            raise RuntimeConfigError(f"config change record must be an object, got {data!r}")
        missing = [f for f in cls.__dataclass_fields__ if f not in data]
        if missing:
            raise RuntimeConfigError(f"config change record lacks field(s) {missing}: {data!r}")
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SubmitResult:
    """What :meth:`RuntimeConfigManager.submit` decided.

    Example:
        >>> r = SubmitResult(accepted=False, errors={"max_lr": "got 5, expected ..."})
        >>> r.accepted, list(r.errors)
        (False, ['max_lr'])
    """

    accepted: bool
    errors: dict[str, str] = field(default_factory=dict)
    changes: list[ConfigChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for a web API answer."""
        return {
            "accepted": self.accepted,
            "errors": dict(self.errors),
            "changes": [c.to_dict() for c in self.changes],
        }


def append_changes(run_dir: str | os.PathLike[str], changes: Iterable[ConfigChange]) -> None:
    """Append records to ``config_changes.jsonl``: one ``write``, then ``fsync``.

    The file is only ever appended to, never rewritten, so the cost of a record does not
    grow with the log. A crash can leave at most the last line unfinished: readers skip an
    unterminated last line, and the next append starts on a new line. A symbolic link in
    place of the file is refused (``OSError``), so the log is never written elsewhere.
    """
    lines = "".join(json.dumps(c.to_dict(), allow_nan=False) + "\n" for c in changes)
    if not lines:
        return
    path = Path(run_dir) / CHANGES_FILE
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        data = lines.encode("utf-8")
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # an unfinished line from a crash stays on its own line
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_changes(run_dir: str | os.PathLike[str]) -> list[ConfigChange]:
    """Read ``config_changes.jsonl`` of a run folder (missing file: empty list).

    A line that is not a change record (a line cut short by a crash, a hand edit) is
    skipped with a warning naming the file and line; every other record is returned.
    """
    path = Path(run_dir) / CHANGES_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(ConfigChange.from_dict(json.loads(line)))
        except (ValueError, TypeError, RecursionError, RuntimeConfigError) as exc:
            if n < len(lines):  # an unterminated last line is a write in progress: no warning
                logger.warning("%s:%d: skipped, not a change record (%s)", path, n, printable(exc))
    return out
