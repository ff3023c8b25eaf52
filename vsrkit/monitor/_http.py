"""Request handling of :class:`~vsrkit.monitor.MonitorServer`: strict HTTP, the token, routes.

Every request goes through the same gate, cheapest check first: the framing (one ``Host``
header, no ``Transfer-Encoding``, a plain ``Content-Length``), the ``Host`` name and port
(DNS-rebinding guard), the per-run token (header, cookie or ``?token=``), the origin of a
``POST``, and only then the pacing and the route. A refused request costs the server a
few microseconds and never waits for a pacing slot. Every reply, the standard library's own
error replies included, carries the security headers.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from vsrkit._text import printable
from vsrkit.monitor.actions import COMMANDS, UnknownCommandError
from vsrkit.monitor.status import finite_json

if TYPE_CHECKING:  # pragma: no cover
    from vsrkit.monitor.server import MonitorServer

__all__ = ["ROUTES", "MonitorHandler", "busy_reply", "encode_json", "security_headers"]

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
#: Pages that a ``?token=`` login redirects to without the token in the address.
_PAGES = ("/", "/config")

_KEEPALIVE_S = 15.0
#: Commands the page may send (``stop`` belongs to the terminal's ``q``).
WEB_COMMANDS = tuple(c for c in COMMANDS if c != "stop")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,10}")


def security_headers(csp: str) -> list[tuple[str, str]]:
    """The headers every reply carries."""
    return [
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Content-Security-Policy", csp),
    ]


def busy_reply(csp: str) -> bytes:
    """The whole ``503`` reply sent by the accepting thread when every connection slot is
    taken (no handler thread is started for it)."""
    body = b'{"error": "monitor busy: too many open connections, try again"}'
    lines = ["HTTP/1.1 503 Service Unavailable"]
    lines += [f"{k}: {v}" for k, v in security_headers(csp)]
    lines += [
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Retry-After: 2",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_json(doc: Any) -> bytes:
    """Strict JSON bytes of ``doc``; a number JSON cannot hold (``NaN``) becomes ``null``."""
    try:
        return json.dumps(doc, allow_nan=False, default=str).encode("utf-8")
    except (ValueError, RecursionError):
        return json.dumps(finite_json(doc), allow_nan=False, default=str).encode("utf-8")


class _Reject(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.close = close


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side, with one deadline for a whole request.

    The socket timeout alone bounds each ``recv``; a client sending a byte every few
    seconds would never hit it. Here every ``recv`` may only wait until the handler's
    ``deadline`` (request line, headers and body together), then ``TimeoutError``.
    """

    def __init__(self, sock: socket.socket, handler: MonitorHandler) -> None:
        super().__init__()
        self._sock, self._handler = sock, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._handler.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive within the header timeout")
        timeout = self._handler.monitor.request_timeout
        self._sock.settimeout(min(remaining, timeout))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(timeout)


