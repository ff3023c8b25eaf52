"""Adaptive training components: plateau tracking, LR policy, loss weights, grad clipping.

Pure objects: they take floats and steps from the caller and return decisions; the loop
applies them. Importing this package does not import torch.
"""

from __future__ import annotations

from vsrkit.adaptive._common import AdaptiveError
from vsrkit.adaptive.clip import DynamicThreshold, GradClipAdapter
from vsrkit.adaptive.gradients import GradientMonitor, GradientReport, log_gradient_norms
from vsrkit.adaptive.loss_weights import AdaptiveLossWeights
from vsrkit.adaptive.lr import LRBoostPolicy, apply_lr, current_lrs
from vsrkit.adaptive.plateau import RUNTIME_KEYS, PlateauEvent, PlateauReason, PlateauTracker
from vsrkit.adaptive.warmup import LossWarmup, WarmupSchedule

__all__ = [
    "AdaptiveError",
    "AdaptiveLossWeights",
    "DynamicThreshold",
    "GradClipAdapter",
    "GradientMonitor",
    "GradientReport",
    "LossWarmup",
    "WarmupSchedule",
    "log_gradient_norms",
    "LRBoostPolicy",
    "apply_lr",
    "current_lrs",
    "PlateauEvent",
    "PlateauReason",
    "PlateauTracker",
    "RUNTIME_KEYS",
]
