"""What the loop core needs from a process group: :class:`DistOps`, and :class:`LocalOps`."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DistOps", "LocalOps"]


class DistOps(Protocol):
    """A process group as the loop core sees it (every rank calls each method).

    The reference recipe's ``DistContext``, the Lightning ``LightningOps`` and the Accelerate
    ``AccelerateOps`` are three of these. ``is_main`` is the one way vsrkit says "this rank
    writes files".

    Example:
        >>> ops: DistOps = LocalOps()
        >>> ops.is_main, ops.broadcast({"k": 1}), ops.any(False)
        (True, {'k': 1}, False)
    """

    @property
    def is_main(self) -> bool: ...

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""

    def mean(self, tensor: Any) -> Any:
        """The element-wise mean of ``tensor`` over ranks."""

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""

    def barrier(self) -> None:
        """Wait for every rank."""


class LocalOps:
    """:class:`DistOps` of a single process.

    Example:
        >>> LocalOps().mean(3.0)
        3.0
    """

    is_main = True

    def broadcast(self, obj: Any) -> Any:
        return obj

    def mean(self, tensor: Any) -> Any:
        return tensor

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self) -> None:
        return None
