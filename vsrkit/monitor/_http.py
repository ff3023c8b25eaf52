"""Request handling of :class:`~vsrkit.monitor.MonitorServer` (routes and security checks)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from vsrkit.monitor.actions import COMMANDS, UnknownCommandError

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.monitor.server import MonitorServer

__all__ = ["ROUTES", "MonitorHandler"]

logger = logging.getLogger(__name__)

#: The only method + path pairs served; any other method on these paths is 405.
ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET",),
    "/config": ("GET",),
    "/api/status": ("GET",),
    "/api/stats": ("GET",),
    "/api/config": ("GET", "POST"),
    "/api/action": ("POST",),
    "/events": ("GET",),
}

_KEEPALIVE_S = 15.0
#: Commands the page may send (``stop`` belongs to the terminal's ``q``).
WEB_COMMANDS = tuple(c for c in COMMANDS if c != "stop")


class _Reject(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class MonitorHandler(BaseHTTPRequestHandler):
    """One connection. ``monitor`` is set on a per-server subclass."""

    monitor: MonitorServer
    _body_read = False
    server_version = "vsrkit-monitor"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every keep-alive response
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self._body_read = False  # one handler serves every request of a keep-alive connection
        try:
            path = self.path.split("?", 1)[0]
            if not self.monitor.pace():
                raise _Reject(
                    503, "monitor busy: too many requests, try again", {"Retry-After": "2"}
                )
            if not self.monitor.check_host(self.headers.get("Host")):
                raise _Reject(403, "Host header not allowed (DNS-rebinding guard)")
            allowed = ROUTES.get(path)
            if allowed is None:
                if self.command not in ("GET", "POST"):
                    raise _Reject(405, f"method {self.command} not allowed")
                raise _Reject(404, f"no such page: {path}")
            if self.command not in allowed:
                raise _Reject(
                    405, f"{self.command} not allowed on {path}", {"Allow": ", ".join(allowed)}
                )
            getattr(self, "_" + self.command.lower() + "_" + _slug(path))()
        except _Reject as rej:
            self._drain_body()
            self._send_json(rej.status, {"error": rej.message}, rej.headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # a bug or a failing snapshot: a 500, logged, the server goes on
            logger.exception("monitor: %s %s failed", self.command, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, {"error": "internal error (see the training log)"})

    do_GET = do_POST = _dispatch

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # PUT, DELETE, PATCH, HEAD, OPTIONS, ... -> 405
            return self._dispatch
        raise AttributeError(name)

    # -- responses -------------------------------------------------------------------------
    def _headers(self, status: int, ctype: str, length: int | None, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", self.monitor.page.csp)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None):
        self._headers(status, ctype, len(body), extra or {})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(doc, allow_nan=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", extra)

    def _drain_body(self) -> None:
        """Read a small unread body so the connection stays usable; else close it."""
        if self._body_read:
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 < length <= self.monitor.max_body:
            self.rfile.read(length)
        elif length != 0:
            self.close_connection = True

    def _json_body(self) -> Any:
        if not self.monitor.check_token(self.headers.get("X-Vsrkit-Token")):
            raise _Reject(403, "missing or wrong X-Vsrkit-Token header")
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise _Reject(415, f"Content-Type must be application/json, got {ctype or 'none'}")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise _Reject(411, "Content-Length header required") from None
        if length < 0 or length > self.monitor.max_body:
            self.close_connection = True
            raise _Reject(413, f"body of {length} bytes exceeds {self.monitor.max_body}")
        raw = self.rfile.read(length)
        self._body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Reject(400, f"malformed JSON body: {exc}") from None

    # -- routes ----------------------------------------------------------------------------
    def _get_root(self) -> None:
        self._send(200, self.monitor.page.render(self.monitor.token), "text/html; charset=utf-8")

    _get_config = _get_root

    def _get_api_status(self) -> None:
        body, _ = self.monitor.cached_status()
        self._send(200, body, "application/json; charset=utf-8")

    def _get_api_stats(self) -> None:
        self._send_json(200, self.monitor.stats_document())

    def _get_api_config(self) -> None:
        self._send_json(200, self.monitor.config_document())

    def _post_api_action(self) -> None:
        doc = self._json_body()
        if not isinstance(doc, dict) or not isinstance(doc.get("command"), str):
            raise _Reject(400, 'body must be a JSON object like {"command": "validate"}')
        command = doc["command"]
        if command not in WEB_COMMANDS:
            raise _Reject(400, f"unknown command {command!r}: expected {', '.join(WEB_COMMANDS)}")
        if self.monitor.actions is None:
            raise _Reject(409, self.monitor.read_only_note)
        try:
            action = self.monitor.actions.put(command, source="web")
        except UnknownCommandError as exc:  # pragma: no cover - checked above
            raise _Reject(400, str(exc)) from None
        self._send_json(202, {"queued": action.to_dict()})

    def _post_api_config(self) -> None:
        doc = self._json_body()
        if not isinstance(doc, dict) or not doc:
            raise _Reject(400, 'body must be a non-empty JSON object like {"grad_clip": 1.5}')
        if self.monitor.config is None or self.monitor.read_only:
            raise _Reject(409, "runtime settings cannot be changed from this monitor")
        accepted, errors, message = self.monitor.submit_config(doc)
        status = 200 if accepted else 422
        self._send_json(status, {"accepted": accepted, "errors": errors, "message": message})

    def _get_events(self) -> None:
        if not self.monitor.open_stream():
            raise _Reject(503, "too many live streams; poll /api/status instead")
        try:
            self._headers(200, "text/event-stream; charset=utf-8", None, {"Connection": "close"})
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            last_body, last_write = b"", time.monotonic()
            stopping = self.monitor.stopping
            while not stopping.is_set():
                body, _ = self.monitor.cached_status()
                now = time.monotonic()
                if body != last_body:
                    self.wfile.write(b"event: status\ndata: " + body + b"\n\n")
                    self.wfile.flush()
                    last_body, last_write = body, now
                elif now - last_write > _KEEPALIVE_S:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    last_write = now
                stopping.wait(self.monitor.sse_interval)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass
        finally:
            self.monitor.close_stream()


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "_") or "root"
