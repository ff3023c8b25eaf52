"""Frame folders: natural order, size checks from headers, atomic PNGs, clip layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vsrkit.infer import FrameFolder, InferenceError, read_frame, write_png
from vsrkit.infer.frames import find_clips, is_complete_png, list_frames, remove_partial_frames
from vsrkit.vsr.folders import natural_key


def png(path: Path, h: int = 6, w: int = 8, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, torch.full((3, h, w), value, dtype=torch.uint8))
    return path


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True))
def test_numbered_names_sort_by_their_number(numbers: list[int]) -> None:
    names = [f"frame_{n}.png" for n in numbers]
    assert sorted(names, key=natural_key) == [f"frame_{n}.png" for n in sorted(numbers)]


def test_a_folder_reads_in_natural_order_and_skips_temp_and_hidden_files(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        png(tmp_path / f"f{i}.png", value=i)
    (tmp_path / ".tmp-f3.png.abc").write_bytes(b"partial")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    folder = FrameFolder(tmp_path)
    assert [p.name for p in folder.paths] == ["f1.png", "f2.png", "f10.png"]
    assert folder.names == ["f1", "f2", "f10"] and len(folder) == 3 and folder.size == (6, 8)
    assert [int(f[0, 0, 0]) for f in folder] == [1, 2, 10]
    assert [int(f[0, 0, 0]) for f in folder] == [1, 2, 10]  # re-iterable


def test_grey_and_alpha_images_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (5, 4), 77).save(tmp_path / "g.png")
    Image.new("RGBA", (5, 4), (1, 2, 3, 4)).save(tmp_path / "a.png")
    assert read_frame(tmp_path / "g.png").shape == (3, 4, 5)
    assert read_frame(tmp_path / "a.png")[:, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: None, "no frames in it"),
        (lambda d: [png(d / "1.png"), png(d / "2.png", h=7)], r"2.png is 7x8 .*1.png is 6x8"),
        (lambda d: (d / "1.png").write_bytes(b"not an image"), "not a readable image"),
    ],
    ids=["empty", "mixed sizes", "unreadable"],
)
def test_bad_folders_are_one_line(tmp_path: Path, make, needle: str) -> None:
    make(tmp_path)
    with pytest.raises(InferenceError, match=needle):
        FrameFolder(tmp_path)


def test_pngs_are_written_atomically_and_damage_is_detected(tmp_path: Path) -> None:
    frame = torch.rand(3, 12, 16)
    path = png(tmp_path / "a.png")
    write_png(path, frame)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    back = read_frame(path)
    assert torch.equal(back, (frame * 255).round().to(torch.uint8))
    assert is_complete_png(path, (12, 16)) and not is_complete_png(path, (12, 15))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])  # cut before the end: a half-written file
    assert not is_complete_png(path)
    assert not is_complete_png(tmp_path / "missing.png")
    with pytest.raises(InferenceError, match="cannot write"):
        write_png(tmp_path / "no" / "such" / "dir.png", frame)


def test_partial_frames_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp-00000003.png.x1y2").write_bytes(b"half")
    keep = png(tmp_path / "00000001.png")
    assert remove_partial_frames(tmp_path) == 1
    assert list(tmp_path.iterdir()) == [keep]


def test_clip_layouts(tmp_path: Path) -> None:
    one = tmp_path / "one"
    png(one / "1.png")
    assert find_clips(one) == [("", one)]

    reds = tmp_path / "reds"
    for clip in ("011", "000"):
        png(reds / "LR" / clip / "00000000.png")
        png(reds / "GT" / clip / "00000000.png", 24, 32)
    assert find_clips(reds) == [("000", reds / "LR" / "000"), ("011", reds / "LR" / "011")]

    vid4 = tmp_path / "vid4"
    png(vid4 / "BIx4" / "calendar" / "0.png")
    png(vid4 / "GT" / "calendar" / "0.png", 24, 32)
    assert find_clips(vid4) == [("calendar", vid4 / "BIx4" / "calendar")]

    vimeo = tmp_path / "vimeo"
    png(vimeo / "sequences_lr" / "00001" / "0002" / "im1.png")
    png(vimeo / "sequences_lr" / "00001" / "0010" / "im1.png")
    assert [n for n, _ in find_clips(vimeo)] == ["00001/0002", "00001/0010"]

    plain = tmp_path / "plain"
    png(plain / "clip10" / "1.png")
    png(plain / "clip9" / "1.png")
    (plain / "empty").mkdir()
    assert [n for n, _ in find_clips(plain)] == ["clip9", "clip10"]

    gt_only = tmp_path / "gt_only"
    png(gt_only / "GT" / "000" / "0.png")
    with pytest.raises(InferenceError, match="ground truth only"):
        find_clips(gt_only)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InferenceError, match="no frames .* and no clip folders"):
        find_clips(tmp_path / "nothing")
    assert list_frames(tmp_path / "nothing") == []
