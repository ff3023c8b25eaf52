"""PSNR and SSIM as the VSR literature computes them (BasicSR convention), and the quality fields.

Convention: frames in [0, 1] are clamped and rounded to 8 bits; with ``test_y_channel`` the
BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (0-255 range, not rounded again) is
compared, otherwise every RGB channel (SSIM: mean over channels); ``crop_border`` pixels are
cut from each side; the value is the mean over the frames of a clip, then over clips. SSIM uses
an 11x11 Gaussian window (sigma 1.5) over the valid region, ``C1 = (0.01*255)^2``,
``C2 = (0.03*255)^2``. Computed in float64; returns Python floats (it syncs: validation only).

Statistics fields made by :func:`quality_metrics` (SSIM is a similarity, 1 = identical):

=============================  ==========================================================
``quality_ki_value``           SSIM of the model output vs ground truth (higher is better)
``quality_lr_value``           SSIM of the bicubic upsampled input vs ground truth
``quality_improvement_value``  ``quality_ki_value - quality_lr_value`` (> 0: model helps)
``quality_ki_to_gt_value``     ``1 - quality_ki_value``: distance to GT (lower is better)
``quality_lr_to_gt_value``     ``1 - quality_lr_value``: distance to GT (lower is better)
``psnr_ki_db``                 PSNR of the model output in dB
``psnr_lr_db``                 PSNR of the bicubic input in dB
=============================  ==========================================================

``validation_loss_value`` comes from the loss, not from here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["QUALITY_FIELDS", "psnr", "quality_metrics", "ssim", "to_8bit"]

#: The keys :func:`quality_metrics` returns.
QUALITY_FIELDS: tuple[str, ...] = (
    "quality_ki_value",
    "quality_lr_value",
    "quality_improvement_value",
    "quality_ki_to_gt_value",
    "quality_lr_to_gt_value",
    "psnr_ki_db",
    "psnr_lr_db",
)


def to_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1], scale to 0-255 and round, as float64."""
    return (x.detach().to(torch.float64).clamp(0.0, 1.0) * 255.0).round()


def _clips(sr: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Bring both to (clips, frames, 3, H, W)."""
    if sr.shape != gt.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
    if sr.dim() == 3:
        sr, gt = sr[None, None], gt[None, None]
    elif sr.dim() == 4:
        sr, gt = sr[None], gt[None]
    elif sr.dim() != 5:
        raise ValueError(f"expected (3,H,W), (T,3,H,W) or (B,T,3,H,W), got {tuple(sr.shape)}")
    if sr.shape[2] != 3:
        raise ValueError(f"expected 3 colour channels in dim -3, got shape {tuple(sr.shape)}")
    return sr, gt


def _prepare(x: Tensor, crop_border: int, test_y_channel: bool) -> Tensor:
    """8-bit (N, C, H, W) float64 in 0-255, Y or RGB, border cropped."""
    x = to_8bit(x.reshape(-1, *x.shape[-3:]))
    if test_y_channel:
        w = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
        x = (x / 255.0 * w).sum(dim=1, keepdim=True) + 16.0
    if crop_border:
        if 2 * crop_border >= min(x.shape[-2:]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of {tuple(x.shape[-2:])}")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return x


def _psnr_frames(a: Tensor, b: Tensor) -> Tensor:
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)  # inf where identical


def _gaussian_window(device: torch.device) -> Tensor:
    coords = torch.arange(11, dtype=torch.float64, device=device) - 5.0
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    return torch.outer(g, g).view(1, 1, 11, 11)


def _ssim_frames(a: Tensor, b: Tensor) -> Tensor:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n, c, h, w = a.shape
    if h < 11 or w < 11:
        raise ValueError(f"SSIM needs frames of at least 11x11 after cropping, got {h}x{w}")
    win = _gaussian_window(a.device)
    x, y = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x**2
    syy = F.conv2d(y * y, win) - mu_y**2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=(1, 2, 3)).view(n, c).mean(dim=1)


def _per_clip(values: Tensor, clips: int) -> float:
    return float(values.view(clips, -1).mean(dim=1).mean())


def psnr(sr: Tensor, gt: Tensor, *, crop_border: int = 0, test_y_channel: bool = True) -> float:
    """PSNR in dB, BasicSR convention; ``inf`` when every frame is identical after rounding.

    Args:
        sr: output frames ``(3,H,W)``, ``(T,3,H,W)`` or ``(B,T,3,H,W)`` in [0, 1].
        gt: ground truth of the same shape.
        crop_border: pixels cut from each side before comparing.
        test_y_channel: compare BT.601 luma (True) or RGB (False).
    """
    sr, gt = _clips(sr, gt)
    a = _prepare(sr, crop_border, test_y_channel)
    b = _prepare(gt, crop_border, test_y_channel)
    return _per_clip(_psnr_frames(a, b), sr.shape[0])


def ssim(sr: Tensor, gt: Tensor, *, crop_border: int = 0, test_y_channel: bool = True) -> float:
    """SSIM, BasicSR convention (RGB mode: mean over channels). Arguments as :func:`psnr`."""
    sr, gt = _clips(sr, gt)
    a = _prepare(sr, crop_border, test_y_channel)
    b = _prepare(gt, crop_border, test_y_channel)
    return _per_clip(_ssim_frames(a, b), sr.shape[0])


def quality_metrics(
    sr: Tensor,
    lr_up: Tensor,
    gt: Tensor,
    *,
    crop_border: int = 0,
    test_y_channel: bool = True,
) -> dict[str, float]:
    """The statistics quality fields (see the module docstring) as floats.

    Args:
        sr: model output, ``(B, T, 3, H, W)`` (or ``(T, 3, H, W)``) in [0, 1].
        lr_up: bicubic upsampled input (:func:`vsrkit.vsr.bicubic_upsample`), same shape.
        gt: ground truth, same shape.
        crop_border: pixels cut from each side.
        test_y_channel: Y of BT.601 (True) or RGB.

    Example:
        >>> gt = torch.full((2, 3, 16, 16), 0.5)
        >>> q = quality_metrics(gt, gt * 0.9, gt)
        >>> q["quality_ki_value"], q["quality_improvement_value"] > 0
        (1.0, True)
    """
    kw = {"crop_border": crop_border, "test_y_channel": test_y_channel}
    ki = ssim(sr, gt, **kw)  # type: ignore[arg-type]
    lr = ssim(lr_up, gt, **kw)  # type: ignore[arg-type]
    out = {
        "quality_ki_value": ki,
        "quality_lr_value": lr,
        "quality_improvement_value": ki - lr,
        "quality_ki_to_gt_value": 1.0 - ki,
        "quality_lr_to_gt_value": 1.0 - lr,
        "psnr_ki_db": psnr(sr, gt, **kw),  # type: ignore[arg-type]
        "psnr_lr_db": psnr(lr_up, gt, **kw),  # type: ignore[arg-type]
    }
    if any(math.isnan(v) for v in out.values()):
        raise ValueError(f"quality metrics contain NaN: {out}")
    return out
