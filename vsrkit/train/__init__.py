"""The reference recipe behind ``vsrkit train`` (imports torch).

Example:
    >>> from vsrkit.train import TrainConfig
    >>> TrainConfig.from_sources(preset="quick").model
    'tiny'
"""

from __future__ import annotations

from vsrkit.train.config import PRESETS, TrainConfig, TrainConfigError
from vsrkit.train.recipe import TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainConfigError", "TrainResult", "train"]
