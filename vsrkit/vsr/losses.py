"""Losses of the reference recipe, each a scalar tensor (no ``.item()``, no host sync).

:class:`VSRLoss` returns ``{"l1", "ms", "grad", "perceptual"}`` so that
:meth:`vsrkit.adaptive.AdaptiveLossWeights.combine` can weight them:

- ``l1``: Charbonnier (a smooth L1) between output and ground truth;
- ``ms``: Charbonnier averaged over scales x1, x1/2, x1/4 (average pooling);
- ``grad``: L1 between Sobel gradients of the BT.601 luminance;
- ``perceptual``: L1 between features of a frozen CNN: a seeded, randomly initialised one by
  default, or VGG19 from a local weights file (torchvision key layout, never downloaded).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsrkit.vsr.errors import PerceptualWeightsError

__all__ = [
    "LOSS_NAMES",
    "PerceptualWeightsError",
    "RandomFeatures",
    "VGGFeatures",
    "VSRLoss",
    "charbonnier",
    "luminance",
    "multiscale_charbonnier",
    "sobel_gradient_loss",
]

logger = logging.getLogger(__name__)

#: The keys of :class:`VSRLoss`'s result, in a fixed order.
LOSS_NAMES: tuple[str, ...] = ("l1", "ms", "grad", "perceptual")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# VGG19 "features" layout: channels per conv, "M" = max pool
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(-1, *x.shape[-3:])


def charbonnier(sr: Tensor, gt: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of ``sqrt((sr - gt)^2 + eps^2)``: L1 with a smooth minimum."""
    diff = sr.float() - gt.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def multiscale_charbonnier(sr: Tensor, gt: Tensor, eps: float = 1e-3, levels: int = 3) -> Tensor:
    """Charbonnier at x1, x1/2, x1/4 (``levels`` scales), averaged."""
    a, b = _flat(sr).float(), _flat(gt).float()
    total = charbonnier(a, b, eps)
    for _ in range(levels - 1):
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        total = total + charbonnier(a, b, eps)
    return total / levels


def luminance(x: Tensor) -> Tensor:
    """BT.601 luma (N, 1, H, W) of RGB frames in [0, 1] (no 16/235 offset)."""
    x = _flat(x).float()
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def sobel_gradient_loss(sr: Tensor, gt: Tensor) -> Tensor:
    """L1 between the horizontal and vertical Sobel responses of the luminances."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=sr.device)
    kernels = torch.stack((k, k.t())).unsqueeze(1) / 8.0
    ga = F.conv2d(F.pad(luminance(sr), (1, 1, 1, 1), mode="replicate"), kernels)
    gb = F.conv2d(F.pad(luminance(gt), (1, 1, 1, 1), mode="replicate"), kernels)
    return (ga - gb).abs().mean()


class RandomFeatures(nn.Module):
    """A frozen CNN with seeded random weights: a cheap, download-free perceptual feature.

    Example:
        >>> f = RandomFeatures(seed=0)
        >>> [tuple(t.shape) for t in f(torch.rand(1, 3, 16, 16))]
        [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4)]
    """

    def __init__(self, *, seed: int = 0, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stages = nn.ModuleList()
        cin = 3
        for i, cout in enumerate(widths):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0.0, (2.0 / (cin * 9)) ** 0.5, generator=gen)
                if conv.bias is not None:
                    conv.bias.zero_()
            stage: list[nn.Module] = [] if i == 0 else [nn.AvgPool2d(2)]
            self.stages.append(nn.Sequential(*stage, conv, nn.ReLU()))
            cin = cout
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class VGGFeatures(nn.Module):
    """VGG19 features (relu1_2, relu2_2, relu3_4, relu4_4) from a local torchvision weights file.

    Args:
        weights: path to a torchvision ``vgg19`` state dict (``features.N.weight`` keys, the
            classifier keys are ignored). Never downloaded.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, weights: str | os.PathLike[str]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.taps = (3, 8, 17, 26)  # indices of relu1_2, relu2_2, relu3_4, relu4_4
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)
        path = Path(weights)
        if not path.is_file():
            raise PerceptualWeightsError(
                f"VGG19 weights file not found: {path} (expected a local torchvision vgg19 "
                "state dict; pass perceptual='random' to use no file)"
            )
        from vsrkit._safe_load import UnreadableFileError, load_torch_file

        try:
            state = load_torch_file(path)
        except UnreadableFileError as exc:
            raise PerceptualWeightsError(f"cannot read VGG19 weights {exc}") from None
        if not isinstance(state, dict):
            raise PerceptualWeightsError(f"{path} is not a VGG19 state dict")
        feats = {
            k.removeprefix("features."): v
            for k, v in state.items()
            if k.startswith("features.") and int(k.split(".")[1]) < len(layers)
        }
        try:
            self.features.load_state_dict(feats, strict=True)
        except RuntimeError as exc:
            raise PerceptualWeightsError(f"{path} is not a VGG19 state dict: {exc}") from exc
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


class VSRLoss(nn.Module):
    """The four reference losses in one call: ``loss(sr, gt) -> dict`` of 0-dim tensors.

    Args:
        perceptual: ``"random"`` (seeded frozen random CNN), a path to local VGG19 weights, or
            ``None`` (the ``perceptual`` entry is then a zero tensor: the term is switched off,
            not measured).
        perceptual_seed: seed of the random CNN.
        eps: Charbonnier epsilon.

    Inputs are ``(B, T, 3, H, W)`` or ``(N, 3, H, W)`` in [0, 1]; every value is a 0-dim
    float32 tensor on the input's device. Move the module with ``.to(device)``.

    Example:
        >>> loss = VSRLoss()
        >>> gt = torch.rand(1, 2, 3, 16, 16)
        >>> sorted(loss(gt, gt))
        ['grad', 'l1', 'ms', 'perceptual']
        >>> float(loss(gt, gt)["grad"])
        0.0
    """

    def __init__(
        self,
        *,
        perceptual: str | os.PathLike[str] | None = "random",
        perceptual_seed: int = 0,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.features: nn.Module | None
        if perceptual is None:
            self.features = None
        elif isinstance(perceptual, str) and perceptual == "random":
            self.features = RandomFeatures(seed=perceptual_seed)
        else:
            self.features = VGGFeatures(perceptual)

    def perceptual_loss(self, sr: Tensor, gt: Tensor) -> Tensor:
        """Mean L1 between frozen-CNN features of ``sr`` and ``gt``."""
        if self.features is None:
            return sr.new_zeros((), dtype=torch.float32)
        a, b = _flat(sr), _flat(gt)
        fa = self.features(a)
        with torch.no_grad():
            fb = self.features(b)
        total = sr.new_zeros((), dtype=torch.float32)
        for x, y in zip(fa, fb, strict=True):
            total = total + (x.float() - y.float()).abs().mean()
        return total / len(fa)

    def forward(self, sr: Tensor, gt: Tensor) -> dict[str, Tensor]:
        """Every loss term as a 0-dim tensor, keys :data:`LOSS_NAMES`."""
        if sr.shape != gt.shape:
            raise ValueError(f"sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
        return {
            "l1": charbonnier(sr, gt, self.eps),
            "ms": multiscale_charbonnier(sr, gt, self.eps),
            "grad": sobel_gradient_loss(sr, gt),
            "perceptual": self.perceptual_loss(sr, gt),
        }
