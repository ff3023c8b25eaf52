"""The terminal view: a compact panel refreshed in place, and single-key actions.

On a terminal it redraws a panel (progress, losses, weights, the peak-activity bar coloured
0-0.5 green, 0.5-1 cyan, 1-1.5 yellow, 1.5+ red, the stream overview) and reads keys:
``v`` validate, ``p`` pause/resume, ``c`` a numbered menu of the live settings (values go
through ``RuntimeConfigManager.submit``), ``q`` save and stop. Like the web page it only
reads the snapshot and queues actions. When stdout is not a terminal it writes a plain log
line now and then instead. Any width works: lines are cut to the terminal's width.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import select
import shutil
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

from vsrkit._text import printable
from vsrkit.monitor.actions import ActionQueue
from vsrkit.monitor.sources import config_view, read_snapshot, submit_config
from vsrkit.monitor.status import LOSS_TERMS, status_document

__all__ = ["TerminalView", "render_panel"]

logger = logging.getLogger(__name__)

_RESET = "\x1b[0m"
_COLORS = {
    "green": "\x1b[32m",
    "cyan": "\x1b[36m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "": "",
}
_BAND = {"low": "green", "moderate": "cyan", "elevated": "yellow", "high": "red"}
_SHORT = {"l1": "L1", "ms": "MS", "grad": "Grad", "perceptual": "Perc"}
Segment = tuple[str, str]  # (text, colour name)


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format(value, spec)


def _fit(segments: list[Segment], width: int, color: bool) -> str:
    """Join segments, cut to ``width`` visible characters, colour them if asked."""
    out, left = [], max(0, width)
    for text, name in segments:
        if left <= 0:
            break
        text = printable(text, None)[:left]  # a layer or key name cannot move the cursor
        left -= len(text)
        code = _COLORS.get(name, "") if color else ""
        out.append(f"{code}{text}{_RESET}" if code else text)
    return "".join(out)


def _band_of(position: float) -> str:
    return (
        "green"
        if position < 0.5
        else "cyan"
        if position < 1.0
        else "yellow"
        if position < 1.5
        else "red"
    )


def _bar(value: float, cells: int, scale: float = 2.0, color: str | None = None) -> list[Segment]:
    """A bar of ``cells`` cells for 0..``scale``; filled cells coloured by their band (or
    all in ``color``)."""
    cells = max(1, cells)
    filled = round(min(max(value, 0.0), scale) / scale * cells)
    segs: list[Segment] = []
    for i in range(cells):
        band = color or _band_of((i + 0.5) / cells * scale)
        char, name = ("█", band) if i < filled else ("░", "dim")
        if segs and segs[-1][1] == name:
            segs[-1] = (segs[-1][0] + char, name)
        else:
            segs.append((char, name))
    return segs


def render_panel(doc: Mapping[str, Any], width: int, *, color: bool = True) -> list[str]:
    """The panel's lines for a status document, each at most ``width`` characters wide.

    Example:
        >>> lines = render_panel({"iteration": 5}, 40, color=False)
        >>> lines[0].startswith("vsrkit  step 5") and all(len(x) <= 40 for x in lines)
        True
    """
    width = max(1, width)
    state = (
        "PAUSED"
        if doc.get("is_paused")
        else "VALIDATING"
        if doc.get("is_validating")
        else ("TRAINING" if doc.get("is_training") else "idle")
    )
    step = _fmt(doc.get("iteration"), "d") if isinstance(doc.get("iteration"), int) else "-"
    if isinstance(doc.get("step_max"), int):
        step += f"/{doc['step_max']}"
    prog = doc.get("progress")
    rows: list[list[Segment]] = [
        [
            ("vsrkit  ", "bold"),
            (f"step {step}", "bold"),
            (f" ({prog * 100:.1f}%)" if isinstance(prog, float) else "", ""),
            (f"  epoch {_fmt(doc.get('epoch'))}", ""),
            (f"  [{state}]", "yellow" if state == "PAUSED" else "cyan"),
        ],
        [
            (f"loss {_fmt(doc.get('total_loss'))}  lr {_fmt(doc.get('learn_rate'), '.3g')}", ""),
            (f" ({doc['lr_phase']})" if doc.get("lr_phase") else "", "dim"),
            (f"  {_fmt(doc.get('iter_speed'), '.2f')} it/s", ""),
            (f"  ETA {_fmt(doc.get('time_remaining'))}", ""),
            (f"  mem {_fmt(_memory(doc), '.2f')} GiB", ""),
        ],
    ]
    losses = (doc.get("loss_distribution") or {}).get("values", {})
    weights = (doc.get("weight_distribution") or {}).get("values", {})
    rows.append(
        [
            (
                " | ".join(
                    f"{_SHORT[t]} {_fmt(losses.get(t))} w{_fmt(weights.get(t), '.2f')}"
                    for t in LOSS_TERMS
                ),
                "",
            )
        ]
    )
    fields = doc.get("fields") or {}
    if "quality_ki_value" in fields or doc.get("best_score") is not None:
        rows.append(
            [
                (
                    f"quality {_fmt(fields.get('quality_ki_value'))} (input "
                    f"{_fmt(fields.get('quality_lr_value'))}, best {_fmt(doc.get('best_score'))})",
                    "",
                )
            ]
        )
    peak = doc.get("peak_activity")
    full = float((doc.get("activity_scale") or {}).get("full") or 2.0)  # the page's scale
    if peak:
        head = f"peak {peak['layer']} {peak['value']:.3f} "
        cells = max(1, min(40, width - len(head) - 2))
        band = _BAND.get(peak.get("level") or "", "")
        rows.append([(head, band), ("[", ""), *_bar(peak["value"], cells, full), ("]", "")])
        if peak.get("warning"):
            rows.append([("  " + peak["warning"], "red" if peak["value"] > 2.0 else "yellow")])
    for name, label in (("backward", "Backward"), ("forward", "Forward "), ("fusion", "Fusion  ")):
        s = (doc.get("streams") or {}).get(name) or {}
        if s.get("average") is None:
            continue
        unit = "%" if full == 100.0 else ""  # a percent map without the peak's raw value
        tail = f" {s['average']:.3g}{unit} ({s['layers']})"
        cells = max(1, min(20, width - len(label) - len(tail) - 1))
        band = _BAND.get(s.get("level") or "", "cyan")
        rows.append([(label + " ", ""), *_bar(s["average"], cells, full, band), (tail, "")])
    rows.append([("keys: v validate  p pause/resume  c settings  q save+stop", "dim")])
    return [_fit(r, width, color) for r in rows]


def _memory(doc: Mapping[str, Any]) -> Any:
    """GPU memory, or this process's resident memory where there is no GPU."""
    gpu = doc.get("gpu_memory")
    return gpu if gpu is not None else doc.get("rss_gb")


