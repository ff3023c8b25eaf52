"""Reading a run's ``Statistik_<step>.json`` files back: load, export, compare, plot."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from vsrkit._atomic import atomic_write_bytes
from vsrkit.stats.fields import LOSS_FIELDS, STAT_FIELDS
from vsrkit.stats.schema import StatisticsError, StatisticsValidationError, validate_statistics

__all__ = [
    "EXTRA_FIELDS",
    "compare_statistics",
    "load_statistics",
    "plot_statistics",
    "statistics_step",
    "write_csv",
]

logger = logging.getLogger(__name__)

#: Fields vsrkit adds to the seed fields, in file order.
EXTRA_FIELDS: tuple[str, ...] = (
    "measured_at_step",
    "complete",
    "stale_fields",
    "missing_reasons",
    "schema_version",
    "written_at_step",
    "runtime_config_version",
)

#: Key under which :func:`load_statistics` records the step taken from the file name.
STEP_KEY = "step_current"


def _name_pattern(template: str) -> re.Pattern[str]:
    if "{step}" not in template:
        raise StatisticsError(f"filename template needs a '{{step}}' field: {template!r}")
    prefix, _, suffix = template.partition("{step}")
    return re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))


def statistics_step(record: Mapping[str, Any]) -> int:
    """The validation step of a loaded record (from ``step_current``)."""
    return int(record[STEP_KEY])


def load_statistics(
    run_dir: str | os.PathLike[str], *, filename_template: str = "Statistik_{step}.json"
) -> list[dict[str, Any]]:
    """Read every statistics file of a run folder, sorted by step.

    Files from the seed trainer, files with ``"complete": false`` and files that do not match
    the schema are returned with a logged warning; a file that is not JSON is skipped with a
    warning. Temporary files of an interrupted write are ignored. ``step_current`` is set
    from the file name where the file lacks it.

    Args:
        run_dir: The run folder.
        filename_template: Name of the files, with a ``{step}`` placeholder.

    Returns:
        One dict per file, in increasing step order.

    Raises:
        StatisticsError: If ``run_dir`` is not a folder.

    Example:
        >>> import tempfile
        >>> load_statistics(tempfile.mkdtemp())
        []
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise StatisticsError(
            f"{folder}: not a folder (expected a run folder with Statistik files)"
        )
    pattern = _name_pattern(filename_template)
    found: list[tuple[int, Path]] = []
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    records: list[tuple[int, dict[str, Any]]] = []
    for step, path in sorted(found):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("Skipping %s: cannot be read as JSON (%s)", path.name, exc)
            continue
        if not isinstance(doc, dict):
            logger.warning("Skipping %s: expected a JSON object, got %s", path.name, type(doc))
            continue
        try:
            validate_statistics(doc, source=path.name)
        except StatisticsValidationError as exc:
            first = exc.problems[0] if exc.problems else str(exc)
            logger.warning(
                "%s: old or partial file, read as is (%s%s)",
                path.name,
                first,
                f"; {len(exc.problems) - 1} more" if len(exc.problems) > 1 else "",
            )
        if doc.get("complete") is False:
            stale = doc.get("stale_fields") or []
            logger.warning(
                "%s: incomplete, stale fields: %s", path.name, ", ".join(map(str, stale))
            )
        file_step = doc.get(STEP_KEY)
        if not isinstance(file_step, int) or isinstance(file_step, bool):
            doc[STEP_KEY] = step
        elif file_step != step:
            logger.warning("%s: step_current is %d, file name says %d", path.name, file_step, step)
        records.append((step, doc))
    return [doc for _, doc in records]


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(STAT_FIELDS) + list(EXTRA_FIELDS)
    known = set(columns)
    others = sorted({k for r in records for k in r if k not in known})
    return columns + others


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def write_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write one CSV row per record (atomically). ``null`` is an empty cell, never 0.

    Columns: the seed fields, then vsrkit's extra fields, then any other key found.
    Mappings and lists are JSON text; booleans are ``true``/``false``.

    Raises:
        StatisticsError: The file cannot be written (missing or read-only folder, a full
            disk); the message names the file and why.
    """
    buffer = io.StringIO()
    columns = _columns(records)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_cell(record.get(c)) for c in columns])
    target = Path(path)
    _write_output(target, buffer.getvalue().encode("utf-8"))
    return target


def _write_output(target: Path, data: bytes) -> None:
    """Write an export atomically; an OS error becomes one :class:`StatisticsError` line."""
    folder = target.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise StatisticsError(f"cannot write {target}: {folder} {why}")
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise StatisticsError(f"cannot write {target}: {exc.strerror or exc}") from exc


_COMPARED = tuple(f for f in STAT_FIELDS if f not in ("layer_activity_map", "last_update_time"))


def _is_num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_statistics(
    run_a: Sequence[Mapping[str, Any]],
    run_b: Sequence[Mapping[str, Any]],
    step: int | None = None,
) -> tuple[int, list[tuple[str, Any, Any, float | None]]]:
    """Compare two runs at one validation step.

    Args:
        run_a: Records of the first run (from :func:`load_statistics`).
        run_b: Records of the second run.
        step: The step; ``None`` takes the latest step both runs have.

    Returns:
        ``(step, rows)``, one row ``(field, value_a, value_b, b_minus_a)`` per seed field
        (the difference is ``None`` unless both values are numbers).

    Raises:
        StatisticsError: If a run has no file at ``step`` or the runs share no step.
    """
    by_a = {statistics_step(r): r for r in run_a}
    by_b = {statistics_step(r): r for r in run_b}
    if step is None:
        common = sorted(set(by_a) & set(by_b))
        if not common:
            raise StatisticsError(
                "the runs share no validation step "
                f"(A: {sorted(by_a)[-5:]}, B: {sorted(by_b)[-5:]})"
            )
        step = common[-1]
    for label, by in (("A", by_a), ("B", by_b)):
        if step not in by:
            raise StatisticsError(f"run {label} has no statistics file for step {step}")
    a, b = by_a[step], by_b[step]
    rows: list[tuple[str, Any, Any, float | None]] = []
    for name in _COMPARED:
        va, vb = a.get(name), b.get(name)
        diff = float(vb) - float(va) if _is_num(va) and _is_num(vb) else None
        rows.append((name, va, vb, diff))
    return step, rows


def _series(records: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    out = []
    for r in records:
        v = r.get(name)
        out.append(float(v) if _is_num(v) else math.nan)  # NaN: a gap in the curve, never 0
    return out


def plot_statistics(
    records: Sequence[Mapping[str, Any]], out: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Plot quality, improvement, losses and plateau counter over the steps into a PNG.

    Missing values are gaps in the curves. Needs matplotlib (``pip install 'vsrkit[plot]'``).

    Raises:
        StatisticsError: If matplotlib is missing or there is nothing to plot.
    """
    if not records:
        raise StatisticsError("no statistics to plot")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise StatisticsError(
            f"plotting needs matplotlib, which is not installed ({exc}); "
            "install it with: pip install 'vsrkit[plot]'"
        ) from None
    steps = [statistics_step(r) for r in records]
    fig = Figure(figsize=(12, 8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels: list[tuple[Any, str, tuple[str, ...], str]] = [
        (axes[0][0], "Quality (SSIM)", ("quality_ki_value", "quality_lr_value"), "linear"),
        (axes[0][1], "Improvement (SSIM, KI - LR)", ("quality_improvement_value",), "linear"),
        (axes[1][0], "Losses", LOSS_FIELDS, "log"),
        (axes[1][1], "Plateau counter (steps)", ("adaptive_plateau_counter",), "linear"),
    ]
    for ax, label, names, scale in panels:
        for name in names:
            ys = _series(records, name)
            if any(not math.isnan(y) for y in ys):
                ax.plot(steps, ys, marker="o", markersize=3, label=name)
        if (
            scale == "log"
            and all(y > 0 for n in names for y in _series(records, n) if not math.isnan(y))
            and ax.lines
        ):
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = Path(out)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _write_output(target, buffer.getvalue())
    return target
