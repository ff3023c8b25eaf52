"""The built-in dataset: sub-pixel camera pans over procedural textures, nothing on disk.

Each clip: a background texture panned with a constant sub-pixel velocity (up to 0.75
low-resolution pixels per frame), plus a second textured layer with a soft-edged disc or
rounded-rectangle matte moving with a different velocity (parallax and occlusion). Ground
truth frames are rendered by bicubic sampling; the input is degraded with ``BI`` or ``BD`` and
both are quantised to 8 bits. A clip is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vsrkit.vsr.degradations import DEGRADATIONS, degrade, quantize_8bit
from vsrkit.vsr.textures import procedural_texture

__all__ = ["SPLITS", "SyntheticVideoDataset", "as_size"]

#: Dataset splits; each has its own clips for the same seed.
SPLITS: tuple[str, ...] = ("train", "val")
_MAX_SPEED = 3.0  # ground-truth pixels per frame


def as_size(value: int | tuple[int, int], what: str = "lr_size") -> tuple[int, int]:
    """``(h, w)`` from an int or a pair, rejecting non-positive values."""
    if isinstance(value, int):
        h = w = value
    else:
        h, w = (int(v) for v in value)
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return h, w


def _render(texture: Tensor, h: int, w: int, origin: np.ndarray, velocity: np.ndarray, t: int):
    """Sample ``t`` frames (t, C, h, w) of ``texture`` (C, S, S) panned by ``velocity``."""
    s = texture.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    grids = []
    for i in range(t):
        x = xs + origin[0] + velocity[0] * i
        y = ys + origin[1] + velocity[1] * i
        # align_corners=False: pixel centre k sits at (2k + 1) / S - 1
        grids.append(torch.stack(((2 * x + 1) / s - 1, (2 * y + 1) / s - 1), dim=-1))
    grid = torch.stack(grids).float()
    src = texture.unsqueeze(0).expand(t, -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.clamp(0.0, 1.0)


class SyntheticVideoDataset(Dataset):
    """Deterministic synthetic clips: ``dataset[i] -> (lrs, gts)``.

    Args:
        num_clips: number of clips (the dataset's length).
        num_frames: frames per clip.
        lr_size: low-resolution frame size, an int or ``(h, w)``; ground truth is ``scale`` times.
        scale: upsampling factor.
        degradation: ``"BI"`` or ``"BD"`` (see :mod:`vsrkit.vsr.degradations`).
        seed: the clips are a pure function of ``(seed, split, index)``.
        split: ``"train"`` or ``"val"``; the two splits never share a clip.

    ``lrs`` is ``(T, 3, h, w)`` and ``gts`` ``(T, 3, scale*h, scale*w)``, float32 in [0, 1].

    Example:
        >>> ds = SyntheticVideoDataset(num_clips=2, num_frames=3, lr_size=8, seed=0)
        >>> lrs, gts = ds[0]
        >>> tuple(lrs.shape), tuple(gts.shape)
        ((3, 3, 8, 8), (3, 3, 32, 32))
    """

    def __init__(
        self,
        *,
        num_clips: int,
        num_frames: int,
        lr_size: int | tuple[int, int],
        scale: int = 4,
        degradation: str = "BI",
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if num_clips < 1 or num_frames < 1:
            raise ValueError(
                f"num_clips and num_frames must be >= 1, got {num_clips}, {num_frames}"
            )
        if degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.num_clips = num_clips
        self.num_frames = num_frames
        self.lr_size = as_size(lr_size)
        self.scale = scale
        self.degradation = degradation
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -self.num_clips <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        index %= self.num_clips
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        t = self.num_frames
        h, w = self.lr_size[0] * self.scale, self.lr_size[1] * self.scale
        travel = int(np.ceil(_MAX_SPEED * (t - 1)))
        size = max(h, w) + 2 * travel + 8

        bg = torch.from_numpy(procedural_texture(rng, size))
        v_bg = rng.uniform(-_MAX_SPEED, _MAX_SPEED, 2)
        origin = np.array([size / 2 - w / 2, size / 2 - h / 2]) - v_bg * (t - 1) / 2
        frames = _render(bg, h, w, origin, v_bg, t)

        if rng.random() < 0.8:  # a second layer with its own motion
            fg = torch.from_numpy(procedural_texture(rng, size))
            xx, yy = np.meshgrid(np.arange(size), np.arange(size))
            c = size / 2
            r = rng.uniform(0.15, 0.35) * min(h, w)
            if rng.random() < 0.5:
                d = np.sqrt((xx - c) ** 2 + (yy - c) ** 2) - r
            else:
                d = np.maximum(np.abs(xx - c), np.abs(yy - c)) - r
            matte = torch.from_numpy(np.clip(0.5 - d, 0.0, 1.0).astype(np.float32))[None]
            v_fg = rng.uniform(-_MAX_SPEED, _MAX_SPEED, 2)
            start = rng.uniform(-0.25, 0.25, 2) * np.array([w, h])
            fg_origin = np.array([c - w / 2, c - h / 2]) - start - v_fg * (t - 1) / 2
            layer = _render(torch.cat((fg, matte)), h, w, fg_origin, v_fg, t)
            alpha = layer[:, 3:]
            frames = frames * (1 - alpha) + layer[:, :3] * alpha

        gts = quantize_8bit(frames)
        lrs = degrade(gts, scale=self.scale, degradation=self.degradation)
        return lrs.contiguous(), gts.contiguous()
