"""``vsrkit data preview`` writes real PNG files; bad data folders get one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from vsrkit.cli import cli


def test_preview_writes_lr_bicubic_and_gt_pngs(tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "preview",
            "--out",
            str(out),
            "--clips",
            "2",
            "--frames",
            "2",
            "--lr-size",
            "12",
            "--degradation",
            "BD",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 * 2 * 3 and "wrote 12 PNG files" in result.output
    assert not [f for f in files if f.startswith(".tmp-")]
    with Image.open(out / "clip01_frame01_lr.png") as lr:
        assert lr.size == (12, 12) and lr.mode == "RGB"
    for kind in ("bicubic", "gt"):
        with Image.open(out / f"clip00_frame00_{kind}.png") as img:
            assert img.size == (48, 48)


def test_preview_of_a_bad_folder_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["data", "preview", "--out", str(tmp_path / "o"), "--data", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "neither layout" in result.output and str(tmp_path) in result.output
    assert "Traceback" not in result.output


def test_cli_module_does_not_import_torch() -> None:
    code = "import sys, vsrkit.cli.data, vsrkit.vsr; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _reds_with_an_odd_frame(root: Path) -> Path:
    for clip in ("a", "b"):
        for i in range(3):
            (root / "GT" / clip).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), (i * 40, 80, 120)).save(root / "GT" / clip / f"{i}.png")
    odd = root / "GT" / "b" / "1.png"
    Image.new("RGB", (36, 32)).save(odd)
    return odd


def test_preview_names_a_frame_of_another_size_in_one_line(tmp_path: Path) -> None:
    odd = _reds_with_an_odd_frame(tmp_path / "data")
    args = ["data", "preview", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "data")]
    proc = subprocess.run(
        [sys.executable, "-m", "vsrkit", *args, "--split", "val", "--val-clip-names", "b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and str(odd) in proc.stderr and "36x32" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_preview_into_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, ["data", "preview", "--out", str(blocker / "o")])
    assert result.exit_code == 1
    assert f"cannot write into {blocker / 'o'}" in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1
