"""The fields of a ``Statistik_<step>.json`` file: names, JSON types, units and groups.

The names are those of the seed trainer's files, so users' scripts keep working. Each field
belongs to one group, which decides where its value comes from when a file is written:

- ``"training"``: measured by the training loop (losses, learning rate, loss weights). A file
  for validation step V waits until each of these was measured at a step after V.
- ``"validation"``: frozen when the validation is requested (quality metrics).
- ``"progress"`` / ``"adaptive"`` / ``"performance"`` / ``"status"``: the latest measurement
  from the :class:`~vsrkit.stats.MetricsSnapshot`, used only if it was taken at step V or later.

A loss term's fields come from one map, :data:`TERM_FIELD_NAMES`: the terms are ``l1``,
``ms``, ``grad`` and ``perceptual`` everywhere in vsrkit, and only these field names keep the
seed's ``gradient`` for the ``grad`` term.

Example:
    >>> FIELDS["l1_loss_value"].unit
    'loss'
    >>> loss_field("grad"), weight_field("grad")
    ('gradient_loss_value', 'gradient_weight_current')
    >>> "quality_ki_value" in VALIDATION_FIELDS
    True
"""

from __future__ import annotations

from typing import NamedTuple

from vsrkit._terms import TERM_FIELD_NAMES, loss_field, weight_field

__all__ = [
    "DEFAULT_TRAINING_FIELDS",
    "FIELDS",
    "LOSS_FIELDS",
    "STAT_FIELDS",
    "TERM_FIELD_NAMES",
    "VALIDATION_FIELDS",
    "FieldSpec",
    "loss_field",
    "weight_field",
]


class FieldSpec(NamedTuple):
    """One field of the statistics file.

    Attributes:
        name: Key in the JSON file.
        type: JSON type: ``"integer"``, ``"number"``, ``"string"``, ``"boolean"``, ``"object"``.
        unit: Unit of the value (``"-"`` when it has none).
        group: ``"training"``, ``"validation"``, ``"progress"``, ``"adaptive"``,
            ``"performance"`` or ``"status"``.
        meaning: One-line meaning (the full text is in ``docs/statistics.md``).

    Example:
        >>> FIELDS["vram_usage_gb"].unit, FIELDS["vram_usage_gb"].group
        ('GiB', 'performance')
    """

    name: str
    type: str
    unit: str
    group: str
    meaning: str


_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("step_current", "integer", "step", "progress", "validation step V of this file"),
    FieldSpec("epoch_num", "integer", "epoch", "progress", "current epoch (1-based)"),
    FieldSpec("step_max", "integer", "step", "progress", "total steps planned for the run"),
    FieldSpec("epoch_step_current", "integer", "step", "progress", "step within the epoch"),
    FieldSpec("epoch_step_total", "integer", "step", "progress", "steps per epoch"),
    FieldSpec("learning_rate_value", "number", "-", "training", "learning rate in force"),
    FieldSpec("lr_phase_name", "string", "-", "progress", "LR schedule phase"),
    FieldSpec("total_loss_value", "number", "loss", "training", "weighted total loss"),
    FieldSpec("l1_loss_value", "number", "loss", "training", "L1 (Charbonnier) loss term"),
    FieldSpec("ms_loss_value", "number", "loss", "training", "multi-scale loss term"),
    FieldSpec("gradient_loss_value", "number", "loss", "training", "image-gradient loss term"),
    FieldSpec("perceptual_loss_value", "number", "loss", "training", "perceptual loss term"),
    FieldSpec("l1_weight_current", "number", "-", "training", "weight of the L1 term"),
    FieldSpec("ms_weight_current", "number", "-", "training", "weight of the MS term"),
    FieldSpec("gradient_weight_current", "number", "-", "training", "weight of the gradient term"),
    FieldSpec("perceptual_weight_current", "number", "-", "training", "weight of perceptual term"),
    FieldSpec("gradient_clip_val", "number", "grad norm", "adaptive", "gradient clip threshold"),
    FieldSpec("adaptive_mode", "string", "-", "adaptive", "mode of the adaptive weights"),
    FieldSpec("adaptive_is_cooldown", "boolean", "-", "adaptive", "LR boost cooldown active"),
    FieldSpec("adaptive_cooldown_remaining", "integer", "step", "adaptive", "cooldown steps left"),
    FieldSpec("adaptive_plateau_counter", "integer", "step", "adaptive", "steps without progress"),
    FieldSpec("adaptive_lr_boost_available", "boolean", "-", "adaptive", "an LR boost may fire"),
    FieldSpec("adaptive_perceptual_trend", "number", "loss/step", "adaptive", "perceptual trend"),
    FieldSpec("quality_lr_value", "number", "SSIM", "validation", "SSIM(bicubic input, GT)"),
    FieldSpec("quality_ki_value", "number", "SSIM", "validation", "SSIM(model output, GT)"),
    FieldSpec("quality_improvement_value", "number", "SSIM", "validation", "ki minus lr quality"),
    FieldSpec("quality_ki_to_gt_value", "number", "1-SSIM", "validation", "output distance to GT"),
    FieldSpec("quality_lr_to_gt_value", "number", "1-SSIM", "validation", "input distance to GT"),
    FieldSpec("validation_loss_value", "number", "loss", "validation", "total loss on val set"),
    FieldSpec("best_quality_ever", "number", "SSIM", "validation", "best quality_ki so far"),
    FieldSpec("iteration_duration", "number", "s", "performance", "seconds per training step"),
    FieldSpec("vram_usage_gb", "number", "GiB", "performance", "peak GPU memory allocated"),
    FieldSpec("adam_momentum_avg", "number", "-", "performance", "mean Adam first moment |m|"),
    FieldSpec("eta_total_formatted", "string", "H:MM:SS", "performance", "time left for run"),
    FieldSpec("eta_epoch_formatted", "string", "H:MM:SS", "performance", "time left for epoch"),
    FieldSpec("layer_activity_map", "object", "%", "performance", "activity per layer"),
    FieldSpec("training_active", "boolean", "-", "status", "the loop is running"),
    FieldSpec("validation_running", "boolean", "-", "status", "a validation is in progress"),
    FieldSpec("training_paused", "boolean", "-", "status", "training is paused"),
    FieldSpec("last_update_time", "number", "Unix s", "status", "when this file was assembled"),
)

#: Every seed field, by name, in file order.
FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _SPECS}

#: The seed field names in file order.
STAT_FIELDS: tuple[str, ...] = tuple(FIELDS)

#: The loss fields: never ``0`` in place of a missing value.
LOSS_FIELDS: tuple[str, ...] = (
    "total_loss_value",
    "l1_loss_value",
    "ms_loss_value",
    "gradient_loss_value",
    "perceptual_loss_value",
)

#: Fields that must be measured after the validation step before a file is complete.
DEFAULT_TRAINING_FIELDS: tuple[str, ...] = tuple(s.name for s in _SPECS if s.group == "training")

#: Fields frozen by :meth:`DeferredStatsWriter.request`.
VALIDATION_FIELDS: tuple[str, ...] = tuple(s.name for s in _SPECS if s.group == "validation")
