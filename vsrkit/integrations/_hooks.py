"""Deprecated: ``VsrkitHooks``, the adapters' glue before :class:`vsrkit.loop.LoopCore`.

It is the loop core with the old call signatures (the optimizer and its schedulers passed to
:meth:`end_of_step`); import :class:`~vsrkit.loop.LoopCore` instead (``docs/loop.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vsrkit.loop import IntervalOutcome, LoopCore, OptimizerLR

__all__ = ["VsrkitHooks", "hooks_property"]


class VsrkitHooks(LoopCore):
    """Deprecated alias of :class:`~vsrkit.loop.LoopCore` with the old call signatures.

    Example:
        >>> import tempfile
        >>> VsrkitHooks(run_dir=tempfile.mkdtemp(), terms=("mse",)).log_every
        10
    """

    def _optimizer(self, optimizer: Any, schedulers: Iterable[Any]) -> None:
        if optimizer is not None:
            self.lr = OptimizerLR(optimizer, schedulers)

    def end_of_step(  # type: ignore[override]
        self,
        step: int,
        optimizer: Any = None,
        *,
        schedulers: Iterable[Any] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> IntervalOutcome | None:
        self._optimizer(optimizer, schedulers)
        return super().end_of_step(step, extra=extra)

    def apply_changes(  # type: ignore[override]
        self,
        changes: Sequence[Any],
        step: int,
        optimizer: Any = None,
        schedulers: Iterable[Any] = (),
    ) -> list[str]:
        self._optimizer(optimizer, schedulers)
        return super().apply_changes(changes, step)

    def restore_runtime(self, step: int, optimizer: Any = None) -> list[str]:  # type: ignore[override]
        self._optimizer(optimizer, ())
        return super().restore_runtime(step)


def hooks_property(owner: str) -> property:
    """The deprecated ``.hooks`` attribute of an adapter: its ``.loop``, with a warning."""

    def hooks(self: Any) -> LoopCore:
        warnings.warn(
            f"{owner}.hooks is deprecated; use {owner}.loop", DeprecationWarning, stacklevel=2
        )
        return self.loop  # type: ignore[no-any-return]

    return property(hooks, doc="Deprecated name of :attr:`loop`.")
