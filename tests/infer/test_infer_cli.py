"""``vsrkit eval`` and ``vsrkit upscale`` through the real command line: outputs, a killed run
continued with --skip-existing, and one line with a documented exit code for every bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.infer.conftest import child_env
from vsrkit.cli import cli
from vsrkit.infer import load_model, read_frame, write_png
from vsrkit.infer.frames import png_text
from vsrkit.vsr import SyntheticVideoDataset, build_model


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def one_line_error(output: str) -> str:
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output  # no usage text
    return lines[0]


@pytest.fixture(scope="module")
def lr_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve LR frames named 1.png ... 12.png (string order would put 10 after 1)."""
    folder = tmp_path_factory.mktemp("lr")
    lrs, _ = SyntheticVideoDataset(num_clips=1, num_frames=12, lr_size=(10, 14), seed=5)[0]
    for i, frame in enumerate(lrs, 1):
        write_png(folder / f"{i}.png", frame)
    return folder


def test_eval_prints_a_table_and_writes_json_and_csv(trained_run: Path, tmp_path: Path) -> None:
    code, out = run(
        "eval",
        trained_run,
        "--which",
        "best",
        "--out",
        tmp_path / "r.json",
        "--csv",
        tmp_path / "r.csv",
        "--save-frames",
        tmp_path / "frames",
    )
    assert code == 0, out
    assert "synthetic_00" in out and "bicubic PSNR" in out and "mean" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["step"] in (5, 10) and doc["model"] == "tiny" and doc["channel"] == "y"
    assert [c["name"] for c in doc["clips"]] == ["synthetic_00", "synthetic_01"]
    assert f"{doc['mean']['psnr']:.3f}" in out
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0] == "clip,frames,psnr,ssim,bicubic_psnr,bicubic_ssim" and len(rows) == 4
    assert len(list((tmp_path / "frames").rglob("*.png"))) == 2 * 3


