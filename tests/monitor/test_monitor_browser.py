"""The live page in a real headless Chromium (the system browser, driven by Playwright).

A fake training loop in a thread updates a real MetricsSnapshot, drains the ActionQueue at
step boundaries, feeds a real DeferredStatsWriter and polls a real RuntimeConfigManager.
Without /usr/bin/chromium the tests skip, unless VSRKIT_REQUIRE_BROWSER=1 (CI): then they fail.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vsrkit.config import RuntimeConfigManager, example_settings
from vsrkit.monitor import ActionQueue, MonitorServer
from vsrkit.stats import DeferredStatsWriter, MetricsSnapshot

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _need_browser(reason: str) -> None:
    if os.environ.get("VSRKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (VSRKIT_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


class FakeLoop(threading.Thread):
    """Steps every few ms; acts on queued actions and config changes at step boundaries."""

    def __init__(
        self, run: Path, snapshot: MetricsSnapshot, queue: ActionQueue, config: RuntimeConfigManager
    ) -> None:
        super().__init__(daemon=True)
        self.snapshot, self.queue, self.config = snapshot, queue, config
        self.writer = DeferredStatsWriter(run, snapshot=snapshot, fsync=False, max_delay_steps=20)
        self.stop_event = threading.Event()
        self.paused = False
        self.step = 0
        self.applied: list[tuple[str, Any]] = []
        self.manual: list[int] = []  # steps validated because the page asked

    def metrics(self, step: int) -> dict[str, Any]:
        loss = 0.05 + 0.5 / math.sqrt(step)
        return {
            "step_current": step,
            "step_max": 20000,
            "epoch_num": 1 + step // 1000,
            "epoch_step_current": step % 1000,
            "epoch_step_total": 1000,
            "learning_rate_value": 1e-4,
            "lr_phase_name": "cosine",
            "total_loss_value": loss,
            "l1_loss_value": 0.55 * loss,
            "ms_loss_value": 0.2 * loss,
            "gradient_loss_value": 0.15 * loss,
            "perceptual_loss_value": 0.1 * loss,
            "l1_weight_current": 0.6,
            "ms_weight_current": 0.2,
            "gradient_weight_current": 0.1,
            "perceptual_weight_current": 0.1,
            "gradient_clip_val": self.config.current["grad_clip"],
            "iteration_duration": 0.21,
            "vram_usage_gb": 7.85,
            "adam_momentum_avg": 0.0123,
            "eta_total_formatted": "1:09:54",
            "eta_epoch_formatted": "0:03:12",
            # as the loop writes them: the map in percent of the most active layer, the
            # peak with its raw mean |activation| (the review's run: 62.4 / 82.4 / 100, 0.10)
            "layer_activity_map": {
                "Backward_Block_01": 58.0,
                "Backward_Block_02": 66.8,
                "Forward_Block_01": 76.0,
                "Forward_Block_02": 88.8,
                "Final_Fusion": 100.0,
            },
            "layer_activity_peak": {"layer": "Final_Fusion", "value": 0.10},
            "training_active": True,
            "training_paused": self.paused,
            "validation_running": False,
            "last_update_time": time.time(),
        }

    def validate(self, step: int) -> None:
        quality = 0.60 + 0.1 * (1 - 1 / math.sqrt(step))
        self.writer.request(
            step,
            {
                "quality_ki_value": quality,
                "quality_lr_value": 0.58,
                "quality_improvement_value": quality - 0.58,
                "best_quality_ever": quality,
            },
        )

    def run(self) -> None:
        while not self.stop_event.is_set():
            if not self.paused:
                self.step += 1
                self.writer.observe(self.step, self.metrics(self.step))
                if self.step % 60 == 0:
                    self.validate(self.step)
            else:
                self.snapshot.update(self.step, training_paused=True)
            for action in self.queue.drain():  # step boundary: the loop acts
                if action.command == "validate":
                    self.manual.append(self.step)
                    self.validate(self.step)
                elif action.command in ("pause", "resume"):
                    self.paused = action.command == "pause"
            for change in self.config.poll(self.step if not self.paused else 0):
                self.applied.append((change.key, change.new))
            time.sleep(0.01)
        self.writer.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need_browser("the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        _need_browser(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live(tmp_path: Path, browser: Any) -> Iterator[tuple[Any, FakeLoop, MonitorServer]]:
    snapshot, queue = MetricsSnapshot(), ActionQueue()
    config = RuntimeConfigManager(tmp_path, initial=example_settings(), poll_every=1)
    loop = FakeLoop(tmp_path, snapshot, queue, config)
    loop.start()
    server = MonitorServer(snapshot=snapshot, actions=queue, config=config, port=0).start()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.login_url)
    assert page.url == server.url  # the token left the address bar
    yield page, loop, server
    page.close()
    server.stop()
    loop.stop_event.set()
    loop.join(timeout=10)
    refused = "the server responded with a status of 422"  # the invalid setting, on purpose
    assert [e for e in errors if refused not in e] == []  # no script error, no CSP violation


def wait_until(page: Any, selector: str, predicate: Any, timeout: float = 15.0) -> str:
    """Poll the text of ``selector`` until ``predicate(text)`` (the page's strict CSP forbids
    the string evaluation that ``wait_for_function`` uses, so we poll from Python)."""
    deadline = time.monotonic() + timeout
    while True:
        text = page.text_content(selector) or ""
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: condition not met; last text {text!r}")
        time.sleep(0.05)


def wait_count(page: Any, selector: str, predicate: Any, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while not predicate(n := page.locator(selector).count()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: count {n} not as expected")
        time.sleep(0.05)
    return n


def _step(page: Any) -> int:
    text = page.text_content("#c-step") or ""
    match = re.match(r"(\d+)", text)
    return int(match.group(1)) if match else -1


def test_step_rises_live(live) -> None:
    page, loop, _ = live
    wait_until(page, "#c-step", lambda t: t[:1].isdigit())
    first = _step(page)
    wait_until(page, "#c-step", lambda t: int(t.split()[0]) > first + 20)
    assert page.text_content("#b-conn") == "live"  # pushed over /events, not polled
    assert _step(page) <= loop.step


def test_validate_button_makes_the_loop_write_a_statistik_file(live) -> None:
    page, loop, _ = live
    wait_until(page, "#c-step", lambda t: t[:1].isdigit())
    assert loop.manual == []
    page.click("#btn-validate")
    wait_until(page, "#toast", lambda t: t.startswith("queued: validate"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        loop.manual and loop.writer.path_for(loop.manual[0]).exists()
    ):
        time.sleep(0.05)
    assert loop.manual, "the loop never got the validate action"
    path = loop.writer.path_for(loop.manual[0])
    assert path.exists(), f"no {path.name} after pressing Validate"
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["step_current"] == loop.manual[0] and doc["quality_ki_value"] is not None
    page.click("#btn-pause")
    page.wait_for_selector("#b-paused.on", timeout=10000)
    page.click("#btn-resume")
    page.wait_for_selector("#b-training.on", timeout=10000)


def test_invalid_setting_shows_its_error_next_to_the_field(live) -> None:
    page, loop, _ = live
    page.wait_for_selector("#cfg-grad_clip")
    page.fill("#cfg-grad_clip", "99")
    page.click("#cfg-apply")
    error = wait_until(page, "#err-grad_clip", bool)
    assert "expected a number in [0.1, 10]" in error
    assert "bad" in (page.get_attribute("#cfg-grad_clip", "class") or "")
    page.fill("#cfg-grad_clip", "2.5")
    page.click("#cfg-apply")
    wait_until(page, "#cfg-msg", lambda t: t.startswith("accepted"))
    assert page.text_content("#err-grad_clip") == ""
    deadline = time.monotonic() + 10
    while ("grad_clip", 2.5) not in loop.applied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("grad_clip", 2.5) in loop.applied  # the loop picked it up at its next poll


def test_screenshot_is_kept(live) -> None:
    page, loop, _ = live
    page.wait_for_selector("#cfg-grad_clip")
    page.fill("#cfg-grad_clip", "1.5")
    page.click("#cfg-apply")
    wait_count(page, "#changes tr", lambda n: n >= 1)  # the change log shows it
    wait_count(page, "#val-chart circle", lambda n: n >= 6)  # 3 validations
    wait_count(page, "#layers tr", lambda n: n == 5)
    assert page.text_content("#c-epoch").startswith("epoch 1 (")
    assert "/1000)" in page.text_content("#c-epoch")  # integers are shown whole
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "monitor_dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VSRKIT_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parents[2] / "docs" / shot.name)


def test_page_falls_back_to_polling_without_events(browser: Any, tmp_path: Path) -> None:
    snapshot, queue = MetricsSnapshot(), ActionQueue()
    snapshot.update(7, step_current=7)
    with MonitorServer(snapshot=snapshot, actions=queue, port=0, max_streams=0) as server:
        page = browser.new_page()
        try:
            page.goto(server.login_url)
            wait_until(page, "#c-step", lambda t: t == "7")
            snapshot.update(8, step_current=8)
            wait_until(page, "#c-step", lambda t: t == "8")  # /events refused (503): polled
            assert page.text_content("#b-conn") == "polling"
        finally:
            page.close()


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not rendered"
    return box


def test_login_keeps_the_token_out_of_the_page_and_the_address(browser: Any) -> None:
    snapshot = MetricsSnapshot()
    snapshot.update(3, step_current=3, training_active=True)
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), port=0) as server:
        context = browser.new_context()
        page = context.new_page()
        try:
            response = page.goto(server.url)  # without the token: refused, with the hint
            assert response is not None and response.status == 403
            assert "monitor_token" in page.content() or "token" in page.content()
            page.goto(server.login_url)
            assert page.url == server.url
            wait_until(page, "#c-step", lambda t: t == "3")
            assert server.token not in page.content()
            (cookie,) = context.cookies()
            assert cookie["name"] == server.cookie_name and cookie["value"] == server.token
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
            page.click("#btn-save")  # the buttons work with the cookie alone
            wait_until(page, "#toast", lambda t: t.startswith("queued: save"))
        finally:
            context.close()


def test_activity_panels_agree_on_one_scale(live) -> None:
    page, _, _ = live
    wait_count(page, "#layers tr", lambda n: n == 5)
    peak = wait_until(page, "#peak-layer", lambda t: "Final_Fusion" in t)
    assert peak == "Layer: Final_Fusion | 0.100 (low)"
    assert page.text_content("#peak-ind") == "0.100"
    legend = page.text_content("#activity-legend") or ""
    assert "mean |activation|" in legend and "low < 0.5" in legend
    levels = [page.text_content(f"#layers tr:nth-child({i}) td:nth-child(3)") for i in range(1, 6)]
    assert levels == ["low"] * 5
    values = [
        float(page.text_content(f"#layers tr:nth-child({i}) td:nth-child(2)") or "nan")
        for i in range(1, 6)
    ]
    assert max(values) == 0.1 and all(0 < v <= 0.1 for v in values)
    track = _box(page, "#stream-fusion .track")["width"]
    for stream, expected in (("backward", 0.0624), ("forward", 0.0824), ("fusion", 0.1)):
        text = page.text_content(f"#stream-{stream} .val") or ""
        assert text.startswith(f"{expected:.3f}".rstrip("0")[:5]) or text.startswith(
            f"{expected:.3f}"
        ), text
        fill = page.locator(f"#stream-{stream} .fill")
        assert "low" in (fill.get_attribute("class") or "")  # green, never full and red
        width = _box(page, f"#stream-{stream} .fill")["width"]
        assert width == pytest.approx(expected / 2.0 * track, abs=2.0)


def test_config_scrolls_to_the_settings_once_they_are_drawn(live) -> None:
    page, _, server = live
    page.goto(f"{server.url}config?token={server.token}")
    assert page.url == server.url + "config"
    page.wait_for_selector("#cfg-grad_clip")
    wait_until(page, "#c-step", lambda t: t[:1].isdigit())
    wait_count(page, "#layers tr", lambda n: n == 5)
    for _ in range(3):  # and it stays there while data keeps arriving
        top = _box(page, "#config-panel")["y"]  # at the top, or the page is scrolled to its end
        assert -2 <= top <= 450, f"settings panel at y={top}, not in view"
        time.sleep(0.7)


def test_charts_have_labelled_axes_a_baseline_and_hover_values(live) -> None:
    page, _, _ = live
    wait_count(page, "#val-chart circle", lambda n: n >= 6)  # 3 validations
    for chart, ylabel in (("#loss-chart", "total loss"), ("#val-chart", "quality (SSIM)")):
        labels = page.locator(f"{chart} .axis-label").all_text_contents()
        assert labels == ["step", ylabel]
        y_ticks = page.locator(f"{chart} .y-ticks text").all_text_contents()
        x_ticks = page.locator(f"{chart} .x-ticks text").all_text_contents()
        assert len(y_ticks) >= 3 and len(x_ticks) >= 2
        assert [float(v) for v in y_ticks] == sorted(float(v) for v in y_ticks)
    loss_ticks = [float(v) for v in page.locator("#loss-chart .y-ticks text").all_text_contents()]
    assert loss_ticks[0] == 0.0  # the loss axis starts at 0
    val_ticks = [float(v) for v in page.locator("#val-chart .y-ticks text").all_text_contents()]
    assert val_ticks[-1] - val_ticks[0] >= 0.02  # never a 0.0001 difference stretched tall
    box = _box(page, "#val-chart .hit")
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    tip = wait_until(page, "#val-chart .tip text", lambda t: t.startswith("step"))
    assert "model: 0.6" in tip and "input (bicubic): 0.58" in tip
    assert page.get_attribute("#val-chart .tip", "visibility") == "visible"


def test_a_run_that_died_shows_stopped_not_training(browser: Any, tmp_path: Path) -> None:
    """`vsrkit monitor` on a run whose files stopped changing an hour ago."""
    import subprocess
    import sys

    run = tmp_path / "runs" / "exp1"  # a relative path on the page (it goes into the docs)
    run.mkdir(parents=True)
    for step in (100, 200):
        doc = {
            "step_current": step,
            "step_max": 1000,
            "training_active": True,
            "total_loss_value": 1.0 / step,
            "quality_ki_value": 0.6 + step / 10000,
            "quality_lr_value": 0.58,
            "iteration_duration": 0.5,
            "eta_total_formatted": "00:06:40",
            "learning_rate_value": 1e-4,
            "epoch_num": 1,
            "l1_loss_value": 0.6 / step,
            "ms_loss_value": 0.4 / step,
            "l1_weight_current": 0.6,
            "ms_weight_current": 0.4,
            "layer_activity_map": {
                "Backward_Block_01": 71.0,
                "Forward_Block_01": 83.0,
                "Final_Fusion": 100.0,
            },
            "layer_activity_peak": {"layer": "Final_Fusion", "value": 0.82},
        }
        (run / f"Statistik_{step}.json").write_text(json.dumps(doc))
    old = time.time() - 3600
    for path in run.iterdir():
        os.utime(path, (old, old))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsrkit", "monitor", "runs/exp1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        assert proc.stdout is not None
        url = re.search(r"(http://\S+\?token=\S+)", proc.stdout.readline())
        assert url, "no login URL printed"
        page.goto(url.group(1))
        page.wait_for_selector("#b-ended.on", timeout=15000)
        assert page.text_content("#b-ended") == "stopped"
        assert "no sign of life" in (page.get_attribute("#b-ended", "title") or "")
        assert page.locator("#b-training.on").count() == 0
        assert page.text_content("#c-eta") == "-"  # no ETA for a run that is not running
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "monitor_stopped_run.png"
        page.screenshot(path=str(shot), full_page=False)
        if os.environ.get("VSRKIT_UPDATE_DOCS_SCREENSHOT") == "1":
            shutil.copyfile(shot, Path(__file__).resolve().parents[2] / "docs" / shot.name)
    finally:
        page.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_eta_and_speed_agree(live) -> None:
    page, _, _ = live
    speed = wait_until(page, "#c-speed", lambda t: t.endswith("it/s"))
    rate = float(speed.split()[0])
    step_text = wait_until(page, "#c-step", lambda t: "/" in t)
    step, total = (int(x) for x in step_text.split(" / "))
    eta = page.text_content("#c-eta") or ""
    h, m, s = (int(x) for x in eta.split(":"))
    seconds = h * 3600 + m * 60 + s
    assert seconds == pytest.approx((total - step) / rate, rel=0.02)
    assert (page.text_content("#c-eta-epoch") or "").startswith(f"at {speed}")
