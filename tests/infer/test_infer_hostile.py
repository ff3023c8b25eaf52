"""What a hostile or unlucky user met in the first new-user test of eval/upscale, each fixed:
odd images, out-of-range frames, SIGTERM, a full disk, a killed video, mixed models, audio."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.infer.conftest import child_env
from vsrkit._atomic import TEMP_PREFIX, atomic_write_text
from vsrkit.cli import cli
from vsrkit.infer import InferenceError, read_frame, upscale_frames, write_png
from vsrkit.infer.frames import png_text
from vsrkit.vsr import build_model


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def one_line_error(output: str) -> str:
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def frames_folder(path: Path, n: int, h: int = 16, w: int = 20, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        write_png(path / f"{i:04d}.png", torch.rand(3, h, w, generator=g))
    return path


# ---- images and frames -------------------------------------------------------------------------


def test_16_bit_grey_and_other_modes_are_read_at_their_brightness(tmp_path: Path) -> None:
    grey = np.full((6, 8), 32437, dtype=np.uint16)  # about half of 65535
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    frame = read_frame(tmp_path / "g16.png")
    assert frame.dtype == torch.uint8 and frame.shape == (3, 6, 8)
    assert int(frame.float().mean().round()) == round(32437 / 257)  # 126, not clipped to 255
    Image.fromarray(np.full((6, 8), 200, dtype=np.uint8)).save(tmp_path / "g8.png")
    assert int(read_frame(tmp_path / "g8.png").float().mean()) == 200
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 90, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert read_frame(tmp_path / "rgba.png")[0].float().mean() == 90  # alpha dropped


@pytest.mark.parametrize(
    "frame",
    [torch.rand(3, 8, 8) * 255, torch.rand(3, 8, 8) - 1.0, torch.full((3, 8, 8), float("nan"))],
    ids=["0-255 floats", "negative", "nan"],
)
def test_float_frames_outside_0_1_are_refused(frame: torch.Tensor) -> None:
    with pytest.raises(InferenceError, match="float frames must be in \\[0, 1\\]"):
        list(upscale_frames(build_model("tiny"), [frame], device="cpu"))


def test_float_arrays_in_0_1_are_taken() -> None:
    arr = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    (out,) = list(upscale_frames(build_model("tiny"), [arr], device="cpu"))
    assert out.shape == (3, 32, 32)


# ---- the command line --------------------------------------------------------------------------


def test_command_line_mistakes_are_one_line_in_a_real_process(tmp_path: Path) -> None:
    for args, where in (
        (["upscale"], "vsrkit upscale"),
        (["eval", "--tile", "0", "0"], "vsrkit eval"),
        (["upscale", "a", "b", "c", "--tile", "0"], "vsrkit upscale"),  # the parser's own error
        (["nosuch"], "vsrkit"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "vsrkit", *args],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (args, lines)
        assert lines[0].startswith("Error: ") and lines[0].endswith(f"(see '{where} --help')")


def test_tiny_tiles_get_a_warning(trained_run: Path, tmp_path: Path) -> None:
    src = frames_folder(tmp_path / "in", 2, 12, 12)
    code, out = run(
        "upscale", trained_run, src, tmp_path / "out", "--tile", "6", "6", "--tile-overlap", "2"
    )
    assert code == 0, out
    assert "warning: tiles of 6x6 are small" in out


def test_skip_existing_refuses_frames_of_another_checkpoint(
    trained_run: Path, tmp_path: Path
) -> None:
    src = frames_folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert run("upscale", trained_run, src, out, "--which", "5", "-q")[0] == 0
    (out / "0003.png").unlink()  # as if interrupted before the last frame
    code, text = run("upscale", trained_run, src, out, "--skip-existing", "-q")
    assert code == 2, text
    assert "was made differently (" in text and "step 5 -> 10, weights " in text
    assert "--overwrite" in text
    code, text = run("upscale", trained_run, src, out, "--skip-existing", "--which", "5", "-q")
    assert code == 0 and "3 already there" in text, text
    code, text = run("upscale", trained_run, src, out, "--overwrite", "-q")
    assert code == 0, text


def test_skip_existing_checks_every_frame_and_never_replaces_an_image_of_the_user(
    trained_run: Path, tmp_path: Path
) -> None:
    src = frames_folder(tmp_path / "in", 6)
    out, other = tmp_path / "out", tmp_path / "other"
    assert run("upscale", trained_run, src, out, "-q")[0] == 0
    assert run("upscale", trained_run, src, other, "--which", "5", "-q")[0] == 0
    shutil.copy(other / "0004.png", out / "0004.png")  # one frame of another model, not the first
    (out / "0005.png").unlink()
    code, text = run("upscale", trained_run, src, out, "--skip-existing", "-q")
    assert code == 2 and "0004.png was made differently (" in one_line_error(text), text

    shutil.copy(other / "0004.png", tmp_path / "keep.png")
    Image.open(src / "0001.png").resize((80, 64)).save(out / "0004.png")  # the user's own image
    before = (out / "0004.png").read_bytes()
    for flag in ("--skip-existing", "--overwrite"):
        code, text = run("upscale", trained_run, src, out, flag, "-q")
        assert code == 2 and "0004.png was not written by vsrkit upscale" in one_line_error(text)
        assert (out / "0004.png").read_bytes() == before  # never replaced
    (out / "0004.png").write_bytes(b"not an image")  # damaged: remade
    code, text = run("upscale", trained_run, src, out, "--skip-existing", "-q")
    assert code == 0 and "4 already there" in text, text
    assert sorted(p.name for p in out.iterdir()) == [f"{i:04d}.png" for i in range(6)]


def test_a_huge_image_of_the_user_is_refused_not_a_traceback(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow refuses to open an image past MAX_IMAGE_PIXELS (DecompressionBombError, not an
    OSError); such an image in the output folder is the user's: refused, never replaced."""
    src, out = frames_folder(tmp_path / "in", 2), tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (80, 64)).save(out / "0000.png")
    before = (out / "0000.png").read_bytes()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 80 x 64 is over twice that
    for flag in ("--skip-existing", "--overwrite"):
        code, text = run("upscale", trained_run, src, out, flag, "-q")
        assert code == 2 and "0000.png was not written by vsrkit" in one_line_error(text)
    assert (out / "0000.png").read_bytes() == before


