"""The run monitor: a live web page with a JSON API and actions, and a terminal view.

Components decide, the loop acts: the monitor only reads a snapshot of the statistics
fields and queues actions; the loop drains the :class:`ActionQueue` at a step boundary.

Example:
    >>> from vsrkit.monitor import ActionQueue, MonitorServer
    >>> q = ActionQueue()
    >>> with MonitorServer(snapshot=lambda: {"step_current": 1}, actions=q, port=0) as srv:
    ...     srv.url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsrkit._lazy import lazy_names

_LAZY: dict[str, str] = {
    "COMMANDS": "vsrkit.monitor.actions",
    "Action": "vsrkit.monitor.actions",
    "ActionQueue": "vsrkit.monitor.actions",
    "UnknownCommandError": "vsrkit.monitor.actions",
    "MonitorServer": "vsrkit.monitor.server",
    "MonitorServerError": "vsrkit.monitor.server",
    "MonitorPortError": "vsrkit.monitor.server",
    "TOKEN_HEADER": "vsrkit.monitor.server",
    "RunFolderSource": "vsrkit.monitor.runfolder",
    "TerminalView": "vsrkit.monitor.terminal",
    "status_document": "vsrkit.monitor.status",
    "SnapshotSource": "vsrkit.monitor.sources",
    "ConfigSource": "vsrkit.monitor.sources",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.monitor.actions import (  # noqa: F401
        COMMANDS,
        Action,
        ActionQueue,
        UnknownCommandError,
    )
    from vsrkit.monitor.runfolder import RunFolderSource  # noqa: F401
    from vsrkit.monitor.server import (  # noqa: F401
        TOKEN_HEADER,
        MonitorPortError,
        MonitorServer,
        MonitorServerError,
    )
    from vsrkit.monitor.sources import ConfigSource, SnapshotSource  # noqa: F401
    from vsrkit.monitor.status import status_document  # noqa: F401
    from vsrkit.monitor.terminal import TerminalView  # noqa: F401


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
