"""Adapters that embed vsrkit components in other trainers.

- :mod:`vsrkit.integrations.lightning`: ``VsrkitCallback``, ``VsrkitCheckpoint`` (+ its
  ``VsrkitCheckpointIO`` plugin) for Lightning (``pip install 'vsrkit[lightning]'``).
- :mod:`vsrkit.integrations.accelerate`: ``VsrkitAccelerate``, helpers an Accelerate loop
  calls (``pip install 'vsrkit[accelerate]'``).

Both are thin: what a loop does with the components is :class:`vsrkit.loop.LoopCore`, which
a trainer of your own can use directly (``docs/loop.md``). Import the submodule you need;
importing this package imports neither torch nor a framework. See ``docs/integrations.md``.

The names this package exported before the loop core (``VsrkitHooks``, ``DistOps``,
``LocalOps``, ``IntervalOutcome``, ``scale_lrs``, ``LossAccumulator``) still import from
here for one more release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from typing import Any

from vsrkit._deprecated import moved
from vsrkit.integrations.errors import IntegrationError

__all__ = ["IntegrationError"]

_moved = moved(
    __name__,
    {
        "DistOps": "vsrkit.loop",
        "LocalOps": "vsrkit.loop",
        "IntervalOutcome": "vsrkit.loop",
        "scale_lrs": "vsrkit.loop",
        "LossAccumulator": "vsrkit.stats",
    },
    stacklevel=3,
)


def __getattr__(name: str) -> Any:
    if name == "VsrkitHooks":
        warnings.warn(
            "vsrkit.integrations.VsrkitHooks is deprecated; use vsrkit.loop.LoopCore "
            "(end_of_step(step) with loop.lr = OptimizerLR(optimizer, schedulers))",
            DeprecationWarning,
            stacklevel=2,
        )
        from vsrkit.integrations._hooks import VsrkitHooks

        return VsrkitHooks
    return _moved(name)
