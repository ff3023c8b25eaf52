"""Read a run folder's files for ``vsrkit monitor RUN_DIR`` (read-only monitor).

The latest ``Statistik_<step>.json`` gives the values, all of them give the loss and
validation history, ``runtime_config.json`` the settings and ``config_changes.jsonl`` the
change log. A file is read again only when its size or modification time changes.

Only regular files inside the run folder are opened: a symbolic link that leads out of it,
a FIFO or a device is refused with a note, and files larger than ``max_file_bytes`` are
skipped. A number that strict JSON cannot hold (``NaN``, ``Infinity``) becomes ``null``,
with the reason in the record's ``missing_reasons``. The newest modification time among the
run's files is its heartbeat: a run that shows no life for a while is reported as stopped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsrkit._text import printable
from vsrkit.monitor.errors import RunFolderError
from vsrkit.monitor.status import finite_json

__all__ = ["HEARTBEAT_FILE", "VIEW_TOKEN_FILE", "RunFolderError", "RunFolderSource", "read_inside"]

logger = logging.getLogger(__name__)

_CONFIG_FILE = "runtime_config.json"
_CHANGES_FILE = "config_changes.jsonl"
#: The token file of the live monitor of ``vsrkit train``; the monitor touches it every
#: 30 s, so its modification time is the run's heartbeat.
HEARTBEAT_FILE = "monitor_token"
#: The token file of ``vsrkit monitor RUN_DIR`` (not a sign of the run's life).
VIEW_TOKEN_FILE = "monitor_view_token"
#: Most bytes read from the end of ``config_changes.jsonl`` (the page shows the latest).
_CHANGES_TAIL = 256 * 1024
#: Folders of a run whose files also count as a sign of life.
_HEARTBEAT_DIRS = ("tensorboard", "checkpoints")


class _Refused(Exception):
    """A file that the read-only monitor will not open (the message says why)."""


def read_inside(root: str | os.PathLike[str], name: str, *, limit: int) -> bytes:
    """The bytes of file ``name`` of folder ``root``, if it really is a file inside it.

    Refused (``ValueError`` naming the reason): a name with a path separator, a symbolic
    link whose target lies outside ``root``, anything but a regular file (a FIFO would
    block), a file larger than ``limit`` bytes.

    Example:
        >>> import tempfile, pathlib
        >>> d = tempfile.mkdtemp()
        >>> _ = (pathlib.Path(d) / "a.json").write_text("{}")
        >>> read_inside(d, "a.json", limit=100)
        b'{}'
    """
    try:
        return _read_inside(os.path.realpath(root), name, limit)
    except _Refused as exc:
        raise ValueError(str(exc)) from None


def _open_inside(real_root: str, name: str) -> tuple[int, os.stat_result]:
    """Open file ``name`` of the folder ``real_root`` (a real path) for reading.

    The one gate of every read: a plain name (no separator, not ``.`` or ``..``, no NUL),
    its real path inside ``real_root`` and not the folder itself (a link may point to a
    file of the folder, never out of it), opened without following a last link and without
    blocking (a FIFO), and a regular file. Returns the descriptor (the caller closes it)
    and its ``fstat``; anything else raises :class:`_Refused` with the name made printable.
    """
    shown = printable(name)
    if (
        not name
        or "/" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or "\0" in name
        or name in (".", "..")
    ):
        raise _Refused(f"{shown}: not a plain file name")
    real = os.path.realpath(os.path.join(real_root, name))
    if os.path.commonpath([real, real_root]) != real_root or real == real_root:
        raise _Refused(f"{shown}: a link that leads out of the run folder, not read")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _Refused(f"{shown}: cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused(f"{shown}: not a regular file, not read")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_inside(real_root: str, name: str, limit: int) -> bytes:
    """The whole file (see :func:`_open_inside`), refused when larger than ``limit``."""
    fd, st = _open_inside(real_root, name)
    shown = printable(name)
    try:
        if st.st_size > limit:
            raise _Refused(f"{shown}: {st.st_size} bytes, more than {limit}; not read")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise _Refused(f"{shown}: grew past {limit} bytes while read; not read")
        return data
    finally:
        os.close(fd)


def _tail_inside(real_root: str, name: str, limit: int) -> bytes:
    """The last ``limit`` bytes of a file inside the folder (see :func:`_open_inside`),
    from a line start."""
    fd, st = _open_inside(real_root, name)
    try:
        start = max(0, st.st_size - limit)
        data = os.pread(fd, limit, start)
        if start > 0:
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        return data
    finally:
        os.close(fd)


def _parse(data: bytes) -> Any:
    """JSON as the seed trainer wrote it (``NaN`` and ``Infinity`` included)."""
    return json.loads(data.decode("utf-8"))


class _FolderConfig:
    """Read-only view of a run's settings (``current``, ``latest``, ``changes``)."""

    def __init__(self, source: RunFolderSource) -> None:
        self._source = source

    @property
    def current(self) -> dict[str, Any]:
        return dict(self._source.settings)

    latest = current

    @property
    def changes(self) -> list[dict[str, Any]]:
        return list(self._source.changes)

    def submit(self, patch: Mapping[str, Any], *, source: str) -> Any:
        raise RunFolderError("this monitor is read-only: settings cannot be changed")


