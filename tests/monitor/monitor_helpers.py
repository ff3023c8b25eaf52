"""Helpers for the monitor tests: raw HTTP requests to a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

from vsrkit.monitor import MonitorServer


def request(
    server: MonitorServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    token: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; returns (status, headers, body).

    With ``token`` the per-run token goes in the ``X-Vsrkit-Token`` header (unless
    ``headers`` sets it).
    """
    headers = dict(headers or {})
    if token:
        headers.setdefault("X-Vsrkit-Token", server.token)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(server: MonitorServer, path: str, doc: Any, **extra: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Vsrkit-Token": server.token, **extra}
    status, _, body = request(server, "POST", path, json.dumps(doc).encode(), headers)
    return status, json.loads(body) if body else None


def raw_exchange(port: int, data: bytes | list[bytes], *, pause: float = 0.0, wait: float = 5.0):
    """Send ``data`` (chunks ``pause`` s apart) on a raw socket; return every byte the server
    sent until it closed the connection or ``wait`` s passed without news."""
    chunks = [data] if isinstance(data, bytes) else data
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    received = b""
    try:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
            if pause:
                time.sleep(pause)
        while True:
            try:
                part = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not part:
                break
            received += part
    finally:
        sock.close()
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split the bytes of one connection into its HTTP responses (Content-Length framed)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        raw = rest[length:]
    return out
