"""Real video files through PyAV (the ``video`` extra, installed in CI): a round trip through
``vsrkit upscale``, truncated and damaged files, and the line that says what to install."""

from __future__ import annotations

import shutil
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from vsrkit.cli import cli
from vsrkit.infer import InferenceError, VideoReader, VideoSupportMissing, VideoWriter, load_model

av = pytest.importorskip("av", reason='needs PyAV: pip install "vsrkit[video]"')


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> list[torch.Tensor]:
    """Frames a lossy 4:2:0 codec keeps well: smooth colour that drifts."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(
        torch.rand(1, 3, h // 8 + 2, w // 8 + 2, generator=g), scale_factor=8, mode="bicubic"
    )
    return [base[0, :, i % 4 : i % 4 + h, 0:w].clamp(0, 1) for i in range(n)]


def make_video(path: Path, frames: list[torch.Tensor], fps: float | Fraction = 25) -> Path:
    with VideoWriter(path, fps=fps) as writer:
        for f in frames:
            writer.write(f)
    return path


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".avi"])
def test_a_video_round_trip_keeps_frames_size_and_rate(tmp_path: Path, ext: str) -> None:
    frames = smooth_frames(6, 24, 32)
    path = make_video(tmp_path / f"v{ext}", frames, fps=Fraction(30000, 1001))
    reader = VideoReader(path)
    assert reader.size == (24, 32) and reader.fps == Fraction(30000, 1001)
    back = [f.float() / 255 for f in reader]
    assert len(back) == 6 and back[0].dtype == torch.float32
    assert max(float((a - b).abs().mean()) for a, b in zip(frames, back, strict=True)) < 0.03
    assert [p.name for p in tmp_path.iterdir()] == [f"v{ext}"]


def test_upscale_video_to_video_and_to_frames(trained_run: Path, tmp_path: Path) -> None:
    frames = smooth_frames(7, 20, 28, seed=1)
    src = make_video(tmp_path / "in.mp4", frames, fps=Fraction(25, 2))
    runner = CliRunner()
    result = runner.invoke(cli, ["upscale", str(trained_run), str(src), str(tmp_path / "out.mp4")])
    assert result.exit_code == 0, result.output
    out = VideoReader(tmp_path / "out.mp4")
    assert out.size == (80, 112) and out.fps == Fraction(25, 2) and out.declared_frames == 7
    upscaled = [f.float() / 255 for f in out]

    result = runner.invoke(cli, ["upscale", str(trained_run), str(src), str(tmp_path / "frames")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"{i:08d}.png" for i in range(7)]

    # the video holds the model's output for the decoded input, up to the codec's loss
    model = load_model(trained_run, device="cpu")
    decoded = torch.stack([f.float() / 255 for f in VideoReader(src)])
    with torch.no_grad():
        ref = model(decoded[None])[0].clamp(0, 1)
    err = max(float((a - b).abs().mean()) for a, b in zip(ref, upscaled, strict=True))
    assert err < 0.03

    result = runner.invoke(cli, ["upscale", str(trained_run), str(src), str(tmp_path / "out.mp4")])
    assert result.exit_code == 2 and "--overwrite" in result.output
    again = ["upscale", str(trained_run), str(src), str(tmp_path / "out.mp4"), "--skip-existing"]
    result = runner.invoke(cli, again)
    assert result.exit_code == 0 and "made by this model and options; skipped" in result.output
    assert str(trained_run) not in str(VideoReader(tmp_path / "out.mp4").comment)
    result = runner.invoke(cli, [*again, "--which", "5"])  # another checkpoint made it
    assert result.exit_code == 2 and "was made differently (step 10 -> 5" in result.output
    shutil.copy(src, tmp_path / "foreign.mp4")  # a video vsrkit did not write
    result = runner.invoke(cli, [*again[:3], str(tmp_path / "foreign.mp4"), "--skip-existing"])
    assert result.exit_code == 2 and "not written by vsrkit upscale" in result.output


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".avi"])
def test_a_truncated_video_is_one_line_exit_1(trained_run: Path, tmp_path: Path, ext: str) -> None:
    full = make_video(tmp_path / f"full{ext}", smooth_frames(30, 32, 32))
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(InferenceError, match="truncated|not a readable video"):
        list(VideoReader(cut))
    result = CliRunner().invoke(cli, ["upscale", str(trained_run), str(cut), str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and str(cut) in errors[0]
    # frames decoded before the cut were not written as if the output were complete
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_a_file_without_video_and_an_interrupted_writer(tmp_path: Path) -> None:
    text = tmp_path / "notes.mkv"
    text.write_bytes(b"plain text, not matroska")
    with pytest.raises(InferenceError, match="not a readable video"):
        VideoReader(text)
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "half.mp4", fps=25) as w:
        w.write(torch.rand(3, 16, 16))
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mkv"]  # no half video
    with pytest.raises(InferenceError, match="unknown video extension"):
        VideoWriter(tmp_path / "x.gif", fps=25)
    with (
        pytest.raises(InferenceError, match="even size"),
        VideoWriter(tmp_path / "o.mp4", fps=25) as w,
    ):
        w.write(torch.rand(3, 15, 16))


def test_without_pyav_the_error_says_what_to_install(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_video(tmp_path / "in.mp4", smooth_frames(2, 16, 16))
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(VideoSupportMissing, match=r'pip install "vsrkit\[video\]"'):
        VideoReader(src)
    result = CliRunner().invoke(cli, ["upscale", str(trained_run), str(src), str(tmp_path / "o")])
    assert result.exit_code == 1
    assert 'Error: video files need PyAV: pip install "vsrkit[video]"' in result.output
