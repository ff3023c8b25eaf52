"""The web monitor: a standard-library HTTP server in a daemon thread.

It only *reads* the snapshot and *queues* actions; the loop drains the
:class:`~vsrkit.monitor.ActionQueue` at a step boundary and acts. The status document is built
at most ``max_rate`` times per second and cached, and no lock is held while a socket is
written, so a busy page never slows training noticeably.

Routes: ``GET /``, ``GET /config``, ``GET /api/status``, ``GET /api/stats``, ``GET /events``
(Server-Sent Events), ``GET /api/config``, ``POST /api/config``, ``POST /api/action``.

Security (Jupyter's model of a local web UI): every route needs the per-run token, the page
included. :attr:`MonitorServer.login_url` carries it once; the server turns it into an
HttpOnly, SameSite=Strict cookie and sends the browser to the page without it. The token is
also written to a file readable by its owner only (``token_file``). Loopback by default,
``Host`` checked against the allowed names and the served port, JSON only, bounded bodies,
connections and header read time, strict CSP and the other security headers on every reply.
"""

from __future__ import annotations

import contextlib
import glob
import hmac
import ipaddress
import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from vsrkit._atomic import atomic_write_bytes, remove_temp_files
from vsrkit._system import process_rss_gib
from vsrkit.monitor._http import MonitorHandler, busy_reply, encode_json
from vsrkit.monitor._page import Page
from vsrkit.monitor.actions import ActionQueue
from vsrkit.monitor.errors import MonitorPortError, MonitorServerError
from vsrkit.monitor.sources import config_view, read_snapshot, submit_config
from vsrkit.monitor.status import status_document

__all__ = [
    "TOKEN_HEADER",
    "MonitorPortError",
    "MonitorServer",
    "MonitorServerError",
    "write_secret",
]

logger = logging.getLogger(__name__)

#: Request header that carries the per-run token (scripts; the page uses a cookie).
TOKEN_HEADER = "X-Vsrkit-Token"

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``; nothing else is a Host header here.
_HOST_HEADER = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]{16,256}")
#: Seconds between two touches of the token file (the run's heartbeat for ``vsrkit monitor``).
HEARTBEAT_S = 30.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """Canonical form of an allowed host name (lower case; IPv6 compressed, no brackets)."""
    name = value.strip().lower().strip("[]")
    try:
        return ipaddress.IPv6Address(name).compressed
    except ValueError:
        return name


