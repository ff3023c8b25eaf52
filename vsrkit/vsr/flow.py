"""Optical flow for the reference model: a SpyNet-style pyramid estimator and backward warping.

The estimator is trained from scratch by default: the last convolution of every pyramid level
starts at zero, so the untrained network predicts a zero flow everywhere and the first warp is
the identity. A local pretrained weights file (BasicSR's SpyNet key layout, optionally wrapped
in ``{"params": ...}``) can be loaded instead; nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsrkit.vsr.errors import FlowWeightsError

__all__ = ["SpyNet", "flow_warp", "FlowWeightsError"]

logger = logging.getLogger(__name__)


def flow_warp(
    x: Tensor, flow: Tensor, *, mode: str = "bilinear", padding_mode: str = "zeros"
) -> Tensor:
    """Warp ``x`` (N, C, H, W) backwards by ``flow`` (N, 2, H, W) in pixels (x then y).

    Output pixel ``p`` takes the value of ``x`` at ``p + flow(p)``. A zero flow is the identity
    up to float rounding of the sampling grid. Sampling runs in float32 and the result is cast
    back to ``x.dtype``.
    """
    _, _, h, w = x.shape
    # coordinates in float32 even under bf16 autocast: bf16 cannot hold pixel positions > 256
    flow = flow.float()
    gy, gx = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=torch.float32),
        torch.arange(w, device=x.device, dtype=torch.float32),
        indexing="ij",
    )
    vx = gx.unsqueeze(0) + flow[:, 0]
    vy = gy.unsqueeze(0) + flow[:, 1]
    # normalise to [-1, 1] for align_corners=True; a 1-pixel axis maps to 0
    vx = 2.0 * vx / max(w - 1, 1) - 1.0
    vy = 2.0 * vy / max(h - 1, 1) - 1.0
    grid = torch.stack((vx, vy), dim=3)
    out = F.grid_sample(x.float(), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out.to(x.dtype)


class _BasicModule(nn.Module):
    """One pyramid level: five 7x7 convolutions from (ref, warped supp, flow) to a flow residual."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        chans = [8, *widths, 2]
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 7, padding=3))
            if i < len(chans) - 2:
                layers.append(nn.ReLU(inplace=False))
        # same key layout as BasicSR (basic_module.0, .2, .4, .6, .8)
        self.basic_module = nn.Sequential(*layers)
        last = self.basic_module[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """Coarse-to-fine flow estimator (SpyNet family), zero flow when untrained.

    Args:
        num_levels: pyramid levels; inputs are resized to a multiple of ``2**(num_levels-1)``.
        widths: channels of the four hidden convolutions of each level.
        weights: optional local file with pretrained weights (BasicSR key layout).

    Example:
        >>> net = SpyNet(num_levels=3, widths=(8, 16, 8, 4))
        >>> a = torch.rand(2, 3, 16, 24)
        >>> flow = net(a, a.flip(-1))
        >>> tuple(flow.shape), float(flow.detach().abs().max())
        ((2, 2, 16, 24), 0.0)
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        *,
        num_levels: int = 6,
        widths: Sequence[int] = (32, 64, 32, 16),
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.num_levels = int(num_levels)
        self.basic_module = nn.ModuleList(_BasicModule(widths) for _ in range(num_levels))
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load pretrained weights from a local file (never downloads).

        BasicSR's and mmagic's SpyNet files load as they are shipped: wrapped in ``params`` or
        ``state_dict``, with or without the ``mean``/``std`` buffers, or as the ``spynet.*``
        part of a whole BasicVSR file.
        """
        from vsrkit.vsr.pretrained import PretrainedWeightsError, spynet_state_dict

        p = os.fspath(path)
        try:
            state = spynet_state_dict(p)
        except PretrainedWeightsError as exc:
            raise FlowWeightsError(str(exc)) from None
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise FlowWeightsError(
                f"{p} does not fit SpyNet(num_levels={self.num_levels}): "
                + " ".join(str(exc).split())
            ) from None
        logger.info("loaded SpyNet weights from %s", p)

    def _process(self, ref: Tensor, supp: Tensor) -> Tensor:
        ref_pyr = [(ref - self.mean) / self.std]
        supp_pyr = [(supp - self.mean) / self.std]
        for _ in range(self.num_levels - 1):
            ref_pyr.insert(0, F.avg_pool2d(ref_pyr[0], 2, 2, count_include_pad=False))
            supp_pyr.insert(0, F.avg_pool2d(supp_pyr[0], 2, 2, count_include_pad=False))
        n, _, h, w = ref_pyr[0].shape
        flow = ref.new_zeros(n, 2, h, w)
        for level in range(self.num_levels):
            if level > 0:
                flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True)
                flow = flow * 2.0
            warped = flow_warp(supp_pyr[level], flow, padding_mode="border")
            inp = torch.cat((ref_pyr[level], warped, flow), dim=1)
            flow = flow + self.basic_module[level](inp)
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow (N, 2, H, W) that warps ``supp`` onto ``ref`` (both N, 3, H, W in [0, 1])."""
        h, w = ref.shape[-2:]
        k = 2 ** (self.num_levels - 1)
        hk, wk = -(-h // k) * k, -(-w // k) * k
        if (hk, wk) == (h, w):
            return self._process(ref, supp)
        ref_r = F.interpolate(ref, size=(hk, wk), mode="bilinear", align_corners=False)
        supp_r = F.interpolate(supp, size=(hk, wk), mode="bilinear", align_corners=False)
        flow = self._process(ref_r, supp_r)
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        scale = torch.tensor([w / wk, h / hk], device=flow.device, dtype=flow.dtype)
        return flow * scale.view(1, 2, 1, 1)
