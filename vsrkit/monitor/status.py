"""Build the monitor's status document from statistics fields (pure functions, no I/O).

The input is a flat mapping of the statistics field names (``step_current``,
``total_loss_value``, ... see ``docs/statistics.md``); the output is the JSON document served
at ``/api/status`` and pushed over ``/events``. It keeps the seed system's keys (``iteration``,
``total_loss``, ``learn_rate``, ``time_remaining``, ``iter_speed``, ``gpu_memory``,
``best_score``, ``is_validating``, ``is_training``, ``timestamp``) and adds what the page draws.
A missing value is ``None`` (``null``), never 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from vsrkit._terms import TERM_FIELD_NAMES, loss_field, weight_field
from vsrkit._text import format_hms

__all__ = [
    "ACTIVITY_BANDS",
    "ACTIVITY_FULL",
    "LOSS_TERMS",
    "RUN_STATES",
    "SEED_KEYS",
    "activity_level",
    "activity_values",
    "distribution",
    "finite_json",
    "format_duration",
    "peak_activity",
    "run_state",
    "status_document",
    "stream_overview",
]

#: seed key -> statistics field it is read from (``iter_speed`` is derived, see below).
SEED_KEYS: dict[str, str] = {
    "iteration": "step_current",
    "total_loss": "total_loss_value",
    "learn_rate": "learning_rate_value",
    "time_remaining": "eta_total_formatted",
    "gpu_memory": "vram_usage_gb",
    "best_score": "best_quality_ever",
    "is_validating": "validation_running",
    "is_training": "training_active",
}

#: loss term -> (loss field, weight field); the page colours them L1 #ef4444, MS #f97316,
#: Grad #a855f7, Perceptual #06b6d4.
LOSS_TERMS: dict[str, tuple[str, str]] = {
    term: (loss_field(term), weight_field(term)) for term in TERM_FIELD_NAMES
}

_STREAMS = ("backward", "forward", "fusion")


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools and non-numbers are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return value if math.isfinite(value) else None


def distribution(values: Mapping[str, Any], which: int) -> dict[str, Any]:
    """Shares of the loss terms: ``which=0`` the loss values, ``which=1`` the weights.

    Returns:
        ``{"values": {term: float|None}, "percent": {term: float|None}}``; a term without a
        value has ``None`` in both, and percentages are of the terms that have one.
    """
    raw = {term: _number(values.get(fields[which])) for term, fields in LOSS_TERMS.items()}
    total = sum(abs(v) for v in raw.values() if v is not None)
    percent = {
        term: (None if v is None else (min(100.0, abs(v) / total * 100.0) if total > 0 else 0.0))
        for term, v in raw.items()
    }
    return {"values": raw, "percent": percent}


#: Bands of layer activity (mean |activation|): level while the value is below the bound.
ACTIVITY_BANDS: tuple[tuple[float, str], ...] = (
    (0.5, "low"),
    (1.0, "moderate"),
    (1.5, "elevated"),
    (math.inf, "high"),
)
#: The value at which an activity bar is full (the scale reads 0 .. 2.0+).
ACTIVITY_FULL = 2.0

_SCALES: dict[str, dict[str, Any]] = {
    "mean_abs": {
        "name": "mean |activation|",
        "full": ACTIVITY_FULL,
        "bands": [{"below": b, "level": lvl} for b, lvl in ACTIVITY_BANDS[:-1]]
        + [{"below": None, "level": "high"}],
        "legend": (
            "Scale: mean |activation| of each layer. Bands: low < 0.5 <= moderate < 1.0 "
            "<= elevated < 1.5 <= high; bars are full at 2.0."
        ),
    },
    "percent_of_peak": {
        "name": "percent of the most active layer",
        "full": 100.0,
        "bands": [],
        "legend": (
            "Scale: percent of the most active layer (this run did not record the peak's "
            "mean |activation|, so no bands)."
        ),
    },
}


def activity_level(value: float) -> str:
    """Colour band of a layer activity: low < 0.5 <= moderate < 1.0 <= elevated < 1.5 <= high."""
    return next(level for bound, level in ACTIVITY_BANDS if value < bound)


def activity_values(activity: Any, peak: Any = None) -> tuple[dict[str, float], str]:
    """Every layer's activity on one scale, and the scale's name.

    The loop writes ``layer_activity_map`` in percent of the most active layer and
    ``layer_activity_peak`` with that layer's raw mean |activation|; together they give every
    layer's mean |activation| (``"mean_abs"``, the scale of the 0-2 bands). A map without a
    peak record is taken as mean |activation| (the seed trainer's files), unless its largest
    value is exactly 100: then it is a percent map and stays one (``"percent_of_peak"``).
    """
    numbers: dict[str, float] = {}
    if isinstance(activity, Mapping):
        numbers = {str(k): n for k, v in activity.items() if (n := _number(v)) is not None}
    raw_peak = _number(peak.get("value")) if isinstance(peak, Mapping) else None
    top = max(numbers.values(), default=None)
    if raw_peak is not None:
        if top is None or top <= 0:
            return numbers, "mean_abs"
        return {k: v / top * raw_peak for k, v in numbers.items()}, "mean_abs"
    if top is not None and abs(top - 100.0) < 1e-9:
        return numbers, "percent_of_peak"
    return numbers, "mean_abs"


def _level(value: float | None, scale: str) -> str | None:
    return activity_level(value) if value is not None and scale == "mean_abs" else None


def peak_activity(activity: Any, peak: Any = None) -> dict[str, Any] | None:
    """The most active layer with its band and warning, or None.

    ``peak`` is the loop's ``layer_activity_peak`` field, ``{"layer", "value"}`` with the raw
    mean |activation|; without it the largest value of ``layer_activity_map`` is taken (see
    :func:`activity_values` for its scale; a percent map has no band and no warning).
    """
    values, scale = activity_values(activity, peak)
    raw = _number(peak.get("value")) if isinstance(peak, Mapping) else None
    if raw is not None and isinstance(peak, Mapping):
        layer, value = str(peak.get("layer")), raw
    elif values:
        layer, value = max(values.items(), key=lambda kv: kv[1])
    else:
        return None
    warning = None
    if scale == "mean_abs" and value > 2.0:
        warning = "EXTREME activity: check training stability"
    elif scale == "mean_abs" and value > 1.5:
        warning = "Unusually high activity"
    return {"layer": layer, "value": value, "level": _level(value, scale), "warning": warning}


def stream_overview(activity: Any, peak: Any = None) -> dict[str, dict[str, Any]]:
    """Average activity per stream (Backward / Forward / Fusion), from the layer names.

    Each stream: ``average`` (on the scale of :func:`activity_values`), ``level`` (its band,
    None on a percent scale) and ``layers`` (how many layers it averages).
    """
    values, scale = activity_values(activity, peak)
    groups: dict[str, list[float]] = {s: [] for s in _STREAMS}
    for name, number in values.items():
        lowered = name.lower()
        stream = next((s for s in _STREAMS if s in lowered), None)
        if stream is not None:
            groups[stream].append(number)
    out = {}
    for s, v in groups.items():
        average = sum(v) / len(v) if v else None
        out[s] = {"average": average, "level": _level(average, scale), "layers": len(v)}
    return out


def _activity_parts(activity: Any, peak: Any) -> dict[str, Any]:
    values, scale = activity_values(activity, peak)
    return {
        "activity_scale": {"scale": scale, **_SCALES[scale]},
        "peak_activity": peak_activity(activity, peak),
        "streams": stream_overview(activity, peak),
        "layers": values,
        "layer_levels": {k: _level(v, scale) for k, v in values.items()},
    }


def finite_json(obj: Any, reasons: dict[str, str] | None = None, path: str = "") -> Any:
    """A copy of ``obj`` that strict JSON can hold: non-finite floats and integers beyond
    64 bits become ``None`` (and are named in ``reasons``: path -> why), nesting deeper than
    64 levels is cut to ``None``.

    Example:
        >>> why = {}
        >>> finite_json({"loss": float("nan"), "ok": [1, float("inf")]}, why)
        {'loss': None, 'ok': [1, None]}
        >>> why
        {'loss': 'NaN is not a number JSON can hold', 'ok[1]': 'inf is not a number JSON can hold'}
    """
    return _finite(obj, reasons, path, 0)


def _finite(obj: Any, reasons: dict[str, str] | None, path: str, depth: int) -> Any:
    why = None
    if isinstance(obj, float) and not math.isfinite(obj):
        why = f"{'NaN' if obj != obj else obj} is not a number JSON can hold"
    elif isinstance(obj, int) and not isinstance(obj, bool) and obj.bit_length() > 64:
        why = "an integer too large to show"
    elif depth > 64 and isinstance(obj, (dict, list, tuple)):
        why = "nested too deeply to show"
    elif isinstance(obj, Mapping):
        return {
            k: _finite(v, reasons, f"{path}.{k}" if path else str(k), depth + 1)
            for k, v in obj.items()
        }
    elif isinstance(obj, (list, tuple)):
        return [_finite(v, reasons, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
    else:
        return obj
    if reasons is not None:
        reasons[path] = why
    return None


format_duration = format_hms  # ``HH:MM:SS`` or None (kept under its old name)


#: Run states of :func:`run_state`, for the page's badge.
RUN_STATES = ("training", "validating", "paused", "finished", "stopped", "unknown")


def run_state(
    values: Mapping[str, Any],
    *,
    heartbeat_age: float | None = None,
    stale_after: float | None = None,
) -> dict[str, Any]:
    """What the run is doing now: ``{"state": one of RUN_STATES, "reason": str}``.

    A run whose files show no life for ``stale_after`` seconds (``heartbeat_age``, from
    ``vsrkit monitor``) is ``stopped`` (or ``finished`` when it reached ``step_max``),
    whatever its last statistics said; so is one whose ``training_active`` is false.

    Example:
        >>> run_state({"training_active": True, "step_current": 5, "step_max": 9},
        ...           heartbeat_age=900, stale_after=300)["state"]
        'stopped'
    """
    step, step_max = _number(values.get("step_current")), _number(values.get("step_max"))
    done = step is not None and step_max is not None and step >= step_max
    active = values.get("training_active")
    stale = heartbeat_age is not None and stale_after is not None and heartbeat_age > stale_after
    if stale:
        since = format_duration(heartbeat_age)
        state = "finished" if done else "stopped"
        return {"state": state, "reason": f"no sign of life from the run for {since}"}
    if done and heartbeat_age is not None:  # a run folder whose last statistics are the end
        return {"state": "finished", "reason": "the run reached its last step"}
    if active is False:
        return {
            "state": "finished" if done else "stopped",
            "reason": "the run reached its last step" if done else "the run ended early",
        }
    if values.get("training_paused") is True:
        return {"state": "paused", "reason": "paused from the monitor"}
    if values.get("validation_running") is True:
        return {"state": "validating", "reason": "a validation runs"}
    if active is True:
        return {"state": "training", "reason": "the loop runs"}
    return {"state": "unknown", "reason": "the statistics do not say whether the run is active"}


def status_document(
    values: Mapping[str, Any],
    *,
    measured_at_step: Mapping[str, int] | None = None,
    now: float | None = None,
    heartbeat_age: float | None = None,
    stale_after: float | None = None,
) -> dict[str, Any]:
    """The ``/api/status`` document for one set of statistics fields.

    Args:
        values: Latest value of each statistics field (absent = never measured).
        measured_at_step: Step at which each field was measured, if known.
        now: Timestamp to report when ``last_update_time`` is missing (default: now).
        heartbeat_age: Seconds since the run last showed life (``vsrkit monitor`` reads it
            from the run folder's files); None when unknown (a live run).
        stale_after: A heartbeat older than this means the run stopped.

    Returns:
        The seed keys (see :data:`SEED_KEYS`; ``iter_speed`` = 1 / ``iteration_duration`` in
        it/s; ``timestamp`` = ``last_update_time``; ``time_remaining`` = the steps left at
        ``iter_speed``, the loop's ``eta_total_formatted`` when that cannot be computed,
        None once the run stopped), plus ``run_state`` (:func:`run_state`),
        ``eta_seconds``, ``is_paused``, ``epoch``, ``step_max``, ``progress`` (0..1),
        ``lr_phase``, ``adam_momentum``, ``eta_epoch``, ``loss_distribution``,
        ``weight_distribution``, the activity on one scale (``activity_scale``,
        ``peak_activity``, ``streams``, ``layers``, ``layer_levels``), ``fields`` (every
        field, non-finite numbers as None), ``missing_reasons`` (why such a field is None)
        and ``measured_at_step``.

    Example:
        >>> doc = status_document({"step_current": 10, "iteration_duration": 0.5})
        >>> doc["iteration"], doc["iter_speed"], doc["total_loss"]
        (10, 2.0, None)
    """
    missing: dict[str, str] = {}
    values = finite_json(values, missing)
    recorded = values.get("missing_reasons")  # a statistics file's own (or the reader's) notes
    if isinstance(recorded, Mapping):
        missing = {**{str(k): str(v) for k, v in recorded.items()}, **missing}
    doc: dict[str, Any] = {key: values.get(field) for key, field in SEED_KEYS.items()}
    duration = _number(values.get("iteration_duration"))
    speed = 1.0 / duration if duration and duration > 0 else None
    doc["iter_speed"] = speed
    stamp = _number(values.get("last_update_time"))
    doc["timestamp"] = stamp if stamp is not None else (time.time() if now is None else now)
    step, step_max = _number(values.get("step_current")), _number(values.get("step_max"))
    state = run_state(values, heartbeat_age=heartbeat_age, stale_after=stale_after)
    running = state["state"] not in ("finished", "stopped")
    eta = eta_epoch = None
    if running and speed and step is not None and step_max is not None:
        eta = max(0.0, step_max - step) / speed
        epoch_step, epoch_steps = (
            _number(values.get("epoch_step_current")),
            _number(values.get("epoch_step_total")),
        )
        if epoch_step is not None and epoch_steps is not None:
            eta_epoch = max(0.0, epoch_steps - epoch_step) / speed
    if running:  # the ETA of the speed card's rate; the loop's own figure where it is unknown
        doc["time_remaining"] = format_duration(eta) or values.get("eta_total_formatted")
        eta_epoch_text = format_duration(eta_epoch) or values.get("eta_epoch_formatted")
    else:
        doc["time_remaining"] = eta_epoch_text = None
    doc.update(
        run_state=state,
        eta_seconds=eta,
        is_paused=values.get("training_paused"),
        epoch=values.get("epoch_num"),
        epoch_step=values.get("epoch_step_current"),
        epoch_steps=values.get("epoch_step_total"),
        step_max=values.get("step_max"),
        progress=(min(1.0, step / step_max) if step is not None and step_max else None),
        lr_phase=values.get("lr_phase_name"),
        adam_momentum=values.get("adam_momentum_avg"),
        eta_epoch=eta_epoch_text,
        rss_gb=values.get("process_rss_gb"),
        loss_distribution=distribution(values, 0),
        weight_distribution=distribution(values, 1),
        **_activity_parts(values.get("layer_activity_map"), values.get("layer_activity_peak")),
        fields=dict(values),
        missing_reasons=missing,
        measured_at_step=dict(measured_at_step or {}),
    )
    return doc
