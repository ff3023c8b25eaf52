"""Adapters that embed vsrkit components in other trainers.

- :mod:`vsrkit.integrations.lightning`: ``VsrkitCallback``, ``VsrkitCheckpoint`` (+ its
  ``VsrkitCheckpointIO`` plugin) for Lightning (``pip install 'vsrkit[lightning]'``).
- :mod:`vsrkit.integrations.accelerate`: ``VsrkitAccelerate``, helpers an Accelerate loop
  calls (``pip install 'vsrkit[accelerate]'``).

Import the submodule you need; importing this package imports neither torch nor a framework.
See ``docs/integrations.md``.
"""

from __future__ import annotations

__all__: list[str] = []
