"""The reference VSR network: bidirectional recurrent propagation (BasicVSR family).

Frames are aligned with a :class:`~vsrkit.vsr.flow.SpyNet` flow, propagated backwards and
forwards through two trunks of residual blocks, fused, upsampled x4 with pixel shuffle and
added to the upsampled input (bicubic by default, bilinear as in BasicSR with
``skip="bilinear"``). The last convolution starts at zero, so an untrained model returns
exactly the skip connection's upsample of its input (:func:`bicubic_upsample` by default):
training starts from there.

Layer activity names (see :mod:`vsrkit.vsr.activity`): ``Backward_Block_01 ...``,
``Forward_Block_01 ...`` and ``Final_Fusion``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsrkit.vsr.flow import SpyNet, flow_warp

__all__ = [
    "PRESETS",
    "SKIP_MODES",
    "BidirectionalRecurrentVSR",
    "ModelPreset",
    "ResidualBlock",
    "bicubic_upsample",
    "build_model",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of one named preset."""

    num_feat: int
    num_blocks: int
    spynet_levels: int
    spynet_widths: tuple[int, int, int, int]


#: Skip connections: ``bicubic`` (vsrkit's default), ``bilinear`` (BasicSR's BasicVSR).
SKIP_MODES = ("bicubic", "bilinear")

#: Named sizes: ``tiny`` for CPU tests and quick runs, ``paper`` is BasicVSR's (about 6.3M).
PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(16, 2, 3, (8, 16, 8, 4)),
    "small": ModelPreset(32, 10, 4, (16, 32, 16, 8)),
    "paper": ModelPreset(64, 30, 6, (32, 64, 32, 16)),
}


def bicubic_upsample(lrs: Tensor, scale: int = 4) -> Tensor:
    """Bicubic upsampling of ``(..., 3, h, w)`` frames to ``(..., 3, scale*h, scale*w)``.

    The exact operation the model's skip connection uses (``align_corners=False``, no clamp).
    """
    lead = lrs.shape[:-3]
    c, h, w = lrs.shape[-3:]
    up = F.interpolate(
        lrs.reshape(-1, c, h, w), scale_factor=scale, mode="bicubic", align_corners=False
    )
    return up.reshape(*lead, c, h * scale, w * scale)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (no batch norm)."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)  # residual scaling at init, as in EDVR/BasicVSR
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class _Trunk(nn.Module):
    """Input conv from (frame, propagated features) followed by named residual blocks."""

    def __init__(self, prefix: str, num_feat: int, num_blocks: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(num_feat + 3, num_feat, 3, padding=1)
        self.blocks = nn.ModuleDict(
            {f"{prefix}_Block_{i + 1:02d}": ResidualBlock(num_feat) for i in range(num_blocks)}
        )

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv_in(x), 0.1)
        for block in self.blocks.values():
            x = block(x)
        return x


