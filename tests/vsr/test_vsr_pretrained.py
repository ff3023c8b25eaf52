"""Published BasicVSR weights: BasicSR and mmagic files load, and give BasicSR's own numbers."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vsrkit.vsr.pretrained as pretrained_module
from vsrkit.infer import ModelLoadError
from vsrkit.vsr import BidirectionalRecurrentVSR, FlowWeightsError, build_model
from vsrkit.vsr.pretrained import (
    PretrainedWeightsError,
    load_pretrained,
    read_pretrained,
    to_basicsr_keys,
)

from .basicsr_reference import load_basicsr_archs, need_reference

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def basicsr_to_mmagic(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR's key names -> mmagic's ``BasicVSRNet`` (written here from mmagic's module tree:
    ``backward_resblocks``, ``upsample1.upsample_conv``, mmcv ``ConvModule`` layers in SPyNet)."""
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.(weight|bias)", key)
        if m:
            key = f"spynet.basic_module.{m[1]}.basic_module.{int(m[2]) // 2}.conv.{m[3]}"
        for old, new in (
            ("backward_trunk.", "backward_resblocks."),
            ("forward_trunk.", "forward_resblocks."),
            ("upconv1.", "upsample1.upsample_conv."),
            ("upconv2.", "upsample2.upsample_conv."),
        ):
            if key.startswith(old):
                key = new + key[len(old) :]
        out[f"generator.{key}"] = value
    return out


def random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (the zero-initialised last layers included), flows moderate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.04 if "spynet" in name else 0.05  # flows of a few pixels
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def small_model(**kw: object) -> BidirectionalRecurrentVSR:
    sizes = dict(num_feat=8, num_blocks=2, spynet_levels=2, spynet_widths=(4, 6, 4, 2))
    return BidirectionalRecurrentVSR(**{**sizes, **kw})  # type: ignore[arg-type]


# ---- reading and renaming -----------------------------------------------------------------------


def test_basicsr_file_round_trips_into_vsrkit_keys(tmp_path: Path) -> None:
    net = random_weights(small_model())
    path = tmp_path / "basicsr.pth"
    torch.save({"params": to_basicsr_keys(net.state_dict())}, path)
    weights = read_pretrained(path)
    assert weights.format == "basicsr" and weights.source == "params"
    assert weights.architecture == {
        "num_feat": 8,
        "num_blocks": 2,
        "spynet_levels": 2,
        "spynet_widths": (4, 6, 4, 2),
        "skip": "bilinear",
    }
    own = net.state_dict()
    assert weights.state_dict.keys() == own.keys()
    assert all(torch.equal(weights.state_dict[k], own[k]) for k in own)


def test_mmagic_file_with_meta_and_step_counter_loads(tmp_path: Path) -> None:
    net = random_weights(small_model())
    sd = basicsr_to_mmagic(to_basicsr_keys(net.state_dict()))
    sd["generator.spynet.mean"] = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    sd["generator.spynet.std"] = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    sd["step_counter"] = torch.zeros(1)  # mmagic's BasicVSR model keeps it beside the generator
    assert "generator.upsample1.upsample_conv.weight" in sd
    assert "generator.spynet.basic_module.1.basic_module.4.conv.bias" in sd
    assert "generator.backward_resblocks.main.2.1.conv2.weight" in sd
    path = tmp_path / "mmagic.pth"
    torch.save({"meta": {"mmagic_version": "1.2.0", "iter": 300000}, "state_dict": sd}, path)
    model = load_pretrained(path, format="mmagic")
    assert isinstance(model, BidirectionalRecurrentVSR) and not model.training
    own = net.state_dict()
    assert all(torch.equal(model.state_dict()[k], own[k]) for k in own)


def test_params_ema_is_preferred(tmp_path: Path) -> None:
    a, b = random_weights(small_model(), 1), random_weights(small_model(), 2)
    path = tmp_path / "ema.pth"
    torch.save(
        {"params": to_basicsr_keys(a.state_dict()), "params_ema": to_basicsr_keys(b.state_dict())},
        path,
    )
    weights = read_pretrained(path)
    assert weights.source == "params_ema"
    assert torch.equal(weights.state_dict["conv_last.weight"], b.state_dict()["conv_last.weight"])


@settings(max_examples=25)
@given(
    blocks=st.integers(1, 12),
    levels=st.integers(1, 6),
    feat=st.integers(1, 12),
)
def test_key_maps_are_inverse(blocks: int, levels: int, feat: int) -> None:
    net = BidirectionalRecurrentVSR(
        num_feat=feat, num_blocks=blocks, spynet_levels=levels, spynet_widths=(2, 2, 2, 2)
    )
    own = net.state_dict()
    basicsr = to_basicsr_keys(own)
    assert not any("Block_" in k or "conv_in" in k or "Final_Fusion" in k for k in basicsr)
    back = pretrained_module._basicsr_to_vsrkit(basicsr)
    assert back.keys() == own.keys()
    mm = {k.removeprefix("generator."): v for k, v in basicsr_to_mmagic(basicsr).items()}
    assert pretrained_module._basicsr_to_vsrkit(
        pretrained_module._mmagic_to_basicsr(mm)
    ).keys() == (own.keys())


# ---- what is refused ----------------------------------------------------------------------------


def test_foreign_layout_is_refused_naming_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "iconvsr.pth"
    torch.save(
        {
            "params": {
                "edvr.conv_first.weight": torch.zeros(1),
                "backward_fusion.weight": torch.zeros(1),
            }
        },
        path,
    )
    with pytest.raises(PretrainedWeightsError) as info:
        read_pretrained(path)
    msg = str(info.value)
    assert "iconvsr.pth" in msg and "2 tensors under 'params'" in msg and "edvr.conv_first" in msg
    assert "\n" not in msg


