"""Adapters that embed vsrkit components in other trainers.

- :mod:`vsrkit.integrations.lightning`: ``VsrkitCallback``, ``VsrkitCheckpoint`` (+ its
  ``VsrkitCheckpointIO`` plugin) for Lightning (``pip install 'vsrkit[lightning]'``).
- :mod:`vsrkit.integrations.accelerate`: ``VsrkitAccelerate``, helpers an Accelerate loop
  calls (``pip install 'vsrkit[accelerate]'``).

The framework-free glue both use (``VsrkitHooks``: what a loop does with the components at
each step, log interval, poll step, validation and save) is importable from here, for a
trainer of your own. Import the submodule you need; importing this package imports neither
torch nor a framework.
See ``docs/integrations.md``.
"""

from __future__ import annotations

from vsrkit.integrations._common import (
    DistOps,
    IntegrationError,
    IntervalOutcome,
    LocalOps,
    LossAccumulator,
    VsrkitHooks,
    scale_lrs,
)

__all__ = [
    "DistOps",
    "IntegrationError",
    "IntervalOutcome",
    "LocalOps",
    "LossAccumulator",
    "VsrkitHooks",
    "scale_lrs",
]
