"""HTTP tests against a real MonitorServer on 127.0.0.1 (port 0)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from monitor_helpers import post_json, request

from vsrkit.config import RuntimeConfigManager, example_settings
from vsrkit.monitor import ActionQueue, MonitorServer, MonitorServerError
from vsrkit.stats import MetricsSnapshot

JSON = {"Content-Type": "application/json"}


def test_status_reports_the_seed_keys_from_the_snapshot(server: MonitorServer) -> None:
    status, headers, body = request(server, "GET", "/api/status")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["iteration"] == 120
    assert doc["total_loss"] == pytest.approx(0.0234)
    assert doc["learn_rate"] == pytest.approx(1e-4)
    assert doc["iter_speed"] == pytest.approx(4.0)  # 1 / 0.25 s
    assert doc["is_training"] is True and doc["is_validating"] is False
    assert doc["gpu_memory"] is None and doc["best_score"] is None  # never measured: null
    assert doc["time_remaining"] == "00:03:40"  # 880 steps left at the speed card's 4 it/s
    assert isinstance(doc["timestamp"], float)
    assert doc["measured_at_step"]["total_loss_value"] == 120
    assert doc["peak_activity"]["layer"] == "Final_Fusion"
    assert doc["weight_distribution"]["percent"]["l1"] == pytest.approx(60.0)
    assert doc["actions"]["enabled"] is True
    assert doc["rss_gb"] > 0.001  # no GPU memory measured: the page shows this process's RSS


def test_every_response_carries_the_security_headers(server: MonitorServer) -> None:
    for method, path in (("GET", "/"), ("GET", "/api/status"), ("DELETE", "/api/status")):
        _, headers, _ = request(server, method, path)
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp


def test_page_carries_no_token_and_nothing_from_elsewhere(server: MonitorServer) -> None:
    status, headers, body = request(server, "GET", "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert server.token not in page  # the token travels in an HttpOnly cookie only
    # no CDN, works offline: no script/style/image/link from another origin
    assert not re.search(r"""(src|href|url\(|@import|fetch\()\s*=?\s*["']?(https?:)?//""", page)
    assert ".innerHTML" not in page and "insertAdjacentHTML" not in page  # textContent only
    assert request(server, "GET", "/config")[0] == 200


def test_wrong_host_header_is_refused(server: MonitorServer) -> None:
    status, _, body = request(server, "GET", "/api/status", headers={"Host": "evil.example:80"})
    assert status == 403 and b"Host" in body
    assert request(server, "GET", "/", headers={"Host": f"localhost:{server.port}"})[0] == 200


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Content-Type": "application/json"}, b'{"command": "validate"}', 403),  # no token
        ({"Content-Type": "application/json", "X-Vsrkit-Token": "wrong"}, b"{}", 403),
        ({"Content-Type": "text/plain", "X-Vsrkit-Token": "T"}, b'{"command": "save"}', 415),
        ({"Content-Type": "application/json", "X-Vsrkit-Token": "T"}, b'{"command": ', 400),
        ({"Content-Type": "application/json", "X-Vsrkit-Token": "T"}, b'{"command": "fly"}', 400),
        ({"Content-Type": "application/json", "X-Vsrkit-Token": "T"}, b'["validate"]', 400),
        ({"Content-Type": "application/json", "X-Vsrkit-Token": "T"}, b'{"command": "stop"}', 400),
    ],
)
def test_bad_action_requests_queue_nothing(
    server: MonitorServer, headers: dict[str, str], body: bytes, expected: int
) -> None:
    headers = {k: (server.token if v == "T" else v) for k, v in headers.items()}
    status, _, answer = request(server, "POST", "/api/action", body, headers, token=False)
    assert status == expected
    assert json.loads(answer)["error"]
    assert server.actions is not None and server.actions.drain() == []


def test_oversized_body_is_413(server: MonitorServer) -> None:
    body = b'{"command": "' + b"x" * (server.max_body + 10) + b'"}'
    headers = {**JSON, "X-Vsrkit-Token": server.token}
    assert request(server, "POST", "/api/action", body, headers)[0] == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/"),
        ("PUT", "/api/action"),
        ("GET", "/api/action"),
        ("POST", "/api/status"),
        ("PATCH", "/api/config"),
        ("DELETE", "/nowhere"),
    ],
)
def test_methods_not_listed_are_405(server: MonitorServer, method: str, path: str) -> None:
    status, _, _ = request(server, method, path, b"{}" if method != "GET" else None, JSON)
    assert status == 405


def test_unknown_path_is_404_and_no_file_is_served(server: MonitorServer) -> None:
    for path in ("/static/index.html", "/../../etc/passwd", "/server.py", "/favicon.ico"):
        assert request(server, "GET", path)[0] == 404


