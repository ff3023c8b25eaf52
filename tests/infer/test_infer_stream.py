"""Streaming inference equals the whole-clip forward; tiles blend without seams; segments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.infer.conftest import perturbed_model
from vsrkit.infer import InferenceError, Upscaler, tile_grid, upscale_frames
from vsrkit.infer.tiles import blend_weights
from vsrkit.vsr import bicubic_upsample


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return perturbed_model(0)


def whole(model: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        return model(clip[None])[0]


def stream(model: torch.nn.Module, clip, **options) -> torch.Tensor:
    out = torch.stack(list(upscale_frames(model, clip, device="cpu", **options)))
    model.to(memory_format=torch.contiguous_format)
    return out


@pytest.mark.parametrize("t", [1, 2, 5, 12])
@pytest.mark.parametrize(
    "options",
    [{}, {"host_budget": 0}, {"channels_last": True, "host_budget": 40_000}],
    ids=["in-memory", "all-spilled", "channels-last-half-spilled"],
)
def test_streaming_equals_the_whole_clip_forward(model, t: int, options: dict) -> None:
    clip = torch.rand(t, 3, 13, 17, generator=torch.Generator().manual_seed(t))
    ref = whole(model, clip)
    assert float((ref - bicubic_upsample(clip)).abs().max()) > 1e-2  # the model does act
    out = stream(model, clip, **options)
    assert out.shape == ref.shape == (t, 3, 52, 68)
    assert float((out - ref).abs().max()) < 1e-4


def test_uint8_and_numpy_frames_are_the_float_frames(model) -> None:
    u8 = torch.randint(0, 256, (4, 3, 9, 11), dtype=torch.uint8)
    ref = whole(model, u8.float() / 255.0)
    arrays = [f.permute(1, 2, 0).numpy() for f in u8]  # (h, w, 3) as decoders give
    for frames in (u8, arrays):
        assert float((stream(model, frames, host_budget=0) - ref).abs().max()) < 1e-4


def test_fp16_store_is_close_and_smaller(model) -> None:
    clip = torch.rand(6, 3, 12, 12)
    ref = whole(model, clip)
    up = Upscaler(model, device="cpu", host_budget=0, feature_dtype=torch.float16)
    out = torch.stack([f for _, f in up.stream(clip)])
    full = Upscaler(model, device="cpu", host_budget=0)
    list(full.stream(clip))
    assert float((out - ref).abs().max()) < 5e-3
    assert up.stats.spill_bytes < full.stats.spill_bytes


def test_a_lazy_generator_is_read_once_and_outputs_come_before_the_input_ends(model) -> None:
    reads: list[int] = []

    def frames():
        for i in range(5):
            reads.append(i)
            yield torch.rand(3, 8, 8)

    it = upscale_frames(model, frames(), device="cpu")
    first = next(it)
    assert reads == [0, 1, 2, 3, 4] and first.shape == (3, 32, 32)
    assert len(list(it)) == 4 and reads == [0, 1, 2, 3, 4]


def test_code_between_two_outputs_keeps_its_own_grad_mode(model) -> None:
    for _ in upscale_frames(model, torch.rand(3, 3, 8, 8), device="cpu"):
        assert torch.is_grad_enabled()
        x = torch.ones(1, requires_grad=True)
        (x * 2).sum().backward()  # would fail under no_grad or inference_mode


def test_skip_leaves_out_frames_but_not_their_propagation(model) -> None:
    clip = torch.rand(6, 3, 10, 10)
    ref = whole(model, clip)
    up = Upscaler(model, device="cpu", host_budget=0)
    got = dict(up.stream(clip, skip=lambda i: i in (0, 1, 4)))
    assert sorted(got) == [2, 3, 5]
    for i, frame in got.items():
        assert float((frame - ref[i]).abs().max()) < 1e-4


def test_progress_reports_every_frame_of_every_pass(model) -> None:
    seen: list[tuple[str, int]] = []
    list(
        upscale_frames(
            model, torch.rand(3, 3, 8, 8), device="cpu", progress=lambda *a: seen.append(a)
        )
    )
    assert seen == [
        ("read", 0),
        ("read", 1),
        ("read", 2),
        ("backward", 2),
        ("backward", 1),
        ("backward", 0),
        ("forward", 0),
        ("forward", 1),
        ("forward", 2),
    ]


def test_segments_are_the_model_on_each_piece(model) -> None:
    clip = torch.rand(7, 3, 9, 9)
    out = stream(model, clip, segment=3)
    pieces = torch.cat([whole(model, clip[i : i + 3]) for i in (0, 3, 6)])
    assert float((out - pieces).abs().max()) < 1e-4
    assert float((out - whole(model, clip)).abs().max()) > 1e-4  # the cut costs something
    assert float((stream(model, clip, segment=7) - whole(model, clip)).abs().max()) < 1e-4


def _edge_jumps(diff: torch.Tensor, tiles: list, size: tuple[int, int]) -> tuple[float, float]:
    """Largest jump of ``diff`` between neighbouring pixels across a tile edge (where a tile
    starts or stops), and the largest jump anywhere else, over both axes."""
    at, elsewhere = 0.0, 0.0
    for axis, (start, length, extent) in enumerate(
        ((lambda t: t.y, lambda t: t.h, size[0]), (lambda t: t.x, lambda t: t.w, size[1]))
    ):
        dim = -2 + axis
        edges = {4 * start(t) for t in tiles} | {4 * (start(t) + length(t)) for t in tiles}
        edges = {e - 1 for e in edges if 0 < e < 4 * extent}
        jumps = diff.diff(dim=dim).abs().movedim(dim, 0)
        mask = torch.zeros(jumps.shape[0], dtype=torch.bool)
        mask[sorted(edges)] = True
        at = max(at, float(jumps[mask].max()))
        elsewhere = max(elsewhere, float(jumps[~mask].max()))
    return at, elsewhere


def test_tiles_are_close_to_whole_frames_and_have_no_seams(model) -> None:
    """A smooth clip: the tiled output differs from the whole frame a little, and across the
    tile edges the difference jumps no more than it does between any other two pixels. The same
    tiles without an overlap (nothing to blend) show the seam that this check catches."""
    torch.manual_seed(3)
    clip = F.interpolate(torch.rand(5, 3, 6, 8), size=(36, 48), mode="bicubic").clamp(0, 1)
    ref = whole(model, clip)
    tile = (20, 24)
    out = stream(model, clip, tile=tile, tile_overlap=6)
    diff = out - ref
    print(
        f"tiled (20x24, overlap 6) vs whole frame: max |diff| {float(diff.abs().max()):.2e}, "
        f"mean {float(diff.abs().mean()):.2e}"
    )
    assert float(diff.abs().max()) < 0.01 and float(diff.abs().mean()) < 5e-4
    at_edges, elsewhere = _edge_jumps(diff, tile_grid((36, 48), tile, 6), (36, 48))
    assert at_edges <= 1.25 * elsewhere

    cut = stream(model, clip, tile=tile, tile_overlap=0) - ref
    at_edges_cut, elsewhere_cut = _edge_jumps(cut, tile_grid((36, 48), tile, 0), (36, 48))
    assert at_edges_cut > 2 * elsewhere_cut and at_edges_cut > 20 * at_edges


def test_one_tile_as_large_as_the_frame_is_exact(model) -> None:
    clip = torch.rand(4, 3, 10, 12)
    assert (
        float((stream(model, clip, tile=(64, 64), tile_overlap=4) - whole(model, clip)).abs().max())
        < 1e-4
    )


@settings(max_examples=40)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    th=st.integers(2, 40),
    tw=st.integers(2, 40),
    overlap=st.integers(0, 12),
)
def test_tile_grid_covers_the_frame_with_the_overlap_and_weights_sum_to_one(
    h: int, w: int, th: int, tw: int, overlap: int
) -> None:
    if min(th, tw) <= overlap:
        with pytest.raises(ValueError, match="larger than its overlap"):
            tile_grid((h, w), (th, tw), overlap)
        return
    tiles = tile_grid((h, w), (th, tw), overlap)
    cover = np.zeros((h, w), dtype=int)
    for t in tiles:
        assert t.y >= 0 and t.x >= 0 and t.y + t.h <= h and t.x + t.w <= w
        assert (t.h, t.w) == (min(th, h), min(tw, w))
        cover[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert cover.min() >= 1
    ys, xs = sorted({t.y for t in tiles}), sorted({t.x for t in tiles})
    for starts, size in ((ys, tiles[0].h), (xs, tiles[0].w)):
        for a, b in itertools.pairwise(starts):
            assert a + size - b >= overlap  # neighbours share at least the overlap
    weights, total = blend_weights((h, w), tiles, 2)
    assert float(total.min()) > 0
    blended = torch.zeros(1, 1, 2 * h, 2 * w)
    for t, wt in zip(tiles, weights, strict=True):
        blended[..., 2 * t.y : 2 * (t.y + t.h), 2 * t.x : 2 * (t.x + t.w)] += wt
    torch.testing.assert_close(blended / total, torch.ones_like(blended))


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        ([], "no frames"),
        ([torch.rand(3, 8, 8), torch.rand(3, 8, 9)], "frame 1 is 8x9"),
        ([torch.rand(8, 8, 3)], r"expected a \(3, h, w\) tensor"),
        ([np.zeros((8, 8, 4), np.uint8)], r"expected an \(h, w, 3\) array"),
        ([torch.zeros(3, 8, 8, dtype=torch.int32)], "uint8 or float"),
        ([torch.rand(3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8)], None),
        ([torch.zeros(3, 8, 8, dtype=torch.uint8), torch.rand(3, 8, 8)], "holds torch.float32"),
        (["frame.png"], "got str"),
    ],
)
def test_bad_frames_are_one_clear_error(model, frames: list, needle: str | None) -> None:
    if needle is None:  # uint8 after float frames: converted, fine
        assert len(list(upscale_frames(model, frames, device="cpu"))) == 2
        return
    with pytest.raises(InferenceError, match=needle):
        list(upscale_frames(model, frames, device="cpu"))


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"half": True}, "half precision needs a CUDA device"),
        ({"tile": (8, 8), "tile_overlap": 8}, "larger than its overlap"),
        ({"tile": (0, 8)}, "two sizes >= 1"),
        ({"segment": 0}, "segment must be"),
        ({"host_budget": -1}, "host budget"),
        ({"device": "cuda"} if not torch.cuda.is_available() else {"device": "tpu"}, "cuda|tpu"),
    ],
)
def test_bad_options_fail_before_any_frame_is_read(model, options: dict, needle: str) -> None:
    def frames():
        raise AssertionError("read")
        yield  # pragma: no cover

    with pytest.raises(InferenceError, match=needle):
        upscale_frames(model, frames(), **({"device": "cpu"} | options))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("half", [False, True])
def test_cuda_streaming_matches_the_whole_clip(model, half: bool) -> None:
    clip = torch.rand(7, 3, 24, 20)
    m = perturbed_model(0).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
        ref = m(clip.cuda()[None])[0].float().cpu()
    up = Upscaler(m, device="cuda", half=half, host_budget=3 * 10_000)
    out = torch.stack([f for _, f in up.stream(clip)])
    assert up.stats.spilled_frames > 0 and out.is_pinned()
    assert float((out - ref).abs().max()) < (2e-2 if half else 1e-4)


def test_stream_with_input_gives_each_output_its_frame_read_once() -> None:
    from vsrkit.infer import Upscaler
    from vsrkit.vsr import build_model

    clip = (torch.rand(5, 3, 9, 11) * 255).round().to(torch.uint8)
    reads = []

    def frames():  # counts how often the source is read
        for f in clip:
            reads.append(1)
            yield f

    up = Upscaler(build_model("tiny"), device="cpu", host_budget=0)
    got = list(up.stream_with_input(frames()))
    assert len(reads) == 5 and [i for i, _, _ in got] == list(range(5))
    for i, sr, lr in got:
        assert lr.dtype == torch.float32 and torch.equal(lr, clip[i].float() / 255.0)
        assert sr.shape == (3, 36, 44)
    assert up._inputs == {}  # nothing kept after the stream ends
