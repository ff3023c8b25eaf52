"""Losses: keys, scalar tensors on the device, hand-computed values, perceptual weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vsrkit.vsr import (
    LOSS_NAMES,
    PerceptualWeightsError,
    RandomFeatures,
    VGGFeatures,
    VSRLoss,
    charbonnier,
    multiscale_charbonnier,
    sobel_gradient_loss,
)


@pytest.fixture(scope="module")
def loss() -> VSRLoss:
    return VSRLoss()


def test_keys_are_exactly_the_four_terms_as_scalar_tensors(loss: VSRLoss) -> None:
    gt = torch.rand(2, 3, 3, 16, 16)
    sr = (gt + 0.1 * torch.randn_like(gt)).requires_grad_(True)
    out = loss(sr, gt)
    assert tuple(out) == LOSS_NAMES == ("l1", "ms", "grad", "perceptual")
    for name, value in out.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, name
        assert value.dtype == torch.float32 and value.requires_grad, name
        assert float(value.detach()) > 0, name
    sum(out.values()).backward()
    assert sr.grad is not None and float(sr.grad.abs().sum()) > 0


def test_identical_images_give_the_minimum(loss: VSRLoss) -> None:
    gt = torch.rand(1, 2, 3, 16, 16)
    out = loss(gt, gt)
    eps = loss.eps
    assert float(out["l1"]) == pytest.approx(eps)  # Charbonnier's floor
    assert float(out["ms"]) == pytest.approx(eps)
    assert float(out["grad"]) == 0.0
    assert float(out["perceptual"]) == 0.0


def test_charbonnier_and_multiscale_hand_values() -> None:
    gt = torch.zeros(1, 3, 8, 8)
    sr = gt + 0.1
    expected = math.sqrt(0.1**2 + 1e-6)
    assert float(charbonnier(sr, gt)) == pytest.approx(expected, rel=1e-6)
    # a constant offset is the same at every scale
    assert float(multiscale_charbonnier(sr, gt)) == pytest.approx(expected, rel=1e-6)
    # a checkerboard offset averages away at x1/2 and x1/4
    sign = (torch.arange(8).view(1, 8) + torch.arange(8).view(8, 1)) % 2 * 2 - 1
    cb = gt + 0.1 * sign.float()
    assert float(multiscale_charbonnier(cb, gt)) == pytest.approx((expected + 2e-3) / 3, rel=1e-5)


def test_sobel_gradient_loss_of_a_ramp() -> None:
    w, slope = 10, 0.05
    ramp = (torch.arange(w).float() * slope).expand(1, 3, 6, w)
    flat = torch.full_like(ramp, 0.2)
    # interior columns respond with the slope, the two replicate-padded edges with half of it;
    # the vertical response is zero; the loss averages both directions
    expected = slope * (w - 1) / w / 2
    assert float(sobel_gradient_loss(ramp, flat)) == pytest.approx(expected, rel=1e-5)
    # a brightness shift has no edges (zero up to float rounding of the shifted values)
    assert float(sobel_gradient_loss(flat + 0.3, flat)) == pytest.approx(0.0, abs=1e-6)


def test_random_features_are_seeded_and_frozen() -> None:
    a, b, c = RandomFeatures(seed=3), RandomFeatures(seed=3), RandomFeatures(seed=4)
    x = torch.rand(1, 3, 16, 16)
    assert all(torch.equal(p, q) for p, q in zip(a(x), b(x), strict=True))
    assert not torch.equal(a(x)[0], c(x)[0])
    assert not any(p.requires_grad for p in a.parameters())


def test_perceptual_none_switches_the_term_off() -> None:
    gt = torch.rand(1, 2, 3, 16, 16)
    out = VSRLoss(perceptual=None)(gt * 0.5, gt)
    assert float(out["perceptual"]) == 0.0 and float(out["l1"]) > 0.1


def _fake_vgg19(path: Path) -> None:
    torch.manual_seed(0)
    state = {}
    cin = 3
    idx = 0
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M"):
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(v)
        cin = v
        idx += 2
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    torch.save(state, path)


def test_vgg_features_from_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "vgg19.pth"
    _fake_vgg19(path)
    feats = VGGFeatures(path)
    assert [f.shape[1] for f in feats(torch.rand(1, 3, 16, 16))] == [64, 128, 256, 512]
    loss = VSRLoss(perceptual=str(path))
    gt = torch.rand(1, 1, 3, 16, 16)
    assert float(loss(gt, gt)["perceptual"]) == 0.0
    assert float(loss(gt.flip(-1), gt)["perceptual"]) > 0.0


def test_vgg_weights_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PerceptualWeightsError, match="missing.pth"):
        VSRLoss(perceptual=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(PerceptualWeightsError, match="bad.pth is not a VGG19"):
        VSRLoss(perceptual=bad)


def test_shape_mismatch_is_rejected(loss: VSRLoss) -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12))
