"""TerminalView through a real pseudo-terminal (child process), and the panel's layout."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.monitor import ActionQueue, TerminalView, status_document
from vsrkit.monitor.terminal import render_panel

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from vsrkit.config import RuntimeConfigManager, example_settings
    from vsrkit.monitor import ActionQueue, TerminalView
    from vsrkit.stats import MetricsSnapshot

    snap, queue = MetricsSnapshot(), ActionQueue()
    cfg = RuntimeConfigManager(sys.argv[1], initial=example_settings())
    view = TerminalView(snap, queue, cfg, refresh=0.1).start()
    seen, paused, step = [], False, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "stop" not in seen:
        step += 1
        snap.update(step, step_current=step, step_max=100000, total_loss_value=1.0 / step,
                    l1_loss_value=0.5 / step, l1_weight_current=0.7, ms_weight_current=0.3,
                    training_active=True, training_paused=paused,
                    layer_activity_map={"Backward_1": 0.3, "Forward_1": 0.9,
                                        "Final_Fusion": 1.6})
        for action in queue.drain():  # the loop acts at a step boundary
            seen.append(action.command)
            paused = {"pause": True, "resume": False}.get(action.command, paused)
        time.sleep(0.02)
    view.stop()
    print("RESULT " + json.dumps({"actions": seen, "grad_clip": cfg.latest["grad_clip"]}))
    """
)


class Pty:
    """A child Python process whose stdin/stdout/stderr are a pseudo-terminal."""

    def __init__(self, code: str, args: list[str], cols: int, rows: int = 40) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.out = b""

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            text = self.out.decode("utf-8", "replace")
            match = re.search(pattern, ANSI.sub("", text))
            if match:
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen; output:\n{text[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:  # child closed the terminal
                    time.sleep(0.05)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def pty_child(tmp_path: Path):
    children: list[Pty] = []

    def start(cols: int) -> Pty:
        child = Pty(CHILD, [str(tmp_path)], cols)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def test_keys_queue_actions_and_settings_go_through_submit(pty_child) -> None:
    term = pty_child(100)
    term.expect(r"keys: v validate(.|\n)*keys: v validate")  # drawn twice
    term.send("v")
    term.expect(r"validation requested")
    term.send("p")
    term.expect(r"pause requested")
    term.expect(r"\[PAUSED\]")  # the loop acted on it and the panel shows it
    term.send("p")
    term.expect(r"resume requested")
    term.send("c")
    number = term.expect(r"(\d+)\. grad_clip \(0\.1-10\)").group(1)
    term.expect(r"number \(Enter cancels\): ")
    term.send("\u00b2\r")  # passes str.isdigit, not int(): one line, the menu stays
    term.expect(r"settings: no entry '\u00b2'")
    term.send("c")
    term.expect(r"number \(Enter cancels\): .*\n.*RUNTIME SETTINGS|number \(Enter cancels\): $")
    term.send(number + "\r")
    term.expect(r"new value for grad_clip")
    term.send("99\r")
    term.expect(r"grad_clip refused: got 99, expected a number in \[0\.1, 10\]")
    term.send("c")
    term.expect(r"number \(Enter cancels\): .*\n.*RUNTIME SETTINGS|number \(Enter cancels\): $")
    term.send(number + "\r")
    term.send("2.5\r")
    term.expect(r"grad_clip = 2\.5 accepted")
    term.send("q")
    result = json.loads(term.expect(r"RESULT (\{.*\})").group(1))
    assert result == {"actions": ["validate", "pause", "resume", "save", "stop"], "grad_clip": 2.5}
    raw = term.out.decode("utf-8", "replace")
    assert "\x1b[31m█" in raw  # the peak bar reaches the red band (activity 1.6)
    assert "\x1b[32m█" in raw and "\x1b[36m█" in raw  # green and cyan cells below it
    assert re.search(r"\x1b\[\d+F", raw)  # redrawn in place (cursor up), not scrolled
    assert "Traceback" not in raw
    assert term.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("cols", [1, 12])
def test_a_narrow_terminal_never_crashes_it(pty_child, cols: int) -> None:
    term = pty_child(cols)
    term.expect(r"vsrk|v")  # something was drawn
    time.sleep(0.3)
    term.send("q")
    term.expect(r"RESULT")
    raw = term.out.decode("utf-8", "replace")
    assert "Traceback" not in raw
    panel = raw.split("RESULT")[0]
    for line in ANSI.sub("", panel).splitlines():
        if "requested" not in line:  # messages wrap; the panel's own lines are cut
            assert len(line) <= max(cols, 1)
    assert term.proc.wait(timeout=10) == 0


docs = st.fixed_dictionaries(
    {},
    optional={
        "step_current": st.integers(0, 10**9),
        "step_max": st.integers(1, 10**9),
        "total_loss_value": st.floats(allow_nan=False, allow_infinity=False),
        "learning_rate_value": st.floats(0, 1),
        "lr_phase_name": st.text(max_size=30),
        "training_paused": st.booleans(),
        "quality_ki_value": st.floats(0, 1),
        "layer_activity_map": st.dictionaries(
            st.text(min_size=1, max_size=40), st.floats(0, 10), max_size=6
        ),
    },
)


@given(docs, st.integers(1, 200))
def test_panel_lines_fit_any_width(values: dict, width: int) -> None:
    lines = render_panel(status_document(values, now=0.0), width, color=True)
    assert lines and all(len(ANSI.sub("", line)) <= width for line in lines)


def test_not_a_terminal_writes_plain_log_lines() -> None:
    out = io.StringIO()
    step = {"step_current": 1}
    view = TerminalView(
        lambda: dict(step), ActionQueue(), stream=out, stdin=io.StringIO(), log_every=0.02
    )
    view.start()
    time.sleep(0.15)
    step["step_current"] = 2
    time.sleep(0.15)
    view.stop()
    lines = out.getvalue().splitlines()
    assert [ln.split(" | ")[0] for ln in lines] == ["step 1", "step 2"]  # one per new step
    assert "\x1b" not in out.getvalue()


def test_the_panel_reads_activity_on_the_pages_scale() -> None:
    doc = status_document(
        {
            "layer_activity_map": {"Backward_1": 62.4, "Forward_1": 82.4, "Final_Fusion": 100.0},
            "layer_activity_peak": {"layer": "Final_Fusion", "value": 0.10},
        }
    )
    lines = render_panel(doc, 100, color=False)
    assert any(line.startswith("peak Final_Fusion 0.100 ") for line in lines)
    streams = {
        line.split()[0]: line for line in lines if line.split()[0] in ("Backward", "Forward")
    }
    assert streams["Backward"].endswith(" 0.0624 (1)") and "%" not in streams["Backward"]
    assert streams["Forward"].endswith(" 0.0824 (1)")
    assert all(line.count("█") <= 2 for line in streams.values())  # 0.08 of 2.0: nearly empty


def test_layer_names_cannot_move_the_cursor() -> None:
    doc = status_document(
        {
            "layer_activity_map": {"Final\x1b[2J_Fusion": 1.0},
            "layer_activity_peak": {"layer": "Final\x1b[2J_Fusion\n", "value": 0.5},
        }
    )
    text = "\n".join(render_panel(doc, 120, color=False))
    assert "\x1b" not in text and "Final\\x1b[2J_Fusion\\n" in text
