"""What a run shows a person: the progress line, the log file, the monitor, the summary."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from vsrkit.config import RuntimeConfigManager
from vsrkit.errors import VsrkitError
from vsrkit.monitor.actions import ActionQueue
from vsrkit.stats import MetricsSnapshot
from vsrkit.train.config import TrainConfig
from vsrkit.train.distributed import DistContext

__all__ = [
    "ProgressLine",
    "log_setup",
    "setup_logging",
    "start_monitor",
    "start_terminal_view",
    "summary",
]

logger = logging.getLogger("vsrkit.train")


class ProgressLine:
    """A live progress line on a terminal, plain log lines otherwise.

    Without a terminal a line is written every ``stride`` steps (a multiple of the log
    interval: 1, 2 or 5 times a power of ten of them, chosen after the first line so that lines
    come about every ``plain_seconds``) and at the last step, so they fall on even steps.

    Example:
        >>> import io
        >>> p = ProgressLine(total=100, stream=io.StringIO())
        >>> p.update(step=10, loss=0.5, lr=1e-4, its=3.2, eta="00:00:28")
    """

    def __init__(self, total: int, *, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.plain_seconds = 5.0
        self.stride: int | None = None  # steps between two plain lines, set by the first one
        self._first: tuple[int, float] | None = None
        self.view: Any = None  # a TerminalView that draws the progress instead

    def attach(self, view: Any) -> None:
        """Let a terminal panel (anything with ``message(text)``) show progress and messages."""
        self.view = view

    def update(self, *, step: int, loss: float, lr: float, its: float, eta: str | None) -> None:
        """Show the state at ``step`` (called once per log interval)."""
        if self.view is not None:
            return
        width = len(str(self.total))
        line = (
            f"step {step:>{width}}/{self.total}  loss {loss:.5f}  lr {lr:.2e}  "
            f"{its:.2f} it/s  ETA {eta or '--:--:--'}"
        )
        if self.live:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif self._plain_due(step, its):
            self.stream.write(line + "\n")
            self.stream.flush()

    def _plain_due(self, step: int, its: float) -> bool:
        if step >= self.total:
            return True
        if self._first is None:
            self._first = (step, its)
            return True
        if self.stride is None:
            interval = max(1, step - self._first[0])  # the log interval in steps
            wanted = self.plain_seconds * its if its > 0 else interval
            self.stride = _nice_multiple(interval, wanted)
        return step % self.stride == 0

    def message(self, text: str) -> None:
        """Print a line without breaking the live progress line."""
        if self.view is not None:
            self.view.message(text)
            return
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.view is None:
            self.stream.write("\n")
            self.stream.flush()


def _nice_multiple(unit: int, wanted: float) -> int:
    """The smallest ``unit * k`` (k = 1, 2, 5, 10, 20, 50, ...) that is at least ``wanted``.

    Example:
        >>> _nice_multiple(10, 37.0), _nice_multiple(10, 3.0), _nice_multiple(7, 150.0)
        (50, 10, 350)
    """
    k = 1
    while unit * k < wanted:
        k = k * 5 // 2 if str(k).startswith("2") else k * 2
    return unit * k


def start_monitor(
    cfg: TrainConfig,
    ctx: DistContext,
    snapshot: MetricsSnapshot,
    runtime: RuntimeConfigManager,
    actions: ActionQueue | None,
    progress: ProgressLine,
) -> Any:
    """Start the web monitor on rank 0; a busy port costs a warning, never the run.

    Prints the page's URL with its access token on the console only (never in
    ``training.log``); the token is also in ``<run>/monitor_token``, readable by its owner.
    """
    if not (cfg.monitor and ctx.is_main):
        return None
    from vsrkit.monitor import MonitorServer
    from vsrkit.monitor.runfolder import HEARTBEAT_FILE

    try:
        server = MonitorServer(
            snapshot=snapshot,
            actions=actions,
            config=runtime,
            host=cfg.monitor_host,
            port=cfg.monitor_port,
            token_file=Path(runtime.run_dir) / HEARTBEAT_FILE,
            allow_remote=cfg.allow_remote_monitor,
        )
        server.start()
        where = f"token also in {server.token_file}" if server.token_file_written else ""
        progress.message(f"monitor: {server.login_url}" + (f"  ({where})" if where else ""))
    except (OSError, VsrkitError) as exc:
        logger.warning(
            "monitor not started on port %d: %s (use --monitor-port or --no-monitor)",
            cfg.monitor_port,
            exc,
        )
        return None
    return server


def setup_logging(run_dir: Path, ctx: DistContext, progress: ProgressLine) -> list[logging.Handler]:
    """``training.log`` in the run folder and readable lines on the console (rank 0 only)."""
    if not ctx.is_main:
        return []
    root = logging.getLogger("vsrkit")
    root.setLevel(logging.INFO)
    root.propagate = False  # these handlers show vsrkit's lines; no second copy via the root
    file_handler = logging.FileHandler(run_dir / "training.log", encoding="utf-8", delay=True)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = _ProgressHandler(progress)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_component_details)
    root.addHandler(file_handler)
    root.addHandler(console)
    return [file_handler, console]


def _component_details(record: logging.LogRecord) -> bool:
    """Console filter: the components' own INFO lines (``vsrkit.adaptive``, and the monitor's
    start line, whose console twin carries the token) go to the log file only; the recipe
    prints one line per decision (e.g. one per plateau event)."""
    own = record.name.startswith(("vsrkit.adaptive", "vsrkit.monitor.server"))
    return not (own and record.levelno < logging.WARNING)


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: ProgressLine) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.progress.message(self.format(record))


def summary(run_dir: Path, step: int, reason: str, best: float | None, tensorboard: bool) -> str:
    lines = [
        f"{reason} at step {step}. Run folder: {run_dir}",
        f"  checkpoints:  vsrkit checkpoints list {run_dir / 'checkpoints'}",
        f"  statistics:   vsrkit stats list {run_dir}",
    ]
    if best is not None:
        lines.insert(1, f"  best SSIM:    {best:.4f}")
    if tensorboard:
        lines.append(f"  TensorBoard:  tensorboard --logdir {run_dir / 'tensorboard'}")
    return "\n".join(lines)


def start_terminal_view(
    cfg: TrainConfig,
    snapshot: MetricsSnapshot,
    runtime: RuntimeConfigManager,
    actions: ActionQueue | None,
    progress: ProgressLine,
) -> Any:
    """The live terminal view on rank 0 (``None`` without a terminal or with it turned off)."""
    if actions is None or not cfg.terminal_view or not progress.live:
        return None
    from vsrkit.monitor import TerminalView

    view = TerminalView(snapshot, actions, runtime, stream=progress.stream).start()
    progress.attach(view)
    return view


def log_setup(cfg: TrainConfig, ctx: DistContext, amp: Any, threads: Any) -> None:
    """The run's set-up in ``training.log``: device, precision, threads, retention."""
    logger.info(
        "device %s, world size %d, amp %s, %s memory format, %d CPU thread(s) (%s)",
        ctx.device,
        ctx.world_size,
        amp or "off",
        "channels_last" if cfg.channels_last else "contiguous",
        threads.threads,
        threads.reason,
    )
    logger.info(
        "retention: the %d newest regular checkpoints, the best by SSIM, the newest emergency "
        "checkpoint and the one a resume would pick are kept",
        cfg.keep_last,
    )
