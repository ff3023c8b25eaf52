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

__all__ = [
    "LOSS_TERMS",
    "SEED_KEYS",
    "activity_level",
    "distribution",
    "peak_activity",
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
    "l1": ("l1_loss_value", "l1_weight_current"),
    "ms": ("ms_loss_value", "ms_weight_current"),
    "gradient": ("gradient_loss_value", "gradient_weight_current"),
    "perceptual": ("perceptual_loss_value", "perceptual_weight_current"),
}

_STREAMS = ("backward", "forward", "fusion")


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools and non-numbers are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
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


def activity_level(value: float) -> str:
    """Colour band of a layer activity: low < 0.5 <= moderate < 1.0 <= elevated < 1.5 <= high."""
    if value < 0.5:
        return "low"
    if value < 1.0:
        return "moderate"
    if value < 1.5:
        return "elevated"
    return "high"


def peak_activity(activity: Any, peak: Any = None) -> dict[str, Any] | None:
    """The most active layer with its band and warning, or None.

    ``peak`` is the loop's ``layer_activity_peak`` field, ``{"layer", "value"}`` with the raw
    mean |activation| the 0-2 bands are meant for; without it the largest value of
    ``layer_activity_map`` is taken as it is.
    """
    value = _number(peak.get("value")) if isinstance(peak, Mapping) else None
    if value is not None:
        layer = str(peak.get("layer"))
    elif isinstance(activity, Mapping):
        numbers = [(str(k), n) for k, v in activity.items() if (n := _number(v)) is not None]
        if not numbers:
            return None
        layer, value = max(numbers, key=lambda kv: kv[1])
    else:
        return None
    warning = None
    if value > 2.0:
        warning = "EXTREME activity: check training stability"
    elif value > 1.5:
        warning = "Unusually high activity"
    return {"layer": layer, "value": value, "level": activity_level(value), "warning": warning}


def stream_overview(activity: Any) -> dict[str, dict[str, Any]]:
    """Average activity per stream (Backward / Forward / Fusion), from the layer names."""
    groups: dict[str, list[float]] = {s: [] for s in _STREAMS}
    if isinstance(activity, Mapping):
        for name, value in activity.items():
            number = _number(value)
            lowered = str(name).lower()
            stream = next((s for s in _STREAMS if s in lowered), None)
            if number is not None and stream is not None:
                groups[stream].append(number)
    return {
        s: {"average": (sum(v) / len(v) if v else None), "layers": len(v)}
        for s, v in groups.items()
    }


def status_document(
    values: Mapping[str, Any],
    *,
    measured_at_step: Mapping[str, int] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The ``/api/status`` document for one set of statistics fields.

    Args:
        values: Latest value of each statistics field (absent = never measured).
        measured_at_step: Step at which each field was measured, if known.
        now: Timestamp to report when ``last_update_time`` is missing (default: now).

    Returns:
        The seed keys (see :data:`SEED_KEYS`; ``iter_speed`` = 1 / ``iteration_duration`` in
        it/s; ``timestamp`` = ``last_update_time``), plus ``is_paused``, ``epoch``, ``step_max``,
        ``progress`` (0..1), ``lr_phase``, ``adam_momentum``, ``eta_epoch``,
        ``loss_distribution``, ``weight_distribution``, ``peak_activity``, ``streams``,
        ``layers`` and ``fields`` (every field as given) and ``measured_at_step``.

    Example:
        >>> doc = status_document({"step_current": 10, "iteration_duration": 0.5})
        >>> doc["iteration"], doc["iter_speed"], doc["total_loss"]
        (10, 2.0, None)
    """
    doc: dict[str, Any] = {key: values.get(field) for key, field in SEED_KEYS.items()}
    duration = _number(values.get("iteration_duration"))
    doc["iter_speed"] = 1.0 / duration if duration and duration > 0 else None
    stamp = _number(values.get("last_update_time"))
    doc["timestamp"] = stamp if stamp is not None else (time.time() if now is None else now)
    step, step_max = _number(values.get("step_current")), _number(values.get("step_max"))
    activity = values.get("layer_activity_map")
    doc.update(
        is_paused=values.get("training_paused"),
        epoch=values.get("epoch_num"),
        epoch_step=values.get("epoch_step_current"),
        epoch_steps=values.get("epoch_step_total"),
        step_max=values.get("step_max"),
        progress=(min(1.0, step / step_max) if step is not None and step_max else None),
        lr_phase=values.get("lr_phase_name"),
        adam_momentum=values.get("adam_momentum_avg"),
        eta_epoch=values.get("eta_epoch_formatted"),
        rss_gb=values.get("process_rss_gb"),
        loss_distribution=distribution(values, 0),
        weight_distribution=distribution(values, 1),
        peak_activity=peak_activity(activity, values.get("layer_activity_peak")),
        streams=stream_overview(activity),
        layers=(
            {str(k): v for k, v in activity.items() if _number(v) is not None}
            if isinstance(activity, Mapping)
            else {}
        ),
        fields=dict(values),
        measured_at_step=dict(measured_at_step or {}),
    )
    return doc
