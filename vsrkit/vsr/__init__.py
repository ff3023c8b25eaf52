"""The reference VSR model, flow and warping, losses, metrics, datasets and layer activity.

Names are loaded lazily: ``import vsrkit.vsr`` does not import torch; the first use of a
model, loss, metric or dataset does.

Example:
    >>> from vsrkit.vsr import build_model, bicubic_upsample
    >>> import torch
    >>> lrs = torch.rand(1, 2, 3, 8, 8)
    >>> bool(torch.equal(build_model("tiny")(lrs), bicubic_upsample(lrs)))
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsrkit._lazy import lazy_names

# public name -> submodule of vsrkit.vsr that defines it (relative)
_LAZY: dict[str, str] = {
    # model and flow
    "PRESETS": ".model",
    "ModelPreset": ".model",
    "BidirectionalRecurrentVSR": ".model",
    "ResidualBlock": ".model",
    "bicubic_upsample": ".model",
    "build_model": ".model",
    "SpyNet": ".flow",
    "flow_warp": ".flow",
    "FlowWeightsError": ".flow",
    "SKIP_MODES": ".model",
    # published weights (BasicSR, mmagic)
    "load_pretrained": ".pretrained",
    "read_pretrained": ".pretrained",
    "PretrainedWeights": ".pretrained",
    "PretrainedWeightsError": ".pretrained",
    "to_basicsr_keys": ".pretrained",
    # losses
    "LOSS_NAMES": ".losses",
    "VSRLoss": ".losses",
    "RandomFeatures": ".losses",
    "VGGFeatures": ".losses",
    "PerceptualWeightsError": ".losses",
    "charbonnier": ".losses",
    "multiscale_charbonnier": ".losses",
    "sobel_gradient_loss": ".losses",
    # metrics
    "QUALITY_FIELDS": ".metrics",
    "psnr": ".metrics",
    "ssim": ".metrics",
    "quality_metrics": ".metrics",
    # data
    "DEGRADATIONS": ".degradations",
    "degrade": ".degradations",
    "quantize_8bit": ".degradations",
    "procedural_texture": ".textures",
    "SyntheticVideoDataset": ".synthetic",
    "REDSDataset": ".folders",
    "Vimeo90KDataset": ".folders",
    "DatasetLayoutError": ".folders",
    "REDS4_CLIPS": ".folders",
    "build_dataset": ".folders",
    # layer activity
    "LayerActivityMonitor": ".activity",
    "LayerActivityReport": ".activity",
    "LayerActivity": ".activity",
    "PeakLayer": ".activity",
    "StreamAverage": ".activity",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.vsr.activity import (  # noqa: F401
        LayerActivity,
        LayerActivityMonitor,
        LayerActivityReport,
        PeakLayer,
        StreamAverage,
    )
    from vsrkit.vsr.degradations import DEGRADATIONS, degrade, quantize_8bit  # noqa: F401
    from vsrkit.vsr.flow import FlowWeightsError, SpyNet, flow_warp  # noqa: F401
    from vsrkit.vsr.folders import (  # noqa: F401
        REDS4_CLIPS,
        DatasetLayoutError,
        REDSDataset,
        Vimeo90KDataset,
        build_dataset,
    )
    from vsrkit.vsr.losses import (  # noqa: F401
        LOSS_NAMES,
        PerceptualWeightsError,
        RandomFeatures,
        VGGFeatures,
        VSRLoss,
        charbonnier,
        multiscale_charbonnier,
        sobel_gradient_loss,
    )
    from vsrkit.vsr.metrics import QUALITY_FIELDS, psnr, quality_metrics, ssim  # noqa: F401
    from vsrkit.vsr.model import (  # noqa: F401
        PRESETS,
        SKIP_MODES,
        BidirectionalRecurrentVSR,
        ModelPreset,
        ResidualBlock,
        bicubic_upsample,
        build_model,
    )
    from vsrkit.vsr.pretrained import (  # noqa: F401
        PretrainedWeights,
        PretrainedWeightsError,
        load_pretrained,
        read_pretrained,
        to_basicsr_keys,
    )
    from vsrkit.vsr.synthetic import SyntheticVideoDataset  # noqa: F401
    from vsrkit.vsr.textures import procedural_texture  # noqa: F401


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
