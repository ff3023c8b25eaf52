"""Procedural textures with real high-frequency detail, generated deterministically from a seed.

The built-in dataset needs nothing on disk: each clip pans over one of these textures. A texture
mixes coloured multi-octave value noise (smooth regions), sinusoidal gratings up to near the
ground-truth Nyquist frequency (fine detail that aliases in the low-resolution input), hard-edged
discs, rectangles and strokes (edges), and a checkerboard patch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["procedural_texture"]


def _value_noise(rng: np.random.Generator, size: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave value noise, (3, size, size) float32 in [0, 1].

    The octaves are summed on a small grid (the finest octave's), then upsampled once.
    """
    fine = 3 * 2 ** (octaves - 1) + 1
    total = torch.zeros(1, 3, fine, fine)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        cells = 3 * 2**o
        grid = torch.from_numpy(rng.random((1, 3, cells + 1, cells + 1), dtype=np.float32))
        total += amp * F.interpolate(grid, size=(fine, fine), mode="bicubic", align_corners=True)
        norm += amp
        amp *= 0.55
    up = F.interpolate(total / norm, size=(size, size), mode="bicubic", align_corners=True)
    out = up[0].numpy()
    lo, hi = out.min(), out.max()
    return (out - lo) / max(float(hi - lo), 1e-6)


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


def _paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 1.0) -> None:
    m = mask.astype(np.float32)[None] * alpha
    img *= 1.0 - m
    img += m * color[:, None, None]


def _dead_leaves(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Paint ``count`` occluding discs with power-law radii (a "dead leaves" image) onto ``img``.

    Dead leaves images have the edge and scale statistics of natural photographs, which makes
    the detail that super-resolution restores (sharp edges at every orientation) learnable.
    """
    size = img.shape[-1]
    r_min, r_max = 1.5, size / 5
    # inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max]
    u = rng.random(count)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centres = rng.uniform(0, size, (count, 2))
    colours = rng.random((count, 3), dtype=np.float32)
    shading = rng.uniform(-0.3, 0.3, (count, 2)).astype(np.float32)
    square = rng.random(count) < 0.3
    leaves = zip(centres, radii, colours, shading, square, strict=True)
    for (cx, cy), r, col, (sx, sy), sq in leaves:
        x0, x1 = max(int(cx - r), 0), min(int(np.ceil(cx + r)) + 1, size)
        y0, y1 = max(int(cy - r), 0), min(int(np.ceil(cy + r)) + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx - cx) / r, (yy - cy) / r
        inside = np.maximum(np.abs(dx), np.abs(dy)) <= 1 if sq else dx * dx + dy * dy <= 1
        fill = col[:, None, None] + (sx * dx + sy * dy)[None] * 0.5
        patch = img[:, y0:y1, x0:x1]
        patch[:, inside] = np.clip(fill, 0, 1)[:, inside]


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (3, size, size) float32 texture in [0, 1], fully determined by ``rng``'s state.

    Example:
        >>> t = procedural_texture(np.random.default_rng(0), 64)
        >>> t.shape, t.dtype, bool(t.min() >= 0 and t.max() <= 1)
        ((3, 64, 64), dtype('float32'), True)
    """
    xx, yy = _coords(size)
    palette = rng.random((4, 3), dtype=np.float32)
    noise = _value_noise(rng, size)
    # colour the noise with a random palette: mix of palette rows weighted by the noise channels
    img = np.einsum("khw,kc->chw", np.concatenate([noise, 1 - noise[:1]]), palette) / 2.0
    img = np.clip(img, 0.0, 1.0).astype(np.float32)

    # gratings inside smooth regions
    region = _value_noise(rng, size, octaves=2)[0]
    for _ in range(int(rng.integers(2, 5))):
        freq = float(rng.uniform(0.04, 0.3))  # cycles per ground-truth pixel
        angle = float(rng.uniform(0, np.pi))
        phase = float(rng.uniform(0, 2 * np.pi))
        wave = 0.5 + 0.5 * np.sin(
            2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase
        )
        lo, hi = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))
        mask = np.clip((region - lo) * 6.0, 0.0, 1.0) * (hi + 0.3)
        color = rng.random(3, dtype=np.float32)
        m = (mask * wave)[None].astype(np.float32)
        img = img * (1 - m) + m * color[:, None, None]

    # dead leaves over the lower half of the depth order, then strokes on top
    _dead_leaves(rng, img, count=int(size * size / 60))
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        width = rng.uniform(0.7, 3.0)
        length = rng.uniform(size / 8, size / 2)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        mask = (np.abs(v) <= width / 2) & (np.abs(u) <= length / 2)
        _paint(img, mask, rng.random(3, dtype=np.float32), alpha=float(rng.uniform(0.6, 1.0)))

    # one checkerboard patch (period 2-6 pixels)
    period = int(rng.integers(2, 7))
    cx, cy = rng.uniform(0, size, 2)
    half = size / 6
    inside = (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    checker = ((xx // period + yy // period) % 2).astype(bool)
    _paint(img, inside & checker, rng.random(3, dtype=np.float32))
    return np.clip(img, 0.0, 1.0).astype(np.float32)
