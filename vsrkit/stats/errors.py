"""Errors of :mod:`vsrkit.stats`; a bad saved state raises :class:`~vsrkit.errors.StateError`."""

from __future__ import annotations

from vsrkit.errors import StateError, VsrkitError

__all__ = [
    "NonFiniteError",
    "StateError",
    "StatisticsError",
    "StatisticsValidationError",
    "StatisticsValueError",
]


class StatisticsError(VsrkitError):
    """A statistics file or folder cannot be read or written as asked."""


class StatisticsValidationError(StatisticsError):
    """A statistics document does not match the shipped schema.

    Attributes:
        problems: One line per problem, each naming the field.
    """

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class StatisticsValueError(StatisticsError, ValueError):
    """A bad value given to the statistics code (a field, a step, a delay, a template)."""


class NonFiniteError(StatisticsError, ValueError):
    """A float that JSON cannot hold (NaN or infinity)."""
