"""Errors of :mod:`vsrkit.vsr`; all derive from :class:`~vsrkit.errors.VsrkitError`."""

from __future__ import annotations

from vsrkit.errors import VsrkitError

__all__ = [
    "DatasetLayoutError",
    "FlowWeightsError",
    "PerceptualWeightsError",
    "PretrainedWeightsError",
]


class DatasetLayoutError(VsrkitError):
    """A data folder is missing or does not have the expected layout."""


class PretrainedWeightsError(VsrkitError, ValueError):
    """A weights file cannot be read, is of no known layout, or does not fit the model."""


class FlowWeightsError(VsrkitError):
    """A SpyNet weights file is missing or does not fit the network."""


class PerceptualWeightsError(VsrkitError):
    """The VGG weights file for the perceptual loss is missing or does not fit."""