def write_secret(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (mode 0600), as any
    vsrkit file is written: a new temporary file (``O_EXCL``, never through a planted link),
    synced, renamed over ``path``; a killed write leaves a ``.tmp-`` file the next one removes.
    """
    path = Path(path)
    remove_temp_files(path.parent, glob.escape(path.name))
    atomic_write_bytes(path, text.encode("utf-8"), permissions=0o600)


class _HTTPServer(HTTPServer):
    """Connections are served by a pool of at most ``max_connections`` threads, started as
    they are needed and kept; one connection more is answered 503 at once by the accepting
    thread (no thread is started for it, so a flood costs a bounded number of threads).

    Each accepted connection gets a worker of its own at once: the accepting thread claims
    an idle worker for it (``_idle`` counts the workers waiting for a job that no queued job
    has claimed yet) or starts a thread. A worker counts itself idle only once its connection
    is closed, so two connections accepted back to back never share one idle worker (the
    second would wait behind an ``/events`` stream or a kept-alive connection).
    """

    request_queue_size = 1024  # a burst of connections waits in the kernel, not SYN retries

    def __init__(self, address: tuple[str, int], handler: type, monitor: MonitorServer) -> None:
        self.monitor = monitor
        self.active = 0  # connections accepted and not closed yet
        self.workers = 0  # threads of the pool
        self._idle = 0
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._next_accept = 0.0
        self._active_lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        interval = self.monitor._accept_interval
        if interval:  # at most max_accept_rate connections a second; the kernel holds the rest
            now = time.monotonic()
            if self._next_accept > now:
                time.sleep(self._next_accept - now)
            self._next_accept = max(now, self._next_accept) + interval
        with self._active_lock:
            full = self.active >= self.monitor.max_connections
            start = False
            if not full:
                self.active += 1
                if self._idle:  # claim an idle worker: it takes this job (or an equal one)
                    self._idle -= 1
                else:  # every worker is busy or claimed (so workers < max_connections)
                    start = True
                    self.workers += 1
        if full:
            self.monitor.refused_connections += 1
            with contextlib.suppress(OSError):
                request.setblocking(False)
                with contextlib.suppress(OSError):
                    request.recv(65536)  # what arrived already, so the close is not a reset
                request.send(busy_reply(self.monitor.page.csp))
            self.shutdown_request(request)
            return
        if start:
            try:
                threading.Thread(target=self._work, daemon=True, name="vsrkit-monitor-conn").start()
            except RuntimeError:  # no thread could be started: drop the connection, go on
                with self._active_lock:
                    self.workers -= 1
                    self.active -= 1
                self.shutdown_request(request)
                logger.warning("monitor: cannot start a thread for a connection", exc_info=True)
                return
        self._jobs.put((request, client_address))

    def _work(self) -> None:
        """Serve connections until ``None`` comes. A thread is started for a job, and joins
        the idle ones only when its connection is closed, right before it waits again."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            request, client_address = job
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._active_lock:
                    self.active -= 1
                    self._idle += 1

    def server_close(self) -> None:
        super().server_close()
        for _ in range(self.workers):  # each thread ends once its connection is done
            self._jobs.put(None)

    def service_actions(self) -> None:  # called by serve_forever about every 0.2 s
        self.monitor._beat()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("monitor: connection from %s failed", client_address, exc_info=True)


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
        token: Per-run secret every request must carry (16-256 characters of
            ``A-Z a-z 0-9 _ -``); random when ``None``.
        token_file: Where to write the token, readable by its owner only (mode 0600);
            removed again by :meth:`stop`. While serving, its modification time is touched
            every 30 s: ``vsrkit monitor`` reads it as the run's heartbeat.
        allow_remote: Permit a non-loopback ``host`` (logs a warning).
        allowed_hosts: Extra names accepted in the ``Host`` header (DNS-rebinding guard);
            the header's port must be the served one in every case.
        stats: Callable returning the full statistics document for ``/api/stats``;
            default: the snapshot's fields with their ``measured_at_step``.
        extra: Callable returning more keys merged into the status document
            (``vsrkit monitor`` adds the run folder's history this way).
        heartbeat: Callable returning the seconds since the run last showed life (None:
            unknown); with ``stale_after`` it turns a run that died into "stopped".
        stale_after: Seconds without a heartbeat after which the run counts as stopped.
        max_rate: Build the status document at most this many times per second.
        sse_interval: Seconds between two checks for a new document on ``/events``.
        max_body: Largest accepted request body in bytes (larger: 413).
        max_streams: Most concurrent ``/events`` streams (more: 503, the page polls instead).
        max_connections: Most open connections, each served by a thread of a pool of as
            many; one more is answered 503 by the accepting thread and closed.
        max_accept_rate: New connections accepted per second; more wait in the kernel's
            queue. With the connection cap it bounds what a flood of connections (even
            refused ones) costs the training process. ``None``: no limit.
        max_request_rate: Requests per second the server answers, all clients together;
            beyond it requests wait their turn (sleeping, without the GIL), so a flood of
            clients costs training a bounded share of the CPU. Only requests that passed
            the Host and token checks wait. ``None``: no pacing.
        request_timeout: Socket timeout of a connection in seconds (reads and writes).
        header_timeout: Seconds a client has to send a whole request (line, headers and
            body) after the connection or the previous reply; then it is closed.
        history: Most points of the loss chart; the whole run is kept at a coarser step
            when it is full (and the latest validations, as many).
        read_only_note: Text shown on the page when actions are disabled.

    Thread-safety: :meth:`start` and :meth:`stop` from one thread; everything the handler
    threads touch is either immutable, guarded by a lock, or a single attribute swap.

    Example:
        >>> q = ActionQueue()
        >>> with MonitorServer(snapshot=lambda: {"step_current": 3}, actions=q, port=0) as srv:
        ...     srv.status_document()["iteration"], "?token=" in srv.login_url
        (3, True)
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
        token_file: str | os.PathLike[str] | None = None,
        allow_remote: bool = False,
        allowed_hosts: Iterable[str] = (),
        stats: Callable[[], Mapping[str, Any]] | None = None,
        extra: Callable[[], Mapping[str, Any]] | None = None,
        heartbeat: Callable[[], float | None] | None = None,
        stale_after: float = 300.0,
        max_rate: float = 5.0,
        sse_interval: float = 1.0,
        max_body: int = 16 * 1024,
        max_streams: int = 16,
        max_connections: int = 64,
        max_accept_rate: float | None = 1000.0,
        max_request_rate: float | None = 50.0,
        request_timeout: float = 10.0,
        header_timeout: float = 10.0,
        history: int = 500,
        read_only_note: str = "Read-only: actions are disabled.",
    ) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise MonitorServerError(
                f"monitor host {host!r} is not a loopback address: pass allow_remote=True "
                "(CLI: --allow-remote) to serve it beyond this machine"
            )
        if token is not None and not _TOKEN_CHARS.fullmatch(token):
            raise MonitorServerError(
                "monitor token must be 16-256 characters of A-Z a-z 0-9 _ - "
                f"(got {len(token)} characters)"
            )
        for name, value in (
            ("max_rate", max_rate),
            ("max_connections", max_connections),
            ("request_timeout", request_timeout),
            ("header_timeout", header_timeout),
            ("stale_after", stale_after),
        ):
            if not value > 0:
                raise MonitorServerError(f"{name} must be > 0, got {value}")
        for name, rate in (
            ("max_request_rate", max_request_rate),
            ("max_accept_rate", max_accept_rate),
        ):
            if rate is not None and not rate > 0:
                raise MonitorServerError(f"{name} must be > 0 or None, got {rate}")
        self.snapshot, self.actions, self.config = snapshot, actions, config
        self.host, self._requested_port = host, int(port)
        self.token = token or secrets.token_urlsafe(24)
        self.token_file = Path(token_file) if token_file is not None else None
        self.token_file_written = False
        self.allow_remote = allow_remote
        names = (*_LOOPBACK_NAMES, host, *allowed_hosts)
        self.allowed_hosts = {_host_name(h) for h in names if h.strip()}
        self._stats, self._extra, self._heartbeat = stats, extra, heartbeat
        self.stale_after = float(stale_after)
        self.min_interval = 1.0 / max_rate
        self.sse_interval = sse_interval
        self.max_body, self.max_streams = max_body, max_streams
        self.max_connections = int(max_connections)
        self._pace_interval = 0.0 if max_request_rate is None else 1.0 / max_request_rate
        self._accept_interval = 0.0 if max_accept_rate is None else 1.0 / max_accept_rate
        self._next_slot = 0.0
        self._pace_lock = threading.Lock()
        self.request_timeout = float(request_timeout)
        self.header_timeout = float(header_timeout)
        self.read_only_note = read_only_note
        self.page = Page()
        self.stopping = threading.Event()
        self.streams = 0
        self.refused_connections = 0  # answered 503 because max_connections were open
        self._streams_lock = threading.Lock()
        self._history = _History(history)
        self._cache: tuple[float, bytes, dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0
        self.builds = 0  # how many times the status document was built (benchmarks read it)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MonitorServer:
        """Bind, write the token file, serve in a daemon thread; returns ``self``.

        Raises:
            MonitorPortError: The address cannot be bound.

        A token file that cannot be written costs a warning (the token is still in
        :attr:`login_url`), never the server.
        """
        if self._httpd is not None:
            return self
        handler = type(
            "BoundHandler", (MonitorHandler,), {"monitor": self, "timeout": self.request_timeout}
        )
        try:
            httpd = _HTTPServer((self.host, self._requested_port), handler, self)
        except OSError as exc:
            raise MonitorPortError(
                f"cannot serve the monitor on {self.host}:{self._requested_port}: "
                f"{exc.strerror or exc} (choose another port)"
            ) from exc
        self._httpd = httpd
        self.stopping.clear()
        self._write_token_file()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="vsrkit-monitor",
        )
        self._thread.start()
        if not _is_loopback(self.host):
            logger.warning(
                "monitor serves on %s beyond this machine: anyone who reaches it can try; "
                "every request still needs the token",
                self.url,
            )
        where = f" (token in {self.token_file})" if self.token_file_written else ""
        logger.info("monitor: %s%s", self.url, where)
        return self

    def stop(self) -> None:
        """Stop serving, close the socket, remove the token file (streams end within 1 s)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.token_file_written and self.token_file is not None:
            with contextlib.suppress(OSError):
                if self.token_file.read_text(encoding="utf-8").strip() == self.token:
                    self.token_file.unlink()
            self.token_file_written = False

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_token_file(self) -> None:
        if self.token_file is None:
            return
        try:
            write_secret(self.token_file, self.token + "\n")
        except OSError as exc:
            logger.warning(
                "monitor: cannot write the token file %s (%s); the token is only in the "
                "URL printed at start",
                self.token_file,
                exc.strerror or exc,
            )
            return
        self.token_file_written = True
        self._last_beat = time.monotonic()

    def _beat(self) -> None:
        """Touch the token file every :data:`HEARTBEAT_S` seconds (the run's heartbeat)."""
        if not self.token_file_written or self.token_file is None:
            return
        now = time.monotonic()
        if now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        try:
            os.utime(self.token_file, follow_symlinks=False)
        except OSError as exc:
            logger.debug("monitor: cannot touch %s (%s)", self.token_file, exc)

    @property
    def port(self) -> int:
        """The port served (the real one when constructed with ``port=0``)."""
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page (without the token: see :attr:`login_url`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The page's URL with ``?token=``: opening it once in a browser logs it in."""
        return f"{self.url}?token={self.token}"

    @property
    def cookie_name(self) -> str:
        """Name of the token cookie (cookies ignore ports, so the port is in the name)."""
        return f"vsrkit_token_{self.port}"

    @property
    def token_hint(self) -> str:
        """What a request without the token is told (the 403 body)."""
        where = (
            f"or read it from the file {self.token_file.name} in the run folder (its owner only)"
            if self.token_file is not None
            else "or ask whoever started it"
        )
        return (
            "this monitor needs its token: open the URL printed when it started (it ends in "
            f"?token=...), {where}; scripts send it in the X-Vsrkit-Token header"
        )

    @property
    def read_only(self) -> bool:
        """True when there is no action queue (``vsrkit monitor RUN_DIR``)."""
        return self.actions is None

    # -- documents -------------------------------------------------------------------------
    def status_document(self) -> dict[str, Any]:
        """Build the ``/api/status`` document now (uncached)."""
        values, measured = read_snapshot(self.snapshot)
        self._history.observe(values, measured)
        age = self._heartbeat() if self._heartbeat is not None else None
        doc = status_document(
            values, measured_at_step=measured, heartbeat_age=age, stale_after=self.stale_after
        )
        doc["heartbeat_age_s"] = age
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
            body = encode_json(doc)
            self._cache = (time.monotonic(), body, doc)
        return body, doc

    def stats_document(self) -> dict[str, Any]:
        """The ``/api/stats`` document: every statistics field of the latest values.

        Same keys as a ``Statistik`` file: each seed field (``null`` when never measured, the
        reason in ``missing_reasons``), ``measured_at_step`` and ``schema_version``; a
        ``stats`` callable given to the constructor replaces this. A number JSON cannot
        hold (``NaN``) is ``null`` with its reason.
        """
        from vsrkit.monitor.status import finite_json

        if self._stats is not None:
            return dict(self._stats())
        from vsrkit.stats.fields import STAT_FIELDS
        from vsrkit.stats.schema import SCHEMA_VERSION

        values, measured = read_snapshot(self.snapshot)
        why: dict[str, str] = {}
        values = finite_json(values, why)
        doc: dict[str, Any] = {name: values.get(name) for name in STAT_FIELDS}
        doc.update({k: v for k, v in values.items() if k not in doc})
        doc["measured_at_step"] = {name: measured.get(name) for name in STAT_FIELDS}
        reasons = {n: "never measured" for n in STAT_FIELDS if n not in values}
        for path, text in why.items():
            reasons[re.split(r"[.\[]", path, maxsplit=1)[0]] = text
        doc["missing_reasons"] = reasons
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

    # -- checks (called by the handler threads) ---------------------------------------------
    def check_host(self, host_header: str | None) -> bool:
        """True when ``Host`` is exactly an allowed name with the served port.

        ``name:port`` or ``[v6]:port``; the port may be left out only when serving on 80.
        Anything else (``[127.0.0.1]``, ``[::1]evil.com``, a trailing dot, another port,
        user info, spaces) is refused.
        """
        if not host_header:
            return False
        match = _HOST_HEADER.fullmatch(host_header)
        if match is None:
            return False
        port = match["port"]
        if (int(port) if port is not None else 80) != self.port:
            return False
        if match["v6"] is not None:
            try:
                name = ipaddress.IPv6Address(match["v6"]).compressed
            except ValueError:
                return False
        else:
            name = match["name"].lower()
        return name in self.allowed_hosts

    def check_token(self, value: str | None) -> bool:
        """Constant-time comparison with the per-run token."""
        if value is None:
            return False
        given = value.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.token.encode("ascii"))

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
