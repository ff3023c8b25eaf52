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