def test_format_must_match_when_given(tmp_path: Path) -> None:
    path = tmp_path / "b.pth"
    torch.save({"params": to_basicsr_keys(small_model().state_dict())}, path)
    with pytest.raises(PretrainedWeightsError, match="not a mmagic BasicVSR file"):
        read_pretrained(path, format="mmagic")
    with pytest.raises(PretrainedWeightsError, match="unknown weights format 'onnx'"):
        read_pretrained(path, format="onnx")


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="not found: .*nope.pth"):
        read_pretrained(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(PretrainedWeightsError, match="cannot read weights .*junk.pth"):
        read_pretrained(junk)


class _NotATensor:  # a pickled object that weights_only refuses
    pass


def test_pickled_objects_are_refused_without_torch_advice(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"params": {"x": _NotATensor()}}, path)
    with pytest.raises(PretrainedWeightsError) as info:
        read_pretrained(path)
    msg = str(info.value)
    assert "pickled.pth" in msg and "weights_only" not in msg and "\n" not in msg


def test_wrong_normalisation_buffers_are_refused(tmp_path: Path) -> None:
    sd = to_basicsr_keys(small_model().state_dict())
    sd["spynet.mean"] = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    path = tmp_path / "mean.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(PretrainedWeightsError, match="spynet.mean is .*ImageNet mean"):
        read_pretrained(path)


def test_weights_that_do_not_fit_name_the_keys(tmp_path: Path) -> None:
    sd = to_basicsr_keys(small_model().state_dict())
    sd["upconv2.weight"] = torch.zeros(5, 8, 3, 3)
    path = tmp_path / "odd.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(ModelLoadError, match=r"odd.pth .*: weights do not fit .*upconv2.weight"):
        load_pretrained(path)


# ---- SpyNet files --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["basicsr_buffers", "basicsr_bare", "mmagic", "whole_model"])
def test_spynet_files_as_published_load(tmp_path: Path, layout: str) -> None:
    donor = random_weights(build_model("tiny"))
    sd = donor.spynet.state_dict()
    mean = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    if layout == "basicsr_buffers":  # SpyNet.state_dict() of BasicSR's module: buffers included
        doc: object = {"params": {**sd, "mean": mean, "std": std}}
    elif layout == "basicsr_bare":
        doc = {"params": sd}
    elif layout == "mmagic":
        mm = basicsr_to_mmagic({f"spynet.{k}": v for k, v in sd.items()})
        doc = {"state_dict": {k.removeprefix("generator.spynet."): v for k, v in mm.items()}}
    else:
        doc = {"params": to_basicsr_keys(donor.state_dict())}
    path = tmp_path / f"{layout}.pth"
    torch.save(doc, path)
    model = build_model("tiny", spynet_weights=path)
    for k, v in sd.items():
        assert torch.equal(model.spynet.state_dict()[k], v), k


def test_spynet_file_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(FlowWeightsError, match="resnet.pth is not a SpyNet file"):
        build_model("tiny", spynet_weights=path)


def test_module_doctest() -> None:
    result = doctest.testmod(pretrained_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---- parity with BasicSR's own code ----------------------------------------------------------


pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # BasicSR's code


@pytest.fixture(scope="module")
def basicsr(tmp_path_factory: pytest.TempPathFactory):
    return load_basicsr_archs(need_reference(), tmp_path_factory.mktemp("basicsr"))


@pytest.mark.parametrize(
    ("num_block", "shape"),
    [(30, (1, 5, 3, 64, 64)), (3, (1, 4, 3, 50, 70))],  # 50x70: SpyNet's resize path
    ids=["paper-64x64", "odd-50x70"],
)
@pytest.mark.parametrize("layout", ["basicsr", "mmagic"])
def test_outputs_equal_basicsr_forward(
    basicsr, tmp_path: Path, layout: str, num_block: int, shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    ref = random_weights(basicsr.BasicVSR(num_feat=64, num_block=num_block), seed=3)
    sd = ref.state_dict()
    assert "spynet.mean" in sd  # BasicSR keeps the normalisation as persistent buffers
    path = tmp_path / f"{layout}.pth"
    if layout == "basicsr":
        torch.save({"params": sd}, path)
    else:
        torch.save({"state_dict": basicsr_to_mmagic(sd), "meta": {"iter": 1}}, path)
    model = load_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        flows_ref = ref.spynet(x[0, :-1], x[0, 1:])
        flows_ours = model.spynet(x[0, :-1], x[0, 1:])
        want, got = ref(x), model(x)
    assert float(flows_ref.abs().max()) > 1.0  # flows of pixels: warping is exercised
    assert float((flows_ours - flows_ref).abs().max()) < 1e-5
    assert float((got - want).abs().max()) < 1e-5


def test_vsrkit_default_skip_is_not_basicsr(basicsr) -> None:
    """The parity above rests on the bilinear skip: the bicubic one gives other numbers."""
    ref = random_weights(basicsr.BasicVSR(num_feat=64, num_block=1), seed=4)
    weights = pretrained_module._basicsr_to_vsrkit(dict(ref.state_dict()))
    weights = pretrained_module._check_normalisation(weights, "ref")
    model = BidirectionalRecurrentVSR(
        num_feat=64, num_blocks=1, spynet_levels=6, spynet_widths=(32, 64, 32, 16), skip="bicubic"
    )
    model.load_state_dict(weights)
    x = torch.rand(1, 2, 3, 64, 64)  # BasicSR's SpyNet needs 64 pixels for its coarsest level
    with torch.no_grad():
        assert float((model.eval()(x) - ref(x)).abs().max()) > 1e-3