def _log_line(doc: Mapping[str, Any]) -> str:
    step = doc.get("iteration")
    total = f"/{doc['step_max']}" if isinstance(doc.get("step_max"), int) else ""
    return (
        f"step {_fmt(step)}{total} | loss {_fmt(doc.get('total_loss'))} | lr "
        f"{_fmt(doc.get('learn_rate'), '.3g')} | {_fmt(doc.get('iter_speed'), '.2f')} it/s | "
        f"ETA {_fmt(doc.get('time_remaining'))}"
    )


def _parse_value(text: str) -> Any:
    """A typed value: JSON (``3``, ``1e-4``, ``true``, ``"x"``) or else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class TerminalView:
    """Show the run in the terminal and turn keys into queued actions.

    Args:
        snapshot: A ``MetricsSnapshot`` (or a callable returning statistics fields).
        actions: Where ``v``/``p``/``q`` queue ``validate``, ``pause``/``resume``,
            ``save`` + ``stop``.
        config: A ``RuntimeConfigManager`` for the ``c`` menu, or ``None``.
        stream: Output; a terminal gets the panel, anything else plain log lines.
        stdin: Key input; read only when it is a terminal.
        refresh: Seconds between two panel redraws.
        log_every: Seconds between two log lines when ``stream`` is not a terminal.
        color: ANSI colours (default: when ``stream`` is a terminal).

    Example:
        >>> import io
        >>> view = TerminalView(lambda: {"step_current": 7}, ActionQueue(), stream=io.StringIO(),
        ...                     stdin=io.StringIO())
        >>> view.draw()  # not a terminal: one plain log line
        >>> view.stream.getvalue().split(" | ")[0]
        'step 7'
    """

    def __init__(
        self,
        snapshot: Any,
        actions: ActionQueue,
        config: Any = None,
        *,
        stream: TextIO = sys.stdout,
        stdin: TextIO = sys.stdin,
        refresh: float = 1.0,
        log_every: float = 30.0,
        color: bool | None = None,
    ) -> None:
        self.snapshot, self.actions, self.config = snapshot, actions, config
        self.stream, self.stdin = stream, stdin
        self.refresh, self.log_every = refresh, log_every
        self.is_tty = _isatty(stream)
        self.color = self.is_tty if color is None else color
        self._stop = threading.Event()
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._out = threading.Lock()
        self._menu = threading.Event()  # set while the settings menu owns the terminal
        self._drawn = 0  # lines of the last panel (to redraw in place)
        self._threads: list[threading.Thread] = []
        self._term_attrs: Any = None
        self._paused_local = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> TerminalView:
        """Start drawing (and reading keys when stdin is a terminal); returns ``self``."""
        if self._threads:
            return self
        self._stop.clear()
        self._threads.append(
            threading.Thread(target=self._draw_loop, daemon=True, name="vsrkit-terminal-view")
        )
        if self.is_tty and _isatty(self.stdin):
            self._enter_cbreak()
            self._threads.append(
                threading.Thread(target=self._key_loop, daemon=True, name="vsrkit-terminal-keys")
            )
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop the threads, restore the terminal, leave the last panel on screen."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2)
        self._threads.clear()
        self._leave_cbreak()

    def __enter__(self) -> TerminalView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- output ----------------------------------------------------------------------------
    def _document(self) -> dict[str, Any]:
        values, measured = read_snapshot(self.snapshot)
        return status_document(values, measured_at_step=measured)

    def _width(self) -> int:
        """The terminal's width; a pty that reports 0 columns (unset) counts as 80 (or
        ``COLUMNS``), so the panel is never cut to one character per line."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return columns if columns > 0 else shutil.get_terminal_size((80, 24)).columns

    def _write(self, text: str) -> None:
        with self._out, contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()

    def draw(self) -> None:
        """Redraw the panel in place (terminal) or write one log line (otherwise)."""
        doc = self._document()
        if not self.is_tty:
            self._write(_log_line(doc) + "\n")
            return
        lines = render_panel(doc, self._width() - 1, color=self.color)
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._write(up + "\x1b[J" + "\n".join(lines) + "\n")
        self._drawn = len(lines)

    def _draw_loop(self) -> None:
        interval = self.refresh if self.is_tty else self.log_every
        last_step: Any = object()
        while not self._stop.is_set():
            try:
                if not self._menu.is_set():
                    step = read_snapshot(self.snapshot)[0].get("step_current")
                    if self.is_tty or step != last_step:
                        self.draw()
                        last_step = step
            except Exception:  # noqa: BLE001 - a display problem must never end training
                logger.exception("terminal view: drawing failed")
            self._stop.wait(interval)

    def message(self, text: str) -> None:
        """Print a line above the panel: the panel is cleared, the line written, the panel
        drawn again below it (so the scrollback keeps the messages, not old panels)."""
        if not self.is_tty:
            self._write(text + "\n")
            return
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._write(up + "\x1b[J" + text + "\n")
        self._drawn = 0
        if not self._menu.is_set() and self._threads:
            with contextlib.suppress(Exception):
                self.draw()

    # -- input -----------------------------------------------------------------------------
    def _enter_cbreak(self) -> None:
        try:
            import termios
            import tty

            fd = self.stdin.fileno()
            self._term_attrs = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (ImportError, OSError, ValueError, AttributeError):
            self._term_attrs = None

    def _leave_cbreak(self) -> None:
        if self._term_attrs is None:
            return
        import termios

        with contextlib.suppress(OSError, ValueError):
            termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._term_attrs)
        self._term_attrs = None

    def _read_char(self) -> str | None:
        """One character, or None after a short wait (so ``stop`` is noticed).

        Bytes are decoded as UTF-8 across reads: ``²`` is one character, not two
        replacement marks; a character cut short reads as ``\ufffd``."""
        fd = self.stdin.fileno()
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            return None
        data = os.read(fd, 1)
        if not data:
            self._stop.wait(0.2)  # stdin closed: keys are over, the panel goes on
            return None
        text = self._utf8.decode(data)
        while not text:  # the next bytes of a character of several (UTF-8)
            more = os.read(fd, 1) if select.select([fd], [], [], 0.2)[0] else b""
            text = self._utf8.decode(more, final=not more)
        return text

    def _read_line(self, prompt: str) -> str | None:
        """A line typed by the user, echoed by us (cbreak mode); None on stop."""
        self._write(prompt)
        buf = ""
        while not self._stop.is_set():
            ch = self._read_char()
            if ch is None:
                continue
            if ch in "\r\n":
                self._write("\n")
                return buf
            if ch in ("\x7f", "\b"):
                if buf:
                    buf = buf[:-1]
                    self._write("\b \b")
            elif ch == "\x1b":
                self._write("\n")
                return ""
            elif ch.isprintable():
                buf += ch
                self._write(ch)
        return None

    def _key_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ch = self._read_char()
            except (OSError, ValueError):
                return
            if ch is None:
                continue
            try:
                self.handle_key(ch.lower())
            except Exception:  # noqa: BLE001
                logger.exception("terminal view: key %r failed", ch)

    def handle_key(self, key: str) -> None:
        """Act on one key: ``v``, ``p``, ``c``, ``q`` (others are ignored)."""
        if key == "v":
            self.actions.put("validate", source="terminal")
            self.message("validation requested: it runs at the next step")
        elif key == "p":
            paused = read_snapshot(self.snapshot)[0].get("training_paused")
            paused = self._paused_local if paused is None else bool(paused)
            command = "resume" if paused else "pause"
            self._paused_local = not paused
            self.actions.put(command, source="terminal")
            self.message(f"{command} requested")
        elif key == "c":
            self._menu.set()
            try:
                self.settings_menu()
            finally:
                self._menu.clear()
        elif key == "q":
            self.actions.put("save", source="terminal")
            self.actions.put("stop", source="terminal")
            self.message("stop requested: the run saves a checkpoint and ends")

    def settings_menu(self) -> None:
        """Numbered menu of the live settings; the entered value goes to ``config.submit``."""
        if self.config is None:
            self.message("no runtime settings attached")
            return
        rows = config_view(self.config)["settings"]
        lines = ["", "RUNTIME SETTINGS (live)"]
        for i, row in enumerate(rows, 1):
            lo, hi = row.get("minimum"), row.get("maximum")
            rng = f" ({_fmt(lo)}-{_fmt(hi)})" if lo is not None or hi is not None else ""
            lines.append(f"{i:3d}. {row['key']}{rng} = {_fmt(row.get('value'))}")
        self.message("\n".join(lines))
        choice = self._read_line("number (Enter cancels): ")
        if not choice or not choice.strip().isdecimal() or not 1 <= int(choice) <= len(rows):
            self.message("settings: cancelled" if not choice else f"settings: no entry {choice!r}")
            return
        row = rows[int(choice) - 1]
        text = self._read_line(f"new value for {row['key']} ({row.get('expected', '')}): ")
        if not text:
            self.message("settings: cancelled")
            return
        accepted, errors, note = submit_config(
            self.config, {row["key"]: _parse_value(text)}, source="terminal"
        )
        if accepted:
            self.message(f"{row['key']} = {text} accepted: applied at the next config poll")
        else:
            reason = errors.get(row["key"]) or note or "; ".join(errors.values())
            self.message(f"{row['key']} refused: {reason}")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
