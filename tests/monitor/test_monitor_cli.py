"""`vsrkit monitor RUN_DIR` in a real process, reading files written by the real components."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vsrkit.config import RuntimeConfigManager, example_settings
from vsrkit.monitor import RunFolderSource
from vsrkit.monitor.runfolder import RunFolderError
from vsrkit.stats import DeferredStatsWriter, MetricsSnapshot


def make_run(run: Path) -> None:
    """Two validations with their Statistik files, plus a settings change and a refusal."""
    snap = MetricsSnapshot()
    writer = DeferredStatsWriter(run, snapshot=snap, fsync=False)
    for step in range(1, 25):
        if step in (10, 20):
            writer.request(step, {"quality_ki_value": 0.5 + step / 100, "quality_lr_value": 0.5})
        writer.observe(
            step,
            {
                "step_current": step,
                "total_loss_value": 1.0 / step,
                "l1_loss_value": 0.5 / step,
                "ms_loss_value": 0.2 / step,
                "gradient_loss_value": 0.2 / step,
                "perceptual_loss_value": 0.1 / step,
                "learning_rate_value": 1e-4,
                "l1_weight_current": 0.6,
                "ms_weight_current": 0.2,
                "gradient_weight_current": 0.1,
                "perceptual_weight_current": 0.1,
            },
        )
    writer.close()
    cfg = RuntimeConfigManager(run, initial=example_settings())
    cfg.submit({"grad_clip": 99}, source="web")
    cfg.submit({"grad_clip": 2.0}, source="web")
    cfg.poll(cfg.poll_every)


def test_run_folder_source_reads_the_files(tmp_path: Path) -> None:
    make_run(tmp_path)
    src = RunFolderSource(tmp_path)
    latest = src.snapshot()
    assert latest["step_current"] == 20 and latest["quality_ki_value"] == pytest.approx(0.7)
    extra = src.extra()
    assert [v["step"] for v in extra["validation_history"]] == [10, 20]
    assert [p[0] for p in extra["loss_history"]] == [10, 20]
    assert [(c["key"], c["accepted"]) for c in extra["config_changes"]] == [
        ("grad_clip", False),
        ("grad_clip", True),
    ]
    assert src.config.current["grad_clip"] == 2.0
    with pytest.raises(RunFolderError):
        RunFolderSource(tmp_path / "missing")


def test_run_folder_reports_unreadable_settings(tmp_path: Path) -> None:
    (tmp_path / "runtime_config.json").write_text("{not json", encoding="utf-8")
    src = RunFolderSource(tmp_path)
    errors = src.extra()["run_folder"]["errors"]
    assert len(errors) == 1 and "runtime_config.json" in errors[0]


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"X-Vsrkit-Token": token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_vsrkit_monitor_serves_a_run_folder_read_only(tmp_path: Path) -> None:
    make_run(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsrkit", "monitor", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([A-Za-z0-9_-]+)", line)
        assert match, line
        url, token = match.groups()
        token_file = tmp_path / "monitor_view_token"
        assert f"token also in {token_file}" in line
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o777 == 0o600
        with pytest.raises(urllib.error.HTTPError) as info:  # no token: nothing at all
            urllib.request.urlopen(url, timeout=10)
        assert info.value.code == 403 and b"monitor_view_token" in info.value.read()
        status = _get(url + "api/status", token)
        assert status["iteration"] == 20 and status["actions"]["enabled"] is False
        assert "Read-only" in status["actions"]["note"]
        assert status["run_folder"]["statistics_files"] == 2
        stats = _get(url + "api/stats", token)
        assert stats["step_current"] == 20 and stats["complete"] is True
        config = _get(url + "api/config", token)
        assert config["editable"] is False
        assert {r["key"]: r["value"] for r in config["settings"]}["grad_clip"] == 2.0
        # a browser: the login URL sets the cookie and lands on the page without the token
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with browser.open(f"{url}?token={token}", timeout=10) as resp:
            assert resp.status == 200 and resp.url == url
            assert b"vsrkit monitor" in resp.read()
        assert [c.name for c in jar] == [f"vsrkit_token_{url.rsplit(':', 1)[1].rstrip('/')}"]
        req = urllib.request.Request(
            url + "api/action",
            data=b'{"command": "validate"}',
            headers={"Content-Type": "application/json", "X-Vsrkit-Token": token},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 409
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not token_file.exists()  # removed when the monitor stops


def test_vsrkit_monitor_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vsrkit", "monitor", str(tmp_path / "nope"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_vsrkit_monitor_remote_host_needs_the_flag(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vsrkit", "monitor", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "--allow-remote" in proc.stderr