class RunFolderSource:
    """The monitor's snapshot, history and settings, read from a run folder.

    Args:
        run_dir: The run folder (``runs/<name>``).
        filename_template: Name of the statistics files, with ``{step}``.
        max_file_bytes: Larger statistics or settings files are skipped with a note.

    Raises:
        RunFolderError: ``run_dir`` is not a folder.

    Example:
        >>> import tempfile
        >>> src = RunFolderSource(tempfile.mkdtemp())
        >>> src.snapshot()
        {}
        >>> src.extra()["run_folder"]["statistics_files"]
        0
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        filename_template: str = "Statistik_{step}.json",
        max_file_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise RunFolderError(f"{self.run_dir}: not a folder (expected a run folder)")
        if "{step}" not in filename_template:
            raise RunFolderError(f"filename_template {filename_template!r} lacks {{step}}")
        prefix, _, suffix = filename_template.partition("{step}")
        self._pattern = re.compile(re.escape(prefix) + r"(\d{1,12})" + re.escape(suffix))
        self.filename_template = filename_template
        self.max_file_bytes = int(max_file_bytes)
        self._root = os.path.realpath(self.run_dir)
        self._lock = threading.Lock()
        self._signature: Any = None
        self._cache: dict[str, tuple[Any, dict[str, Any] | None, str | None]] = {}
        self.records: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.changes: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.config = _FolderConfig(self)

    # -- reading ---------------------------------------------------------------------------
    def _listing(self) -> tuple[Any, ...]:
        sig: list[tuple[str, int | None, int | None, int | None]] = []
        with os.scandir(self.run_dir) as entries:
            for entry in entries:
                name = entry.name
                if self._pattern.fullmatch(name) or name in (_CONFIG_FILE, _CHANGES_FILE):
                    try:
                        st = entry.stat()  # the target's, so an edit behind a link counts
                        sig.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
                    except OSError:
                        sig.append((name, None, None, None))  # a dangling link: noted below
        return tuple(sorted(sig))

    def refresh(self) -> None:
        """Re-read the files if anything changed since the last call."""
        with self._lock:
            signature = self._listing()
            if signature == self._signature:
                return
            self._signature = signature
            errors: list[str] = []
            records: list[tuple[int, dict[str, Any]]] = []
            cache: dict[str, tuple[Any, dict[str, Any] | None, str | None]] = {}
            for name, *sig in signature:
                match = self._pattern.fullmatch(name)
                if not match:
                    continue
                hit = self._cache.get(name)
                if hit is None or hit[0] != sig:
                    record, problem = self._read_statistics(name, int(match.group(1)))
                    hit = (sig, record, problem)
                cache[name] = hit
                if hit[2] is not None:
                    errors.append(hit[2])
                if hit[1] is not None:
                    records.append((int(match.group(1)), hit[1]))
            self._cache = cache
            self.records = [r for _, r in sorted(records, key=lambda sr: sr[0])]
            self.settings = self._read_settings(errors)
            self.changes = self._read_changes(errors)
            self.errors = errors

    def _read_statistics(self, name: str, step: int) -> tuple[dict[str, Any] | None, str | None]:
        try:
            doc = _parse(_read_inside(self._root, name, self.max_file_bytes))
        except _Refused as exc:
            return None, str(exc)
        except (ValueError, RecursionError) as exc:
            return None, f"{name}: cannot be read as JSON ({printable(exc, 120)})"
        if not isinstance(doc, dict):
            return None, f"{name}: expected a JSON object, got {type(doc).__name__}"
        reasons: dict[str, str] = {}
        clean = finite_json(doc, reasons)
        missing = clean.get("missing_reasons")
        missing = dict(missing) if isinstance(missing, Mapping) else {}
        for path, why in reasons.items():
            field = re.split(r"[.\[]", path, maxsplit=1)[0]
            missing[field] = f"{why} (in {name}: {path})"
        if reasons:
            clean["missing_reasons"] = missing
        if not isinstance(clean.get("step_current"), int) or isinstance(
            clean.get("step_current"), bool
        ):
            clean["step_current"] = step
        return clean, None

    def _read_settings(self, errors: list[str]) -> dict[str, Any]:
        if not os.path.lexists(self.run_dir / _CONFIG_FILE):
            return {}
        try:
            doc = _parse(_read_inside(self._root, _CONFIG_FILE, self.max_file_bytes))
        except _Refused as exc:
            errors.append(str(exc))
            return {}
        except (ValueError, RecursionError) as exc:
            errors.append(f"{_CONFIG_FILE}: cannot be read as JSON ({printable(exc, 120)})")
            return {}
        if not isinstance(doc, dict):
            errors.append(f"{_CONFIG_FILE}: expected a JSON object, got {type(doc).__name__}")
            return {}
        reasons: dict[str, str] = {}
        clean: dict[str, Any] = finite_json(doc, reasons)
        for path, why in reasons.items():
            errors.append(f"{_CONFIG_FILE}: {printable(path, 60)}: {why}, shown as null")
        return clean

    def _read_changes(self, errors: list[str]) -> list[dict[str, Any]]:
        if not os.path.lexists(self.run_dir / _CHANGES_FILE):
            return []
        try:
            data = _tail_inside(self._root, _CHANGES_FILE, _CHANGES_TAIL)
        except _Refused as exc:
            errors.append(str(exc))
            return []
        lines = data.decode("utf-8", errors="replace").split("\n")
        out = []
        for line in lines[-200:]:
            if not line.strip():
                continue
            try:
                record = _parse(line.encode("utf-8"))
            except (ValueError, RecursionError):
                continue  # a line cut short by a crash or a write in progress
            if isinstance(record, dict):
                out.append(finite_json(record))
        return out

    # -- what the monitor reads ------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The latest file's fields (flat), with its ``measured_at_step``; ``{}`` if none."""
        self.refresh()
        if not self.records:
            return {}
        latest = dict(self.records[-1])
        measured = latest.get("measured_at_step")
        latest["measured_at_step"] = dict(measured) if isinstance(measured, Mapping) else {}
        return latest

    def heartbeat_age(self) -> float | None:
        """Seconds since any file of the run last changed (None: no file at all).

        Looks at the run folder's files (the live monitor's ``monitor_token`` is touched
        every 30 s while ``vsrkit train`` runs), ``tensorboard/`` and ``checkpoints/``.
        """
        newest = None
        for folder in (self.run_dir, *(self.run_dir / d for d in _HEARTBEAT_DIRS)):
            newest = _newest_mtime(folder, newest, depth=2)
        return None if newest is None else max(0.0, time.time() - newest)

    def extra(self) -> dict[str, Any]:
        """History from every file, the change log and notes, merged into ``/api/status``."""
        self.refresh()
        loss = [
            [r["step_current"], r["total_loss_value"]]
            for r in self.records
            if isinstance(r.get("step_current"), int)
            and isinstance(r.get("total_loss_value"), (int, float))
            and not isinstance(r.get("total_loss_value"), bool)
        ]
        validations = [
            {
                "step": r.get("step_current"),
                "quality_ki": r.get("quality_ki_value"),
                "quality_lr": r.get("quality_lr_value"),
                "improvement": r.get("quality_improvement_value"),
                "validation_loss": r.get("validation_loss_value"),
                "best": r.get("best_quality_ever"),
            }
            for r in self.records
        ]
        return {
            "loss_history": loss,
            "validation_history": validations,
            "config_changes": self.changes[-20:],
            "run_folder": {
                "path": str(self.run_dir),
                "statistics_files": len(self.records),
                "errors": list(self.errors),
            },
        }

    def stats(self) -> dict[str, Any]:
        """The latest statistics file as read (``{}`` when there is none yet)."""
        self.refresh()
        return dict(self.records[-1]) if self.records else {}


def _newest_mtime(folder: Path, newest: float | None, *, depth: int) -> float | None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return newest
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.name == VIEW_TOKEN_FILE or entry.name.startswith("."):
            continue  # our own token file, temporary files
        if stat.S_ISREG(st.st_mode):
            newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
        elif stat.S_ISDIR(st.st_mode) and depth > 1 and folder.name in _HEARTBEAT_DIRS:
            newest = _newest_mtime(Path(entry.path), newest, depth=depth - 1)
    return newest