def test_upscale_a_folder_gives_the_whole_clip_output_in_natural_order(
    trained_run: Path, lr_frames: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, text = run("upscale", trained_run, lr_frames, out, "--host-budget-gb", "0")
    assert code == 0, text
    assert "upscaled 12 frame(s) (14x10 -> 56x40)" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.png" for i in range(1, 13))
    made_by = json.loads(png_text(out / "1.png")["vsrkit"])  # checked by --skip-existing
    assert len(made_by["weights"]) == 16 and made_by["step"] == 10  # a digest, never a path
    assert str(trained_run) not in png_text(out / "1.png")["vsrkit"]
    model = load_model(trained_run, device="cpu")
    clip = torch.stack([read_frame(lr_frames / f"{i}.png") for i in range(1, 13)]).float() / 255
    with torch.no_grad():
        ref = (model(clip[None])[0].clamp(0, 1) * 255).round()
    got = torch.stack([read_frame(out / f"{i}.png") for i in range(1, 13)]).float()
    assert float((got - ref).abs().max()) <= 1.0  # 8-bit rounding of equal values, at most


def test_a_killed_upscale_continues_with_skip_existing(trained_run: Path, tmp_path: Path) -> None:
    frames = tmp_path / "in"
    lrs, _ = SyntheticVideoDataset(num_clips=1, num_frames=120, lr_size=(24, 32), seed=1)[0]
    frames.mkdir()
    for i, frame in enumerate(lrs):
        write_png(frames / f"{i:04d}.png", frame)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vsrkit", "upscale", str(trained_run), str(frames), str(out)]
    proc = subprocess.Popen(cmd, env=child_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.is_dir() and len(list(out.glob("*.png"))) >= 5:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert 5 <= len(before) < 120  # killed midway

    code, text = run("upscale", trained_run, frames, out)  # refuses to mix without a flag
    assert code == 2 and "--skip-existing" in one_line_error(text)
    code, text = run("upscale", trained_run, frames, out, "--skip-existing")
    assert code == 0, text
    assert f"{len(before)} already there" in text
    assert sorted(p.name for p in out.iterdir()) == [f"{i:04d}.png" for i in range(120)]
    for name, mtime in before.items():  # the frames of the first run were kept as they were
        assert (out / name).stat().st_mtime_ns == mtime
    clean = tmp_path / "clean"
    assert run("upscale", trained_run, frames, clean)[0] == 0
    for i in range(120):
        name = f"{i:04d}.png"
        assert torch.equal(read_frame(out / name), read_frame(clean / name)), name


def test_overwrite_replaces_and_a_finished_output_is_skipped(
    trained_run: Path, lr_frames: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run("upscale", trained_run, lr_frames, out)[0] == 0
    code, text = run("upscale", trained_run, lr_frames, out, "--skip-existing")
    assert code == 0 and "upscaled 0 frame(s)" in text and "12 already there" in text
    code, text = run(
        "upscale",
        trained_run,
        lr_frames,
        out,
        "--overwrite",
        "--tile",
        "8",
        "8",
        "--tile-overlap",
        "2",
    )
    assert code == 0 and "upscaled 12 frame(s)" in text


def test_a_folder_of_clips_mirrors_its_clips(trained_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "reds"
    for clip in ("000", "011"):
        (root / "LR" / clip).mkdir(parents=True)
        for i in range(3):
            write_png(root / "LR" / clip / f"{i:08d}.png", torch.rand(3, 8, 8))
    code, text = run("upscale", trained_run, root, tmp_path / "out", "--segment", "2")
    assert code == 0, text
    assert "of 2 clip(s)" in text
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == [
        "000",
        *(f"000/{i:08d}.png" for i in range(3)),
        "011",
        *(f"011/{i:08d}.png" for i in range(3)),
    ]


def bad_inputs(tmp: Path, run_dir: Path, lr: Path) -> list[tuple[list[object], int, str]]:
    """(arguments, exit code, text the one line must hold) for every bad input of the issue."""
    empty = tmp / "empty"
    empty.mkdir()
    mixed = tmp / "mixed"
    mixed.mkdir()
    write_png(mixed / "1.png", torch.rand(3, 8, 8))
    write_png(mixed / "2.png", torch.rand(3, 8, 9))
    bare = tmp / "bare.pth"
    torch.save(build_model("tiny").state_dict(), bare)
    garbage = tmp / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    video = tmp / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    data = tmp / "data"
    for i in range(2):
        (data / "GT" / "c").mkdir(parents=True, exist_ok=True)
        (data / "LR" / "c").mkdir(parents=True, exist_ok=True)
        write_png(data / "GT" / "c" / f"{i}.png", torch.rand(3, 44, 44))
        write_png(data / "LR" / "c" / f"{i}.png", torch.rand(3, 12, 12))
    out = tmp / "out"
    collide = tmp / "collide"  # 1.png and 1.jpg would both be written as 1.png
    collide.mkdir()
    write_png(collide / "1.png", torch.rand(3, 8, 8))
    (collide / "1.jpg").write_bytes((collide / "1.png").read_bytes())
    write_png(collide / "2.png", torch.rand(3, 8, 8))
    full = tmp / "full"
    full.mkdir()
    (full / "x.png").write_bytes(b"")
    same = tmp / "r.json"
    return [
        (["upscale", run_dir, empty, out], 1, "no frames (.png .jpg .jpeg .bmp .tif .tiff .webp)"),
        (["upscale", run_dir, collide, out], 1, "and 1.png share the name '1'"),
        (["upscale", run_dir, lr, tmp / "o.webm"], 2, ".webm is not a video format vsrkit"),
        (["upscale", run_dir, lr, tmp / "o.mp4", "--fps", "1e9"], 2, "--fps"),
        (["upscale", run_dir, lr, tmp / "o.mp4", "--fps", "nan"], 2, "not a finite number"),
        (["upscale", run_dir, lr, out, "--host-budget-gb", "inf"], 2, "not a finite number"),
        (["upscale", run_dir, lr, out, "--spill-dir", tmp / "nope"], 2, "does not exist"),
        (["eval", run_dir, "--out", same, "--csv", same], 2, "are the same file"),
        (
            ["eval", run_dir, "--data", data, "--save-frames", data / "GT" / "c"],
            2,
            "is inside the test data",
        ),
        (["eval", run_dir, "--save-frames", full], 2, "is not empty"),
        (["upscale", run_dir, mixed, out], 1, "2.png is 8x9 (h x w), but 1.png is 8x8"),
        (["upscale", run_dir, video, tmp / "v.mp4"], 1, "broken.mp4: not a readable video"),
        (["upscale", bare, lr, out], 1, "no model config in the checkpoint"),
        (["upscale", garbage, lr, out], 1, "garbage.pth: not a readable PyTorch file"),
        (["eval", run_dir, "--data", data], 1, "LR is 12x12, GT 44x44; expected GT 48x48"),
        (
            ["upscale", run_dir, lr, out, "--tile", "8", "8", "--tile-overlap", "8"],
            2,
            "(--tile) must be larger than its overlap of 8 pixels on each side (--tile-overlap)",
        ),
        (["upscale", run_dir, lr, lr / "sub"], 2, "is inside the input folder"),
        (["upscale", run_dir, lr, out, "--half", "--device", "cpu"], 2, "needs a CUDA device"),
        (["upscale", run_dir, lr, out, "--skip-existing", "--overwrite"], 2, "exclude each other"),
        (["upscale", run_dir, tmp / "nope", out], 2, "does not exist"),
        (["upscale", run_dir, lr, ""], 2, "OUTPUT: an empty path"),
        (["upscale", run_dir, "", out], 2, "INPUT: an empty path"),
        (["upscale", run_dir, bare, out], 2, "is not a folder or a video"),
        (["upscale", run_dir, lr, out, "--which", "newest"], 2, "latest, best or a step"),
        (["upscale", run_dir, lr, out, "--which", "7"], 1, "no valid checkpoint at step 7"),
        (["eval", run_dir, "--data", tmp / "nope"], 2, "is not a folder"),
        (["eval", run_dir, "--out", tmp / "no" / "r.json"], 2, "does not exist"),
        (["eval", run_dir, "--crop-border", "20"], 1, "leaves nothing"),
    ]


def test_every_bad_input_is_one_line_with_its_exit_code(
    trained_run: Path, lr_frames: Path, tmp_path: Path
) -> None:
    for args, code, needle in bad_inputs(tmp_path, trained_run, lr_frames):
        got, output = run(*args)
        line = one_line_error(output)
        assert (got, needle in line) == (code, True), (args, output)
    assert not (tmp_path / "out").exists()  # no run left an (empty) output folder behind


def test_a_bad_input_in_a_real_process_prints_no_traceback(
    trained_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsrkit",
            "upscale",
            str(trained_run),
            str(tmp_path / "empty"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'empty'}: no frames (.png .jpg .jpeg .bmp .tif .tiff .webp) and "
        "no clip folders in it"
    ]


def test_a_bare_state_dict_runs_with_its_preset(lr_frames: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(build_model("tiny").state_dict(), bare)
    code, text = run("upscale", bare, lr_frames, tmp_path / "out", "--preset", "tiny", "-q")
    assert code == 0, text
    assert "state dict" not in text and "bare.pth" in text


def test_help_lists_the_commands_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from vsrkit.cli import cli\n"
        "for c in ('eval', 'upscale'):\n"
        "    r = CliRunner().invoke(cli, [c, '--help'])\n"
        "    assert r.exit_code == 0 and 'CHECKPOINT_OR_RUN' in r.output, r.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_progress_shows_frames_rate_and_eta_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from vsrkit.cli.infer import _Progress

    progress = _Progress(quiet=False)
    progress.live = False
    progress.clip("clip 1/2 calendar: ", 10)
    progress.started -= 20.0  # 20 s ago, and the last line long before
    progress.last -= 20.0
    for i in range(10):
        progress("read", i)
    for i in reversed(range(10)):
        progress("backward", i)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1  # one line per 10 s without a terminal
    assert err[0].startswith("clip 1/2 calendar: backward 1/10 frames")
    assert "frames/s" in err[0] and "ETA 00:" in err[0]
    quiet = _Progress(quiet=True)
    quiet.last -= 20.0
    quiet("forward", 0)
    assert capsys.readouterr().err == ""


# ---- published weights (--weights) ----------------------------------------------------------


@pytest.fixture(scope="module")
def basicsr_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BasicVSR saved in BasicSR's layout ({"params": ...}, BasicSR key names)."""
    from vsrkit.vsr import BidirectionalRecurrentVSR, to_basicsr_keys

    torch.manual_seed(3)
    net = BidirectionalRecurrentVSR(
        num_feat=8, num_blocks=2, spynet_levels=2, spynet_widths=(4, 4, 4, 4), skip="bilinear"
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("published") / "BasicVSR_small.pth"
    torch.save({"params": to_basicsr_keys(net.state_dict())}, path)
    return path


def test_eval_and_upscale_with_published_weights(
    basicsr_file: Path, lr_frames: Path, tmp_path: Path
) -> None:
    from vsrkit.vsr import load_pretrained

    code, out = run("eval", "--weights", basicsr_file, "--device", "cpu", "-q")
    assert code == 0, out
    assert "basicsr BasicVSR" in out and "synthetic_00" in out
    dest = tmp_path / "up"
    code, out = run("upscale", "--weights", basicsr_file, lr_frames, dest, "--device", "cpu")
    assert code == 0, out
    model = load_pretrained(basicsr_file, device="cpu")
    clip = torch.stack([read_frame(lr_frames / f"{i}.png") for i in range(1, 13)]).float() / 255
    with torch.no_grad():
        ref = (model(clip[None])[0].clamp(0, 1) * 255).round()
    got = torch.stack([read_frame(dest / f"{i}.png") for i in range(1, 13)]).float()
    assert float((got - ref).abs().max()) <= 1.0  # 8-bit rounding of equal floats


def test_weights_flag_mistakes_are_one_line(
    basicsr_file: Path, trained_run: Path, lr_frames: Path, tmp_path: Path
) -> None:
    code, out = run("eval", trained_run, "--weights", basicsr_file)
    assert code == 2 and "not both" in one_line_error(out)
    code, out = run("eval")
    assert code == 2 and "--weights FILE" in one_line_error(out)
    code, out = run("eval", "--weights", basicsr_file, "--which", "best")
    assert code == 2 and "--which is for a run folder" in one_line_error(out)
    code, out = run("eval", "--weights", basicsr_file, "--preset", "tiny")
    assert code == 1 and "carries its own sizes" in one_line_error(out)
    bare = tmp_path / "bare.pth"  # a bare vsrkit state dict: --weights with its preset
    torch.save(build_model("tiny").state_dict(), bare)
    code, out = run("eval", "--weights", bare, "--preset", "tiny", "-q")
    assert code == 0, out
    code, out = run("upscale", "--weights", basicsr_file, trained_run, lr_frames, tmp_path / "o")
    assert code == 2 and "expected INPUT OUTPUT after --weights" in one_line_error(out)
    code, out = run("upscale", lr_frames, tmp_path / "o")
    assert code == 2 and "expected CHECKPOINT_OR_RUN INPUT OUTPUT" in one_line_error(out)
    code, out = run("upscale", tmp_path / "nope", lr_frames, tmp_path / "o")
    assert code == 2 and "nope does not exist" in one_line_error(out)
    # a published file given where a vsrkit checkpoint goes: pointed at --weights
    code, out = run("eval", basicsr_file)
    assert code == 1 and "pass it with --weights" in one_line_error(out)
    # a vsrkit checkpoint is not a published file of a given layout
    ckpt = sorted((trained_run / "checkpoints").glob("*.pth"))[-1]
    code, out = run("eval", "--weights", ckpt, "--weights-format", "mmagic")
    assert code == 1 and "not a mmagic BasicVSR file" in one_line_error(out)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    code, out = run("eval", "--weights", junk)
    assert code == 1 and "junk.pth" in one_line_error(out)