def test_actions_are_only_queued_for_the_loop(server: MonitorServer) -> None:
    for command in ("validate", "pause", "resume", "save"):
        status, doc = post_json(server, "/api/action", {"command": command})
        assert status == 202 and doc["queued"]["command"] == command
    assert server.actions is not None
    drained = server.actions.drain()
    assert [a.command for a in drained] == ["validate", "pause", "resume", "save"]
    assert {a.source for a in drained} == {"web"}


def test_status_is_rebuilt_at_most_max_rate_times(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), port=0, max_rate=2) as srv:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 1.0:
            request(srv, "GET", "/api/status")
            n += 1
        assert n > 10
        assert srv.builds <= 4  # 2 per second over ~1 s (plus one at each edge)


def test_status_follows_the_snapshot(server: MonitorServer, snapshot: MetricsSnapshot) -> None:
    assert json.loads(request(server, "GET", "/api/status")[2])["iteration"] == 120
    time.sleep(0.05)
    snapshot.update(121, step_current=121, total_loss_value=0.02)
    time.sleep(0.05)  # past the cache interval (max_rate=50)
    doc = json.loads(request(server, "GET", "/api/status")[2])
    assert doc["iteration"] == 121
    assert doc["loss_history"][-2:] == [[120, 0.0234], [121, 0.02]]


def test_stats_holds_every_statistics_field(server: MonitorServer) -> None:
    from vsrkit.stats import STAT_FIELDS

    doc = json.loads(request(server, "GET", "/api/stats")[2])
    assert set(STAT_FIELDS) <= set(doc)
    assert doc["l1_loss_value"] == pytest.approx(0.0156)
    assert doc["perceptual_loss_value"] is None  # missing is null, never 0
    assert doc["missing_reasons"]["perceptual_loss_value"] == "never measured"
    assert doc["measured_at_step"]["l1_loss_value"] == 120


def test_events_stream_pushes_new_snapshots(server: MonitorServer, snapshot) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"X-Vsrkit-Token: {server.token}\r\n\r\n".encode()
    )
    reader = sock.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += reader.readline()
    assert b"200" in head.split(b"\r\n")[0] and b"text/event-stream" in head
    seen: list[int] = []
    deadline = time.monotonic() + 10
    step = 121
    while time.monotonic() < deadline and len(seen) < 3:
        line = reader.readline()
        if line.startswith(b"data: "):
            seen.append(json.loads(line[6:])["iteration"])
            snapshot.update(step, step_current=step)
            step += 1
    sock.close()
    assert seen[0] == 120 and seen == sorted(seen) and len(set(seen)) == 3


def test_stream_count_is_capped(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=None, port=0, max_streams=0) as srv:
        assert request(srv, "GET", "/events")[0] == 503


def test_slow_client_is_dropped_and_others_are_served(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=None, port=0, request_timeout=0.3) as srv:
        slow = socket.create_connection(("127.0.0.1", srv.port))
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes
        assert request(srv, "GET", "/api/status")[0] == 200
        slow.settimeout(5)
        assert slow.recv(100) == b""  # the server closed it after its socket timeout
        slow.close()


def test_read_only_monitor_refuses_actions(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=None, port=0) as srv:
        status, doc = post_json(srv, "/api/action", {"command": "validate"})
        assert status == 409 and "Read-only" in doc["error"]
        status_doc = json.loads(request(srv, "GET", "/api/status")[2])
        assert status_doc["actions"] == {
            "enabled": False,
            "pending": [],
            "note": srv.read_only_note,
        }


def test_remote_host_needs_the_explicit_flag(snapshot: MetricsSnapshot) -> None:
    with pytest.raises(MonitorServerError, match="allow_remote"):
        MonitorServer(snapshot=snapshot, actions=None, host="0.0.0.0", port=0)


def test_busy_port_gives_a_clear_error(server: MonitorServer, snapshot) -> None:
    other = MonitorServer(snapshot=snapshot, actions=None, port=server.port)
    with pytest.raises(MonitorServerError, match=f"127.0.0.1:{server.port}") as info:
        other.start()
    assert isinstance(info.value, OSError)  # `except OSError` around start() catches it


def test_stop_ends_open_streams(snapshot: MetricsSnapshot) -> None:
    srv = MonitorServer(snapshot=snapshot, actions=None, port=0, sse_interval=0.05).start()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Cookie: {srv.cookie_name}={srv.token}\r\n\r\n".encode()
    )
    assert b"200" in sock.recv(100)
    threading.Thread(target=srv.stop).start()
    sock.settimeout(5)
    while sock.recv(65536):
        pass  # returns b"" once the server ends the stream
    sock.close()
    assert srv.streams == 0


@pytest.fixture
def config(tmp_path: Path) -> RuntimeConfigManager:
    return RuntimeConfigManager(tmp_path, initial=example_settings())


