"""Spatial tiles for frames too large for the device, blended without seams.

A frame of ``h x w`` low-resolution pixels is covered by tiles of ``tile`` pixels that overlap
their neighbours by at least ``overlap`` pixels; the tiles are spread evenly, so every tile has
the same size and no tile sticks out of the frame. Each tile's output is weighted by a linear
ramp across the part it shares with a neighbour (weight ``(k + 0.5) / n`` at pixel ``k`` of an
``n``-pixel overlap, rising towards the tile's interior, 1 elsewhere) and the sum is divided by
the sum of the weights. Two neighbours' ramps add up to 1 across their overlap, so the output
crosses from one tile to the next gradually: there is no edge where one tile stops.

Example:
    >>> [(t.y, t.x) for t in tile_grid((20, 30), tile=(12, 12), overlap=4)]
    [(0, 0), (0, 6), (0, 12), (0, 18), (8, 0), (8, 6), (8, 12), (8, 18)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vsrkit.infer.errors import InferenceOptionError

__all__ = ["Tile", "blend_weights", "check_tiling", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """One tile: its top-left corner and size in low-resolution pixels."""

    y: int
    x: int
    h: int
    w: int


def check_tiling(tile: tuple[int, int], overlap: int) -> None:
    """Raise :class:`~vsrkit.infer.errors.InferenceOptionError` (a ``ValueError``) unless
    ``tile`` is two positive sizes larger than ``overlap``."""
    if len(tile) != 2 or any(int(t) < 1 for t in tile):
        raise InferenceOptionError(f"tile must be two sizes >= 1 (height, width), got {tile!r}")
    if overlap < 0:
        raise InferenceOptionError(f"tile overlap must be >= 0, got {overlap}")
    if min(tile) <= overlap:
        raise InferenceOptionError(
            f"tile {tile[0]}x{tile[1]} (--tile) must be larger than its overlap of {overlap} "
            "pixels on each side (--tile-overlap)"
        )


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of ``tile``-sized windows over ``size`` overlapping >= ``overlap``."""
    if tile >= size:
        return [0]
    n = math.ceil((size - overlap) / (tile - overlap))
    span = size - tile
    return [(k * span) // (n - 1) for k in range(n)]


def tile_grid(size: tuple[int, int], tile: tuple[int, int], overlap: int) -> list[Tile]:
    """The tiles that cover a ``size = (h, w)`` frame, row by row.

    Raises:
        ValueError: as :func:`check_tiling`.
    """
    check_tiling(tile, overlap)
    h, w = size
    th, tw = min(tile[0], h), min(tile[1], w)
    return [
        Tile(y, x, th, tw)
        for y in _starts(h, th, overlap if th < h else 0)
        for x in _starts(w, tw, overlap if tw < w else 0)
    ]


def _ramp(length: int, before: int, after: int) -> Tensor:
    """1-D weights of a tile of ``length`` pixels sharing ``before``/``after`` pixels."""
    weight = torch.ones(length, dtype=torch.float64)
    k = torch.arange(length, dtype=torch.float64)
    if before > 0:
        weight = torch.minimum(weight, (k + 0.5) / before)
    if after > 0:
        weight = torch.minimum(weight, (length - k - 0.5) / after)
    return weight


def blend_weights(
    size: tuple[int, int], tiles: list[Tile], scale: int
) -> tuple[list[Tensor], Tensor]:
    """Per-tile output weights ``(1, 1, scale*th, scale*tw)`` and their sum over the frame.

    Args:
        size: the frame's low-resolution ``(h, w)``.
        tiles: from :func:`tile_grid`.
        scale: the model's upsampling factor.
    """
    h, w = size

    def shared(starts: list[int], i: int, length: int) -> tuple[int, int]:
        before = starts[i - 1] + length - starts[i] if i > 0 else 0
        after = starts[i] + length - starts[i + 1] if i + 1 < len(starts) else 0
        return max(before, 0) * scale, max(after, 0) * scale

    ys = sorted({t.y for t in tiles})
    xs = sorted({t.x for t in tiles})
    weights = []
    total = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float64)
    for t in tiles:
        wy = _ramp(t.h * scale, *shared(ys, ys.index(t.y), t.h))
        wx = _ramp(t.w * scale, *shared(xs, xs.index(t.x), t.w))
        weight = torch.outer(wy, wx)[None, None]
        weights.append(weight.float())
        y0, x0 = t.y * scale, t.x * scale
        total[..., y0 : y0 + t.h * scale, x0 : x0 + t.w * scale] += weight
    return weights, total.float()
