"""Score a model on test clips: PSNR and SSIM in the BasicSR convention, beside bicubic.

The figures are :mod:`vsrkit.vsr.metrics`' (8-bit rounding, BT.601 Y or RGB, Gaussian-window
SSIM, ``crop_border`` pixels cut from each side), computed per frame, averaged over the frames
of a clip and then over the clips, for the model's output and for the bicubic upsampled input.
Each clip streams through :class:`~vsrkit.infer.Upscaler`: its frames are read lazily and
compared as they come out, so a long test clip costs no more memory than a short one.

The clips come from :func:`eval_clips`: without data, the built-in synthetic validation clips
that a training config describes (the very clips the run validated on); else a folder in a
layout :mod:`vsrkit.vsr.folders` reads: REDS-style (``GT/`` with ``LR/``, or BasicSR's Vid4
with ``BIx4/``/``BDx4/``, or no LR at all: degraded on the fly), or Vimeo-90K (its test list).

Example:
    >>> from vsrkit.vsr import build_model
    >>> clips = eval_clips(None, config={"num_frames": 2, "crop_size": 64, "val_clips": 1})
    >>> result = evaluate(build_model("tiny"), clips, device="cpu")
    >>> result.mean["psnr"] == result.mean["bicubic_psnr"]  # untrained: exactly bicubic
    True
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from vsrkit.infer.errors import InferenceError
from vsrkit.infer.frames import read_frame, write_png
from vsrkit.infer.stream import ProgressFn, Upscaler

__all__ = ["CHANNELS", "ClipScore", "EvalClip", "EvalResult", "eval_clips", "evaluate"]

#: ``channel=`` values: BT.601 luma or all three colour channels.
CHANNELS = ("y", "rgb")
METRICS = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")


@dataclass(frozen=True)
class EvalClip:
    """One test clip, read lazily.

    Attributes:
        name: shown in the table (the clip folder's name).
        lr: a new iterator over the low-resolution frames each call.
        gt: a new iterator over the ground-truth frames each call (same order).
        frame_names: a name per frame (for ``save_frames``).
    """

    name: str
    lr: Callable[[], Iterable[Tensor]]
    gt: Callable[[], Iterable[Tensor]]
    frame_names: list[str]


@dataclass(frozen=True)
class ClipScore:
    """Mean PSNR (dB) and SSIM over the frames of one clip, for the model and for bicubic."""

    name: str
    frames: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite PSNR (identical frames) becomes ``None``."""
        return {
            "name": self.name,
            "frames": self.frames,
            **{k: _finite(getattr(self, k)) for k in METRICS},
        }


@dataclass
class EvalResult:
    """Per-clip scores and their mean (over clips, each clip the mean of its frames)."""

    clips: list[ClipScore]
    channel: str
    crop_border: int
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.clips)

    @property
    def mean(self) -> dict[str, float]:
        """``psnr``, ``ssim``, ``bicubic_psnr``, ``bicubic_ssim`` averaged over clips."""
        n = len(self.clips)
        return {k: sum(getattr(c, k) for c in self.clips) / n for k in METRICS} if n else {}

    def to_dict(self) -> dict[str, Any]:
        """The whole result, JSON-safe (``None`` for an infinite PSNR)."""
        return {
            **self.info,
            "channel": self.channel,
            "crop_border": self.crop_border,
            "convention": "BasicSR: 8-bit rounding, mean over frames, then over clips",
            "clips": [c.to_dict() for c in self.clips],
            "mean": {k: _finite(v) for k, v in self.mean.items()},
            "num_clips": len(self.clips),
            "num_frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames / self.seconds, 3) if self.seconds > 0 else None,
        }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


# ---- the clips ------------------------------------------------------------------------------


def _part(item: Callable[[int], tuple[Tensor, Tensor]], i: int, k: int) -> Iterator[Tensor]:
    return iter(item(i)[k])


