"""The web monitor: a standard-library HTTP server in a daemon thread.

It only *reads* the snapshot and *queues* actions; the loop drains the
:class:`~vsrkit.monitor.ActionQueue` at a step boundary and acts. The status document is built
at most ``max_rate`` times per second and cached, and no lock is held while a socket is
written, so a busy page never slows training noticeably.

Routes: ``GET /``, ``GET /config``, ``GET /api/status``, ``GET /api/stats``, ``GET /events``
(Server-Sent Events), ``GET /api/config``, ``POST /api/config``, ``POST /api/action``.
Security: loopback by default, Host allow-list, per-run token header on POSTs, JSON only,
body size cap, socket timeouts, strict CSP, ``X-Frame-Options: DENY``, ``no-store``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from vsrkit._system import process_rss_gib
from vsrkit.errors import VsrkitError
from vsrkit.monitor._http import MonitorHandler
from vsrkit.monitor._page import Page
from vsrkit.monitor.actions import ActionQueue
from vsrkit.monitor.sources import config_view, read_snapshot, submit_config
from vsrkit.monitor.status import status_document

__all__ = ["TOKEN_HEADER", "MonitorPortError", "MonitorServer", "MonitorServerError"]

logger = logging.getLogger(__name__)

#: Request header that carries the per-run token on ``POST`` requests.
TOKEN_HEADER = "X-Vsrkit-Token"

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class MonitorServerError(VsrkitError):
    """The monitor could not start (port in use, remote address without ``allow_remote``)."""


class MonitorPortError(MonitorServerError, OSError):
    """The address could not be bound (port in use, address not available).

    Also an :class:`OSError`, so ``except OSError`` around :meth:`MonitorServer.start` works.
    """


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _History:
    """Loss and validation history sampled from the snapshot (for the page's charts).

    The loss history keeps at most ``maxlen`` points over the whole run: when it overflows,
    every other point is dropped (the first and the latest stay) and the sampling stride
    doubles.
    """

    def __init__(self, maxlen: int) -> None:
        self.maxlen = max(3, maxlen)
        self.loss: list[list[Any]] = []
        self.stride = 1
        self.validations: deque[dict[str, Any]] = deque(maxlen=self.maxlen)
        self._last_val: Any = None

    def observe(self, values: Mapping[str, Any], measured: Mapping[str, int]) -> None:
        step, loss = values.get("step_current"), values.get("total_loss_value")
        if isinstance(step, int) and isinstance(loss, (int, float)):
            if self.loss and self.loss[-1][0] > step:  # a restart from an earlier step
                self.loss, self.stride = [], 1
            if not self.loss or step - self.loss[-1][0] >= self.stride:
                self.loss.append([step, loss])
                if len(self.loss) > self.maxlen:  # thin out, keeping the first and the latest
                    self.loss = self.loss[:-1:2] + self.loss[-1:]
                    self.stride *= 2
        quality = values.get("quality_ki_value")
        if quality is None:
            return
        val_step = measured.get("quality_ki_value", step)
        key = (val_step, quality, values.get("validation_loss_value"))
        if key != self._last_val:
            self._last_val = key
            self.validations.append(
                {
                    "step": val_step,
                    "quality_ki": quality,
                    "quality_lr": values.get("quality_lr_value"),
                    "improvement": values.get("quality_improvement_value"),
                    "validation_loss": values.get("validation_loss_value"),
                    "best": values.get("best_quality_ever"),
                }
            )


class MonitorServer:
    """Serve the live monitor page and its JSON API for one run.

    Args:
        snapshot: A :class:`~vsrkit.stats.MetricsSnapshot` (anything with ``as_dict()``) or
            a callable returning a mapping of statistics fields.
        actions: Queue the buttons write into; ``None`` makes the monitor read-only.
        config: A ``RuntimeConfigManager`` (``current``, ``submit``), or ``None``.
        host: Address to bind. Anything but loopback needs ``allow_remote=True``.
        port: TCP port; ``0`` picks a free one (read it back from :attr:`port`).
        token: Per-run secret required in the ``X-Vsrkit-Token`` header of every POST
            (the served page carries it); random when ``None``.
        allow_remote: Permit a non-loopback ``host`` (logs a warning).
        allowed_hosts: Extra names accepted in the ``Host`` header (DNS-rebinding guard).
        stats: Callable returning the full statistics document for ``/api/stats``;
            default: the snapshot's fields with their ``measured_at_step``.
        extra: Callable returning more keys merged into the status document
            (``vsrkit monitor`` adds the run folder's history this way).
        max_rate: Build the status document at most this many times per second.
        sse_interval: Seconds between two checks for a new document on ``/events``.
        max_body: Largest accepted request body in bytes (larger: 413).
        max_streams: Most concurrent ``/events`` streams (more: 503, the page polls instead).
        max_request_rate: Requests per second the server answers, all clients together;
            beyond it requests wait their turn (sleeping, without the GIL), so a flood of
            clients costs training a bounded share of the CPU. ``None``: no pacing.
        request_timeout: Socket timeout of a connection in seconds.
        history: Most points of the loss chart; the whole run is kept at a coarser step
            when it is full (and the latest validations, as many).
        read_only_note: Text shown on the page when actions are disabled.

    Example:
        >>> q = ActionQueue()
        >>> with MonitorServer(snapshot=lambda: {"step_current": 3}, actions=q, port=0) as srv:
        ...     srv.status_document()["iteration"]
        3
    """

    def __init__(
        self,
        *,
        snapshot: Any,
        actions: ActionQueue | None,
        config: Any = None,
        host: str = "127.0.0.1",
        port: int = 5050,
        token: str | None = None,
        allow_remote: bool = False,
        allowed_hosts: Iterable[str] = (),
        stats: Callable[[], Mapping[str, Any]] | None = None,
        extra: Callable[[], Mapping[str, Any]] | None = None,
        max_rate: float = 5.0,
        sse_interval: float = 1.0,
        max_body: int = 16 * 1024,
        max_streams: int = 16,
        max_request_rate: float | None = 50.0,
        request_timeout: float = 10.0,
        history: int = 500,
        read_only_note: str = "Read-only: actions are disabled.",
    ) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise MonitorServerError(
                f"monitor host {host!r} is not a loopback address: pass allow_remote=True "
                "(CLI: --allow-remote) to serve it beyond this machine"
            )
        if max_rate <= 0:
            raise ValueError(f"max_rate must be > 0, got {max_rate}")
        self.snapshot, self.actions, self.config = snapshot, actions, config
        self.host, self._requested_port = host, int(port)
        self.token = token or secrets.token_urlsafe(24)
        self.allow_remote = allow_remote
        self.allowed_hosts = {h.lower().strip("[]") for h in (*_LOOPBACK_NAMES, host)}
        self.allowed_hosts |= {h.lower().strip("[]") for h in allowed_hosts}
        self._stats, self._extra = stats, extra
        self.min_interval = 1.0 / max_rate
        self.sse_interval = sse_interval
        self.max_body, self.max_streams = max_body, max_streams
        if max_request_rate is not None and max_request_rate <= 0:
            raise ValueError(f"max_request_rate must be > 0 or None, got {max_request_rate}")
        self._pace_interval = 0.0 if max_request_rate is None else 1.0 / max_request_rate
        self._next_slot = 0.0
        self._pace_lock = threading.Lock()
        self.request_timeout = request_timeout
        self.read_only_note = read_only_note
        self.page = Page()
        self.stopping = threading.Event()
        self.streams = 0
        self._streams_lock = threading.Lock()
        self._history = _History(history)
        self._cache: tuple[float, bytes, dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.builds = 0  # how many times the status document was built (benchmarks read it)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MonitorServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            return self
        handler = type(
            "BoundHandler", (MonitorHandler,), {"monitor": self, "timeout": self.request_timeout}
        )
        try:
            httpd = ThreadingHTTPServer((self.host, self._requested_port), handler)
        except OSError as exc:
            raise MonitorPortError(
                f"cannot serve the monitor on {self.host}:{self._requested_port}: {exc.strerror}"
                " (choose another port)"
            ) from exc
        httpd.daemon_threads = True
        self._httpd = httpd
        self.stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="vsrkit-monitor",
        )
        self._thread.start()
        if not _is_loopback(self.host):
            logger.warning(
                "monitor serves on %s beyond this machine: anyone who reaches it can read the "
                "run; actions still need the token",
                self.url,
            )
        logger.info("monitor: %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (open ``/events`` streams end within a second)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served (the real one when constructed with ``port=0``)."""
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def read_only(self) -> bool:
        """True when there is no action queue (``vsrkit monitor RUN_DIR``)."""
        return self.actions is None

    # -- documents -------------------------------------------------------------------------
    def status_document(self) -> dict[str, Any]:
        """Build the ``/api/status`` document now (uncached)."""
        values, measured = read_snapshot(self.snapshot)
        self._history.observe(values, measured)
        doc = status_document(values, measured_at_step=measured)
        doc["loss_history"] = [list(p) for p in self._history.loss]
        doc["validation_history"] = list(self._history.validations)
        doc["actions"] = {
            "enabled": self.actions is not None,
            "pending": [a.to_dict() for a in self.actions.pending()] if self.actions else [],
            "note": self.read_only_note if self.actions is None else None,
        }
        # the card shows GPU memory, or this process's RSS where there is none (CPU runs)
        if doc.get("rss_gb") is None:  # the loop's figure, else this process's
            doc["rss_gb"] = None if self.read_only else process_rss_gib()
        doc["config_enabled"] = self.config is not None and not self.read_only
        doc["config_changes"] = config_view(self.config, changes_limit=20)["changes"]
        if self._extra is not None:
            doc.update(self._extra())
        self.builds += 1
        return doc

    def cached_status(self) -> tuple[bytes, dict[str, Any]]:
        """The status document as JSON bytes, rebuilt at most ``max_rate`` times a second."""
        now = time.monotonic()
        cache = self._cache
        if cache is not None and now - cache[0] < self.min_interval:
            return cache[1], cache[2]
        with self._cache_lock:  # one builder at a time; the others reuse its result
            cache = self._cache
            if cache is not None and time.monotonic() - cache[0] < self.min_interval:
                return cache[1], cache[2]
            doc = self.status_document()
            body = json.dumps(doc, allow_nan=False, default=str).encode("utf-8")
            self._cache = (time.monotonic(), body, doc)
        return body, doc

    def stats_document(self) -> dict[str, Any]:
        """The ``/api/stats`` document: every statistics field of the latest values.

        Same keys as a ``Statistik`` file: each seed field (``null`` when never measured, the
        reason in ``missing_reasons``), ``measured_at_step`` and ``schema_version``; a
        ``stats`` callable given to the constructor replaces this.
        """
        if self._stats is not None:
            return dict(self._stats())
        from vsrkit.stats.fields import STAT_FIELDS
        from vsrkit.stats.schema import SCHEMA_VERSION

        values, measured = read_snapshot(self.snapshot)
        doc: dict[str, Any] = {name: values.get(name) for name in STAT_FIELDS}
        doc.update({k: v for k, v in values.items() if k not in doc})
        doc["measured_at_step"] = {name: measured.get(name) for name in STAT_FIELDS}
        doc["missing_reasons"] = {n: "never measured" for n in STAT_FIELDS if n not in values}
        doc["schema_version"] = SCHEMA_VERSION
        return doc

    def config_document(self) -> dict[str, Any]:
        """The ``/api/config`` document (``enabled: false`` without a config or read-only)."""
        view = config_view(self.config)
        view["editable"] = self.config is not None and not self.read_only
        return view

    def submit_config(self, patch: Mapping[str, Any]) -> tuple[bool, dict[str, str], str | None]:
        """Send ``patch`` to the config manager's ``submit`` (source ``"web"``)."""
        return submit_config(self.config, patch, source="web")

    def check_host(self, host_header: str | None) -> bool:
        """True when the ``Host`` header names this server (DNS-rebinding guard)."""
        if not host_header:
            return False
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in self.allowed_hosts

    def check_token(self, value: str | None) -> bool:
        """Constant-time comparison with the per-run token."""
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def pace(self) -> bool:
        """Wait for this request's turn under ``max_request_rate``.

        Returns False (answer 503) when the wait would exceed the socket timeout.
        """
        if not self._pace_interval:
            return True
        with self._pace_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            if slot - now > self.request_timeout:
                return False
            self._next_slot = slot + self._pace_interval
        if slot > now:
            time.sleep(slot - now)
        return True

    def open_stream(self) -> bool:
        """Reserve an ``/events`` slot; False when ``max_streams`` are open."""
        with self._streams_lock:
            if self.streams >= self.max_streams:
                return False
            self.streams += 1
            return True

    def close_stream(self) -> None:
        """Release an ``/events`` slot."""
        with self._streams_lock:
            self.streams -= 1
