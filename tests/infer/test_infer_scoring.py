"""evaluate / eval_clips: figures against a hand-computed fixture, every data layout, and the
run's own validation clips (the same SSIM the training recorded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vsrkit.infer import InferenceError, eval_clips, evaluate, load_model, write_png
from vsrkit.vsr import build_model

C1 = (0.01 * 255) ** 2
BIAS = 2  # the model adds 2/255 to bicubic: its output is exactly LR + 2 on flat frames

# clip -> frames of (LR value, GT value), flat 8-bit frames; clips of unequal lengths, so the
# mean over frames then clips differs from the mean over all frames
FIXTURE = {"a": [(100, 110), (100, 130)], "b": [(50, 45)]}


def _psnr(d: float) -> float:
    return 10 * math.log10(255**2 / d**2)


def _ssim(x: float, y: float) -> float:  # flat frames: no variance, only the luminance term
    return (2 * x * y + C1) / (x * x + y * y + C1)


def _luma(v: float) -> float:  # BT.601 Y of a grey pixel, 0-255
    return 16 + (65.481 + 128.553 + 24.966) * v / 255


def hand_computed(channel: str, offset: int) -> dict[str, float]:
    """Mean over frames, then clips, written out from the definitions."""
    conv = _luma if channel == "y" else float
    psnr_clip, ssim_clip = [], []
    for frames in FIXTURE.values():
        ps = [_psnr(conv(lr + offset) - conv(gt)) for lr, gt in frames]
        ss = [_ssim(conv(lr + offset), conv(gt)) for lr, gt in frames]
        psnr_clip.append(sum(ps) / len(ps))
        ssim_clip.append(sum(ss) / len(ss))
    return {"psnr": sum(psnr_clip) / 2, "ssim": sum(ssim_clip) / 2}


def save(path: Path, frame: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, frame)


def flat(value: int, h: int, w: int) -> torch.Tensor:
    return torch.full((3, h, w), value, dtype=torch.uint8)


def write_fixture(root: Path, lr_dir: str = "LR", gt_size: tuple[int, int] = (48, 48)) -> Path:
    for clip, frames in FIXTURE.items():
        for i, (lr, gt) in enumerate(frames):
            save(root / "GT" / clip / f"{i:08d}.png", flat(gt, *gt_size))
            save(root / lr_dir / clip / f"{i:08d}.png", flat(lr, 12, 12))
    return root


def offset_model() -> torch.nn.Module:
    model = build_model("tiny")
    with torch.no_grad():
        model.conv_last.bias.fill_(BIAS / 255)
    return model.eval()


@pytest.mark.parametrize("channel", ["y", "rgb"])
@pytest.mark.parametrize("lr_dir", ["LR", "BIx4"])
def test_figures_match_the_hand_computed_fixture(tmp_path: Path, channel: str, lr_dir: str) -> None:
    clips = eval_clips(write_fixture(tmp_path, lr_dir))
    assert [c.name for c in clips] == ["a", "b"]
    result = evaluate(offset_model(), clips, channel=channel, device="cpu")
    model, bicubic = hand_computed(channel, BIAS), hand_computed(channel, 0)
    assert [c.frames for c in result.clips] == [2, 1] and result.frames == 3
    mean = result.mean
    assert mean["psnr"] == pytest.approx(model["psnr"], abs=1e-9)
    assert mean["ssim"] == pytest.approx(model["ssim"], abs=1e-9)
    assert mean["bicubic_psnr"] == pytest.approx(bicubic["psnr"], abs=1e-9)
    assert mean["bicubic_ssim"] == pytest.approx(bicubic["ssim"], abs=1e-9)
    all_frames = [_psnr(lr + BIAS - gt) for frames in FIXTURE.values() for lr, gt in frames]
    assert channel == "y" or mean["psnr"] != pytest.approx(sum(all_frames) / 3)  # clip mean


def test_crop_border_and_saved_frames(tmp_path: Path) -> None:
    clips = eval_clips(write_fixture(tmp_path / "data"))
    out = tmp_path / "frames"
    result = evaluate(
        offset_model(), clips, crop_border=4, save_frames=out, device="cpu", host_budget=0
    )
    assert result.mean["psnr"] == pytest.approx(hand_computed("y", BIAS)["psnr"], abs=1e-9)
    saved = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert saved == ["a/00000000.png", "a/00000001.png", "b/00000000.png"]
    with pytest.raises(InferenceError, match="clip a: crop_border=24 leaves nothing"):
        evaluate(offset_model(), clips, crop_border=24, device="cpu")
    with pytest.raises(InferenceError, match="clip a: SSIM needs frames of at least 11x11"):
        evaluate(offset_model(), clips, crop_border=20, device="cpu")


def test_without_lr_frames_the_gt_is_degraded_and_inf_is_null_in_json(tmp_path: Path) -> None:
    for clip, frames in FIXTURE.items():
        for i, (_, gt) in enumerate(frames):
            save(tmp_path / "GT" / clip / f"{i}.png", flat(gt, 50, 49))  # cropped to 48x48
    result = evaluate(build_model("tiny"), eval_clips(tmp_path), device="cpu")
    # flat GT -> flat LR -> bicubic is the GT exactly: identical frames, infinite PSNR
    assert math.isinf(result.mean["bicubic_psnr"]) and result.mean["ssim"] == 1.0
    doc = result.to_dict()
    assert doc["mean"]["bicubic_psnr"] is None
    json.dumps(doc, allow_nan=False)


def test_vimeo_layout_uses_the_test_list(tmp_path: Path) -> None:
    for seq in ("00001/0001", "00001/0002"):
        for i in range(1, 8):
            save(tmp_path / "sequences" / seq / f"im{i}.png", flat(90, 48, 48))
            save(tmp_path / "sequences_lr" / seq / f"im{i}.png", flat(80, 12, 12))
    (tmp_path / "sep_testlist.txt").write_text("00001/0002\n")
    clips = eval_clips(tmp_path)
    assert [c.name for c in clips] == ["00001/0002"]
    result = evaluate(offset_model(), clips, channel="rgb", device="cpu")
    assert result.clips[0].frames == 7
    assert result.mean["psnr"] == pytest.approx(_psnr(8), abs=1e-9)


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda d: write_fixture(d, gt_size=(50, 50)), r"LR is 12x12, GT 50x50; expected GT 48x48"),
        (lambda d: (d / "x").mkdir(), "has no test layout"),
        (lambda d: (d / "GT").mkdir(), "no clip folders"),
    ],
    ids=["scale mismatch", "no layout", "empty GT"],
)
def test_bad_data_is_one_line(tmp_path: Path, setup, needle: str) -> None:
    setup(tmp_path)
    with pytest.raises(InferenceError, match=needle):
        evaluate(build_model("tiny"), eval_clips(tmp_path), device="cpu")


def test_channel_must_be_y_or_rgb() -> None:
    with pytest.raises(InferenceError, match="channel must be y or rgb"):
        evaluate(build_model("tiny"), [], channel="lab", device="cpu")


def test_the_runs_own_validation_clips_give_the_ssim_it_recorded(trained_run: Path) -> None:
    """Without data, eval scores the synthetic clips the run validated on: the best checkpoint's
    SSIM is the quality its manifest recorded at that validation."""
    from vsrkit.checkpoint import CheckpointManager
    from vsrkit.infer import read_checkpoint

    manager = CheckpointManager(trained_run / "checkpoints")
    best = manager.best_step()
    assert best is not None
    recorded = next(r.quality for r in manager.list() if r.step == best and r.quality is not None)
    ckpt = read_checkpoint(trained_run, which="best")
    clips = eval_clips(None, config=ckpt.config)
    assert len(clips) == 2  # val_clips of the run's config
    result = evaluate(load_model(ckpt, device="cpu"), clips, device="cpu")
    assert result.mean["ssim"] == pytest.approx(recorded, abs=1e-4)
    assert result.mean["ssim"] != result.mean["bicubic_ssim"]