def test_every_clip_s_output_is_checked_before_any_clip_is_made(
    trained_run: Path, tmp_path: Path
) -> None:
    src = tmp_path / "clips"
    frames_folder(src / "a", 2)
    frames_folder(src / "b", 2)
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    Image.new("RGB", (80, 64)).save(out / "b" / "0000.png")  # the user's, in the second clip
    code, text = run("upscale", trained_run, src, out, "--overwrite", "-q")
    assert code == 2 and "0000.png was not written by vsrkit" in one_line_error(text)
    assert not (out / "a").exists()  # the first clip was not made, then left half-replaced


def test_overwrite_removes_the_frames_of_an_earlier_longer_run(
    trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run("upscale", trained_run, frames_folder(tmp_path / "long", 8), out, "-q")[0] == 0
    (out / "notes.txt").write_text("mine")  # not a frame: left alone
    short = frames_folder(tmp_path / "short", 3)
    code, text = run("upscale", trained_run, short, out, "--overwrite", "--which", "5", "-q")
    assert code == 0, text
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0000.png", "0001.png", "0002.png", "notes.txt"]
    assert {json.loads(png_text(p)["vsrkit"])["step"] for p in out.glob("*.png")} == {5}


@pytest.mark.parametrize("bad", ["truncated", "text"])
def test_a_run_that_fails_leaves_no_empty_output_folder(
    trained_run: Path, tmp_path: Path, bad: str
) -> None:
    src = frames_folder(tmp_path / "in", 3)
    data = (src / "0001.png").read_bytes()
    (src / "0001.png").write_bytes(data[: len(data) // 2] if bad == "truncated" else b"text")
    out = tmp_path / "a" / "b" / "out"
    code, text = run("upscale", trained_run, src, out, "-q")
    assert code == 1 and "0001.png" in one_line_error(text)
    assert not (tmp_path / "a").exists()


def test_results_are_readable_as_any_other_file(trained_run: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        src = frames_folder(tmp_path / "in", 2)
        assert run("upscale", trained_run, src, tmp_path / "out", "-q")[0] == 0
        assert run("eval", trained_run, "-q", "--out", tmp_path / "r.json")[0] == 0
        atomic_write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    for path in (tmp_path / "out" / "0000.png", tmp_path / "r.json", tmp_path / "t.txt"):
        assert path.stat().st_mode & 0o777 == 0o644, path


# ---- videos ------------------------------------------------------------------------------------


def _video(path: Path, n: int, h: int, w: int, audio: bool = False) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        sound = container.add_stream("aac", rate=8000) if audio else None
        rng = np.random.default_rng(0)
        for _ in range(n):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))
        if sound is not None:
            samples = np.zeros((1, 8000), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def test_audio_is_said_to_be_left_out(trained_run: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "talk.mp4", 3, 16, 16, audio=True)
    code, out = run("upscale", trained_run, video, tmp_path / "out", "-q")
    assert code == 0, out
    assert f"note: {video} has audio, which is not copied" in out


def _upscale_video_cmd(run_dir: Path, video: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vsrkit", "upscale", str(run_dir), str(video), str(out)]


def test_a_full_disk_while_writing_a_video_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "in.mp4", 12, 48, 64)

    def small_files() -> None:  # what `ulimit -f` does: writes past 64 KiB fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run(
        _upscale_video_cmd(trained_run, video, tmp_path / "out.mp4"),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        preexec_fn=small_files,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot write {tmp_path / 'out.mp4'}")
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_sigterm_then_sigkill_leave_no_temporary_video(trained_run: Path, tmp_path: Path) -> None:
    video = _video(tmp_path / "in.mp4", 150, 32, 32)
    out = tmp_path / "out.mp4"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(
            _upscale_video_cmd(trained_run, video, out),
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob(f"{TEMP_PREFIX}out.mp4.*")):  # encoding has begun
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        if sig == signal.SIGTERM:  # handled like Ctrl-C: one line, its own exit code
            assert proc.returncode == 143 and "terminated:" in err and "Traceback" not in err
            assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))
        else:  # nothing can run on SIGKILL: the next run clears what it left
            assert list(tmp_path.glob(f"{TEMP_PREFIX}*"))
        assert not out.exists()
    video_short = _video(tmp_path / "short.mp4", 3, 32, 32)
    code, text = run("upscale", trained_run, video_short, out, "-q")
    assert code == 0, text
    assert out.is_file() and not list(tmp_path.glob(f"{TEMP_PREFIX}*"))
