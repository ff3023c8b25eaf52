"""RuntimeConfigManager: settings that change while training runs, validated and logged.

Thread/process-safety contract: every public method takes one lock, so ``submit`` may be
called from any thread (web monitor, terminal menu) while the loop calls ``poll``; the
``broadcast`` call runs outside the lock, so a submit never waits for other ranks. Only the
main process (``is_main=True``) reads or writes files; under DDP the other ranks receive the
same decisions through ``broadcast`` at the same step. Two managers on one run folder (two
trainers) are not supported.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vsrkit._atomic import atomic_write_bytes, atomic_write_json
from vsrkit._state import check_state
from vsrkit._text import printable
from vsrkit.config.changes import (
    CONFIG_FILE,
    ConfigChange,
    SubmitResult,
    _json_safe,
    append_changes,
    snapshot_name,
)
from vsrkit.config.schema import (
    DOCUMENT,
    RuntimeConfigError,
    _fmt,
    _normal,
    _suggest,
    describe_keys,
    load_schema,
    normalize_config,
    parse_json_strict,
    validate_config,
)
from vsrkit.config.watch import WatchedFile
from vsrkit.errors import StateError

__all__ = ["RuntimeConfigManager"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


Broadcast = Callable[[Any], Any]


class RuntimeConfigManager:
    """Live-editable settings of one run: watched file, web/terminal submits, snapshots.

    The manager decides, the loop acts: ``poll(step)`` returns the accepted
    :class:`ConfigChange` list and the loop applies it (LR bounds, clip, weights) at that step;
    the manager never touches an optimizer.

    Args:
        run_dir: The run folder (``runtime_config.json`` and ``config_changes.jsonl`` live here).
        initial: The startup value of every key of the schema (live and startup-only).
        poll_every: ``poll(step)`` does work only when ``step % poll_every == 0``.
        broadcast: Under DDP, ``broadcast(obj_or_None) -> obj``: the main rank passes the
            payload, the others pass ``None`` and receive it. Called once per poll step on
            every rank. ``None`` for a single process.
        is_main: Only the main rank reads and writes files.
        schema: A runtime-config JSON Schema (default: the one shipped with vsrkit).
        max_history: Changes kept in memory and in ``state_dict()`` (the jsonl keeps all).
        max_patch_keys: Most keys one ``submit`` may name (more: the proposal is refused
            whole with one record, without looking at each key); a ``runtime_config.json``
            may hold this many keys or the schema's count, whichever is larger.
        max_pending: Most change records waiting for the next poll step. Beyond it the
            oldest rejected records are dropped (their number is recorded and logged once
            at that poll) and a proposal that would be accepted is refused until the poll;
            accepted changes are never dropped.

    Raises:
        RuntimeConfigError: If ``initial`` is incomplete or invalid.

    Example:
        >>> import tempfile
        >>> from vsrkit.config import example_settings
        >>> mgr = RuntimeConfigManager(tempfile.mkdtemp(), initial=example_settings())
        >>> mgr.submit({"plateau_patience": 350}).accepted
        True
        >>> [(c.key, c.old, c.new) for c in mgr.poll(10)]
        [('plateau_patience', 250, 350)]
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        initial: Mapping[str, Any],
        poll_every: int = 10,
        broadcast: Broadcast | None = None,
        is_main: bool = True,
        schema: Mapping[str, Any] | None = None,
        max_history: int = 1000,
        max_patch_keys: int = 64,
        max_pending: int = 256,
    ) -> None:
        if int(poll_every) < 1:
            raise RuntimeConfigError(f"poll_every must be >= 1, got {poll_every!r}")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / CONFIG_FILE
        self.poll_every = int(poll_every)
        self.is_main = bool(is_main)
        self.max_history = int(max_history)
        if int(max_patch_keys) < 1 or int(max_pending) < 1:
            raise RuntimeConfigError(
                f"max_patch_keys and max_pending must be >= 1, got {max_patch_keys!r}, "
                f"{max_pending!r}"
            )
        self.max_patch_keys, self.max_pending = int(max_patch_keys), int(max_pending)
        self._dropped = 0  # rejected records dropped since the last poll (queue full)
        self._broadcast = broadcast
        self._schema = dict(load_schema() if schema is None else schema)
        self._specs = {s.name: s for s in describe_keys(self._schema)}
        errors = validate_config(initial, schema=self._schema)
        if errors:
            raise RuntimeConfigError(
                "initial runtime config is invalid: "
                + "; ".join(f"{k}: {m}" for k, m in errors.items())
            )
        self._lock = threading.RLock()
        self._current = normalize_config(initial, self._schema)  # in effect in the loop
        self._latest = dict(self._current)  # current + accepted submits not yet polled
        self._queue: list[ConfigChange] = []
        self._history: list[ConfigChange] = []
        self._watch = WatchedFile(self.path)
        self._created_live_file = False
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._open_live_file()

    # ------------------------------------------------------------------ reading
    @property
    def current(self) -> dict[str, Any]:
        """A copy of the settings in effect (what the loop has been handed by ``poll``)."""
        with self._lock:
            return dict(self._current)

    @property
    def latest(self) -> dict[str, Any]:
        """A copy of ``current`` plus accepted submits that the next poll step will return."""
        with self._lock:
            return dict(self._latest)

    @property
    def changes(self) -> list[ConfigChange]:
        """The change history (accepted and rejected), oldest first."""
        with self._lock:
            return list(self._history)

    def get(self, key: str) -> Any:
        """The value of ``key`` in effect; ``RuntimeConfigError`` for an unknown key."""
        with self._lock:
            if key not in self._current:
                raise RuntimeConfigError(
                    f"{printable(key)}: unknown key" + _suggest(str(key), self._current)
                )
            return self._current[key]

    # ------------------------------------------------------------------ changing
    def submit(self, patch: Mapping[str, Any], *, source: str = "web") -> SubmitResult:
        """Propose new values for some keys (web page, terminal menu); thread-safe.

        The patch is merged into the latest settings and validated exactly like a file edit,
        accepted or rejected whole, and the answer comes at once. An accepted patch rewrites
        ``runtime_config.json`` atomically. Either way the decision is queued: the next
        ``poll`` step returns the accepted changes to the loop, and logs and records every
        decision with that step. A file edit not yet seen by a poll is taken in first, so
        the rewrite never loses it.

        The work is bounded whatever the patch: more than ``max_patch_keys`` keys are
        refused whole with one record, and only the first unknown key gets a spelling
        suggestion. When ``max_pending`` records already wait for the poll, a proposal that
        would be accepted is refused ("try again after the next poll").
        """
        if not self.is_main:
            raise RuntimeConfigError("submit() is only available on the main rank")
        with self._lock:
            file_changes = self._check_file(None, source="file")
            self._enqueue(file_changes, may_refuse=False)
            self._latest = self._after(file_changes)
            problem = None
            if not isinstance(patch, Mapping):
                problem = f"expected a mapping of settings, got {type(patch).__name__}"
            elif len(patch) > self.max_patch_keys:
                problem = f"a change may name at most {self.max_patch_keys} keys, got {len(patch)}"
            if problem is not None:
                self._enqueue([self._doc_change(source, problem, None)], may_refuse=False)
                return SubmitResult(accepted=False, errors={DOCUMENT: problem})
            doc = {**self._latest, **{k: v for k, v in patch.items() if k in self._specs}}
            errors = validate_config(doc, current=self._latest, schema=self._schema)
            suggested = False  # one spelling suggestion per request, whatever its size
            for key in patch:
                if key not in self._specs:
                    hint = "" if suggested else _suggest(str(key), self._specs)
                    errors[str(key)] = "unknown key" + hint
                    suggested = True
            changes = self._decide(patch, errors, source, None, keys=list(patch))
            if errors:
                self._enqueue(changes, may_refuse=False)
                return SubmitResult(accepted=False, errors=errors, changes=changes)
            if not self._enqueue(changes, may_refuse=True):
                waiting = (
                    f"{len(self._queue)} accepted changes wait for the loop's next poll step "
                    f"(at most {self.max_pending}): try again after it"
                )
                return SubmitResult(accepted=False, errors={DOCUMENT: waiting})
            self._latest = normalize_config(doc, self._schema)
            self._write_live_file(self._latest)
            return SubmitResult(accepted=True, changes=changes)

    def poll(self, step: int) -> list[ConfigChange]:
        """At a poll step, return the accepted changes that take effect now (else ``[]``).

        On the main rank: drains the submit queue, then checks ``runtime_config.json``
        (mtime, size, then content hash). A file that is not valid JSON is "not ready yet"
        and only reported when it is still the same at the next poll step. Every rank
        returns the same list at the same step (via ``broadcast``).
        """
        step = int(step)
        if step % self.poll_every != 0:
            return []
        payload = None
        with self._lock:
            if self.is_main:
                changes = [replace(c, step=step) for c in self._queue]
                self._queue.clear()
                if self._dropped:
                    reason = (
                        f"{self._dropped} rejected change records were not kept one by one: "
                        f"more than {self.max_pending} waited for this poll step"
                    )
                    changes.append(self._doc_change("queue", reason, step))
                    self._dropped = 0
                file_changes = self._check_file(step, source="file")
                self._latest = self._after(file_changes)
                payload = [c.to_dict() for c in changes + file_changes]
        return self._share_and_apply(payload)

    def snapshot(self, step: int) -> Path:
        """Write the settings in effect to ``runtime_config_step_<step>.json`` (main rank)."""
        path = self.run_dir / snapshot_name(step)
        with self._lock:
            if self.is_main:
                atomic_write_json(path, self._current)
        return path

    def restore_snapshot(
        self, step_or_path: int | str | os.PathLike[str], *, step: int
    ) -> list[ConfigChange]:
        """Resume: take the live settings of a snapshot, then any newer edit of the live file.

        Call it after the optimizer and scheduler state are loaded, then apply ``current``
        to them, so their ``load_state_dict`` cannot revert the settings. Startup-only keys
        keep this run's ``initial`` values. A live file that differs from the snapshot
        becomes a logged change at ``step``. A missing or unusable snapshot gives a warning
        and the live file is used instead.

        Returns:
            The accepted changes (``source`` ``"snapshot"`` or ``"file"``), the same on
            every rank.
        """
        step = int(step)
        payload = None
        with self._lock:
            if self.is_main:
                changes = self._from_snapshot(step_or_path, step)
                self._watch.forget()  # a fresh look at the live file
                base = self._after(changes)
                if not self._created_live_file:  # a file this manager just wrote is no edit
                    changes += self._check_file(step, source="file", base=base, patient=False)
                self._latest = self._after(changes)
                payload = [c.to_dict() for c in changes]
        accepted = self._share_and_apply(payload)
        with self._lock:
            if self.is_main and self._file_settings() != self._current:
                self._write_live_file(self._current)  # the file shows the settings in effect
        return accepted

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: version, the settings in effect, the change history."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "config": dict(self._current),
                "changes": [c.to_dict() for c in self._history],
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore live settings and history; startup-only keys keep this run's values.

        Raises:
            StateError: For a wrong version, a missing key or a config that fails validation.
        """
        check_state("RuntimeConfigManager", state, STATE_VERSION, ("config", "changes"))
        with self._lock:
            if not isinstance(state["config"], Mapping) or not isinstance(state["changes"], list):
                raise StateError(
                    "RuntimeConfigManager state: config must be a mapping and changes a list"
                )
            doc = self._with_startup(state["config"])
            errors = validate_config(doc, schema=self._schema)
            if errors:
                raise StateError(
                    "RuntimeConfigManager state: "
                    + "; ".join(f"{k}: {m}" for k, m in errors.items())
                )
            try:
                history = [ConfigChange.from_dict(c) for c in state["changes"]]
            except RuntimeConfigError as exc:
                raise StateError(f"RuntimeConfigManager state: {exc}") from exc
            self._current = normalize_config(doc, self._schema)
            self._latest = dict(self._current)
            self._queue.clear()
            self._history = history
            self._watch.forget()  # the live file is compared again at the next poll step

    # ------------------------------------------------------------------ internals
    def _open_live_file(self) -> None:
        if not self.path.exists():
            self._write_live_file(self._current)
            self._created_live_file = True  # holds startup values only, no user's edit
            return
        try:
            doc = parse_json_strict(self.path.read_bytes())
        except (ValueError, RuntimeConfigError, OSError) as exc:
            logger.warning("%s is unusable (%s); it is checked again at each poll", self.path, exc)
            return
        if not isinstance(doc, dict):
            return
        moved = {
            k: (doc[k], v)
            for k, v in self._current.items()
            if not self._specs[k].live and k in doc and doc[k] != v
        }
        if moved:  # a restart is where startup-only keys may change: take the new ones
            for key, (old, new) in moved.items():
                logger.info("%s: startup-only %s %s -> %s", self.path, key, _fmt(old), _fmt(new))
            atomic_write_json(self.path, {**doc, **{k: n for k, (_, n) in moved.items()}})

    def _write_live_file(self, settings: Mapping[str, Any]) -> None:
        data = (json.dumps(settings, indent=2, allow_nan=False) + "\n").encode("utf-8")
        atomic_write_bytes(self.path, data)
        self._watch.wrote(data)

    def _with_startup(self, doc: Any) -> Any:
        if not isinstance(doc, Mapping):
            return doc
        fixed = {k: v for k, v in self._current.items() if not self._specs[k].live}
        return {**doc, **{k: v for k, v in fixed.items() if k in doc}}

    def _after(self, changes: list[ConfigChange]) -> dict[str, Any]:
        out = dict(self._latest)
        out.update({c.key: c.new for c in changes if c.accepted and c.key is not None})
        return out

    def _check_file(
        self,
        step: int | None,
        *,
        source: str,
        base: dict[str, Any] | None = None,
        patient: bool = True,
    ) -> list[ConfigChange]:
        base = self._latest if base is None else base
        event = self._watch.look(patient=patient)
        if event is None:
            return []
        if event.problem is not None:
            return [self._doc_change(source, event.problem, step)]
        most = max(self.max_patch_keys, len(self._specs))
        if isinstance(event.doc, Mapping) and len(event.doc) > most:
            problem = f"{self.path.name} has {len(event.doc)} keys, at most {most} are read"
            return [self._doc_change(source, problem, step)]
        errors = validate_config(event.doc, current=base, schema=self._schema)
        if DOCUMENT in errors:
            return [self._doc_change(source, f"{self.path.name}: {errors[DOCUMENT]}", step)]
        return self._decide(event.doc, errors, source, step, base=base)

    def _decide(
        self,
        proposal: Mapping[Any, Any],
        errors: Mapping[str, str],
        source: str,
        step: int | None,
        *,
        keys: list[Any] | None = None,
        base: Mapping[str, Any] | None = None,
    ) -> list[ConfigChange]:
        """One ConfigChange per key that moves (or is blamed), accepted only if no errors."""
        base = self._latest if base is None else base
        if keys is None:
            keys = list(proposal) + [k for k in errors if k not in proposal]
        now = time.time()
        names = sorted(errors)
        blame = ", ".join(printable(k, 40) for k in names[:5])
        if len(names) > 5:
            blame += f" and {len(names) - 5} more"
        out = []
        for raw in keys:
            key = str(raw)
            spec = self._specs.get(key)
            new = proposal.get(raw)
            old = base.get(key)
            if key not in errors:
                if spec is None:
                    continue
                new = _normal(spec, new)
                if new == old:
                    continue
            if not errors:
                reason = ""
            else:
                reason = errors.get(key, f"rejected with the rest of the proposal ({blame})")
            out.append(
                ConfigChange(step, now, source, key, old, _json_safe(new), not errors, reason)
            )
        return out

    def _enqueue(self, changes: list[ConfigChange], *, may_refuse: bool) -> bool:
        """Queue records for the next poll, within ``max_pending``.

        Makes room by dropping the oldest rejected records (counted in ``_dropped``). If
        there is still no room: with ``may_refuse`` nothing is queued and False returned
        (the caller refuses the proposal); without, rejected records are dropped and
        accepted ones (a file edit already seen) are queued anyway.
        """
        over = len(self._queue) + len(changes) - self.max_pending
        if over > 0:
            kept = []
            for change in self._queue:
                if over > 0 and not change.accepted:
                    over -= 1
                    self._dropped += 1
                else:
                    kept.append(change)
            self._queue = kept
        if over > 0:
            if may_refuse:
                return False
            rejected = [c for c in changes if not c.accepted]
            self._dropped += len(rejected)
            changes = [c for c in changes if c.accepted]
        self._queue.extend(changes)
        return True

    def _doc_change(self, source: str, reason: str, step: int | None) -> ConfigChange:
        return ConfigChange(step, time.time(), source, None, None, None, False, reason)

    def _from_snapshot(self, step_or_path: Any, step: int) -> list[ConfigChange]:
        if isinstance(step_or_path, (str, os.PathLike)):
            path = Path(step_or_path)
        else:
            path = self.run_dir / snapshot_name(int(step_or_path))
        try:
            doc = parse_json_strict(path.read_bytes())
        except FileNotFoundError:
            logger.warning("no config snapshot %s; using the live %s", path, CONFIG_FILE)
            return []
        except (ValueError, OSError, RuntimeConfigError) as exc:  # NaN/Infinity: RuntimeConfigError
            logger.warning("config snapshot %s is unusable (%s); using the live file", path, exc)
            return [self._doc_change("snapshot", f"{path.name}: {exc}", step)]
        errors = validate_config(self._with_startup(doc), schema=self._schema)
        if errors:
            reason = f"{path.name}: " + "; ".join(f"{k}: {m}" for k, m in errors.items())
            logger.warning("config snapshot unusable: %s; using the live file", reason)
            return [self._doc_change("snapshot", reason, step)]
        return self._decide(self._with_startup(doc), {}, "snapshot", step)

    def _share_and_apply(self, payload: list[dict[str, Any]] | None) -> list[ConfigChange]:
        """Broadcast (outside the lock, so submits never wait on other ranks), then apply."""
        if self._broadcast is not None:
            payload = self._broadcast(payload)
        changes = [ConfigChange.from_dict(c) for c in payload or []]
        with self._lock:
            for change in changes:
                if change.accepted and change.key is not None:
                    self._current[change.key] = change.new
            if not self.is_main:
                self._latest = dict(self._current)
            self._record(changes)
        return [c for c in changes if c.accepted]

    def _file_settings(self) -> Any:
        try:
            return parse_json_strict(self.path.read_bytes())
        except (ValueError, OSError, RuntimeConfigError):
            return None

    def _record(self, changes: list[ConfigChange]) -> None:
        if not changes:
            return
        self._history.extend(changes)
        del self._history[: max(0, len(self._history) - self.max_history)]
        if not self.is_main:
            return
        _log_changes(changes)
        try:
            append_changes(self.run_dir, changes)
        except OSError as exc:  # a full disk must not stop training; the log line says so
            logger.warning(
                "cannot append %d change records to %s (%s)",
                len(changes),
                self.run_dir / "config_changes.jsonl",
                exc,
            )


#: A rejected proposal with more keys than this is logged as one line.
_LOGGED_KEYS = 5


def _log_changes(changes: list[ConfigChange]) -> None:
    """One log line per change; a rejected proposal of many keys gets one line in all.

    Every key, value and reason is escaped (:func:`~vsrkit._text.printable`), so text
    typed into the page cannot forge a log line or move a terminal's cursor.
    """
    repeats: dict[tuple[str, str], int] = {}  # a refused document seen again: one line
    for c in changes:
        if c.key is None and not c.accepted:
            repeats[(c.source, c.reason)] = repeats.get((c.source, c.reason), 0) + 1
    i = 0
    while i < len(changes):
        c = changes[i]
        j = i + 1
        if c.key is None and not c.accepted:
            n = repeats.pop((c.source, c.reason), 0)
            if n:
                more = f" ({n - 1} more times from {printable(c.source, 40)})" if n > 1 else ""
                logger.warning("Config Rejected: %s%s", printable(c.reason, 400), more)
        elif c.accepted:
            logger.info(
                "Config Update: %s %s -> %s",
                printable(c.key),
                printable(_fmt(c.old)),
                printable(_fmt(c.new)),
            )
        else:
            while (
                j < len(changes)
                and not changes[j].accepted
                and changes[j].key is not None
                and (changes[j].time, changes[j].source) == (c.time, c.source)
            ):
                j += 1
            group = changes[i:j]
            if len(group) <= _LOGGED_KEYS:
                for g in group:
                    logger.warning(
                        "Config Rejected: %s %s -> %s (%s)",
                        printable(g.key),
                        printable(_fmt(g.old)),
                        printable(_fmt(g.new)),
                        printable(g.reason, 400),
                    )
            else:
                shown = "; ".join(
                    f"{printable(g.key, 40)} -> {printable(_fmt(g.new), 40)} "
                    f"({printable(g.reason, 120)})"
                    for g in group[:_LOGGED_KEYS]
                )
                more = f"; and {len(group) - _LOGGED_KEYS} more keys"
                logger.warning(
                    "Config Rejected (%s, %d keys): %s%s",
                    printable(c.source, 40),
                    len(group),
                    shown,
                    more,
                )
        i = j
