"""The one loop core: what a training loop does with the vsrkit components, written once.

- :class:`LoopCore`: accumulate on the device, decide at the log interval, route runtime
  changes, handle validation and the deferred statistics, one versioned checkpoint state.
- :class:`LoopState`: the loop's own variables (step, LR scale, best quality, ...).
- :class:`ScheduledLR` / :class:`OptimizerLR`: the LR the loop controls (:class:`LRControl`).
- :class:`DistOps` / :class:`LocalOps`: what the core needs from a process group.
- :class:`StopSignal`: SIGTERM/SIGINT as a flag the loop polls.

The reference recipe (``vsrkit train``), the Lightning callbacks and the Accelerate helpers
are built on it; a loop of your own can be too (``docs/loop.md``). Importing this package
does not import torch.

Example:
    >>> from vsrkit.loop import LoopState
    >>> LoopState().lr_scale
    1.0
"""

from __future__ import annotations

from vsrkit.loop.core import IntervalOutcome, LoopCore
from vsrkit.loop.dist import DistOps, LocalOps
from vsrkit.loop.errors import LoopError
from vsrkit.loop.lr import LRControl, OptimizerLR, ScheduledLR, scale_lrs
from vsrkit.loop.routes import ROUTES
from vsrkit.loop.signals import StopSignal
from vsrkit.loop.state import LoopState

__all__ = [
    "ROUTES",
    "DistOps",
    "IntervalOutcome",
    "LRControl",
    "LocalOps",
    "LoopCore",
    "LoopError",
    "LoopState",
    "OptimizerLR",
    "ScheduledLR",
    "StopSignal",
    "scale_lrs",
]
