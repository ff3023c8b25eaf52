"""``vsrkit checkpoints``: list, show, verify, prune; the list path never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vsrkit.checkpoint import CheckpointManager
from vsrkit.cli import cli

from .helpers import make_state


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    mgr = CheckpointManager(tmp_path, run_id="cli")
    for s in range(1, 13):
        mgr.save(
            s * 100,
            make_state(s),
            metrics={"quality": s / 20, "loss": 1 / s},
            tag="best" if s == 5 else None,
        )
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_list_shows_the_last_ten(run_dir: Path) -> None:
    code, out = _run("checkpoints", "list", str(run_dir))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["#", "Step", "Type", "Quality", "Loss", "Date"]
    rows = [ln.split() for ln in lines[2:12]]
    assert [r[1] for r in rows] == [
        "300",
        "400",
        "500",
        "600",
        "700",
        "800",
        "900",
        "1,000",
        "1,100",
        "1,200",
    ]
    assert rows[2][2] == "best" and rows[-1][3] == "0.6000"  # SSIM, not a percentage
    assert "--all" in lines[-1]


def test_list_all_and_json(run_dir: Path) -> None:
    code, out = _run("checkpoints", "list", str(run_dir), "--all")
    assert code == 0 and len([ln for ln in out.splitlines() if ln[:1].isdigit()]) == 12
    code, out = _run("checkpoints", "list", str(run_dir), "--json", "--all")
    records = json.loads(out)
    assert [r["step"] for r in records] == [s * 100 for s in range(1, 13)]
    assert set(records[0]) >= {
        "path",
        "filename",
        "step",
        "type",
        "quality",
        "loss",
        "size_mb",
        "timestamp",
        "date_str",
        "valid",
    }
    assert records[4]["type"] == "best" and records[0]["valid"] is True


def test_list_empty_and_missing_folder(tmp_path: Path) -> None:
    assert _run("checkpoints", "list", str(tmp_path)) == (0, f"no checkpoints in {tmp_path}\n")
    code, out = _run("checkpoints", "list", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in out


def test_show(run_dir: Path) -> None:
    code, out = _run("checkpoints", "show", str(run_dir), "500")
    assert code == 0
    info = json.loads(out)
    assert info["manifest"]["step"] == 500 and info["manifest"]["tag"] == "best"
    code, out = _run("checkpoints", "show", str(run_dir), "501")
    assert code == 1 and "no checkpoint at step 501" in out and "Traceback" not in out


def test_verify_ok_then_corrupt(run_dir: Path) -> None:
    code, out = _run("checkpoints", "verify", str(run_dir))
    assert code == 0 and "12 checkpoint(s), 0 corrupt" in out
    p = run_dir / "checkpoint_step_0000700.pth"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    (run_dir / "checkpoint_step_0001300.pth").write_bytes(b"interrupted")
    code, out = _run("checkpoints", "verify", str(run_dir))
    assert code == 1
    assert "CORRUPT      checkpoint_step_0000700.pth: sha256 differs" in out
    assert "UNCOMMITTED  checkpoint_step_0001300.pth" in out
    assert "13 checkpoint(s), 1 corrupt" in out


def test_prune_dry_run_then_for_real(run_dir: Path) -> None:
    code, out = _run("checkpoints", "prune", str(run_dir), "--keep-last", "3", "--dry-run")
    assert (
        code == 0 and "would delete 9 checkpoint(s)" in out
    )  # the best (1200) is among the last 3
    assert len(list(run_dir.glob("*.pth"))) == 12
    code, out = _run("checkpoints", "prune", str(run_dir), "--keep-last", "3")
    assert code == 0
    steps = [r.step for r in CheckpointManager(run_dir).list()]
    assert steps == [1000, 1100, 1200]
    code, out = _run("checkpoints", "prune", str(run_dir), "--keep-last", "0")
    assert code == 2


def test_prune_keeps_n_regular_the_best_and_the_newest_emergency(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, run_id="p")
    plan = [(100, None, 0.9), (100, "best", 0.9), (200, None, None), (250, "emergency", None)]
    plan += [(300, "emergency", None), (400, None, None), (500, None, None), (600, None, None)]
    for step, tag, quality in plan:
        mgr.save(step, make_state(step), tag=tag, metrics={"quality": quality} if quality else {})
    code, out = _run("checkpoints", "prune", str(tmp_path), "--keep-last", "2")
    assert code == 0, out
    kept = [(r.step, r.type) for r in CheckpointManager(tmp_path).list()]
    # two regular (500, 600), the best (100: the regular one and its _best copy score alike,
    # the later name wins), the newest emergency (300)
    assert (500, "regular") in kept and (600, "regular") in kept and (300, "emergency") in kept
    assert (250, "emergency") not in kept and (200, "regular") not in kept
    assert len([k for k in kept if k[0] == 100]) == 1
    assert len([k for k in kept if k[1] == "regular" and k[0] != 100]) == 2


def test_every_command_takes_the_run_folder_too(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    mgr = CheckpointManager(folder, run_id="r")
    for s in (10, 20, 30):
        mgr.save(s, make_state(s), metrics={"quality": s / 100})
    run = str(tmp_path / "run")
    code, out = _run("checkpoints", "list", run)
    assert code == 0 and "no checkpoints" not in out and "0.3000" in out
    code, out = _run("checkpoints", "show", run, "20")
    assert code == 0 and json.loads(out)["record"]["step"] == 20
    code, out = _run("checkpoints", "verify", run)
    assert code == 0 and "3 checkpoint(s), 0 corrupt" in out
    code, out = _run("checkpoints", "prune", run, "--keep-last", "1")
    assert code == 0 and [r.step for r in mgr.list()] == [30]
    code, out = _run("checkpoints", "list", str(tmp_path / "empty-run"))
    assert code == 2  # a folder that does not exist: click's one line


def test_list_in_a_real_process_does_not_import_torch(run_dir: Path) -> None:
    code = (
        "import sys\n"
        "from vsrkit.cli import main\n"
        "try:\n"
        f"    main(['checkpoints', 'list', {str(run_dir)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-TORCH")
    assert "1,200" in out.stdout


def test_demo_example_writes_a_listable_folder(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [
            sys.executable,
            str(root / "examples" / "make_demo_checkpoints.py"),
            str(tmp_path),
            "--steps",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    records = CheckpointManager(tmp_path).list()
    assert 60 in [r.step for r in records if r.type == "regular"]
    assert all(r.valid and r.loss is not None and r.step % 20 == 0 for r in records)
    step, state = CheckpointManager(tmp_path).restore()
    assert step == 60 and set(state) == {"model", "optimizer", "rng"}


def test_importing_the_checkpoint_package_does_not_import_torch() -> None:
    code = "import sys, vsrkit.checkpoint, vsrkit.cli.checkpoints; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
