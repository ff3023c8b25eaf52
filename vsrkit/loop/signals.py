"""Turn SIGTERM/SIGINT into a flag that the training loop polls (never save inside a handler).

(Formerly ``vsrkit.checkpoint.signals``; that import path still works, with a
``DeprecationWarning``.)
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignal"]

logger = logging.getLogger(__name__)


class StopSignal:
    """Context manager that records SIGTERM/SIGINT instead of dying, so the loop can save.

    While active, the first signal only sets :attr:`requested` and :attr:`signal_name`; the
    loop checks the flag once per step and writes ``save(step, state, tag="emergency")`` with
    the real step, then stops. A second SIGINT (Ctrl-C twice) raises ``KeyboardInterrupt`` as
    usual, so an impatient user can still break out; a repeated SIGTERM is only logged.
    On exit the previous handlers are put back.

    Signal handlers can only be installed from the main thread of the main interpreter:
    entering it from another thread raises ``RuntimeError``.

    Example:
        >>> import os, signal
        >>> with StopSignal() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     stop.requested, stop.signal_name
        (True, 'SIGTERM')
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGTERM", "SIGINT")) -> None:
        self._signums = []
        for name in signals:
            num = getattr(signal, name, None)
            if not isinstance(num, signal.Signals):
                raise ValueError(f"StopSignal: unknown signal name {name!r}")
            self._signums.append(num)
        self.requested = False
        self.signal_name: str | None = None
        self.count = 0
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.requested:
            logger.warning("%s received again; still stopping after the emergency save", name)
            return
        self.requested, self.signal_name = True, name
        logger.warning("%s received: stopping at the end of this step", name)

    def reset(self) -> None:
        """Clear the flag (e.g. after the loop has handled it and goes on)."""
        self.requested, self.signal_name, self.count = False, None, 0

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "StopSignal must be entered in the main thread (signal handlers live there)"
            )
        for num in self._signums:
            self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for num, prev in self._previous.items():
            signal.signal(num, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()
