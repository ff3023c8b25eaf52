"""vsrkit: training-loop components for PyTorch trainers.

Every public name is importable from here and is loaded lazily, so ``import vsrkit`` (and
``vsrkit --help``) stays fast and does not import torch.

Example:
    >>> import vsrkit
    >>> vsrkit.__version__ != ""
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsrkit._deprecated import moved
from vsrkit._lazy import lazy_names
from vsrkit._version import __version__
from vsrkit.errors import VsrkitError

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # checkpoint
    "CheckpointManager": "vsrkit.checkpoint",
    "CheckpointRecord": "vsrkit.checkpoint",
    "parse_checkpoint_name": "vsrkit.checkpoint",
    "format_checkpoint_name": "vsrkit.checkpoint",
    "LatestN": "vsrkit.checkpoint",
    "BestN": "vsrkit.checkpoint",
    "EveryNSteps": "vsrkit.checkpoint",
    "KeepTagged": "vsrkit.checkpoint",
    "AnyOf": "vsrkit.checkpoint",
    "ResumeCandidate": "vsrkit.checkpoint",
    "capture_rng_state": "vsrkit.checkpoint",
    "restore_rng_state": "vsrkit.checkpoint",
    # loop
    "LoopCore": "vsrkit.loop",
    "StopSignal": "vsrkit.loop",
    # adaptive
    "PlateauTracker": "vsrkit.adaptive",
    "PlateauEvent": "vsrkit.adaptive",
    "PlateauReason": "vsrkit.adaptive",
    "LRBoostPolicy": "vsrkit.adaptive",
    "apply_lr": "vsrkit.adaptive",
    "AdaptiveLossWeights": "vsrkit.adaptive",
    "GradClipAdapter": "vsrkit.adaptive",
    "DynamicThreshold": "vsrkit.adaptive",
    # config
    "RuntimeConfigManager": "vsrkit.config",
    "ConfigChange": "vsrkit.config",
    "SubmitResult": "vsrkit.config",
    "RuntimeConfigError": "vsrkit.config",
    "validate_config": "vsrkit.config",
    # stats
    "MetricsSnapshot": "vsrkit.stats",
    "DeferredStatsWriter": "vsrkit.stats",
    "TensorBoardLogger": "vsrkit.stats",
    "load_statistics": "vsrkit.stats",
    "Measurement": "vsrkit.stats",
    "STAT_FIELDS": "vsrkit.stats",
    "validate_statistics": "vsrkit.stats",
    # monitor
    "MonitorServer": "vsrkit.monitor",
    "ActionQueue": "vsrkit.monitor",
    "TerminalView": "vsrkit.monitor",
}

__all__ = ["VsrkitError", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.adaptive import (  # noqa: F401
        AdaptiveLossWeights,
        DynamicThreshold,
        GradClipAdapter,
        LRBoostPolicy,
        PlateauEvent,
        PlateauReason,
        PlateauTracker,
        apply_lr,
    )
    from vsrkit.checkpoint import (  # noqa: F401
        AnyOf,
        BestN,
        CheckpointManager,
        CheckpointRecord,
        EveryNSteps,
        KeepTagged,
        LatestN,
        ResumeCandidate,
        capture_rng_state,
        format_checkpoint_name,
        parse_checkpoint_name,
        restore_rng_state,
    )
    from vsrkit.config import (  # noqa: F401
        ConfigChange,
        RuntimeConfigError,
        RuntimeConfigManager,
        SubmitResult,
        validate_config,
    )
    from vsrkit.loop import LoopCore, StopSignal  # noqa: F401
    from vsrkit.monitor import ActionQueue, MonitorServer, TerminalView  # noqa: F401
    from vsrkit.stats import (  # noqa: F401
        STAT_FIELDS,
        DeferredStatsWriter,
        Measurement,
        MetricsSnapshot,
        TensorBoardLogger,
        load_statistics,
        validate_statistics,
    )


_lazy_getattr, __dir__ = lazy_names(__name__, _LAZY, __all__)
# names that moved; they work for one more release, with a DeprecationWarning
_moved = moved(__name__, {"prompt_for_checkpoint": "vsrkit.cli.prompt"}, stacklevel=3)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return _lazy_getattr(name)
    return _moved(name)
