"""Errors of :mod:`vsrkit.train`; the CLI turns each into one line (exit 1, or 2 for a setting)."""

from __future__ import annotations

from vsrkit.errors import VsrkitError

__all__ = ["DeviceUnavailableError", "InitWeightsError", "ResumeError", "TrainConfigError"]


class TrainConfigError(VsrkitError):
    """A bad startup setting: unknown key, wrong type or value out of range."""


class InitWeightsError(TrainConfigError):
    """``--init-weights`` names weights of another network or size than the run builds."""


class DeviceUnavailableError(TrainConfigError):
    """``--device cuda`` where torch sees no GPU (or a ``LOCAL_RANK`` past the GPUs)."""


class ResumeError(VsrkitError):
    """``--resume`` names something that cannot be resumed from, or a checkpoint that this
    vsrkit cannot continue."""
