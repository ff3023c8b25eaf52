"""Using a trained model: load it, stream a clip through it, score it.

- :func:`load_model` / :func:`read_checkpoint`: a model from a checkpoint file, a run folder
  (newest valid, ``best`` or a step) or a state dict plus a preset; the architecture comes from
  the checkpoint's own training config.
- :func:`upscale_frames` / :class:`Upscaler`: exact bidirectional inference that streams:
  O(1) frames on the device, backward features in host memory up to a budget and then in a
  spill file that is always removed; tiles and segments as options.
- :func:`evaluate`: PSNR/SSIM (BasicSR convention) of a model and of bicubic per clip.
- :class:`FrameFolder`, :class:`VideoReader`, :class:`VideoWriter`, :func:`write_png`:
  frames in and out (video through the optional PyAV extra, ``pip install "vsrkit[video]"``).

Names load lazily: ``import vsrkit.infer`` does not import torch.

Example:
    >>> import torch
    >>> from vsrkit.infer import upscale_frames
    >>> from vsrkit.vsr import build_model
    >>> frames = [torch.rand(3, 8, 8) for _ in range(3)]
    >>> [tuple(f.shape) for f in upscale_frames(build_model("tiny"), frames, device="cpu")]
    [(3, 32, 32), (3, 32, 32), (3, 32, 32)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsrkit._lazy import lazy_names

# public name -> submodule of vsrkit.infer that defines it (relative)
_LAZY: dict[str, str] = {
    # loading
    "LoadedCheckpoint": ".loading",
    "build_model_from": ".loading",
    "checkpoint_config": ".loading",
    "load_model": ".loading",
    "read_checkpoint": ".loading",
    # streaming
    "FeatureStore": ".store",
    "StreamStats": ".stream",
    "Upscaler": ".stream",
    "check_upscale_options": ".stream",
    "upscale_frames": ".stream",
    "tune_cpu_allocator": ".allocator",
    "Tile": ".tiles",
    "tile_grid": ".tiles",
    # frames and video
    "FrameFolder": ".frames",
    "read_frame": ".frames",
    "write_png": ".frames",
    "VideoReader": ".video",
    "VideoWriter": ".video",
    # scoring
    "ClipScore": ".scoring",
    "EvalClip": ".scoring",
    "EvalResult": ".scoring",
    "eval_clips": ".scoring",
    "evaluate": ".scoring",
    # errors
    "InferenceError": ".errors",
    "InferenceOptionError": ".errors",
    "ModelLoadError": ".errors",
    "VideoSupportMissing": ".errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.infer.allocator import tune_cpu_allocator  # noqa: F401
    from vsrkit.infer.errors import (  # noqa: F401
        InferenceError,
        InferenceOptionError,
        ModelLoadError,
        VideoSupportMissing,
    )
    from vsrkit.infer.frames import FrameFolder, read_frame, write_png  # noqa: F401
    from vsrkit.infer.loading import (  # noqa: F401
        LoadedCheckpoint,
        build_model_from,
        checkpoint_config,
        load_model,
        read_checkpoint,
    )
    from vsrkit.infer.scoring import (  # noqa: F401
        ClipScore,
        EvalClip,
        EvalResult,
        eval_clips,
        evaluate,
    )
    from vsrkit.infer.store import FeatureStore  # noqa: F401
    from vsrkit.infer.stream import (  # noqa: F401
        StreamStats,
        Upscaler,
        check_upscale_options,
        upscale_frames,
    )
    from vsrkit.infer.tiles import Tile, tile_grid  # noqa: F401
    from vsrkit.infer.video import VideoReader, VideoWriter  # noqa: F401


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
