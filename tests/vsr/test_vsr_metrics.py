"""PSNR/SSIM against hand-computed values (BasicSR convention) and the quality fields."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.vsr import QUALITY_FIELDS, psnr, quality_metrics, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
Y_WEIGHT = (65.481 + 128.553 + 24.966) / 255.0  # Y change per 8-bit grey level


def grey(level: float, shape=(2, 3, 16, 16)) -> torch.Tensor:
    return torch.full(shape, level / 255.0)


def test_psnr_rgb_constant_offset_matches_hand_value() -> None:
    # every pixel differs by 10 grey levels: MSE 100
    assert psnr(grey(110), grey(100), test_y_channel=False) == pytest.approx(
        10 * math.log10(255**2 / 100), abs=1e-9
    )


def test_psnr_y_channel_matches_hand_value() -> None:
    diff = 10 * Y_WEIGHT  # grey +10 levels moves Y by 10 * 219/255
    assert psnr(grey(110), grey(100)) == pytest.approx(10 * math.log10(255**2 / diff**2), abs=1e-9)


def test_outputs_are_rounded_to_8_bits_before_comparing() -> None:
    gt = grey(100)
    assert psnr(gt + 0.4 / 255, gt) == math.inf  # rounds back to the same level
    assert psnr(gt + 0.6 / 255, gt, test_y_channel=False) == pytest.approx(
        10 * math.log10(255**2 / 1), abs=1e-9
    )
    assert psnr(gt + 2.0, gt, test_y_channel=False) == psnr(grey(255), gt, test_y_channel=False)


def test_crop_border_ignores_the_border() -> None:
    gt = torch.rand(1, 2, 3, 20, 20)
    sr = gt.clone()
    sr[..., :2, :] = 1 - sr[..., :2, :]
    assert psnr(sr, gt, crop_border=2) == math.inf
    assert psnr(sr, gt, crop_border=1) < 40
    assert ssim(sr, gt, crop_border=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="crop_border=10"):
        psnr(sr, gt, crop_border=10)


def test_psnr_is_mean_over_frames_then_clips() -> None:
    gt = grey(100, (2, 2, 3, 8, 8))
    offsets = [[1, 2], [5, 10]]  # grey-level offset per (clip, frame)
    sr = gt.clone()
    for c in range(2):
        for f in range(2):
            sr[c, f] += offsets[c][f] / 255.0
    per_frame = [[10 * math.log10(255**2 / o**2) for o in row] for row in offsets]
    expected = sum(sum(row) / len(row) for row in per_frame) / 2
    assert psnr(sr, gt, test_y_channel=False) == pytest.approx(expected, abs=1e-9)
    # one clip (T, 3, H, W) and one frame (3, H, W) are accepted too
    assert psnr(sr[1], gt[1], test_y_channel=False) == pytest.approx(
        sum(per_frame[1]) / 2, abs=1e-9
    )
    assert psnr(sr[0, 0], gt[0, 0], test_y_channel=False) == pytest.approx(per_frame[0][0])


def test_ssim_of_constant_frames_matches_the_formula() -> None:
    # constant frames: no variance, SSIM = luminance term only
    a, b = 100.0, 130.0
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim(grey(a), grey(b), test_y_channel=False) == pytest.approx(expected, abs=1e-12)
    ya, yb = 16 + a * Y_WEIGHT, 16 + b * Y_WEIGHT
    expected_y = (2 * ya * yb + C1) / (ya * ya + yb * yb + C1)
    assert ssim(grey(a), grey(b)) == pytest.approx(expected_y, abs=1e-12)


def test_ssim_of_a_contrast_change_matches_the_formula() -> None:
    # a checkerboard at levels m +- d versus m +- 2d: equal means, sigma_x = d, sigma_y = 2d
    m, d = 128.0, 10.0
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    sign = ((xx + yy) % 2 * 2 - 1).float()
    x = ((m + d * sign) / 255).expand(3, 32, 32)
    y = ((m + 2 * d * sign) / 255).expand(3, 32, 32)
    # the 11x11 Gaussian window is not exactly balanced between + and -, so compute its moments
    g = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 1.5**2)).double()
    g = torch.outer(g / g.sum(), g / g.sum())
    s = sign[:11, :11].double()
    mean_s = float((g * s).sum())
    var_s = 1 - mean_s**2
    mu_x, mu_y = m + d * mean_s, m + 2 * d * mean_s
    num = (2 * mu_x * mu_y + C1) * (2 * 2 * d * d * var_s + C2)
    den = (mu_x**2 + mu_y**2 + C1) * (d * d * var_s + 4 * d * d * var_s + C2)
    # the window's mean of the sign alternates between +mean_s and -mean_s: same SSIM
    assert ssim(x, y, test_y_channel=False) == pytest.approx(num / den, abs=1e-9)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**16), noise=st.floats(0.0, 0.3))
def test_ssim_and_psnr_invariants(seed: int, noise: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(1, 2, 3, 16, 16, generator=gen)
    sr = (gt + noise * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    s, p = ssim(sr, gt), psnr(sr, gt)
    assert s <= 1.0 + 1e-12
    assert s == pytest.approx(ssim(gt, sr), abs=1e-12)
    assert p == pytest.approx(psnr(gt, sr), abs=1e-12)
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert p > 0


def test_quality_metrics_fields() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 3, 24, 24, generator=gen)
    lr_up = (gt + 0.2 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    sr = (gt + 0.05 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    q = quality_metrics(sr, lr_up, gt, crop_border=2)
    assert tuple(q) == QUALITY_FIELDS
    assert all(isinstance(v, float) for v in q.values())
    assert q["quality_ki_value"] == pytest.approx(ssim(sr, gt, crop_border=2))
    assert q["quality_lr_value"] == pytest.approx(ssim(lr_up, gt, crop_border=2))
    assert q["quality_improvement_value"] == pytest.approx(
        q["quality_ki_value"] - q["quality_lr_value"]
    )
    assert q["quality_improvement_value"] > 0
    assert q["quality_ki_to_gt_value"] == pytest.approx(1 - q["quality_ki_value"])
    assert q["quality_lr_to_gt_value"] == pytest.approx(1 - q["quality_lr_value"])
    assert q["quality_ki_to_gt_value"] < q["quality_lr_to_gt_value"]
    assert q["psnr_ki_db"] > q["psnr_lr_db"]
    assert json.loads(json.dumps(q)) == q


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(ValueError, match="3 colour channels"):
        psnr(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
