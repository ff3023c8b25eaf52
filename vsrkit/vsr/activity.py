"""Layer activity: mean absolute activation of named blocks, accumulated on the device.

Forward hooks add each named layer's ``mean(|output|)`` to a tensor on the layer's device;
nothing is copied to the host until :meth:`LayerActivityMonitor.read`, which the loop calls
once per log interval. Percent of peak: each layer's mean activity divided by the largest one,
times 100 (the ``layer_activity_map`` statistics field). The peak layer is a typed record.

Not thread-safe: call ``read()``/``reset()`` from the thread that runs the forward passes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_LAYER_PATTERN",
    "LayerActivity",
    "LayerActivityMonitor",
    "LayerActivityReport",
    "PeakLayer",
    "StreamAverage",
    "stream_of",
]

#: Leaf module names watched when no names are given.
DEFAULT_LAYER_PATTERN = re.compile(r"^(Backward_Block_\d+|Forward_Block_\d+|Final_Fusion)$")


def stream_of(name: str) -> str:
    """``Backward``, ``Forward`` or ``Fusion`` for a layer name."""
    if name.startswith("Backward"):
        return "Backward"
    if name.startswith("Forward"):
        return "Forward"
    return "Fusion"


@dataclass(frozen=True)
class LayerActivity:
    """One layer: mean |activation| over the calls since the last reset, and percent of peak."""

    name: str
    stream: str
    mean_abs: float
    percent_of_peak: float
    calls: int


@dataclass(frozen=True)
class PeakLayer:
    """The most active layer (``value`` is its mean |activation|)."""

    name: str
    stream: str
    value: float


@dataclass(frozen=True)
class StreamAverage:
    """Average over the layers of one stream, as percent of peak and as raw mean |activation|."""

    stream: str
    percent_of_peak: float
    mean_abs: float
    num_layers: int


@dataclass(frozen=True)
class LayerActivityReport:
    """What :meth:`LayerActivityMonitor.read` returns; ``empty`` when no forward ran."""

    layers: tuple[LayerActivity, ...] = ()
    peak: PeakLayer | None = None
    streams: dict[str, StreamAverage] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no watched layer ran since the last reset."""
        return not self.layers

    def as_stats_field(self) -> dict[str, float]:
        """``layer_activity_map``: layer name -> percent of peak (JSON-safe, {} when empty)."""
        return {rec.name: round(rec.percent_of_peak, 3) for rec in self.layers}


class LayerActivityMonitor:
    """Watches named layers of a model with forward hooks.

    Args:
        model: the module to watch.
        names: leaf or dotted module names to watch; ``None`` watches every module whose leaf
            name matches :data:`DEFAULT_LAYER_PATTERN`. Reported names are the leaf names.
        enabled: when False the hooks return at once (no device work).

    Example:
        >>> from vsrkit.vsr import build_model
        >>> model = build_model("tiny")
        >>> mon = LayerActivityMonitor(model)
        >>> _ = model(torch.rand(1, 2, 3, 8, 8))
        >>> report = mon.read()
        >>> report.peak.name in report.as_stats_field()
        True
        >>> mon.close()
    """

    def __init__(
        self, model: nn.Module, names: Iterable[str] | None = None, *, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        found: dict[str, nn.Module] = {}
        modules = list(model.named_modules())
        if names is None:
            for full, module in modules:
                leaf = full.rsplit(".", 1)[-1]
                if DEFAULT_LAYER_PATTERN.match(leaf):
                    found[leaf] = module
        else:
            for wanted in names:
                hits = [m for full, m in modules if wanted in (full, full.rsplit(".", 1)[-1])]
                if len(hits) != 1:
                    what = "no module" if not hits else f"{len(hits)} modules"
                    raise ValueError(f"layer name {wanted!r} matches {what} of the model")
                found[wanted] = hits[0]
        if not found:
            raise ValueError("no layer to watch: the model has no module matching the names")
        self.names: tuple[str, ...] = tuple(found)
        self._sums: dict[str, Tensor] = {}
        self._calls: dict[str, int] = dict.fromkeys(self.names, 0)
        self._handles = [
            module.register_forward_hook(self._make_hook(name)) for name, module in found.items()
        ]

    def _make_hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if not self.enabled or not isinstance(output, Tensor):
                return
            value = output.detach().abs().mean(dtype=torch.float32)
            prev = self._sums.get(name)
            self._sums[name] = value if prev is None else prev + value
            self._calls[name] += 1

        return hook

    def reset(self) -> None:
        """Forget what was accumulated (call after each ``read()`` for per-interval values)."""
        self._sums.clear()
        self._calls = dict.fromkeys(self.names, 0)

    def read(self, *, reset: bool = False) -> LayerActivityReport:
        """One host sync: turn the accumulated sums into a report."""
        names = [n for n in self.names if self._calls[n] > 0 and n in self._sums]
        if not names:
            return LayerActivityReport()
        sums = torch.stack([self._sums[n].to("cpu", torch.float64) for n in names]).tolist()
        means = [s / self._calls[n] for s, n in zip(sums, names, strict=True)]
        peak_value = max(means)
        peak_name = names[means.index(peak_value)]
        layers = tuple(
            LayerActivity(
                name=n,
                stream=stream_of(n),
                mean_abs=m,
                percent_of_peak=100.0 * m / peak_value if peak_value > 0 else 0.0,
                calls=self._calls[n],
            )
            for n, m in zip(names, means, strict=True)
        )
        streams: dict[str, StreamAverage] = {}
        for s in ("Backward", "Forward", "Fusion"):
            recs = [r for r in layers if r.stream == s]
            if recs:
                streams[s] = StreamAverage(
                    stream=s,
                    percent_of_peak=sum(r.percent_of_peak for r in recs) / len(recs),
                    mean_abs=sum(r.mean_abs for r in recs) / len(recs),
                    num_layers=len(recs),
                )
        if reset:
            self.reset()
        return LayerActivityReport(
            layers=layers,
            peak=PeakLayer(peak_name, stream_of(peak_name), peak_value),
            streams=streams,
        )

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
