"""TensorBoardLogger: the seed trainer's TensorBoard categories over ``SummaryWriter``.

Tags written (same names as the seed system, so saved dashboards keep working)::

    Loss/<name>                          scalar    log_losses
    LR, LR/<group>                       scalar    log_lr
    Quality/<name>                       scalar    log_quality
    Config/Changes                       text      log_config_change
    Config/Parameters/<key>              scalar    log_config_change, log_initial_config
    Config/Initial_Configuration         text      log_initial_config
    Plateau/Counter, Plateau/EMA_Loss,
    Plateau/Best_Quality,
    Plateau/Progress_Percent             scalar    log_plateau_state
    Weights/Distribution                 histogram log_weights
    Weights/Distribution/<term>_percent  scalar    log_weights
    Weights/Sum                          scalar    log_weights
    Events/Config_Change                 marker    log_config_change
    Events/Validation_Run                marker    log_validation
    Events/Validation, Events/Timeline   text      log_validation, log_config_change
    hparams (plugin)                     -         log_hyperparameters

Text goes through ``SummaryWriter.add_text``, which stores it under ``<tag>/text_summary``.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any

from vsrkit.stats.errors import StatisticsValueError

__all__ = ["TensorBoardLogger"]

logger = logging.getLogger(__name__)

_PLATEAU_KEYS: dict[str, tuple[str, ...]] = {
    "Plateau/Counter": ("counter", "plateau_counter"),
    "Plateau/EMA_Loss": ("ema_loss", "ema"),
    "Plateau/Best_Quality": ("best_quality", "best"),
    "Plateau/Progress_Percent": ("progress_percent",),
}


def _lookup(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if _is_number(value):
        return float(value)
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float) or (_is_number(value) and not isinstance(value, int)):
        return f"{float(value):.6g}"
    return str(value)


class TensorBoardLogger:
    """Writes training curves, config changes, plateau state and events to TensorBoard.

    Every method is a no-op with ``is_main=False`` (ranks other than 0) or ``log_dir=None``;
    then neither torch nor tensorboard is imported. Values are plain Python numbers; the
    logger never syncs with the GPU. Call it from one thread (the training loop).

    Example:
        >>> import tempfile
        >>> tb = TensorBoardLogger(tempfile.mkdtemp())
        >>> tb.log_losses({"l1": 0.0156, "total": 0.0234}, step=100)
        >>> tb.log_config_change("max_lr", 1.5e-4, 2e-4, step=120)
        >>> tb.close()
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None,
        *,
        purge_step: int | None = None,
        is_main: bool = True,
        flush_secs: int = 120,
        enabled: bool | None = None,
    ) -> None:
        """Open the event file.

        Args:
            log_dir: Folder of the event files (``<run>/tensorboard``); ``None``: no
                TensorBoard, every method is a no-op.
            purge_step: On resume, the checkpoint step: events at or after it from the
                crashed run are hidden.
            is_main: ``False`` on ranks other than 0: every method is a no-op.
            flush_secs: How often the writer flushes on its own.
            enabled: Deprecated name of ``is_main``.
        """
        if enabled is not None:
            warnings.warn(
                "TensorBoardLogger(enabled=) is deprecated; use is_main= (or log_dir=None "
                "for no TensorBoard)",
                DeprecationWarning,
                stacklevel=2,
            )
            is_main = enabled
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.is_main = bool(is_main)
        #: Whether anything is written (the main rank, with a folder).
        self.enabled = self.is_main and self.log_dir is not None
        self._writer: Any = None
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=self.log_dir, purge_step=purge_step, flush_secs=flush_secs
            )

    # ------------------------------------------------------------------ scalars

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if not _is_number(value):
            raise TypeError(f"TensorBoard tag {tag!r}: expected a number, got {value!r}")
        self._writer.add_scalar(tag, float(value), step)

    def log_scalars(self, values: Mapping[str, float], step: int, *, prefix: str) -> None:
        """Any group of numbers as ``<prefix>/<name>`` scalars (e.g. ``Gradients/<module>``)."""
        if self._writer is None:
            return
        for name, value in values.items():
            self._scalar(f"{prefix}/{name}", value, step)

    def log_losses(self, losses: Mapping[str, float], step: int) -> None:
        """``Loss/<name>`` for each loss (e.g. ``{"l1": 0.0156, "total": 0.0234}``)."""
        if self._writer is None:
            return
        for name, value in losses.items():
            self._scalar(f"Loss/{name}", value, step)

    def log_lr(self, lr: float | Mapping[str, float], step: int) -> None:
        """``LR`` for one learning rate, or ``LR/<group>`` for a mapping of groups."""
        if self._writer is None:
            return
        if isinstance(lr, Mapping):
            for group, value in lr.items():
                self._scalar(f"LR/{group}", value, step)
        else:
            self._scalar("LR", lr, step)

    def log_quality(self, metrics: Mapping[str, float], step: int) -> None:
        """``Quality/<name>`` for each validation metric (e.g. ``{"KI": 0.62, "LR": 0.54}``)."""
        if self._writer is None:
            return
        for name, value in metrics.items():
            self._scalar(f"Quality/{name}", value, step)

    # ------------------------------------------------------------------ config

    def log_initial_config(self, config: Mapping[str, Any], step: int = 0) -> None:
        """``Config/Initial_Configuration`` (a table) and ``Config/Parameters/<key>``."""
        if self._writer is None:
            return
        rows = ["| key | value |", "|---|---|"]
        for key in sorted(config):
            rows.append(f"| {key} | {_fmt(config[key])} |")
            if _is_number(config[key]):
                self._scalar(f"Config/Parameters/{key}", config[key], step)
        self._writer.add_text("Config/Initial_Configuration", "\n".join(rows), step)

    def log_config_change(self, key: str, old: Any, new: Any, step: int) -> None:
        """One accepted runtime-config change: text, parameter curve, event marker."""
        if self._writer is None:
            return
        line = f"Step {step}: {key} {_fmt(old)} → {_fmt(new)}"
        self._writer.add_text("Config/Changes", line, step)
        if _is_number(new):
            self._scalar(f"Config/Parameters/{key}", new, step)
        self._writer.add_scalar("Events/Config_Change", 1.0, step)
        self._writer.add_text("Events/Timeline", f"Step {step}: config {key} → {_fmt(new)}", step)

    # ------------------------------------------------------------------ adaptive

    def log_plateau_state(self, event: Any, step: int) -> None:
        """``Plateau/*`` from a plateau event or a mapping.

        Reads ``counter`` (or ``plateau_counter``), ``ema_loss`` (or ``ema``),
        ``best_quality`` (or ``best``) and ``progress_percent``; without the latter but with
        ``patience`` > 0, the progress is ``100 * counter / patience``. Absent values are
        not written.

        Raises:
            ValueError: If ``event`` has none of these values.
        """
        if self._writer is None:
            return
        values = {tag: _lookup(event, names) for tag, names in _PLATEAU_KEYS.items()}
        patience = _lookup(event, ("patience",))
        counter = values["Plateau/Counter"]
        if (
            values["Plateau/Progress_Percent"] is None
            and _is_number(patience)
            and patience > 0
            and _is_number(counter)
        ):
            values["Plateau/Progress_Percent"] = 100.0 * float(counter) / float(patience)
        present = {tag: v for tag, v in values.items() if v is not None}
        if not present:
            raise StatisticsValueError(
                "log_plateau_state: the event has none of counter, ema_loss, best_quality, "
                f"progress_percent: {event!r}"
            )
        for tag, value in present.items():
            self._scalar(tag, value, step)

    def log_weights(self, weights: Mapping[str, float], step: int) -> None:
        """``Weights/Distribution`` (histogram), ``.../<term>_percent`` and ``Weights/Sum``.

        Percentages are written only when the sum is positive (never a 0 in their place).
        """
        if self._writer is None:
            return
        import numpy as np

        for term, value in weights.items():
            if not _is_number(value):
                raise TypeError(f"log_weights: weight {term!r} must be a number, got {value!r}")
        total = float(sum(float(v) for v in weights.values()))
        self._writer.add_histogram(
            "Weights/Distribution", np.asarray([float(v) for v in weights.values()]), step
        )
        self._writer.add_scalar("Weights/Sum", total, step)
        if total > 0 and math.isfinite(total):
            for term, value in weights.items():
                pct = 100.0 * float(value) / total
                self._writer.add_scalar(f"Weights/Distribution/{term}_percent", pct, step)
        else:
            logger.warning("log_weights at step %d: sum is %r, no percentages written", step, total)

    # ------------------------------------------------------------------ events

    def log_validation(self, results: Mapping[str, Any], step: int) -> None:
        """A validation run: ``Events/Validation_Run`` marker, ``Events/Validation`` text
        (one line per result), ``Events/Timeline``; then flushes the event file."""
        if self._writer is None:
            return
        self._writer.add_scalar("Events/Validation_Run", 1.0, step)
        lines = [f"**Validation at step {step}**", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in results.items()]
        self._writer.add_text("Events/Validation", "\n".join(lines), step)
        self._writer.add_text("Events/Timeline", f"Step {step}: validation", step)
        self._writer.flush()

    def log_event(self, text: str, step: int) -> None:
        """A free-form line on ``Events/Timeline`` (LR boost, pause, resume, ...)."""
        if self._writer is None:
            return
        self._writer.add_text("Events/Timeline", f"Step {step}: {text}", step)

    def log_hyperparameters(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Hyperparameters and result metrics for the HParams dashboard.

        Written into this logger's own event file (no time-stamped sub-folder, unlike
        ``SummaryWriter.add_hparams``). Values other than bool/int/float/str are written as
        text. Give metrics tags unused elsewhere, e.g. ``"hparam/best_quality"``.
        """
        if self._writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {key: _hparam_value(value) for key, value in hparams.items()}
        for key, value in metrics.items():
            if not _is_number(value):
                raise TypeError(f"log_hyperparameters: metric {key!r} must be a number")
        exp, ssi, sei = hparams_summary(clean, {k: float(v) for k, v in metrics.items()})
        file_writer = self._writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary, step)
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), step)

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Write buffered events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
