"""Streaming, exact bidirectional inference: :func:`upscale_frames` and :class:`Upscaler`.

A clip flows through the model in three passes, each holding O(1) frames on the device:

1. **read**: the low-resolution frames are taken from the iterable one at a time (a lazy
   reader is never asked for a frame twice) and kept in a :class:`FeatureStore`;
2. **backward**: from the last frame to the first, the backward branch computes each frame's
   features from the frame, the next frame's features and the flow of that pair; the features
   leave the device right away for the store (host memory up to ``host_budget``, then a spill
   file that is always removed);
3. **forward**: from the first frame to the last, the forward branch runs, the frame's
   backward features come back from the store, and the output frame is yielded as soon as it
   exists.

Both passes call the model's own step methods (``compute_flow``, ``backward_step``,
``forward_step``, ``reconstruct``), the ones its whole-clip ``forward`` calls, so the output is
``model(clip)``: the same numbers, not an approximation (within 1e-4 in float32; flows of one
pair instead of a batch of pairs may round differently in the last bits).

Options for what does not fit: ``tile=(h, w)`` runs every pass tile by tile and blends the
tiles' outputs without seams (:mod:`vsrkit.infer.tiles`); ``segment=N`` is the old
approximation that cuts the clip into independent pieces of N frames (propagation stops at each
cut and costs quality: measured in ``benchmarks/infer_bench.py``). Neither is the default.

On CUDA, ``half=True`` runs under autocast (bf16 where supported, else fp16), host buffers are
pinned and copies are non-blocking: an output frame is copied to the host while the next one
is computed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsrkit.infer.errors import InferenceError, InferenceOptionError
from vsrkit.infer.loading import resolve_device
from vsrkit.infer.store import FeatureStore, default_host_budget
from vsrkit.infer.tiles import Tile, blend_weights, check_tiling, tile_grid

__all__ = [
    "StreamStats",
    "Upscaler",
    "check_upscale_options",
    "default_channels_last",
    "upscale_frames",
]

logger = logging.getLogger(__name__)

#: How far float frames may stray outside [0, 1] (resampling overshoot) before they are refused.
FLOAT_SLACK = 0.05

#: ``progress(phase, index)`` is called after each frame of each pass: ``"read"``,
#: ``"backward"``, ``"forward"``, with the frame's index in the whole input.
ProgressFn = Callable[[str, int], None]


def default_channels_last(device: torch.device | str) -> bool:
    """The memory format that is faster for inference on ``device``: channels_last on CUDA
    (tensor cores) and on the CPU too, where streaming took 0.81x the time of contiguous
    tensors at 72x128 for the tiny, small and paper models, and 0.62x (tiny) / 0.68x (small) at
    180x320 (``benchmarks/infer_bench.py``; unlike a training step, inference has no backward
    pass that channels_last slows down)."""
    return torch.device(device).type in ("cuda", "cpu")


@dataclass
class StreamStats:
    """What the last :meth:`Upscaler.stream` did (read it after the loop)."""

    frames: int = 0
    outputs: int = 0
    segments: int = 0
    tiles: int = 1
    host_records: int = 0
    spilled_frames: int = 0
    spill_bytes: int = 0
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_upscale_options(
    *,
    device: str | torch.device | None = None,
    half: bool = False,
    tile: tuple[int, int] | None = None,
    tile_overlap: int = 16,
    segment: int | None = None,
    host_budget: int | None = None,
) -> torch.device:
    """Check the options of :class:`Upscaler` before any work; returns the device.

    Raises:
        InferenceOptionError: an unknown or missing device, half precision off CUDA, a tile
            not larger than its overlap, a segment below 1, a negative host budget.

    Example:
        >>> check_upscale_options(device="cpu", tile=(64, 64), tile_overlap=8)
        device(type='cpu')
    """
    dev = resolve_device(device)
    if half and dev.type != "cuda":
        raise InferenceOptionError("half precision needs a CUDA device (--device cuda)")
    if tile is not None:
        check_tiling(tuple(tile), tile_overlap)  # type: ignore[arg-type]
    if segment is not None and (isinstance(segment, bool) or segment < 1):
        raise InferenceOptionError(f"segment must be a number of frames >= 1, got {segment!r}")
    if host_budget is not None and host_budget < 0:
        raise InferenceOptionError(f"host budget must be >= 0 bytes, got {host_budget}")
    return dev


def _as_frame(raw: Any, index: int) -> Tensor:
    """A frame as a CPU ``(3, h, w)`` uint8 or float32 tensor of its own (never aliasing)."""
    if isinstance(raw, np.ndarray):
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise InferenceError(
                f"frame {index}: expected an (h, w, 3) array, got shape {tuple(raw.shape)}"
            )
        t = torch.from_numpy(np.ascontiguousarray(raw)).permute(2, 0, 1).contiguous()
    elif isinstance(raw, Tensor):
        if raw.dim() != 3 or raw.shape[0] != 3:
            raise InferenceError(
                f"frame {index}: expected a (3, h, w) tensor, got shape {tuple(raw.shape)}"
            )
        t = raw.detach().to("cpu", copy=True).contiguous()
    else:
        raise InferenceError(
            f"frame {index}: expected a (3, h, w) tensor or an (h, w, 3) array, "
            f"got {type(raw).__name__}"
        )
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():
        raise InferenceError(f"frame {index}: expected uint8 or float values, got {t.dtype}")
    t = t.float()
    if t.numel():
        lo, hi = float(t.min()), float(t.max())
        if not (lo >= -FLOAT_SLACK and hi <= 1.0 + FLOAT_SLACK):  # also NaN
            raise InferenceError(
                f"frame {index}: float values from {lo:g} to {hi:g}; float frames must be in "
                "[0, 1] (divide 8-bit values by 255, or give uint8)"
            )
    return t


class _Outputs:
    """Output frames on their way to the host; on CUDA each copy overlaps the next frame."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.waiting: list[tuple[int, Tensor, Any]] = []

    def push(self, index: int, frame: Tensor) -> list[tuple[int, Tensor]]:
        ready = self.drain()
        if not self.cuda:
            return [*ready, (index, frame.float())]
        host = torch.empty(frame.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(frame, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.waiting.append((index, host, event))
        return ready

    def drain(self) -> list[tuple[int, Tensor]]:
        out = []
        for index, host, event in self.waiting:
            event.synchronize()
            out.append((index, host))
        self.waiting.clear()
        return out


class Upscaler:
    """Streaming bidirectional inference with a trained model (see the module docstring).

    Args:
        model: a ``BidirectionalRecurrentVSR`` (e.g. from :func:`~vsrkit.infer.load_model`);
            it is moved to ``device``, put in eval mode and, with ``channels_last``, converted
            to that memory format, in place.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        half: autocast in bf16 (fp16 where bf16 is unsupported); CUDA only.
        channels_last: memory format; default :func:`default_channels_last` of the device.
        host_budget: bytes of host memory for the per-frame store before it spills to disk;
            default a quarter of physical memory, at most 4 GiB.
        spill_dir: folder of the spill file (default: the system temp folder).
        feature_dtype: dtype the backward features are kept in off the device; default their
            own (float32, or the autocast dtype with ``half``); ``torch.float16`` halves the
            store at a small cost in exactness.
        tile: ``(h, w)`` low-resolution tile size, or ``None`` for whole frames.
        tile_overlap: low-resolution pixels each tile shares with its neighbours.
        segment: cut the clip into independent pieces of this many frames (approximation),
            or ``None`` for exact propagation over the whole clip.
        progress: called as ``progress(phase, index)`` after each frame of each pass.

    Raises:
        InferenceOptionError: see :func:`check_upscale_options`.

    Example:
        >>> import torch
        >>> from vsrkit.vsr import build_model
        >>> model = build_model("tiny")
        >>> clip = torch.rand(4, 3, 8, 8)
        >>> up = Upscaler(model, device="cpu", host_budget=0)  # spill every frame
        >>> outs = [frame for _, frame in up.stream(clip)]
        >>> len(outs), tuple(outs[0].shape), up.stats.spilled_frames
        (4, (3, 32, 32), 4)
        >>> bool((torch.stack(outs) - model(clip[None])[0]).abs().max() < 1e-4)
        True
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str | torch.device | None = None,
        half: bool = False,
        channels_last: bool | None = None,
        host_budget: int | None = None,
        spill_dir: str | os.PathLike[str] | None = None,
        feature_dtype: torch.dtype | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int = 16,
        segment: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.device = check_upscale_options(
            device=device, half=half, tile=tile, tile_overlap=tile_overlap, segment=segment,
            host_budget=host_budget,
        )  # fmt: skip
        self.amp_dtype: torch.dtype | None = None
        if half:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.channels_last = (
            default_channels_last(self.device) if channels_last is None else bool(channels_last)
        )
        model.to(self.device).eval()
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.scale = int(getattr(model, "scale", 4))
        self.host_budget = default_host_budget() if host_budget is None else int(host_budget)
        self.spill_dir = spill_dir
        self.feature_dtype = feature_dtype
        self.tile = (int(tile[0]), int(tile[1])) if tile is not None else None
        self.tile_overlap = int(tile_overlap)
        self.segment = segment
        self.progress = progress
        self.stats = StreamStats()
        self._size: tuple[int, int] | None = None
        self._lr_dtype: torch.dtype | None = None
        # set per clip by _open_store: the tiles, their blend weights, the store's dtype
        self._tiles: list[Tile] = []
        self._whole = True
        self._weights: list[Tensor] = []
        self._weight_sum = torch.ones(())
        self._store_dtype = torch.float32
        self._feat_dtype: torch.dtype | None = None
        self._keep_inputs = False  # stream_with_input: each output's LR frame, until yielded
        self._inputs: dict[int, Tensor] = {}

    # ------------------------------------------------------------------ public
    def stream(
        self, frames: Iterable[Any], *, skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, Tensor]]:
        """Upscale ``frames`` in order; yields ``(index, frame)`` as each output exists.

        Args:
            frames: ``(3, h, w)`` tensors or ``(h, w, 3)`` arrays, uint8 or float in [0, 1],
                all of one size; any iterable, read once.
            skip: ``skip(index)`` true: that output is not wanted (it is still propagated
                through, since later frames depend on it, but not reconstructed or yielded).

        Yields:
            ``(index, frame)``: ``frame`` is a float32 CPU tensor ``(3, 4h, 4w)``, not clamped
            (exactly what ``model(clip)`` gives).

        Raises:
            InferenceError: no frames, a frame of another shape, size or kind.
        """
        self.stats = StreamStats()
        self._size, self._lr_dtype = None, None
        started = time.perf_counter()
        source = iter(frames)
        start = 0
        while True:
            count = yield from self._segment(source, start, skip)
            start += count
            self.stats.seconds = time.perf_counter() - started
            if count == 0 or self.segment is None or count < self.segment:
                break
        if start == 0:
            raise InferenceError("no frames to upscale (the input is empty)")
        self.stats.frames = start

    def stream_with_input(
        self, frames: Iterable[Any], *, skip: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """As :meth:`stream`, with each output's input frame: ``(index, frame, lr)``, ``lr``
        a float32 CPU ``(3, h, w)`` tensor in [0, 1], taken from the store (the input is still
        read once: a caller that also needs the LR frames reads nothing twice)."""
        self._keep_inputs = True
        try:
            for index, frame in self.stream(frames, skip=skip):
                yield index, frame, self._inputs.pop(index)
        finally:
            self._keep_inputs = False
            self._inputs.clear()

    # ------------------------------------------------------------------ passes
    def _segment(
        self, source: Iterator[Any], start: int, skip: Callable[[int], bool] | None
    ) -> Generator[tuple[int, Tensor], None, int]:
        """Read up to ``segment`` frames, run both passes, yield their outputs; returns how
        many frames it read."""
        frames = itertools.islice(source, self.segment) if self.segment else source
        store: FeatureStore | None = None
        try:
            count = 0
            for raw in frames:
                lr = self._check(_as_frame(raw, start + count), start + count)
                if store is None:
                    store = self._open_store(lr)
                store.put(count, "lr", lr)
                count += 1
                self._report("read", start + count - 1)
            if store is None:
                return 0
            self.stats.segments += 1
            self.stats.host_records = store.host_records
            self._backward(store, count, start)
            yield from self._forward(store, count, start, skip)
            self.stats.spilled_frames += store.spilled_records
            self.stats.spill_bytes = max(self.stats.spill_bytes, store.spill_bytes)
            return count
        finally:
            if store is not None:
                store.close()

    def _backward(self, store: FeatureStore, count: int, start: int) -> None:
        model = self.model
        states: list[Tensor | None] = [None] * len(self._tiles)
        nxt: Tensor | None = None
        for i in range(count - 1, -1, -1):
            with self._compute():
                lr = self._load_lr(store, i)
                for r, t in enumerate(self._tiles):
                    x = self._crop(lr, t)
                    flow = model.compute_flow(x, self._crop(nxt, t)) if nxt is not None else None
                    states[r] = feat = model.backward_step(x, states[r], flow)
                    store.put(i, "feat", self._pack(feat), part=r)
            nxt = lr
            self._report("backward", start + i)
        store.flush()

    def _forward(
        self,
        store: FeatureStore,
        count: int,
        start: int,
        skip: Callable[[int], bool] | None,
    ) -> Iterator[tuple[int, Tensor]]:
        model = self.model
        states: list[Tensor | None] = [None] * len(self._tiles)
        outputs = _Outputs(self.device)
        prev: Tensor | None = None
        for i in range(count):
            wanted = skip is None or not skip(start + i)
            with self._compute():
                lr = self._load_lr(store, i)
                frame: Tensor | None = None
                for r, t in enumerate(self._tiles):
                    x = self._crop(lr, t)
                    flow = model.compute_flow(x, self._crop(prev, t)) if prev is not None else None
                    states[r] = feat = model.forward_step(x, states[r], flow)
                    if not wanted:
                        continue
                    back = self._unpack(store.get(i, "feat", part=r, device=self.device))
                    out = model.reconstruct(x, back, feat)
                    frame = out if self._whole else self._blend(frame, out, r, t)
                store.release(i)
                if frame is not None and not self._whole:
                    frame = frame / self._weight_sum
                if frame is not None and self._keep_inputs:
                    self._inputs[start + i] = lr[0].float().cpu()
                ready = outputs.push(start + i, frame[0]) if frame is not None else []
            prev = lr
            self._report("forward", start + i)
            for item in ready:
                self.stats.outputs += 1
                yield item
        for item in outputs.drain():
            self.stats.outputs += 1
            yield item

    # ------------------------------------------------------------------ helpers
    def _compute(self) -> contextlib.ExitStack:
        """No gradients and (with ``half``) autocast, entered around each frame's work only,
        so code that runs between two yields is never affected."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        if self.amp_dtype is not None:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.amp_dtype))
        return stack

    def _check(self, lr: Tensor, index: int) -> Tensor:
        h, w = int(lr.shape[-2]), int(lr.shape[-1])
        if self._size is None:
            self._size, self._lr_dtype = (h, w), lr.dtype
        elif (h, w) != self._size:
            raise InferenceError(
                f"frame {index} is {h}x{w} (h x w), but frame 0 is {self._size[0]}x"
                f"{self._size[1]}: all frames of a clip must have one size"
            )
        if lr.dtype != self._lr_dtype:
            if self._lr_dtype == torch.float32:
                return lr.float() / 255.0
            raise InferenceError(
                f"frame {index} holds {lr.dtype} values, but frame 0 holds "
                f"{self._lr_dtype}: give every frame as uint8 or every frame as float"
            )
        return lr

    def _open_store(self, lr: Tensor) -> FeatureStore:
        h, w = int(lr.shape[-2]), int(lr.shape[-1])
        tiles = (
            tile_grid((h, w), self.tile, self.tile_overlap)
            if self.tile is not None
            else [Tile(0, 0, h, w)]
        )
        self._tiles = tiles
        self._whole = len(tiles) == 1 and (tiles[0].h, tiles[0].w) == (h, w)
        self.stats.tiles = len(tiles)
        if not self._whole:
            weights, total = blend_weights((h, w), tiles, self.scale)
            self._weights = [wt.to(self.device) for wt in weights]
            self._weight_sum = total.to(self.device)
        th, tw, c = tiles[0].h, tiles[0].w, int(self.model.num_feat)
        part = (th, tw, c) if self.channels_last else (c, th, tw)
        store_dtype = self.feature_dtype or self.amp_dtype or torch.float32
        self._store_dtype, self._feat_dtype = store_dtype, None
        cuda = self.device.type == "cuda"
        return FeatureStore(
            {"lr": ((3, h, w), lr.dtype), "feat": ((len(tiles), *part), store_dtype)},
            host_budget=self.host_budget,
            spill_dir=self.spill_dir,
            pin_memory=cuda,
            staged=cuda,
        )

    def _load_lr(self, store: FeatureStore, i: int) -> Tensor:
        lr = store.get(i, "lr", device=self.device)
        if lr.dtype == torch.uint8:
            lr = lr.float() / 255.0
        return lr[None]

    @staticmethod
    def _crop(x: Tensor, t: Tile) -> Tensor:
        if (t.h, t.w) == tuple(x.shape[-2:]):
            return x
        return x[..., t.y : t.y + t.h, t.x : t.x + t.w]

    def _pack(self, feat: Tensor) -> Tensor:
        """(1, C, h, w) features -> the store's layout: (h, w, C) or (C, h, w), its dtype."""
        if self._feat_dtype is None:
            self._feat_dtype = feat.dtype
        x = feat[0].permute(1, 2, 0) if self.channels_last else feat[0]
        return x.contiguous().to(self._store_dtype)

    def _unpack(self, x: Tensor) -> Tensor:
        x = x.permute(2, 0, 1) if self.channels_last else x
        return x[None].to(self._feat_dtype or x.dtype)

    def _blend(self, acc: Tensor | None, out: Tensor, r: int, t: Tile) -> Tensor:
        if acc is None:
            acc = out.new_zeros(1, 3, *self._weight_sum.shape[-2:], dtype=torch.float32)
        s = self.scale
        region = acc[..., t.y * s : (t.y + t.h) * s, t.x * s : (t.x + t.w) * s]
        region += out.float() * self._weights[r]
        return acc

    def _report(self, phase: str, index: int) -> None:
        if self.progress is not None:
            self.progress(phase, index)


def upscale_frames(model: Any, frames: Iterable[Any], **options: Any) -> Iterator[Tensor]:
    """Upscale ``frames`` with ``model``, yielding each output frame in order as it exists.

    Streaming and exact: the output equals ``model(clip)`` (within 1e-4 in float32) while the
    device holds O(1) frames and the host at most ``host_budget`` bytes of features (the rest
    is spilled to a temporary file that is always removed).

    Args:
        model: a trained ``BidirectionalRecurrentVSR`` (see :func:`~vsrkit.infer.load_model`).
        frames: an iterable of ``(3, h, w)`` tensors in [0, 1] (or uint8), or ``(h, w, 3)``
            uint8 arrays; a lazy reader is read once.
        **options: the keyword arguments of :class:`Upscaler` (``device``, ``half``,
            ``host_budget``, ``spill_dir``, ``feature_dtype``, ``tile``, ``tile_overlap``,
            ``segment``, ``channels_last``, ``progress``).

    Yields:
        float32 CPU tensors ``(3, 4h, 4w)``, not clamped.

    Example:
        >>> import torch
        >>> from vsrkit.vsr import build_model, bicubic_upsample
        >>> clip = torch.rand(3, 3, 8, 8)
        >>> outs = list(upscale_frames(build_model("tiny"), clip, device="cpu"))
        >>> bool(torch.equal(outs[2], bicubic_upsample(clip[2])))  # untrained: bicubic
        True
    """
    upscaler = Upscaler(model, **options)  # options are checked now, not at the first frame
    return (frame for _, frame in upscaler.stream(frames))