class MonitorHandler(BaseHTTPRequestHandler):
    """One connection. ``monitor`` is set on a per-server subclass."""

    monitor: MonitorServer
    deadline = 0.0
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
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle_one_request(self) -> None:
        # one deadline for the request line, the headers and the body of each request
        # (on a keep-alive connection the wait for the next request counts too)
        self.deadline = time.monotonic() + self.monitor.header_timeout
        self._body_read = False
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.requestline.split()) != 3:  # HTTP/0.9 has no headers: nothing to check
            self.send_error(400, "HTTP/0.9 requests are not served")
            return False
        return True

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), printable(format % args, 300))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's error replies (400, 414, 431, 505, ...) with our headers."""
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"  # so the reply has a status line and headers
        self.close_connection = True
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = "error"
        with contextlib.suppress(OSError):
            self._send_json(code, {"error": printable(text, 200)}, {"Connection": "close"})

    # -- the gate --------------------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            self._check_framing()
            if not self.monitor.check_host(self.headers.get("Host")):
                raise _Reject(403, "Host header not allowed (DNS-rebinding guard)", close=True)
            if not self.path.startswith("/"):
                raise _Reject(400, "the request target must be a path", close=True)
            path, _, query = self.path.partition("?")
            token_in_query = self._authenticate(query)
            if self.command == "POST":
                self._check_origin()
            if not self.monitor.pace():
                raise _Reject(
                    503, "monitor busy: too many requests, try again", {"Retry-After": "2"}
                )
            allowed = ROUTES.get(path)
            if allowed is None:
                if self.command not in ("GET", "POST"):
                    raise _Reject(405, f"method {printable(self.command, 20)} not allowed")
                raise _Reject(404, f"no such page: {printable(path, 100)}")
            if self.command not in allowed:
                raise _Reject(
                    405,
                    f"{printable(self.command, 20)} not allowed on {path}",
                    {"Allow": ", ".join(allowed)},
                )
            if self.command != "POST":
                self._drain_body()  # a body on a GET is read, never taken for a request
            if token_in_query and path in _PAGES:
                self._login(path)
                return
            getattr(self, "_" + self.command.lower() + "_" + _slug(path))()
        except _Reject as rej:
            if rej.close:
                self.close_connection = True
            else:
                self._drain_body()
            headers = {**rej.headers, **({"Connection": "close"} if self.close_connection else {})}
            self._send_json(rej.status, {"error": rej.message}, headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # a bug or a failing snapshot: a 500, logged, the server goes on
            logger.exception(
                "monitor: %s %s failed", printable(self.command, 20), printable(self.path, 200)
            )
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, {"error": "internal error (see the training log)"})

    do_GET = do_POST = _dispatch

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # PUT, DELETE, PATCH, HEAD, OPTIONS, ... -> 405
            return self._dispatch
        raise AttributeError(name)

    def _check_framing(self) -> None:
        if len(self.headers.get_all("Host") or []) != 1:
            raise _Reject(400, "exactly one Host header is required", close=True)
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Reject(
                411,
                "Transfer-Encoding is not accepted: send the body with Content-Length",
                close=True,
            )
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1 or (lengths and not _CONTENT_LENGTH.fullmatch(lengths[0].strip())):
            raise _Reject(400, "one Content-Length header with a number is required", close=True)

    def _authenticate(self, query: str) -> bool:
        """Raise 403 unless the request carries the token; True if it came in ``?token=``."""
        monitor = self.monitor
        try:
            params = parse_qs(query, max_num_fields=16) if query else {}
        except ValueError:
            raise _Reject(400, "too many query parameters", close=True) from None
        from_query = params.get("token", [])
        if any(monitor.check_token(t) for t in from_query[:1]):
            return True
        if monitor.check_token(self.headers.get("X-Vsrkit-Token")):
            return False
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() in ("bearer", "token") and monitor.check_token(value.strip()):
            return False
        if any(monitor.check_token(v) for v in _cookies(self.headers, monitor.cookie_name)):
            return False
        raise _Reject(403, monitor.token_hint, close=True)

    def _check_origin(self) -> None:
        """A POST from a browser must come from this page (besides the token)."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Reject(403, f"cross-site request refused (Sec-Fetch-Site: {site})", close=True)
        origin = self.headers.get("Origin")
        if origin is not None:
            expected = "http://" + str(self.headers.get("Host")).lower()
            if not hmac.compare_digest(origin.lower().encode(), expected.encode()):
                raise _Reject(403, "cross-origin request refused (Origin)", close=True)

    def _login(self, path: str) -> None:
        """``GET /?token=...``: the token becomes a cookie, the page loads without it."""
        name, token = self.monitor.cookie_name, self.monitor.token
        cookie = f"{name}={token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(303, b"", "text/plain; charset=utf-8", {"Location": path, "Set-Cookie": cookie})

    # -- responses -------------------------------------------------------------------------
    def _headers(self, status: int, ctype: str, length: int | None, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in security_headers(self.monitor.page.csp):
            self.send_header(key, value)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def _send(
        self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self._headers(status, ctype, len(body), extra or {})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, encode_json(doc), "application/json; charset=utf-8", extra)

    def _drain_body(self) -> None:
        """Read a small unread body so the connection stays usable; else close it."""
        if self._body_read:
            return
        self._body_read = True
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= self.monitor.max_body:
            self.rfile.read(length)
        elif length != 0:
            self.close_connection = True

    def _json_body(self, max_keys: int = 64) -> Any:
        """The request's JSON body, strictly parsed (any refusal is a 400)."""
        from vsrkit.config.schema import RuntimeConfigError, parse_json_strict

        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise _Reject(
                415, f"Content-Type must be application/json, got {printable(ctype, 60) or 'none'}"
            )
        if self.headers.get("Content-Length") is None:
            raise _Reject(411, "Content-Length header required", close=True)
        length = int(self.headers["Content-Length"])
        if length > self.monitor.max_body:
            raise _Reject(
                413, f"body of {length} bytes exceeds {self.monitor.max_body}", close=True
            )
        raw = self.rfile.read(length)
        self._body_read = True
        if len(raw) < length:
            raise _Reject(400, "the body ended before Content-Length bytes", close=True)
        try:
            # C speed first: an object with more keys than a patch may have is handed on as
            # it is (the config manager refuses it whole, without looking at its keys)
            doc = json.loads(raw)
            if isinstance(doc, dict) and len(doc) > max_keys:
                return doc
            return parse_json_strict(raw)
        except RecursionError:
            raise _Reject(400, "malformed JSON body: nested too deeply") from None
        except (ValueError, RuntimeConfigError) as exc:
            raise _Reject(400, f"malformed JSON body: {printable(exc, 200)}") from None

    # -- routes ----------------------------------------------------------------------------
    def _get_root(self) -> None:
        self._send(200, self.monitor.page.html, "text/html; charset=utf-8")

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
            raise _Reject(
                400,
                f"unknown command {printable(command, 40)!r}: expected {', '.join(WEB_COMMANDS)}",
            )
        if self.monitor.actions is None:
            raise _Reject(409, self.monitor.read_only_note)
        try:
            action = self.monitor.actions.put(command, source="web")
        except UnknownCommandError as exc:  # pragma: no cover - checked above
            raise _Reject(400, str(exc)) from None
        self._send_json(202, {"queued": action.to_dict()})

    def _post_api_config(self) -> None:
        doc = self._json_body(int(getattr(self.monitor.config, "max_patch_keys", 64)))
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
            self.close_connection = True
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            for chunk in self._event_chunks():
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:  # the client went away (or a write timed out)
            pass
        finally:
            self.monitor.close_stream()

    def _event_chunks(self) -> Iterator[bytes]:
        """The stream's messages: a new status document, a problem, or a keep-alive.

        A status document that cannot be built is an ``event: problem`` message inside the
        stream (logged once per kind), never an HTTP error written into it.
        """
        last, last_write, stopping = b"", time.monotonic(), self.monitor.stopping
        while not stopping.is_set():
            try:
                body, _ = self.monitor.cached_status()
                chunk = b"event: status\ndata: " + body + b"\n\n"
            except Exception as exc:  # a failing snapshot: say so in the stream, go on
                problem = f"status unavailable: {type(exc).__name__}"
                chunk = b"event: problem\ndata: " + encode_json({"error": problem}) + b"\n\n"
                if chunk != last:
                    logger.exception("monitor: /events could not build the status document")
            now = time.monotonic()
            if chunk != last:
                last, last_write = chunk, now
                yield chunk
            elif now - last_write > _KEEPALIVE_S:
                last_write = now
                yield b": keepalive\n\n"
            stopping.wait(self.monitor.sse_interval)


def _cookies(headers: Any, name: str) -> list[str]:
    """Values of cookie ``name`` in every ``Cookie`` header (lenient, never raises)."""
    out = []
    for header in headers.get_all("Cookie") or []:
        for part in str(header).split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                out.append(value.strip().strip('"'))
    return out


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "_") or "root"