def _synthetic_clips(config: Mapping[str, Any]) -> list[EvalClip]:
    from vsrkit.vsr import build_dataset

    scale = int(config.get("scale", 4))
    dataset: Any = build_dataset(
        None,
        split="val",
        num_frames=int(config.get("num_frames", 5)),
        lr_size=int(config.get("crop_size", 64)) // scale,
        num_clips=int(config.get("val_clips", 2)),
        scale=scale,
        degradation=str(config.get("degradation", "BI")),
        seed=int(config.get("seed", 0)),
    )
    cache: dict[int, tuple[Tensor, Tensor]] = {}

    def item(i: int) -> tuple[Tensor, Tensor]:
        if i not in cache:  # a clip is generated once, and only when it is scored
            cache.clear()
            cache[i] = dataset[i]
        return cache[i]

    frames = int(config.get("num_frames", 5))
    return [
        EvalClip(
            name=f"synthetic_{i:02d}",
            lr=functools.partial(_part, item, i, 0),
            gt=functools.partial(_part, item, i, 1),
            frame_names=[f"{t:08d}" for t in range(frames)],
        )
        for i in range(len(dataset))
    ]


def _folder_clip(
    name: str, gt_paths: list[Path], lr_paths: list[Path] | None, scale: int, degradation: str
) -> EvalClip:
    from vsrkit.vsr.degradations import degrade

    def gt_frames() -> Iterator[Tensor]:
        for p in gt_paths:
            gt = read_frame(p).float() / 255.0
            if lr_paths is None:  # the LR is made from it: same crop to a multiple of scale
                gt = gt[..., : gt.shape[-2] // scale * scale, : gt.shape[-1] // scale * scale]
            yield gt

    def lr_frames() -> Iterator[Tensor]:
        if lr_paths is not None:
            for p in lr_paths:
                yield read_frame(p)
        else:
            for gt in gt_frames():
                yield degrade(gt, scale=scale, degradation=degradation)

    return EvalClip(name, lr_frames, gt_frames, [p.stem for p in gt_paths])


def eval_clips(
    data: str | os.PathLike[str] | None,
    *,
    config: Mapping[str, Any] | None = None,
) -> list[EvalClip]:
    """The test clips of ``data``.

    Args:
        data: ``None`` (or ``"synthetic"``): the built-in synthetic validation clips that
            ``config`` describes; else a REDS-style, Vid4 or Vimeo-90K folder (every clip of a
            REDS-style ``GT/`` folder is a test clip; Vimeo-90K: ``sep_testlist.txt``).
        config: a training config (``TrainConfig.to_dict()``, e.g. the checkpoint's): its
            ``num_frames``, ``crop_size``, ``val_clips``, ``seed``, ``degradation`` and
            ``scale`` describe the synthetic clips; its ``degradation`` makes the LR frames of
            a folder without them. Missing keys take the training defaults.

    Raises:
        InferenceError: a folder of neither layout, a clip without frames.
    """
    cfg = dict(config or {})
    if data is None or str(data) == "synthetic":
        return _synthetic_clips(cfg)
    from vsrkit.vsr.folders import (
        REDS_LAYOUT,
        VIMEO_LAYOUT,
        DatasetLayoutError,
        REDSDataset,
        Vimeo90KDataset,
    )

    root = Path(data)
    scale = int(cfg.get("scale", 4))
    degradation = str(cfg.get("degradation", "BI"))
    kw: dict[str, Any] = {
        "split": "val",
        "num_frames": None,
        "scale": scale,
        "degradation": degradation,
        "augment": False,
    }
    try:
        if (root / "GT").is_dir():
            names = sorted(p.name for p in (root / "GT").iterdir() if p.is_dir())
            ds: Any = REDSDataset(root, val_clips=tuple(names), **kw)
        elif (root / "sequences").is_dir():
            ds = Vimeo90KDataset(root, **kw)
        elif root.is_dir():
            raise InferenceError(
                f"{root} has no test layout; expected {REDS_LAYOUT} (or Vid4's BIx4/ in place "
                f"of LR/) or {VIMEO_LAYOUT.replace('sep_trainlist', 'sep_testlist')}"
            )
        else:
            raise InferenceError(f"{root}: no such data folder")
    except DatasetLayoutError as exc:
        raise InferenceError(str(exc)) from None
    clips = []
    for gt_paths, lr_paths in ds.clips:
        clip_dir = gt_paths[0].parent
        name = (
            clip_dir.name if (root / "GT").is_dir() else f"{clip_dir.parent.name}/{clip_dir.name}"
        )
        clips.append(_folder_clip(name, gt_paths, lr_paths, scale, degradation))
    return clips


# ---- scoring --------------------------------------------------------------------------------


def evaluate(
    model: Any,
    clips: Iterable[EvalClip],
    *,
    channel: str = "y",
    crop_border: int = 0,
    save_frames: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    on_clip: Callable[[int, EvalClip], None] | None = None,
    **upscale_options: Any,
) -> EvalResult:
    """PSNR/SSIM of ``model`` and of bicubic on each clip, and their means.

    Args:
        model: a trained ``BidirectionalRecurrentVSR`` (see :func:`~vsrkit.infer.load_model`).
        clips: from :func:`eval_clips`.
        channel: ``"y"`` (BT.601 luma) or ``"rgb"``.
        crop_border: pixels cut from each side before comparing.
        save_frames: a folder: the model's output frames go to ``<folder>/<clip>/<frame>.png``.
        progress: as :class:`~vsrkit.infer.Upscaler`'s.
        on_clip: called as ``on_clip(i, clip)`` before each clip is scored.
        **upscale_options: :class:`~vsrkit.infer.Upscaler` options (``device``, ``tile``, ...).

    Raises:
        InferenceError: a bad ``channel`` or ``crop_border``, LR and GT frames whose sizes
            are not the model's scale apart, clips with more GT than LR frames.
    """
    from vsrkit.vsr.metrics import psnr, ssim
    from vsrkit.vsr.model import bicubic_upsample

    if channel not in CHANNELS:
        raise InferenceError(f"channel must be y or rgb, got {channel!r}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise InferenceError(f"crop border must be an int >= 0, got {crop_border!r}")
    y = channel == "y"
    upscaler = Upscaler(model, progress=progress, **upscale_options)
    scale = upscaler.scale
    started = time.perf_counter()
    scores = []
    for c, clip in enumerate(clips):
        if on_clip is not None:
            on_clip(c, clip)
        gts = iter(clip.gt())
        sums = dict.fromkeys(METRICS, 0.0)
        count = 0
        out_dir = Path(save_frames) / clip.name if save_frames is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        for index, sr, lr in upscaler.stream_with_input(clip.lr()):  # the LR is read once
            gt = next(gts, None)
            if gt is None:
                raise InferenceError(f"clip {clip.name}: fewer GT than LR frames")
            if tuple(gt.shape[-2:]) != tuple(sr.shape[-2:]):
                h, w = lr.shape[-2:]
                raise InferenceError(
                    f"clip {clip.name}, frame {clip.frame_names[index]}: LR is {h}x{w}, GT "
                    f"{gt.shape[-2]}x{gt.shape[-1]}; expected GT {h * scale}x{w * scale} "
                    f"(x{scale}, the model's scale)"
                )
            bicubic = bicubic_upsample(lr[None], scale)[0]
            try:
                for key, out in (("", sr), ("bicubic_", bicubic)):
                    out = out.clamp(0, 1)
                    sums[key + "psnr"] += psnr(out, gt, crop_border=crop_border, test_y_channel=y)
                    sums[key + "ssim"] += ssim(out, gt, crop_border=crop_border, test_y_channel=y)
            except ValueError as exc:  # a crop that leaves nothing, frames below 11x11
                raise InferenceError(f"clip {clip.name}: {exc}") from None
            if out_dir is not None:
                write_png(out_dir / f"{clip.frame_names[index]}.png", sr)
            count += 1
        if next(gts, None) is not None:
            raise InferenceError(f"clip {clip.name}: more GT than LR frames")
        scores.append(ClipScore(clip.name, count, **{k: v / count for k, v in sums.items()}))
    if not scores:
        raise InferenceError("no clips to evaluate")
    return EvalResult(scores, channel, crop_border, seconds=time.perf_counter() - started)
