"""Helpers for the monitor tests: raw HTTP requests to a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
from typing import Any

from vsrkit.monitor import MonitorServer


def request(
    server: MonitorServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(server: MonitorServer, path: str, doc: Any, **extra: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Vsrkit-Token": server.token, **extra}
    status, _, body = request(server, "POST", path, json.dumps(doc).encode(), headers)
    return status, json.loads(body) if body else None
