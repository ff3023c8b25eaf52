"""Statistics: the live metrics snapshot, the ``Statistik_<step>.json`` files, TensorBoard.

- :class:`MetricsSnapshot`: thread-safe latest value of every field, with its step.
- :class:`DeferredStatsWriter`: one file per validation, written when its data is fresh.
- :class:`TensorBoardLogger`: the seed trainer's TensorBoard categories.
- :class:`LossAccumulator`: loss terms summed on the device, read once per log interval.
- :func:`load_statistics`: read a run's files back (``vsrkit stats`` on the command line).

Importing this package does not import torch, jsonschema or tensorboard.
"""

from __future__ import annotations

from vsrkit.stats.accumulator import LossAccumulator
from vsrkit.stats.analysis import (
    compare_statistics,
    load_statistics,
    plot_statistics,
    write_csv,
)
from vsrkit.stats.errors import StatisticsError, StatisticsValidationError, StatisticsValueError
from vsrkit.stats.fields import (
    DEFAULT_TRAINING_FIELDS,
    FIELDS,
    LOSS_FIELDS,
    STAT_FIELDS,
    VALIDATION_FIELDS,
    FieldSpec,
)
from vsrkit.stats.schema import SCHEMA_VERSION, load_schema, validate_statistics
from vsrkit.stats.snapshot import Measurement, MetricsSnapshot
from vsrkit.stats.tensorboard import TensorBoardLogger
from vsrkit.stats.writer import DeferredStatsWriter

__all__ = [
    "DEFAULT_TRAINING_FIELDS",
    "FIELDS",
    "LOSS_FIELDS",
    "SCHEMA_VERSION",
    "STAT_FIELDS",
    "VALIDATION_FIELDS",
    "DeferredStatsWriter",
    "FieldSpec",
    "LossAccumulator",
    "Measurement",
    "MetricsSnapshot",
    "StatisticsError",
    "StatisticsValidationError",
    "StatisticsValueError",
    "TensorBoardLogger",
    "compare_statistics",
    "load_schema",
    "load_statistics",
    "plot_statistics",
    "validate_statistics",
    "write_csv",
]
