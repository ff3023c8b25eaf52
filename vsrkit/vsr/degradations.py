"""Degradations from ground-truth frames to low-resolution inputs, and 8-bit quantisation.

- ``BI``: antialiased bicubic downsampling by ``scale`` (close to MATLAB ``imresize``).
- ``BD``: Gaussian blur (sigma 1.6, 13x13, reflect padding), then every ``scale``-th pixel.

Both quantise the result to 8 bits, as a saved PNG would be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEGRADATIONS", "degrade", "gaussian_kernel", "quantize_8bit"]

#: Supported degradation names.
DEGRADATIONS: tuple[str, ...] = ("BI", "BD")


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to multiples of 1/255."""
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def gaussian_kernel(sigma: float = 1.6, size: int = 13) -> Tensor:
    """Normalised 2-D Gaussian kernel (size x size), float32."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def degrade(gt: Tensor, *, scale: int = 4, degradation: str = "BI") -> Tensor:
    """Low-resolution frames from ground truth ``(..., 3, H, W)`` in [0, 1], 8-bit quantised.

    ``H`` and ``W`` must be multiples of ``scale``.

    Raises:
        ValueError: unknown degradation or a size that is not a multiple of ``scale``.
    """
    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
    lead = gt.shape[:-3]
    c, h, w = gt.shape[-3:]
    if h % scale or w % scale:
        raise ValueError(f"frame size {h}x{w} is not a multiple of scale {scale}")
    x = gt.reshape(-1, c, h, w).float()
    if degradation == "BI":
        lr = F.interpolate(
            x, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True
        )
    else:
        k = gaussian_kernel().to(x.device)
        pad = k.shape[-1] // 2
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        blurred = F.conv2d(xp, k.expand(c, 1, *k.shape).contiguous(), groups=c)
        lr = blurred[..., ::scale, ::scale]
    return quantize_8bit(lr).reshape(*lead, c, h // scale, w // scale)