def test_config_lists_live_settings_with_ranges(snapshot, config) -> None:
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), config=config, port=0) as srv:
        doc = json.loads(request(srv, "GET", "/api/config")[2])
    rows = {r["key"]: r for r in doc["settings"]}
    assert doc["editable"] is True
    assert rows["plateau_patience"]["minimum"] == 50 and rows["plateau_patience"]["maximum"] == 1000
    assert rows["plateau_patience"]["value"] == config.current["plateau_patience"]
    assert "batch_size" not in rows  # startup-only keys are not offered


def test_config_post_goes_through_submit(snapshot, config) -> None:
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), config=config, port=0) as srv:
        status, doc = post_json(srv, "/api/config", {"grad_clip": 50})
        assert status == 422 and doc["accepted"] is False
        assert "grad_clip" in doc["errors"] and "10" in doc["errors"]["grad_clip"]
        status, doc = post_json(srv, "/api/config", {"grad_clip": 2.5})
        assert status == 200 and doc["accepted"] is True
        changes = config.poll(config.poll_every)  # the loop picks it up at its next poll
        assert [(c.key, c.new) for c in changes] == [("grad_clip", 2.5)]
        status_doc = json.loads(request(srv, "GET", "/api/status")[2])
    logged = [(c["key"], c["accepted"]) for c in status_doc["config_changes"]]
    assert ("grad_clip", False) in logged and ("grad_clip", True) in logged


def test_config_post_needs_token_and_json(snapshot, config) -> None:
    with MonitorServer(snapshot=snapshot, actions=ActionQueue(), config=config, port=0) as srv:
        assert request(srv, "POST", "/api/config", b'{"grad_clip": 2}', JSON, token=False)[0] == 403
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Vsrkit-Token": srv.token}
        assert request(srv, "POST", "/api/config", b"grad_clip=2", headers)[0] == 415
    assert config.latest["grad_clip"] == config.current["grad_clip"]


hostnames = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True)


@given(hostnames, st.one_of(st.none(), st.integers(1, 65535)))
def test_host_allow_list(name: str, port: int | None) -> None:
    srv = MonitorServer(snapshot=dict, actions=None, port=5123, allowed_hosts=["myhost.lan"])
    suffix = "" if port is None else f":{port}"
    allowed = name in ("localhost", "127.0.0.1", "myhost.lan") and port == 5123
    assert srv.check_host(name + suffix) is allowed
    assert srv.check_host(name.upper() + suffix) is allowed
    assert srv.check_host(f"[::1]{suffix}") is (port == 5123)
    assert srv.check_host("[0:0::1]:5123") is True  # the same address, written differently
    assert srv.check_host("") is False and srv.check_host(None) is False


def test_importing_the_monitor_does_not_import_torch() -> None:
    code = (
        "import sys, vsrkit.monitor, vsrkit.cli.monitor;"
        "from vsrkit.monitor import MonitorServer, TerminalView, RunFolderSource;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_requests_are_paced_not_refused(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=None, port=0, max_request_rate=20) as srv:
        start = time.monotonic()
        statuses = [request(srv, "GET", "/api/status")[0] for _ in range(10)]
        elapsed = time.monotonic() - start
    assert statuses == [200] * 10
    assert elapsed >= 9 / 20 - 0.01  # one request per 1/20 s, all clients together


def test_a_flood_beyond_the_timeout_gets_503(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(
        snapshot=snapshot, actions=None, port=0, max_request_rate=0.5, request_timeout=0.5
    ) as srv:
        assert request(srv, "GET", "/api/status")[0] == 200
        status, headers, _ = request(srv, "GET", "/api/status")  # its turn is 2 s away
        assert status == 503 and headers["retry-after"] == "2"


def test_a_failing_snapshot_is_a_500_and_the_server_goes_on(caplog) -> None:
    calls = {"n": 0}

    def flaky() -> dict:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("snapshot broke")
        return {"step_current": 5}

    with MonitorServer(snapshot=flaky, actions=None, port=0) as srv:
        status, _, body = request(srv, "GET", "/api/status")
        assert status == 500 and b"internal error" in body
        assert json.loads(request(srv, "GET", "/api/status")[2])["iteration"] == 5
    assert "snapshot broke" in caplog.text


def test_keep_alive_connection_serves_several_requests(server: MonitorServer) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Content-Type": "application/json", "X-Vsrkit-Token": server.token}
    for body, expected in ((b'{"command": "save"}', 202), (b"{", 400), (b'{"command": "x"}', 400)):
        conn.request("POST", "/api/action", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == expected
    conn.request("GET", "/api/status", headers={"X-Vsrkit-Token": server.token})
    assert conn.getresponse().status == 200
    conn.close()
    assert server.actions is not None and [a.command for a in server.actions.drain()] == ["save"]
