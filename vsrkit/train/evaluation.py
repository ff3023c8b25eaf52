"""Validation of the reference model and the layer-activity fields of the statistics."""

from __future__ import annotations

from typing import Any

import torch

from vsrkit.adaptive import AdaptiveLossWeights
from vsrkit.vsr import bicubic_upsample, quality_metrics

__all__ = ["activity_fields", "validate"]


def activity_fields(report: Any) -> dict[str, Any]:
    """The layer-activity fields: the per-layer map (percent of peak), the peak layer with its
    raw mean |activation| (the monitor's 0-2 bar), and the stream averages."""
    if report.peak is None:
        return {}
    return {
        "layer_activity_map": report.as_stats_field(),
        "layer_activity_peak": {"layer": report.peak.name, "value": report.peak.value},
        "layer_activity_streams": {k: v.percent_of_peak for k, v in report.streams.items()},
    }


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    val_set: Any,
    criterion: torch.nn.Module,
    weights: AdaptiveLossWeights,
    dev: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    """Quality of ``net`` on every validation clip (full frames), averaged over clips."""
    net.eval()
    totals: dict[str, float] = {}
    for i in range(len(val_set)):
        lrs, gts = (t.unsqueeze(0).to(dev) for t in val_set[i])
        with torch.autocast(
            dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            sr = net(lrs)
        sr = sr.float().clamp(0, 1)
        q = quality_metrics(sr, bicubic_upsample(lrs).clamp(0, 1), gts)
        q["validation_loss_value"] = float(weights.combine(criterion(sr, gts)))
        for k, v in q.items():
            totals[k] = totals.get(k, 0.0) + v
    net.train()
    return {k: v / len(val_set) for k, v in totals.items()}
