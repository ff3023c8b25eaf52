"""Datasets: synthetic clips deterministic by seed, degradations, folder layouts, bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vsrkit.errors import VsrkitError
from vsrkit.vsr import (
    DatasetLayoutError,
    REDSDataset,
    SyntheticVideoDataset,
    Vimeo90KDataset,
    bicubic_upsample,
    build_dataset,
    degrade,
    psnr,
)

# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_by_seed_and_split() -> None:
    kw = {"num_clips": 3, "num_frames": 3, "lr_size": 8}
    a = SyntheticVideoDataset(seed=1, **kw)
    b = SyntheticVideoDataset(seed=1, **kw)
    for i in range(3):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i], strict=True))
    assert not torch.equal(a[0][1], SyntheticVideoDataset(seed=2, **kw)[0][1])
    assert not torch.equal(a[0][1], SyntheticVideoDataset(seed=1, split="val", **kw)[0][1])
    assert not torch.equal(a[0][1], a[1][1])
    assert torch.equal(a[-1][1], a[2][1])
    with pytest.raises(IndexError):
        a[3]


@settings(max_examples=6)
@given(
    t=st.integers(1, 4),
    h=st.integers(4, 12),
    w=st.integers(4, 12),
    degradation=st.sampled_from(["BI", "BD"]),
    seed=st.integers(0, 1000),
)
def test_synthetic_shapes_range_and_quantisation(
    t: int, h: int, w: int, degradation: str, seed: int
) -> None:
    ds = SyntheticVideoDataset(
        num_clips=1, num_frames=t, lr_size=(h, w), degradation=degradation, seed=seed
    )
    lrs, gts = ds[0]
    assert lrs.shape == (t, 3, h, w) and gts.shape == (t, 3, 4 * h, 4 * w)
    assert lrs.dtype == gts.dtype == torch.float32
    for x in (lrs, gts):
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        assert torch.equal(x * 255, (x * 255).round())  # 8-bit levels
    assert torch.equal(lrs, degrade(gts, degradation=degradation))


def test_synthetic_clips_move_and_have_detail_beyond_bicubic() -> None:
    lrs, gts = SyntheticVideoDataset(num_clips=1, num_frames=4, lr_size=24, seed=3)[0]
    # consecutive frames differ (the camera pans) but are closely related
    assert all(not torch.equal(gts[i], gts[i + 1]) for i in range(3))
    assert float((gts[1:] - gts[:-1]).abs().mean()) < float((gts - gts.flip(-1)).abs().mean())
    # bicubic does not recover the ground truth: there is high-frequency detail to learn
    assert psnr(bicubic_upsample(lrs), gts) < 32


def test_degradations_keep_constants_and_check_sizes() -> None:
    flat = torch.full((2, 3, 16, 24), 100 / 255)
    for kind in ("BI", "BD"):
        out = degrade(flat, degradation=kind)
        assert out.shape == (2, 3, 4, 6)
        torch.testing.assert_close(out, flat[..., :4, :6])
    x = torch.rand(1, 3, 16, 16)
    assert not torch.equal(degrade(x, degradation="BI"), degrade(x, degradation="BD"))
    with pytest.raises(ValueError, match="not a multiple of scale 4"):
        degrade(torch.rand(3, 15, 16))
    with pytest.raises(ValueError, match="unknown degradation 'BX'"):
        degrade(x, degradation="BX")


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticVideoDataset(num_clips=1, num_frames=1, lr_size=8, split="test")
    with pytest.raises(ValueError, match="degradation"):
        SyntheticVideoDataset(num_clips=1, num_frames=1, lr_size=8, degradation="XX")
    with pytest.raises(ValueError, match="lr_size"):
        SyntheticVideoDataset(num_clips=1, num_frames=1, lr_size=0)


# ---------------------------------------------------------------- folders


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _blocky_frames(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """GT frames made of constant 4x4 blocks, so LR = GT[::4, ::4] exactly."""
    return [
        np.repeat(np.repeat(rng.integers(0, 256, (h // 4, w // 4, 3), np.uint8), 4, 0), 4, 1)
        for _ in range(n)
    ]


@pytest.fixture()
def reds(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for clip in ("000", "001", "002"):
        for i, frame in enumerate(_blocky_frames(rng, 6, 32, 40)):
            _save(tmp_path / "GT" / clip / f"{i:08d}.png", frame)
            _save(tmp_path / "LR" / clip / f"{i:08d}.png", frame[::4, ::4])
    return tmp_path


def test_reds_train_crops_are_aligned_and_augmented(reds: Path) -> None:
    ds = REDSDataset(reds, split="train", num_frames=3, lr_size=(4, 4), seed=0)
    assert len(ds) == 2  # "000" is a REDS4 validation clip
    seen = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            lrs, gts = ds[i]
            assert lrs.shape == (3, 3, 4, 4) and gts.shape == (3, 3, 16, 16)
            assert torch.equal(gts[..., ::4, ::4], lrs)  # alignment survives every transform
            seen.add(lrs.numpy().tobytes())
    assert len(seen) == 8  # crops change with the epoch


def test_reds_is_deterministic_by_seed_and_epoch(reds: Path) -> None:
    kw = {"split": "train", "num_frames": 2, "lr_size": 4}
    a, b = REDSDataset(reds, seed=5, **kw), REDSDataset(reds, seed=5, **kw)
    assert torch.equal(a[0][0], b[0][0])
    a.set_epoch(1)
    b.set_epoch(1)
    assert torch.equal(a[1][1], b[1][1])


def test_reds_val_is_full_frame_without_augmentation(reds: Path) -> None:
    ds = REDSDataset(reds, split="val", num_frames=None)
    assert len(ds) == 1
    lrs, gts = ds[0]
    assert lrs.shape == (6, 3, 8, 10) and gts.shape == (6, 3, 32, 40)
    first = np.array(Image.open(reds / "GT" / "000" / "00000000.png"))
    assert torch.equal(gts[0], torch.from_numpy(first).permute(2, 0, 1).float() / 255)


def test_reds_without_lr_degrades_on_the_fly(reds: Path) -> None:
    import shutil

    shutil.rmtree(reds / "LR")
    ds = REDSDataset(reds, split="val", num_frames=2, degradation="BD")
    lrs, gts = ds[0]
    assert torch.equal(lrs, degrade(gts, degradation="BD"))


def test_vimeo_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for seq in ("00001/0001", "00001/0002"):
        for i, frame in enumerate(_blocky_frames(rng, 7, 32, 32), start=1):
            _save(tmp_path / "sequences" / seq / f"im{i}.png", frame)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n")
    (tmp_path / "sep_testlist.txt").write_text("00001/0002\n\n")
    train = Vimeo90KDataset(tmp_path, split="train", num_frames=5, lr_size=4)
    lrs, gts = train[0]
    assert lrs.shape == (5, 3, 4, 4) and gts.shape == (5, 3, 16, 16)
    val = build_dataset(tmp_path, split="val", num_frames=None)
    assert isinstance(val, Vimeo90KDataset)
    lrs, gts = val[0]
    assert lrs.shape == (7, 3, 8, 8) and gts.shape == (7, 3, 32, 32)


def test_build_dataset_picks_the_source(reds: Path) -> None:
    assert isinstance(build_dataset(None, split="train", num_frames=2), SyntheticVideoDataset)
    syn = build_dataset("synthetic", split="val", num_frames=2, lr_size=8, num_clips=5)
    assert isinstance(syn, SyntheticVideoDataset) and len(syn) == 5 and syn.split == "val"
    assert isinstance(build_dataset(str(reds), split="train", num_frames=2, lr_size=4), REDSDataset)


def test_bad_folders_are_rejected_clearly(tmp_path: Path, reds: Path) -> None:
    def fails(match: str, fn, *args, **kwargs) -> None:
        with pytest.raises(DatasetLayoutError, match=match) as info:
            fn(*args, **kwargs)
        assert isinstance(info.value, VsrkitError)

    fails("does not exist.*GT/<clip>", build_dataset, tmp_path / "missing", split="train")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(r"neither layout.*sequences", build_dataset, empty, split="train")
    (empty / "GT").mkdir()
    fails("has no clip folders", REDSDataset, empty)
    (empty / "GT" / "007").mkdir()
    fails("007 has no image frames", REDSDataset, empty)
    fails("validation clip '999' is not a folder in", REDSDataset, reds, val_clips=("999",))
    fails("no clips for split 'train'", REDSDataset, reds, val_clips=("000", "001", "002"))
    (reds / "LR" / "001" / "00000003.png").unlink()
    fails("00000003.png is missing: LR/ must mirror GT/", REDSDataset, reds)
    vimeo = tmp_path / "vimeo"
    (vimeo / "sequences").mkdir(parents=True)
    fails("sep_trainlist.txt is missing", Vimeo90KDataset, vimeo)
    (vimeo / "sep_trainlist.txt").write_text("00001/0001\n")
    fails("im1.png is missing", Vimeo90KDataset, vimeo)
    for i in range(1, 8):  # the GT septuplet is there; sequences_lr/ lacks one frame
        for root, size in (("sequences", 16), ("sequences_lr", 4)):
            if root == "sequences_lr" and i == 5:
                continue
            (vimeo / root / "00001" / "0001").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (size, size)).save(vimeo / root / "00001" / "0001" / f"im{i}.png")
    fails("im5.png is missing: sequences_lr/ must mirror sequences/", Vimeo90KDataset, vimeo)


def test_short_clips_and_unreadable_frames_are_rejected(reds: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="fewer than num_frames=9"):
        REDSDataset(reds, num_frames=9)
    (reds / "GT" / "001" / "00000000.png").write_bytes(b"not an image")
    ds = REDSDataset(reds, split="train", num_frames=6, lr_size=4)
    with pytest.raises(DatasetLayoutError, match="cannot read frame .*00000000.png"):
        ds[0]
    with pytest.raises(DatasetLayoutError, match="smaller than lr_size"):
        REDSDataset(reds, split="train", num_frames=2, lr_size=64)[1]


def test_a_frame_of_another_size_is_named(reds: Path) -> None:
    odd = reds / "LR" / "001" / "00000002.png"
    _save(odd, np.zeros((9, 11, 3), np.uint8))
    ds = REDSDataset(reds, split="train", num_frames=6, lr_size=4)
    with pytest.raises(DatasetLayoutError) as info:
        ds[0]  # clip 001, every frame
    msg = str(info.value)
    assert str(odd) in msg and "11x9" in msg and "one size" in msg and "\n" not in msg
    gt = reds / "GT" / "002" / "00000004.png"
    _save(gt, np.zeros((32, 44, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"00000004.png is 44x32"):
        REDSDataset(reds, split="train", num_frames=6, lr_size=4)[1]


def test_validation_clips_of_a_folder_can_be_chosen(reds: Path) -> None:
    val = build_dataset(str(reds), split="val", num_frames=None, val_clips=("001", "002"))
    train = build_dataset(str(reds), split="train", num_frames=2, lr_size=4, val_clips=["001"])
    assert [c[0][0].parent.name for c in val.clips] == ["001", "002"]  # type: ignore[attr-defined]
    assert [c[0][0].parent.name for c in train.clips] == ["000", "002"]  # type: ignore[attr-defined]
    # the default stays REDS4
    assert len(build_dataset(str(reds), split="val", num_frames=None)) == 1  # type: ignore[arg-type]


def test_validation_clips_are_refused_for_vimeo(tmp_path: Path) -> None:
    vimeo = tmp_path / "vimeo"
    for i in range(1, 8):
        _save(vimeo / "sequences" / "00001" / "0001" / f"im{i}.png", np.zeros((8, 8, 3), np.uint8))
    (vimeo / "sep_trainlist.txt").write_text("00001/0001\n")
    with pytest.raises(DatasetLayoutError, match="sep_testlist.txt, not val_clips"):
        build_dataset(str(vimeo), split="train", num_frames=2, lr_size=2, val_clips=["x"])


@given(names=st.lists(st.text(max_size=12), max_size=8))
def test_natural_key_sorts_any_names(names: list[str]) -> None:
    """Any names sort without an error (``"²"`` passes ``str.isdigit`` but not ``int``), and
    names that differ only in an ASCII number sort by its value."""
    from vsrkit.vsr.folders import natural_key

    sorted(names + ["\u00b2", "f\u00b2.png", "\u0663"], key=natural_key)
    numbered = [f"frame{n}.png" for n in range(len(names) + 12)]
    assert sorted(reversed(numbered), key=natural_key) == numbered
