"""DeferredStatsWriter: one ``Statistik_<V>.json`` per validation, never stale, never zero.

The file for validation step V is written once every training field (losses, learning rate,
loss weights) has been measured at a step after V, or when a maximum delay runs out; then the
file says ``"complete": false`` and lists the stale fields. A missing value is ``null`` with a
reason in ``missing_reasons``, never ``0``.

The last validation of a run (V is the step :meth:`DeferredStatsWriter.close` is called at: the
run ended there) has no step after V; its training fields measured *at* V (the log interval
that ended at V) are as fresh as they can be, so that file is complete.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsrkit._atomic import atomic_write_json
from vsrkit._state import check_state, state_values
from vsrkit.stats._json import NonFiniteError, to_json_value
from vsrkit.stats.errors import StatisticsValueError
from vsrkit.stats.fields import DEFAULT_TRAINING_FIELDS, FIELDS, STAT_FIELDS, VALIDATION_FIELDS
from vsrkit.stats.schema import SCHEMA_VERSION, StatisticsError, validate_statistics
from vsrkit.stats.snapshot import MetricsSnapshot, _check_step

__all__ = ["DeferredStatsWriter"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_DERIVED = ("step_current", "last_update_time")
RuntimeVersion = int | str | None


@dataclass
class _Pending:
    step: int
    validation: dict[str, Any]  # field -> JSON value (None where the value was not finite)
    reasons: dict[str, str]  # field -> why its frozen value is None
    runtime_config_version: RuntimeVersion
    requested_at: float  # writer clock
    stale: set[str] = field(default_factory=set)
    checked_revision: int = -1


class DeferredStatsWriter:
    """Writes ``Statistik_<V>.json`` for each validation step V once its data is fresh.

    Call :meth:`request` right after a validation with its metrics (they are frozen then),
    :meth:`observe` at every step or log interval (it costs microseconds and never touches
    the GPU), and :meth:`close` at the end of training and on SIGTERM. Several requests may be
    pending at once. Only rank 0 writes: pass ``is_main=False`` on the other ranks.

    A file holds no value measured before V: training fields must be measured after V, the
    progress/adaptive/performance/status fields at V or later, and the validation fields come
    from the request. Everything else is ``null`` with its reason. Every file is validated
    against the shipped schema, then written atomically (2-space indent, UTF-8). A failed
    write logs ``Failed to save statistics JSON: <reason>`` and the request is dropped;
    training goes on.

    Threads: call the writer from the training-loop thread only (a monitor thread queues a
    manual validation, the loop runs it and calls :meth:`request`); the snapshot it shares
    may be read and updated from any thread.

    Example:
        >>> import tempfile
        >>> snap = MetricsSnapshot()
        >>> w = DeferredStatsWriter(tempfile.mkdtemp(), snapshot=snap,
        ...                         training_fields=["l1_loss_value"], fsync=False)
        >>> w.request(500, {"quality_ki_value": 0.62, "quality_lr_value": 0.54})
        >>> w.observe(500, {"l1_loss_value": 0.02})  # measured at V: not fresh yet
        []
        >>> [p.name for p in w.observe(510, {"l1_loss_value": 0.0156})]
        ['Statistik_500.json']
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        snapshot: MetricsSnapshot,
        training_fields: Iterable[str] = DEFAULT_TRAINING_FIELDS,
        max_delay_steps: int | None = 500,
        max_delay_seconds: float | None = 600.0,
        filename_template: str = "Statistik_{step}.json",
        is_main: bool = True,
        runtime_config_version: RuntimeVersion | Callable[[], RuntimeVersion] = None,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        """Create the writer.

        Args:
            run_dir: Folder the files go to (created if missing, when enabled).
            snapshot: Where the measurements come from; :meth:`observe` records into it.
            training_fields: Fields that must be measured after V for a complete file.
            max_delay_steps: Write anyway (incomplete) this many steps after V; ``None``: never.
            max_delay_seconds: Write anyway this long after the request; ``None``: never.
            filename_template: File name with a ``{step}`` placeholder.
            is_main: ``False`` on ranks other than 0: nothing is ever written.
            runtime_config_version: A version, or a callable returning it, taken at
                :meth:`request` time and written as ``runtime_config_version``.
            fsync: Flush each file to disk before renaming it into place.
            clock: Monotonic clock in seconds, for ``max_delay_seconds``.
            enabled: Deprecated name of ``is_main``.

        Raises:
            ValueError: If a training field is unknown or derived, a delay is not positive, or
                the template has no ``{step}`` or contains a folder.
        """
        fields = tuple(training_fields)
        for name in fields:
            if name not in FIELDS:
                raise StatisticsValueError(
                    f"training_fields: unknown field {name!r}; expected seed fields"
                )
            if name in VALIDATION_FIELDS or name in _DERIVED:
                raise StatisticsValueError(
                    f"training_fields: {name!r} is not measured by the training loop"
                )
        if max_delay_steps is not None and (
            isinstance(max_delay_steps, bool)
            or not isinstance(max_delay_steps, int)
            or max_delay_steps < 1
        ):
            raise StatisticsValueError(
                f"max_delay_steps must be an int >= 1 or None, got {max_delay_steps!r}"
            )
        if max_delay_seconds is not None and not max_delay_seconds > 0:
            raise StatisticsValueError(
                f"max_delay_seconds must be > 0 or None, got {max_delay_seconds!r}"
            )
        if "{step}" not in filename_template:
            raise StatisticsValueError(
                f"filename_template needs a '{{step}}' field: {filename_template!r}"
            )
        name = filename_template.format(step=0)
        if os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
            raise StatisticsValueError(
                f"filename_template must be a plain file name: {filename_template!r}"
            )
        self.run_dir = Path(run_dir)
        self.snapshot = snapshot
        self.training_fields = fields
        self.max_delay_steps = max_delay_steps
        self.max_delay_seconds = max_delay_seconds
        self.filename_template = filename_template
        if enabled is not None:
            warnings.warn(
                "DeferredStatsWriter(enabled=) is deprecated; use is_main=",
                DeprecationWarning,
                stacklevel=2,
            )
            is_main = enabled
        self.is_main = bool(is_main)
        self._runtime_config_version = runtime_config_version
        self._fsync = fsync
        self._clock = clock
        self._pending: dict[int, _Pending] = {}
        self._last_step = 0
        self._closed = False
        self._closing = False
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> tuple[int, ...]:
        """Validation steps whose files are not written yet, in order."""
        return tuple(sorted(self._pending))

    def path_for(self, step: int) -> Path:
        """Path of the file for validation step ``step``."""
        return self.run_dir / self.filename_template.format(step=step)

    def request(self, step: int, validation: Mapping[str, Any] | None = None) -> None:
        """Ask for the file of validation step ``step``; freeze its validation metrics.

        The metrics are also recorded into the snapshot (at ``step``). Requesting a step that
        is already pending replaces its metrics (logged).

        Args:
            step: The validation step V.
            validation: Validation fields (``quality_*_value``, ``validation_loss_value``,
                ``best_quality_ever``) measured at V. A field left out is ``null`` in the file.

        Raises:
            ValueError: If a name is not a validation field or a value is ``None``.
            TypeError: If a value has no JSON form (e.g. a tensor).
            StatisticsError: If the writer is closed.
        """
        _check_step(step)
        values = dict(validation or {})
        frozen: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        for name, value in values.items():
            if name not in VALIDATION_FIELDS:
                raise StatisticsValueError(
                    f"request({step}): {name!r} is not a validation field; expected one of "
                    f"{', '.join(VALIDATION_FIELDS)}"
                )
            if value is None:
                raise StatisticsValueError(
                    f"request({step}): {name!r} is None; leave it out instead"
                )
            try:
                frozen[name] = to_json_value(value, name)
            except NonFiniteError:
                frozen[name] = None
                reasons[name] = f"validation at step {step} gave {float(value)!r}"
        if self._closed:
            raise StatisticsError(f"request({step}): the statistics writer is closed")
        if values:
            self.snapshot.update(step, values)
        self._last_step = max(self._last_step, step)
        if not self.is_main:
            return
        if step in self._pending:
            logger.info("Statistics request for step %d replaced by a newer one", step)
        version = self._runtime_config_version
        if callable(version):
            version = version()
        self._pending[step] = _Pending(
            step, frozen, reasons, version, self._clock(), set(self.training_fields)
        )

    def observe(self, step: int, metrics: Mapping[str, Any] | None = None) -> list[Path]:
        """Record ``metrics`` at ``step`` and write every pending file that is due.

        Args:
            step: The current training step.
            metrics: Field name -> Python number/str/bool measured at ``step`` (optional; the
                loop may update the snapshot itself).

        Returns:
            Paths of the files written by this call (usually none).
        """
        if metrics:
            self.snapshot.update(step, metrics)
        if step > self._last_step:
            self._last_step = step
        if not self._pending:
            return []
        written: list[Path] = []
        revision = self.snapshot.revision
        for p in sorted(self._pending.values(), key=lambda p: p.step):
            if p.stale and p.checked_revision != revision:
                steps = self.snapshot.steps(p.stale)
                p.stale = {n for n, s in steps.items() if s is None or s <= p.step}
                p.checked_revision = revision
            if p.stale and not self._expired(p, step):
                continue
            path = self._write(p)
            if path is not None:
                written.append(path)
        return written

    def flush(self) -> list[Path]:
        """Write every pending file now; fields not yet fresh are marked stale."""
        written = []
        for p in sorted(self._pending.values(), key=lambda p: p.step):
            path = self._write(p)
            if path is not None:
                written.append(path)
        return written

    def close(self) -> list[Path]:
        """Flush what is pending and refuse new requests (call it on SIGTERM too)."""
        self._closing = True
        written = self.flush()
        self._closed = True
        return written

    def build_document(self, step: int) -> dict[str, Any]:
        """The document the pending request for ``step`` would be written as now.

        Raises:
            KeyError: If ``step`` is not pending.
        """
        return self._build(self._pending[step])

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: the pending requests with their frozen validation metrics."""
        return {
            "version": STATE_VERSION,
            "pending": [
                {
                    "step": p.step,
                    "validation": dict(p.validation),
                    "reasons": dict(p.reasons),
                    "runtime_config_version": p.runtime_config_version,
                }
                for p in sorted(self._pending.values(), key=lambda p: p.step)
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore pending requests (their delay clocks restart now); settings are kept.

        Raises:
            StateError: If the state is malformed (the current pending requests are kept).
        """
        check_state("DeferredStatsWriter", state, STATE_VERSION, ("pending",))
        with state_values("DeferredStatsWriter"):
            self._load(state)

    def _load(self, state: Mapping[str, Any]) -> None:
        entries = state.get("pending")
        if not isinstance(entries, list):
            raise StatisticsValueError("DeferredStatsWriter state: 'pending' must be a list")
        restored: dict[int, _Pending] = {}
        for i, entry in enumerate(entries):
            where = f"DeferredStatsWriter state: pending[{i}]"
            if not isinstance(entry, Mapping):
                raise StatisticsValueError(f"{where} must be a mapping")
            try:
                step = _check_step(entry.get("step"))
            except ValueError as exc:
                raise StatisticsValueError(f"{where}: {exc}") from None
            validation = entry.get("validation")
            reasons = entry.get("reasons", {})
            if not isinstance(validation, Mapping) or not isinstance(reasons, Mapping):
                raise StatisticsValueError(f"{where}: 'validation' and 'reasons' must be mappings")
            unknown = [n for n in validation if n not in VALIDATION_FIELDS]
            if unknown:
                raise StatisticsValueError(f"{where}: unknown validation fields {unknown}")
            version = entry.get("runtime_config_version")
            if isinstance(version, bool) or not isinstance(version, (int, str, type(None))):
                raise StatisticsValueError(
                    f"{where}: 'runtime_config_version' must be int, str or null"
                )
            restored[step] = _Pending(
                step,
                dict(validation),
                {str(k): str(v) for k, v in reasons.items()},
                version,
                self._clock(),
                set(self.training_fields),
            )
        if self.is_main:
            self._pending = restored

    # ------------------------------------------------------------------ internals

    def _expired(self, p: _Pending, step: int) -> bool:
        if self.max_delay_steps is not None and step - p.step >= self.max_delay_steps:
            return True
        return (
            self.max_delay_seconds is not None
            and self._clock() - p.requested_at >= self.max_delay_seconds
        )

    def _build(self, p: _Pending) -> dict[str, Any]:
        v = p.step
        meas = self.snapshot.measurements()
        training = set(self.training_fields)
        ended = self._closing and v >= self._last_step  # the run ended at V: no step after it
        doc: dict[str, Any] = {}
        measured: dict[str, int | None] = {}
        reasons: dict[str, str] = {}
        stale: list[str] = []
        for name in STAT_FIELDS:
            value: Any = None
            at: int | None = None
            if name == "step_current":
                value, at = v, v
            elif name == "last_update_time":
                value, at = time.time(), max(self._last_step, v)
            elif name in VALIDATION_FIELDS:
                if name in p.validation:
                    value = p.validation[name]
                    at = v if value is not None else None
                    if value is None:
                        reasons[name] = p.reasons.get(name, "not finite")
                else:
                    reasons[name] = f"not given with the validation request at step {v}"
            else:
                m = meas.get(name)
                after = name in training and not ended
                fresh = m is not None and (m.step > v if after else m.step >= v)
                if fresh:
                    assert m is not None
                    try:
                        value, at = to_json_value(m.value, name), m.step
                    except NonFiniteError:
                        reasons[name] = f"value measured at step {m.step} was {float(m.value)!r}"
                elif m is None:
                    reasons[name] = "never measured"
                else:
                    when = "after" if after else "at or after"
                    reasons[name] = (
                        f"not measured {when} validation step {v} (last at step {m.step})"
                    )
                if name in training and not fresh:
                    stale.append(name)
            doc[name] = value
            measured[name] = at
        doc["measured_at_step"] = measured
        doc["complete"] = not stale
        doc["stale_fields"] = stale
        doc["missing_reasons"] = reasons
        doc["schema_version"] = SCHEMA_VERSION
        doc["written_at_step"] = max(self._last_step, v)
        doc["runtime_config_version"] = p.runtime_config_version
        return doc

    def _write(self, p: _Pending) -> Path | None:
        path = self.path_for(p.step)
        self._pending.pop(p.step, None)
        try:
            doc = self._build(p)
            validate_statistics(doc, source=path.name)
            atomic_write_json(path, doc, indent=2, fsync=self._fsync)
        except Exception as exc:  # a statistics file never stops training
            logger.error("Failed to save statistics JSON: %s: %s", path.name, exc)
            return None
        logger.info("Statistics saved: %s", path.name)
        if doc["stale_fields"]:
            logger.warning(
                "%s is incomplete: %s not measured after step %d",
                path.name,
                ", ".join(doc["stale_fields"]),
                p.step,
            )
        return path
