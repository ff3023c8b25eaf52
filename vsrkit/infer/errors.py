"""Errors of :mod:`vsrkit.infer`: one line that names the file, frame or option at fault."""

from __future__ import annotations

from vsrkit.errors import VsrkitError

__all__ = ["InferenceError", "InferenceOptionError", "ModelLoadError", "VideoSupportMissing"]


class InferenceError(VsrkitError, ValueError):
    """Bad input for inference: frames, a video, an output path or an option."""


class InferenceOptionError(InferenceError):
    """An option that cannot be honoured: a tile not larger than its overlap, half precision
    or a device this machine lacks, a segment or budget out of range (the CLI: exit 2)."""


class ModelLoadError(InferenceError):
    """A checkpoint or run folder that gives no usable model (missing, damaged, no config)."""


class VideoSupportMissing(InferenceError):
    """Video files need the optional PyAV dependency (``pip install "vsrkit[video]"``)."""