class BidirectionalRecurrentVSR(nn.Module):
    """x4 video super-resolution with bidirectional recurrent propagation.

    Args:
        num_feat: feature channels of the trunks.
        num_blocks: residual blocks per trunk (backward and forward).
        spynet_levels: pyramid levels of the flow estimator.
        spynet_widths: hidden widths of each flow level.
        spynet_weights: optional local pretrained SpyNet file (never downloaded).
        scale: upsampling factor; only 4 is supported (two pixel-shuffle x2 stages).
        skip: how the skip connection upsamples the input: ``"bicubic"`` (vsrkit's default)
            or ``"bilinear"``, as BasicSR's and mmagic's BasicVSR do (their published weights
            need it; see :func:`vsrkit.vsr.load_pretrained`).

    Input ``lrs`` is ``(B, T, 3, h, w)`` in [0, 1]; output ``(B, T, 3, 4h, 4w)``. The flow
    estimator is ``model.spynet`` (give it a lower learning rate).

    Example:
        >>> model = BidirectionalRecurrentVSR(num_feat=8, num_blocks=1, spynet_levels=2,
        ...                                   spynet_widths=(4, 4, 4, 4))
        >>> lrs = torch.rand(1, 3, 3, 8, 8)
        >>> bool(torch.equal(model(lrs), bicubic_upsample(lrs)))
        True
    """

    def __init__(
        self,
        *,
        num_feat: int = 64,
        num_blocks: int = 30,
        spynet_levels: int = 6,
        spynet_widths: tuple[int, int, int, int] = (32, 64, 32, 16),
        spynet_weights: str | os.PathLike[str] | None = None,
        scale: int = 4,
        skip: str = "bicubic",
    ) -> None:
        super().__init__()
        if scale != 4:
            raise ValueError(f"only scale=4 is supported, got {scale}")
        if skip not in SKIP_MODES:
            raise ValueError(f"skip must be one of {', '.join(SKIP_MODES)}, got {skip!r}")
        if num_feat < 1 or num_blocks < 1:
            raise ValueError(f"num_feat and num_blocks must be >= 1, got {num_feat}, {num_blocks}")
        self.num_feat = num_feat
        self.num_blocks = num_blocks
        self.scale = scale
        self.skip = skip
        self.spynet = SpyNet(num_levels=spynet_levels, widths=spynet_widths, weights=spynet_weights)
        self.backward_trunk = _Trunk("Backward", num_feat, num_blocks)
        self.forward_trunk = _Trunk("Forward", num_feat, num_blocks)
        self.Final_Fusion = nn.Conv2d(2 * num_feat, num_feat, 1)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, padding=1)
        self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)
        nn.init.zeros_(self.conv_last.weight)
        if self.conv_last.bias is not None:
            nn.init.zeros_(self.conv_last.bias)

    # ---- the network's maths, one step at a time ------------------------------------------
    # ``forward`` (whole clip, training) and the streaming inference of ``vsrkit.infer`` call
    # the same four methods, so the two can never disagree.

    def compute_flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow ``(N, 2, h, w)`` that warps ``supp`` onto ``ref`` (both ``(N, 3, h, w)``).

        The backward branch at frame ``i`` uses ``compute_flow(lr[i], lr[i + 1])``, the forward
        branch ``compute_flow(lr[i], lr[i - 1])``; ``N`` may hold many pairs at once.
        """
        return self.spynet(ref, supp)

    def backward_step(self, lr: Tensor, feat: Tensor | None, flow: Tensor | None) -> Tensor:
        """Backward-branch features of one frame.

        Args:
            lr: the frame, ``(B, 3, h, w)``.
            feat: backward features of the next frame, ``None`` at the last frame.
            flow: ``compute_flow(lr, next_lr)``, ``None`` at the last frame.
        """
        return self._propagate(self.backward_trunk, lr, feat, flow)

    def forward_step(self, lr: Tensor, feat: Tensor | None, flow: Tensor | None) -> Tensor:
        """Forward-branch features of one frame (``feat``/``flow`` from the previous frame,
        ``None`` at the first)."""
        return self._propagate(self.forward_trunk, lr, feat, flow)

    def _propagate(
        self, trunk: _Trunk, lr: Tensor, feat: Tensor | None, flow: Tensor | None
    ) -> Tensor:
        if feat is None:
            feat = lr.new_zeros(lr.shape[0], self.num_feat, *lr.shape[-2:])
        else:
            if flow is None:
                raise ValueError("a propagated feature needs the flow of its frame pair")
            feat = flow_warp(feat, flow)
        return trunk(torch.cat((lr, feat), dim=1))

    def reconstruct(self, lr: Tensor, feat_backward: Tensor, feat_forward: Tensor) -> Tensor:
        """Output frame ``(B, 3, 4h, 4w)`` from a frame and its two branches' features."""
        out = F.leaky_relu(self.Final_Fusion(torch.cat((feat_backward, feat_forward), 1)), 0.1)
        out = F.leaky_relu(F.pixel_shuffle(self.upconv1(out), 2), 0.1)
        out = F.leaky_relu(F.pixel_shuffle(self.upconv2(out), 2), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        base = F.interpolate(lr, scale_factor=self.scale, mode=self.skip, align_corners=False)
        return out.to(base.dtype) + base

    # ---- whole clips ----------------------------------------------------------------------

    def _direction_flows(self, lrs: Tensor, *, backward: bool) -> Tensor:
        """Flows of every neighbouring pair in one direction, ``(B, T-1, 2, h, w)``."""
        b, t, c, h, w = lrs.shape
        prev = lrs[:, :-1].reshape(-1, c, h, w)
        nxt = lrs[:, 1:].reshape(-1, c, h, w)
        flows = self.compute_flow(prev, nxt) if backward else self.compute_flow(nxt, prev)
        return flows.view(b, t - 1, 2, h, w)

    def compute_flows(self, lrs: Tensor) -> tuple[Tensor, Tensor]:
        """Backward flows (frame i <- i+1) and forward flows (frame i+1 <- i), (B, T-1, 2, h, w),
        in one batched call."""
        b, t, c, h, w = lrs.shape
        prev = lrs[:, :-1].reshape(-1, c, h, w)
        nxt = lrs[:, 1:].reshape(-1, c, h, w)
        flows_backward, flows_forward = self.compute_flow(
            torch.cat((prev, nxt)), torch.cat((nxt, prev))
        ).split(prev.shape[0])
        return flows_backward.view(b, t - 1, 2, h, w), flows_forward.view(b, t - 1, 2, h, w)

    def forward(self, lrs: Tensor) -> Tensor:
        """Upscale a clip: ``(B, T, 3, h, w)`` -> ``(B, T, 3, 4h, 4w)``.

        Without gradients (inference) each direction's flows are computed just before its
        pass, so the two are never held at once; with gradients the graph keeps every
        activation anyway and one batched call for both directions is faster.
        """
        if lrs.dim() != 5 or lrs.shape[2] != 3:
            raise ValueError(f"expected lrs of shape (B, T, 3, h, w), got {tuple(lrs.shape)}")
        t = lrs.shape[1]
        flows_backward: Tensor | None = None
        flows_forward: Tensor | None = None
        if t > 1 and torch.is_grad_enabled():
            flows_backward, flows_forward = self.compute_flows(lrs)
        elif t > 1:
            flows_backward = self._direction_flows(lrs, backward=True)
        feat: Tensor | None = None
        backward_feats: list[Tensor] = []
        for i in range(t - 1, -1, -1):
            flow = flows_backward[:, i] if flows_backward is not None and i < t - 1 else None
            feat = self.backward_step(lrs[:, i], feat, flow)
            backward_feats.append(feat)
        backward_feats.reverse()

        if t > 1 and flows_forward is None:
            del flows_backward
            flows_forward = self._direction_flows(lrs, backward=False)
        feat = None
        outputs: list[Tensor] = []
        for i in range(t):
            flow = flows_forward[:, i - 1] if flows_forward is not None and i > 0 else None
            feat = self.forward_step(lrs[:, i], feat, flow)
            outputs.append(self.reconstruct(lrs[:, i], backward_feats[i], feat))
        return torch.stack(outputs, dim=1)


def build_model(
    preset: str = "tiny",
    *,
    num_feat: int | None = None,
    num_blocks: int | None = None,
    spynet_weights: str | os.PathLike[str] | None = None,
    skip: str = "bicubic",
) -> BidirectionalRecurrentVSR:
    """Build the reference model from a preset name, optionally overriding its sizes.

    Args:
        preset: one of :data:`PRESETS` (``tiny``, ``small``, ``paper``).
        num_feat: feature channels instead of the preset's.
        num_blocks: residual blocks per trunk instead of the preset's.
        spynet_weights: local pretrained SpyNet file; it must fit the preset's SpyNet
            (the ``paper`` preset matches BasicSR's 6-level SpyNet).
        skip: ``"bicubic"`` or ``"bilinear"`` (BasicSR's BasicVSR exactly).

    Raises:
        ValueError: unknown preset name or skip mode.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    model = BidirectionalRecurrentVSR(
        num_feat=p.num_feat if num_feat is None else num_feat,
        num_blocks=p.num_blocks if num_blocks is None else num_blocks,
        spynet_levels=p.spynet_levels,
        spynet_widths=p.spynet_widths,
        spynet_weights=spynet_weights,
        skip=skip,
    )
    n_params = sum(x.numel() for x in model.parameters())
    logger.info("built %s model: %.2fM parameters", preset, n_params / 1e6)
    return model
