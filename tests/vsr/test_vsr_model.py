"""The reference model: shapes, bicubic at init, zero flow at init, gradients, presets, weights."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.vsr import (
    PRESETS,
    BidirectionalRecurrentVSR,
    FlowWeightsError,
    SpyNet,
    bicubic_upsample,
    build_model,
    flow_warp,
)


@pytest.fixture(scope="module")
def tiny() -> BidirectionalRecurrentVSR:
    torch.manual_seed(0)
    return build_model("tiny")


@settings(max_examples=6)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 3),
    h=st.integers(4, 10),
    w=st.integers(4, 10),
    seed=st.integers(0, 2**16),
)
def test_untrained_output_is_bicubic_exactly_for_any_size(
    tiny: BidirectionalRecurrentVSR, b: int, t: int, h: int, w: int, seed: int
) -> None:
    model = tiny
    lrs = torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(lrs)
    assert out.shape == (b, t, 3, 4 * h, 4 * w)
    assert out.dtype == torch.float32
    assert torch.equal(out, bicubic_upsample(lrs))


@pytest.mark.parametrize(
    ("preset", "kwargs"),
    [("tiny", {}), ("small", {}), ("paper", {}), ("tiny", {"num_feat": 8, "num_blocks": 3})],
)
def test_presets_build_and_keep_shapes(preset: str, kwargs: dict[str, int]) -> None:
    model = build_model(preset, **kwargs)
    assert model.num_feat == kwargs.get("num_feat", PRESETS[preset].num_feat)
    blocks = kwargs.get("num_blocks", PRESETS[preset].num_blocks)
    assert len(model.backward_trunk.blocks) == len(model.forward_trunk.blocks) == blocks
    lrs = torch.rand(1, 2, 3, 8, 12)
    with torch.no_grad():
        out = model(lrs)
    assert out.shape == (1, 2, 3, 32, 48)
    assert torch.equal(out, bicubic_upsample(lrs))


def test_paper_preset_has_about_6_3_million_parameters() -> None:
    n = sum(p.numel() for p in build_model("paper").parameters())
    assert 6.2e6 < n < 6.4e6


def test_named_blocks_for_layer_activity(tiny: BidirectionalRecurrentVSR) -> None:
    leaves = {name.rsplit(".", 1)[-1] for name, _ in tiny.named_modules()}
    n = PRESETS["tiny"].num_blocks
    for i in range(1, n + 1):
        assert f"Backward_Block_{i:02d}" in leaves and f"Forward_Block_{i:02d}" in leaves
    assert "Final_Fusion" in leaves
    assert isinstance(tiny.spynet, SpyNet)


def test_unknown_preset_and_bad_input_are_rejected(tiny: BidirectionalRecurrentVSR) -> None:
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        build_model("huge")
    with pytest.raises(ValueError, match=r"\(B, T, 3, h, w\)"):
        tiny(torch.rand(2, 3, 8, 8))


def test_flow_starts_at_zero(tiny: BidirectionalRecurrentVSR) -> None:
    lrs = torch.rand(2, 4, 3, 12, 20)
    with torch.no_grad():
        backward, forward = tiny.compute_flows(lrs)
    assert backward.shape == forward.shape == (2, 3, 2, 12, 20)
    assert torch.count_nonzero(backward) == 0 and torch.count_nonzero(forward) == 0


def test_flow_warp_zero_is_identity_and_integer_flow_shifts() -> None:
    x = torch.rand(2, 3, 9, 11)
    flow = torch.zeros(2, 2, 9, 11)
    torch.testing.assert_close(flow_warp(x, flow), x, atol=1e-5, rtol=0)
    flow[:, 0] = 2.0  # sample two pixels to the right
    shifted = flow_warp(x, flow)
    torch.testing.assert_close(shifted[..., :-2], x[..., 2:], atol=1e-5, rtol=0)
    assert torch.count_nonzero(shifted[..., -2:]) == 0  # zeros padding outside


def test_spynet_learns_a_known_shift() -> None:
    """After a few steps the flow moves toward the true shift (the estimator can learn)."""
    torch.manual_seed(0)
    net = SpyNet(num_levels=2, widths=(8, 8, 8, 8))
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 18, 18), 3, 1)  # smooth, 16x16
    ref, supp = base[..., :, 1:-1], base[..., :, 2:]  # supp = ref shifted left by 1 pixel
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(20):
        loss = (flow_warp(supp, net(ref, supp)) - ref)[..., 2:-2, 2:-2].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        flow_x = net(ref, supp)[:, 0, 4:-4, 4:-4].mean()
    assert float(flow_x) < -0.05  # true flow is -1 (sample one pixel to the left)


def test_gradients_reach_every_trunk_and_the_flow() -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    lrs, gts = torch.rand(1, 3, 3, 8, 8), torch.rand(1, 3, 3, 32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # the zero-initialised last layers open up after the first steps
        opt.zero_grad()
        (model(lrs) - gts).abs().mean().backward()
        opt.step()
    opt.zero_grad()
    (model(lrs) - gts).abs().mean().backward()
    for prefix in ("backward_trunk.", "forward_trunk.", "Final_Fusion.", "conv_last.", "spynet."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, prefix
    blocks = [n for n, _ in model.named_parameters() if "_Block_" in n]
    for name, p in model.named_parameters():
        if name in blocks:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_spynet_weights_load_from_a_local_file(tmp_path) -> None:
    torch.manual_seed(1)
    donor = build_model("tiny")
    for p in donor.spynet.parameters():
        torch.nn.init.normal_(p, std=0.01)
    path = tmp_path / "spynet.pth"
    torch.save({"params": donor.spynet.state_dict()}, path)
    model = build_model("tiny", spynet_weights=path)
    for (k, a), (_, b) in zip(
        model.spynet.state_dict().items(), donor.spynet.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_spynet_weights_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FlowWeightsError, match="nope.pth"):
        build_model("tiny", spynet_weights=missing)
    wrong = tmp_path / "paper_spynet.pth"
    torch.save(build_model("paper").spynet.state_dict(), wrong)
    with pytest.raises(FlowWeightsError, match="does not fit SpyNet"):
        build_model("tiny", spynet_weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FlowWeightsError, match="cannot read"):
        build_model("tiny", spynet_weights=garbage)


def test_bf16_autocast_and_channels_last_on_cpu(tiny: BidirectionalRecurrentVSR) -> None:
    lrs = torch.rand(1, 3, 3, 8, 8)
    model = build_model("tiny").to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(model(lrs), bicubic_upsample(lrs))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(lrs)
    assert out.dtype == torch.float32  # the bicubic skip stays float32
    assert torch.equal(out, bicubic_upsample(lrs))


@pytest.mark.slow
def test_compiles_without_graph_breaks_with_layer_activity_hooks() -> None:
    from vsrkit.vsr import LayerActivityMonitor

    torch._dynamo.reset()
    model = build_model("tiny")
    monitor = LayerActivityMonitor(model)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    lrs = torch.rand(1, 3, 3, 8, 8)
    out = compiled(lrs)
    out.abs().mean().backward()
    torch.testing.assert_close(out.detach(), bicubic_upsample(lrs), atol=1e-5, rtol=0)
    compiled(lrs)
    report = monitor.read(reset=True)
    assert report.peak is not None and all(r.calls == 6 for r in report.layers)
    monitor.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_channels_last_compile() -> None:
    model = build_model("tiny").cuda().to(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    lrs = torch.rand(2, 3, 3, 16, 16, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = compiled(lrs)
    assert out.shape == (2, 3, 3, 64, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out, bicubic_upsample(lrs), atol=1e-5, rtol=0)
    out.mean().backward()


def _perturbed_tiny(seed: int = 0) -> BidirectionalRecurrentVSR:
    """A tiny model whose flow, trunks and output layer all contribute (none at zero)."""
    torch.manual_seed(seed)
    model = build_model("tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.mark.parametrize("t", [1, 2, 5])
def test_step_methods_with_per_pair_flows_reproduce_forward(t: int) -> None:
    """The four step methods, called frame by frame with one flow per pair, are forward()."""
    model = _perturbed_tiny()
    lrs = torch.rand(1, t, 3, 9, 13, generator=torch.Generator().manual_seed(t))
    with torch.no_grad():
        whole = model(lrs)
        backward: list[torch.Tensor] = [torch.empty(0)] * t
        feat = None
        for i in reversed(range(t)):
            flow = model.compute_flow(lrs[:, i], lrs[:, i + 1]) if i < t - 1 else None
            feat = model.backward_step(lrs[:, i], feat, flow)
            backward[i] = feat
        feat = None
        for i in range(t):
            flow = model.compute_flow(lrs[:, i], lrs[:, i - 1]) if i > 0 else None
            feat = model.forward_step(lrs[:, i], feat, flow)
            out = model.reconstruct(lrs[:, i], backward[i], feat)
            torch.testing.assert_close(out, whole[:, i], atol=1e-5, rtol=0)
    assert float((whole - bicubic_upsample(lrs)).abs().max()) > 1e-3  # the model does act


def test_forward_with_and_without_gradients_agree() -> None:
    """Training batches both flow directions in one call, inference one direction at a time."""
    model = _perturbed_tiny(1)
    lrs = torch.rand(2, 4, 3, 8, 10)
    with torch.no_grad():
        no_grad = model(lrs)
    torch.testing.assert_close(model(lrs).detach(), no_grad, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs the flow"):
        model.backward_step(lrs[:, 0], torch.zeros(2, model.num_feat, 8, 10), None)
