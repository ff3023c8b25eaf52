"""`vsrkit config validate|show|set|keys` via click's CliRunner, plus one real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rc_helpers import live_doc

from vsrkit.cli import cli
from vsrkit.config import CONFIG_FILE, RuntimeConfigManager, example_settings, snapshot_name


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["config", *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    path = run_dir / CONFIG_FILE
    assert run("validate", str(path)) == (0, f"{path}: valid\n", "")
    assert run("validate", str(mgr.snapshot(10)))[0] == 0
    path.write_text(json.dumps(example_settings(max_lr=0.5, min_lr=1e-3, scale="4")))
    code, out, err = run("validate", str(path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{path}: max_lr: got 0.5, expected a number in [1e-05, 0.001]",
        f"{path}: min_lr: got 0.001, expected a number in [1e-08, 0.0001]",
        f'{path}: scale: got "4", expected an integer in [1, 8]',
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"max_lr": ', "not valid JSON (Expecting value: line 1 column 12"),
        (b'{"max_lr": NaN}', "NaN is not allowed"),
        (b"[]", "(document): expected a JSON object of settings, got list"),
    ],
)
def test_validate_unreadable(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    code, _, err = run("validate", str(path))
    assert code == 1 and message in err and "Traceback" not in err
    assert run("validate", str(tmp_path / "nope.json"))[2] == (
        f"Error: {tmp_path / 'nope.json'}: no such file\n"
    )


def test_set_writes_atomically_and_the_manager_picks_it_up(
    mgr: RuntimeConfigManager, run_dir: Path
) -> None:
    code, out, err = run("set", str(run_dir), "plateau_patience=350", "max_lr=2e-4")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["plateau_patience: 250 -> 350", "max_lr: 0.00015 -> 0.0002"]
    assert live_doc(run_dir) == example_settings(plateau_patience=350, max_lr=2e-4)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]
    assert [(c.key, c.new, c.source) for c in mgr.poll(10)] == [
        ("plateau_patience", 350, "file"),
        ("max_lr", 2e-4, "file"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batch_size=8"], "batch_size is startup-only: changing it from 4 to 8 needs a restart"),
        (["max_lr=2e-4", "min_lr=3e-4"], "min_lr: got 0.0003, expected"),
        (["l1_weight=0.9"], "loss weights must sum to 0.95-1.05"),
        (["max_Lr=2e-4"], "max_Lr: unknown key; did you mean 'max_lr'?"),
        (["max_lr=fast"], "max_lr: cannot read 'fast'"),
        (["max_lr"], "expected key=value, got 'max_lr'"),
    ],
)
def test_set_rejects_and_leaves_the_file(
    mgr: RuntimeConfigManager, run_dir: Path, args: list[str], message: str
) -> None:
    before = (run_dir / CONFIG_FILE).read_bytes()
    code, out, err = run("set", str(run_dir), *args)
    assert code == 1 and message in err and out == ""
    assert (run_dir / CONFIG_FILE).read_bytes() == before


def test_set_refuses_a_broken_live_file(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    (run_dir / CONFIG_FILE).write_text(json.dumps(example_settings(grad_clip=50)))
    code, _, err = run("set", str(run_dir), "max_lr=2e-4")
    assert code == 1 and "is invalid now" in err and "grad_clip: got 50" in err
    code, _, err = run("set", str(run_dir / "missing"), "max_lr=2e-4")
    assert code == 1 and "no such file" in err


def test_show(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    mgr.submit({"plateau_patience": 350})
    mgr.poll(10)
    mgr.submit({"max_lr": 1.0})
    mgr.poll(20)
    code, out, _ = run("show", str(run_dir))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "[safe]" and "[careful]" in lines and "[startup-only]" in lines
    assert any(ln.split()[:2] == ["plateau_patience", "350"] for ln in lines)
    assert "  step 10 [web] plateau_patience 250 -> 350 accepted" in lines
    assert any(
        ln.startswith("  step 20 [web] max_lr 0.00015 -> 1 rejected: got 1, expected")
        for ln in lines
    )
    code, out, _ = run("show", str(run_dir), "--json", "--history", "1")
    doc = json.loads(out)
    assert doc["config"] == mgr.current and [c["new"] for c in doc["changes"]] == [1.0]
    assert run("show", str(run_dir.parent / "nothing"))[0] == 1


def test_keys_lists_ranges_and_categories() -> None:
    code, out, _ = run("keys")
    assert code == 0 and "batch_size" not in out
    assert "plateau_patience" in out and "an integer in [50, 1000]" in out
    rows = json.loads(run("keys", "--all", "--json")[1])
    assert {r["category"] for r in rows} == {"safe", "careful", "startup-only"}


def test_real_process_exit_codes(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "vsrkit", "config", "validate", str(run_dir / snapshot_name(0))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr
    mgr.snapshot(0)
    ok = subprocess.run(
        [sys.executable, "-m", "vsrkit", "config", "validate", str(run_dir / snapshot_name(0))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and ok.stdout.strip().endswith("valid")


def test_set_normalizes_integral_floats(mgr: RuntimeConfigManager, run_dir: Path) -> None:
    assert run("set", str(run_dir), "plateau_patience=350.0")[0] == 0
    assert (run_dir / CONFIG_FILE).read_text().count('"plateau_patience": 350,') == 1


def test_importing_config_and_its_cli_does_not_import_torch() -> None:
    code = "import sys, vsrkit.config, vsrkit.cli.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False"
    import vsrkit

    assert vsrkit.RuntimeConfigManager is RuntimeConfigManager
