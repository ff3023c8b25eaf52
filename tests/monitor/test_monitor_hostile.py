"""Every hostile case of the monitor's security review, sent to a real server on 127.0.0.1.

A hostile local user (no token, another uid), a hostile web page (CSRF, DNS rebinding), a
broken or malicious client (chunked bodies, slow headers, duplicate or malformed Host, deep
JSON, huge integers, floods) and hostile files in a run folder (symlinks out of it, a FIFO,
NaN statistics). Raw sockets where an HTTP library would not send the bytes.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from monitor_helpers import post_json, raw_exchange, request, responses

from vsrkit.config import RuntimeConfigManager, example_settings
from vsrkit.monitor import ActionQueue, MonitorServer, RunFolderSource
from vsrkit.monitor.actions import pause_state
from vsrkit.monitor.runfolder import VIEW_TOKEN_FILE
from vsrkit.stats import MetricsSnapshot

JSON = {"Content-Type": "application/json"}
SECURITY = ("x-frame-options", "cache-control", "content-security-policy", "x-content-type-options")
ROUTES = [
    ("GET", "/"),
    ("GET", "/config"),
    ("GET", "/api/status"),
    ("GET", "/api/stats"),
    ("GET", "/api/config"),
    ("GET", "/events"),
    ("POST", "/api/action"),
    ("POST", "/api/config"),
    ("GET", "/nowhere"),
    ("PUT", "/api/action"),
    ("OPTIONS", "/api/config"),
    ("HEAD", "/"),
]


@pytest.fixture
def live(tmp_path: Path, snapshot: MetricsSnapshot) -> Iterator[MonitorServer]:
    config = RuntimeConfigManager(tmp_path, initial=example_settings())
    with MonitorServer(
        snapshot=snapshot,
        actions=ActionQueue(),
        config=config,
        port=0,
        token_file=tmp_path / "monitor_token",
        max_rate=50,
    ) as srv:
        yield srv


def host(srv: MonitorServer) -> str:
    return f"127.0.0.1:{srv.port}"


def assert_security_headers(headers: dict[str, str]) -> None:
    missing = [h for h in SECURITY if h not in headers]
    assert not missing, f"reply lacks {missing}: {headers}"
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert "default-src 'none'" in headers["content-security-policy"]


# -- the token: every route, the page included -----------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"X-Vsrkit-Token": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Cookie": "vsrkit_token_1=wrong"},
        {"X-Vsrkit-Token": ""},
    ],
)
def test_every_route_needs_the_token(
    live: MonitorServer, method: str, path: str, credential: dict[str, str]
) -> None:
    body = b'{"command": "pause"}' if method in ("POST", "PUT") else None
    status, headers, answer = request(live, method, path, body, {**JSON, **credential}, token=False)
    assert status == 403
    assert_security_headers(headers)
    if method != "HEAD":
        assert b"token" in answer and live.token.encode() not in answer
        assert b"monitor_token" in answer  # where the owner finds it
    assert live.actions is not None and live.actions.drain() == []


def test_a_wrong_token_in_the_query_or_a_lookalike_is_refused(live: MonitorServer) -> None:
    t = live.token
    for path in (
        f"/?token={t.upper() if t != t.upper() else t.lower()}",
        f"/?token={t[:-1]}",
        f"/?token={t}x",
        f"/api/status?tok={t}",
    ):
        assert request(live, "GET", path, token=False)[0] == 403, path
    cookie = {"Cookie": f"vsrkit_token_{live.port + 1}={t}"}  # another port's cookie
    assert request(live, "GET", "/", headers=cookie, token=False)[0] == 403


def test_the_login_url_sets_a_strict_cookie_and_drops_the_token(live: MonitorServer) -> None:
    assert live.login_url == f"{live.url}?token={live.token}"
    for page in ("/", "/config"):
        status, headers, body = request(live, "GET", f"{page}?token={live.token}", token=False)
        assert status == 303 and headers["location"] == page and body == b""
        cookie = headers["set-cookie"]
        name_value, *attrs = [p.strip() for p in cookie.split(";")]
        assert name_value == f"{live.cookie_name}={live.token}"
        assert set(attrs) == {"HttpOnly", "SameSite=Strict", "Path=/"}
        assert_security_headers(headers)
    jar = {"Cookie": f"other=1; {live.cookie_name}={live.token}"}
    status, _, page = request(live, "GET", "/", headers=jar, token=False)
    assert status == 200 and live.token.encode() not in page
    assert request(live, "GET", "/api/status", headers=jar, token=False)[0] == 200
    bearer = {"Authorization": f"Bearer {live.token}"}
    assert request(live, "GET", "/api/stats", headers=bearer, token=False)[0] == 200
    status, doc = post_json(live, "/api/action", {"command": "save"})
    assert status == 202 and doc["queued"]["command"] == "save"
    with_cookie = {**JSON, **jar, "Origin": f"http://{host(live)}"}
    status, _, _ = request(
        live, "POST", "/api/action", b'{"command": "validate"}', with_cookie, token=False
    )
    assert status == 202  # the page's own button: cookie, same origin


def test_the_token_file_is_the_owners_only_and_goes_with_the_server(
    tmp_path: Path, snapshot: MetricsSnapshot
) -> None:
    path = tmp_path / "monitor_token"
    srv = MonitorServer(snapshot=snapshot, actions=None, port=0, token_file=path).start()
    try:
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid() and path.read_text() == srv.token + "\n"
        assert srv.token_file_written
    finally:
        srv.stop()
    assert not path.exists()
    # a link planted in place of the file is replaced, its target is not written
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    path.symlink_to(target)
    with MonitorServer(snapshot=snapshot, actions=None, port=0, token_file=path) as srv:
        assert not path.is_symlink() and path.read_text().strip() == srv.token
    assert target.read_text() == "keep me"


def test_a_token_file_that_cannot_be_written_costs_a_warning(snapshot, tmp_path, caplog) -> None:
    path = tmp_path / "missing-folder" / "monitor_token"
    with MonitorServer(snapshot=snapshot, actions=None, port=0, token_file=path) as srv:
        assert not srv.token_file_written
        assert request(srv, "GET", "/api/status")[0] == 200
    assert any("cannot write the token file" in m for m in caplog.messages)


def test_tokens_given_by_the_caller_must_be_safe(snapshot) -> None:
    from vsrkit.monitor import MonitorServerError

    for bad in ("short", "a" * 20 + ";x", "a" * 20 + " b", "é" * 20):
        with pytest.raises(MonitorServerError, match="16-256 characters"):
            MonitorServer(snapshot=snapshot, actions=None, port=0, token=bad)
    with MonitorServer(snapshot=snapshot, actions=None, port=0, token="A" * 16) as srv:
        assert request(srv, "GET", "/api/status")[0] == 200


# -- another local user ----------------------------------------------------------------------------
_CHILD = r"""
import http.client, json, sys
port, token_file, config_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {"uid": __import__("os").getuid()}
try:
    open(token_file).read()
    out["token_file"] = "read"
except PermissionError:
    out["token_file"] = "denied"
out["config_file"] = len(open(config_file).read()) > 0
routes = json.loads(sys.argv[4])
statuses = {}
for method, path in routes:
    for extra in ({}, {"X-Vsrkit-Token": "guess"}, {"Cookie": "vsrkit_token_%d=guess" % port}):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = b'{"command": "pause"}' if method == "POST" else None
        headers = {"Content-Type": "application/json", **extra}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        statuses.setdefault(method + " " + path, []).append(resp.status)
        conn.close()
out["statuses"] = statuses
print(json.dumps(out))
"""


def _python_for(uid: int, gid: int) -> str | None:
    """An interpreter the other user may run (the venv's lives under /root here)."""
    for candidate in (
        os.path.realpath(sys.executable),
        shutil.which("python3"),
        "/usr/bin/python3",
    ):
        if not candidate:
            continue
        try:
            done = subprocess.run(
                [candidate, "-I", "-S", "-c", "print(1)"],
                user=uid,
                group=gid,
                extra_groups=[],
                cwd="/",
                env={},
                capture_output=True,
                timeout=30,
            )
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


def test_another_local_user_gets_403_everywhere_and_cannot_read_the_token(snapshot) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to a second uid needs root (os.setuid); this test runs as a user")
    try:
        other = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' account to run the client as")
    python = _python_for(other.pw_uid, other.pw_gid)
    if python is None:
        pytest.skip("no Python interpreter that the 'nobody' account may execute")
    run = Path(tempfile.mkdtemp(prefix="vsrkit-uid-"))
    try:
        run.chmod(0o755)  # a shared run folder: others may list it and read its plain files
        config = RuntimeConfigManager(run, initial=example_settings())
        (run / "runtime_config.json").chmod(0o644)
        queue = ActionQueue()
        with MonitorServer(
            snapshot=snapshot,
            actions=queue,
            config=config,
            port=0,
            token_file=run / "monitor_token",
        ) as srv:
            done = subprocess.run(
                [
                    python,
                    "-I",
                    "-S",
                    "-c",
                    _CHILD,
                    str(srv.port),
                    str(run / "monitor_token"),
                    str(run / "runtime_config.json"),
                    json.dumps([r for r in ROUTES if r[0] in ("GET", "POST")]),
                ],
                user=other.pw_uid,
                group=other.pw_gid,
                extra_groups=[],
                cwd="/",
                env={},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout)
            assert result["uid"] == other.pw_uid != os.geteuid()
            assert result["config_file"] is True  # the folder is readable to it...
            assert result["token_file"] == "denied"  # ...the token is not
            assert result["statuses"] and all(
                codes == [403, 403, 403] for codes in result["statuses"].values()
            ), result["statuses"]
            assert queue.drain() == [] and config.latest == config.current
    finally:
        shutil.rmtree(run, ignore_errors=True)


# -- CSRF and DNS rebinding ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_post_is_refused_even_with_the_cookie(live: MonitorServer, headers) -> None:
    cookie = {"Cookie": f"{live.cookie_name}={live.token}", **JSON, **headers}
    status, _, _ = request(live, "POST", "/api/action", b'{"command": "pause"}', cookie)
    assert status == 403
    assert live.actions is not None and live.actions.drain() == []


@pytest.mark.parametrize(
    "value",
    [
        "[::1]evil.com",
        "[127.0.0.1]",
        "[127.0.0.1]:{port}",
        "[::1]evil.com:{port}",
        "evil.example:{port}",
        "127.0.0.1:{other}",
        "127.0.0.1",
        "localhost.:{port}",
        "127.0.0.1:{port}:{port}",
        "user@127.0.0.1:{port}",
        "127.0.0.1 :{port}",
        "127.0.0.1:+{port}",
        "localhost:0{port}0",
        "",
    ],
)
def test_malformed_or_foreign_host_headers_are_refused(live: MonitorServer, value: str) -> None:
    value = value.format(port=live.port, other=live.port + 1)
    data = f"GET /api/status HTTP/1.1\r\nHost: {value}\r\nX-Vsrkit-Token: {live.token}\r\n\r\n"
    replies = responses(raw_exchange(live.port, data.encode()))
    assert [r[0] for r in replies] == [403]
    assert_security_headers(replies[0][1])
    assert live.check_host(f"127.0.0.1:{live.port}") and live.check_host(f"[::1]:{live.port}")


def test_a_second_host_header_or_none_is_a_400(live: MonitorServer) -> None:
    for heads in (
        f"Host: 127.0.0.1:{live.port}\r\nHost: evil.example:{live.port}\r\n",
        f"Host: evil.example:{live.port}\r\nHost: 127.0.0.1:{live.port}\r\n",
        "",
    ):
        data = f"GET /api/status HTTP/1.1\r\n{heads}X-Vsrkit-Token: {live.token}\r\n\r\n"
        replies = responses(raw_exchange(live.port, data.encode()))
        assert [r[0] for r in replies] == ([400] if heads else [400]), heads
        assert_security_headers(replies[0][1])


# -- request framing -------------------------------------------------------------------------------
def test_a_chunked_body_is_refused_and_never_read_as_a_request(live: MonitorServer) -> None:
    smuggled = (
        f"POST /api/action HTTP/1.1\r\nHost: {host(live)}\r\nX-Vsrkit-Token: {live.token}\r\n"
        'Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{"command": "pause"}'
    )
    chunk = smuggled.encode()
    data = (
        f"POST /api/action HTTP/1.1\r\nHost: {host(live)}\r\nX-Vsrkit-Token: {live.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    replies = responses(raw_exchange(live.port, data))
    assert [r[0] for r in replies] == [411]  # one reply, then the connection was closed
    assert replies[0][1]["connection"] == "close"
    assert_security_headers(replies[0][1])
    assert live.actions is not None and live.actions.drain() == []  # the smuggled pause: never


@pytest.mark.parametrize(
    "lengths",
    [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: -1",
        "Content-Length: 1e3",
        "Content-Length: 99999999999",
    ],
)
def test_odd_content_lengths_are_400_and_close(live: MonitorServer, lengths: str) -> None:
    data = (
        f"POST /api/action HTTP/1.1\r\nHost: {host(live)}\r\nX-Vsrkit-Token: {live.token}\r\n"
        f"Content-Type: application/json\r\n{lengths}\r\n\r\n"
        '{"command": "save"}GET /api/status HTTP/1.1\r\n\r\n'
    )
    replies = responses(raw_exchange(live.port, data.encode()))
    assert [r[0] for r in replies] == [400]
    assert live.actions is not None and live.actions.drain() == []


def test_a_body_on_a_get_is_read_never_taken_for_a_request(live: MonitorServer) -> None:
    inner = f"POST /api/action HTTP/1.1\r\nHost: {host(live)}\r\n\r\n"
    data = (
        f"GET /api/status HTTP/1.1\r\nHost: {host(live)}\r\nX-Vsrkit-Token: {live.token}\r\n"
        f"Content-Length: {len(inner)}\r\nConnection: close\r\n\r\n{inner}"
    )
    replies = responses(raw_exchange(live.port, data.encode()))
    assert [r[0] for r in replies] == [200]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n", 400),
    ],
)
def test_the_standard_librarys_own_errors_carry_the_security_headers(
    live: MonitorServer, data: bytes, code: int
) -> None:
    data = data.replace(b"{port}", str(live.port).encode())
    replies = responses(raw_exchange(live.port, data))
    assert replies, "no reply at all"
    assert replies[0][0] == code
    assert_security_headers(replies[0][1])
    assert json.loads(replies[0][2])["error"]


# -- bodies the JSON parser refuses ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 5000 + b"]" * 5000, b"nested"),
        (b'{"command": ' + b"9" * 5000 + b"}", b"digits"),
        (b'{"grad_clip": NaN}', b"NaN"),
        (b'{"grad_clip": 1e999}', b"too large"),
        (b'{"grad_clip": 1, "grad_clip": 2}', b"duplicate"),
        (b'{"grad_clip": "\xff"}', b"malformed"),
        (b'{"grad_clip": ', b"malformed"),
    ],
)
@pytest.mark.parametrize("path", ["/api/action", "/api/config"])
def test_json_the_parser_refuses_is_a_400(live: MonitorServer, path, body, words, caplog) -> None:
    status, headers, answer = request(live, "POST", path, body, JSON)
    assert status == 400 and words in answer
    assert_security_headers(headers)
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    assert request(live, "GET", "/api/status")[0] == 200  # and the server goes on


# -- bounded work per config patch -----------------------------------------------------------------
def _short_name(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    name = letters[i % 26]
    while i >= 26:
        i = i // 26 - 1
        name = letters[i % 26] + name
    return "z" + name


def test_an_oversized_patch_is_refused_cheaply_and_leaves_one_record(live, tmp_path) -> None:
    patch = {_short_name(i): 0 for i in range(1300)}
    body = json.dumps(patch).encode()
    assert len(body) < live.max_body  # within the body limit, as in the review
    for _ in range(100):
        status, doc = post_json(live, "/api/config", patch)
        assert status == 422 and "at most 64 keys" in doc["message"]
    config = live.config
    assert len(config._queue) <= config.max_pending
    config.poll(config.poll_every)
    lines = (tmp_path / "config_changes.jsonl").read_text().splitlines()
    assert 1 <= len(lines) <= config.max_pending + 1
    assert (tmp_path / "config_changes.jsonl").stat().st_size < 64 * 1024


def test_a_rejected_key_with_a_newline_forges_no_log_line(live, caplog) -> None:
    caplog.set_level(logging.INFO)
    forged = "x\n2030-01-01 INFO vsrkit.config.manager: Config Update: grad_clip 1 -> 9\x1b[2J"
    status, doc = post_json(live, "/api/config", {forged: 1})
    assert status == 422 and forged in doc["errors"]
    live.config.poll(live.config.poll_every)
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\x1b" not in message
    assert any("x\\n2030-01-01" in r.getMessage() for r in caplog.records)


# -- connections: slow headers, the cap, threads, pacing -------------------------------------------
def test_headers_sent_a_byte_at_a_time_are_cut_off(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(
        snapshot=snapshot, actions=None, port=0, header_timeout=1.0, request_timeout=5.0
    ) as srv:
        head = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n".encode()
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        start = time.monotonic()
        closed_after = None
        try:
            for i in range(len(head)):  # one byte every 0.3 s: each within request_timeout
                sock.sendall(head[i : i + 1])
                time.sleep(0.3)
        except OSError:
            closed_after = time.monotonic() - start
        if closed_after is None:
            sock.settimeout(5)
            assert sock.recv(100) == b""  # the server hung up
            closed_after = time.monotonic() - start
        sock.close()
        assert closed_after < len(head) * 0.3  # long before the slow client was done
        assert request(srv, "GET", "/api/status")[0] == 200


def test_connections_beyond_the_cap_get_503_with_headers(snapshot) -> None:
    with MonitorServer(
        snapshot=snapshot, actions=None, port=0, max_connections=4, header_timeout=30
    ) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
        time.sleep(0.3)
        threads_before = threading.active_count()
        extra = []
        for _ in range(20):
            status, headers, _ = request(srv, "GET", "/api/status")
            assert status == 503 and headers["retry-after"] == "2"
            assert_security_headers(headers)
        extra = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        time.sleep(0.3)
        assert threading.active_count() <= threads_before  # no thread per refused connection
        assert srv.refused_connections >= 40
        for sock in idle + extra:
            sock.close()
        deadline = time.monotonic() + 10
        while request(srv, "GET", "/api/status")[0] != 200:
            assert time.monotonic() < deadline, "the slots never came back"
            time.sleep(0.05)


def _read_reply(sock: socket.socket) -> int:
    """Read one Content-Length framed reply from ``sock``; its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, "the server closed the connection without a reply"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        part = sock.recv(65536)
        assert part, "the server closed the connection inside a reply"
        body += part
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize("accept_rate", [None, 1000.0])
def test_back_to_back_connections_are_served_while_workers_are_held(
    snapshot: MetricsSnapshot, accept_rate: float | None
) -> None:
    """A worker held by a stream or a kept-alive connection never makes a new one wait.

    One idle worker and two connections accepted back to back: each must get a worker of
    its own (the idle one, and a new thread), whatever the timing of the idle worker's
    wake-up. Several rounds, as the race this guards against is one of timing.
    """
    for _ in range(6):
        with MonitorServer(
            snapshot=snapshot,
            actions=None,
            port=0,
            header_timeout=30,
            request_timeout=30,
            max_accept_rate=accept_rate,
        ) as srv:
            ask = (
                f"GET /api/status HTTP/1.1\r\nHost: {host(srv)}\r\n"
                f"X-Vsrkit-Token: {srv.token}\r\n\r\n"
            ).encode()
            held = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in "ab"]
            held[0].sendall(ask.replace(b"/api/status", b"/events"))  # a stream never ends
            held[0].recv(100)
            held[1].sendall(ask)  # a kept-alive connection: its worker waits for the next one
            assert _read_reply(held[1]) == 200
            assert request(srv, "GET", "/api/status")[0] == 200  # its worker is idle after
            time.sleep(0.2)
            pair = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in "ab"]
            start = time.monotonic()
            try:
                for sock in pair:
                    sock.sendall(ask)  # kept alive too: a browser's page and its status poll
                assert [_read_reply(sock) for sock in pair] == [200, 200]
                assert time.monotonic() - start < 3.0
            finally:
                for sock in pair + held:
                    sock.close()


def test_connections_one_after_another_reuse_the_pool(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(snapshot=snapshot, actions=None, port=0, max_request_rate=None) as srv:
        before = threading.active_count()
        for _ in range(40):
            assert request(srv, "GET", "/api/status")[0] == 200
            time.sleep(0.01)  # the worker sees the close and goes back to the pool
        assert threading.active_count() - before <= 3  # not a thread per connection


def test_refused_requests_take_no_pacing_slot(snapshot: MetricsSnapshot) -> None:
    with MonitorServer(
        snapshot=snapshot, actions=None, port=0, max_request_rate=1.0, request_timeout=0.5
    ) as srv:
        for _ in range(10):
            assert request(srv, "GET", "/api/status", token=False)[0] == 403
            assert request(srv, "GET", "/api/status", headers={"Host": "evil:1"})[0] == 403
        # had the 20 refusals queued for slots, this one would be 20 s away: a 503
        assert request(srv, "GET", "/api/status")[0] == 200


# -- the read-only monitor and hostile run folders -------------------------------------------------
def _folder_server(run: Path, **kw: Any) -> MonitorServer:
    source = RunFolderSource(run)
    return MonitorServer(
        snapshot=source.snapshot,
        actions=None,
        config=source.config,
        port=0,
        stats=source.stats,
        extra=source.extra,
        heartbeat=source.heartbeat_age,
        token_file=run / VIEW_TOKEN_FILE,
        **kw,
    )


def _statistik(step: int, **values: Any) -> dict[str, Any]:
    return {"step_current": step, "step_max": 100, "training_active": True, **values}


def test_symlinks_out_of_the_run_folder_are_not_followed(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    secret = "TOP-SECRET-" + "x" * 10
    (outside / "secret.json").write_text(json.dumps({"grad_clip": secret, "step_current": 9}))
    (outside / "secret.jsonl").write_text(json.dumps({"key": secret, "accepted": True}) + "\n")
    (run / "Statistik_10.json").write_text(json.dumps(_statistik(10, total_loss_value=0.5)))
    (run / "runtime_config.json").symlink_to(outside / "secret.json")
    (run / "config_changes.jsonl").symlink_to(outside / "secret.jsonl")
    (run / "Statistik_20.json").symlink_to(outside / "secret.json")
    (run / "Statistik_30.json").symlink_to("/etc/passwd")
    (run / "Statistik_40.json").symlink_to(run / "Statistik_10.json")  # inside: fine
    os.mkfifo(run / "Statistik_50.json")  # would block a plain open()
    with _folder_server(run) as srv:
        bodies = b"".join(
            request(srv, "GET", p)[2] for p in ("/api/status", "/api/stats", "/api/config")
        )
        status = json.loads(request(srv, "GET", "/api/status")[2])
    assert secret.encode() not in bodies and b"root:" not in bodies
    errors = " ".join(status["run_folder"]["errors"])
    for name in (
        "runtime_config.json",
        "config_changes.jsonl",
        "Statistik_20.json",
        "Statistik_30.json",
    ):
        assert f"{name}: a link that leads out of the run folder" in errors
    assert "Statistik_50.json: not a regular file" in errors
    assert status["run_folder"]["statistics_files"] == 2  # Statistik_10 and its link
    assert status["iteration"] == 10  # Statistik_40.json is a link to Statistik_10.json


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A run folder holding every kind of name the read path refuses, and good files."""
    base = tmp_path_factory.mktemp("hostile")
    run, outside = base / "run", base / "outside"
    (run / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"key": "TOP-SECRET"}\n')
    (run / "sub" / "inside.jsonl").write_text('{"key": "in a subfolder"}\n')
    (run / "config_changes.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n')
    (run / "link_in.jsonl").symlink_to(run / "config_changes.jsonl")  # inside: read
    (run / "link_out.jsonl").symlink_to(outside / "secret.jsonl")
    (run / "link_up.jsonl").symlink_to("../outside/secret.jsonl")
    (run / "link_abs.jsonl").symlink_to("/etc/passwd")
    (run / "link_root.jsonl").symlink_to(run)  # the folder itself
    (run / "dangling.jsonl").symlink_to(run / "gone.jsonl")
    (run / "dir.jsonl").mkdir()
    os.mkfifo(run / "fifo.jsonl")  # a plain open() would block
    os.mkfifo(run / "fifo\n\x1b[31mforged.jsonl")
    names = [
        "config_changes.jsonl",
        "link_in.jsonl",
        "sub/inside.jsonl",  # a file inside, but not a plain name
        "../outside/secret.jsonl",
        f"{outside}/secret.jsonl",
        "link_out.jsonl",
        "link_up.jsonl",
        "link_abs.jsonl",
        "link_root.jsonl",
        "dangling.jsonl",
        "dir.jsonl",
        "fifo.jsonl",
        "fifo\n\x1b[31mforged.jsonl",
        "missing.jsonl",
        ".",
        "..",
        "",
        "nul\0.jsonl",
    ]
    return os.path.realpath(run), names


def _outcome(read: Any, root: str, name: str) -> tuple[str, Any]:
    from vsrkit.monitor.runfolder import _Refused

    try:
        return "read", read(root, name, 1 << 20)
    except _Refused as exc:
        return "refused", str(exc)


def test_the_tail_path_refuses_what_the_read_path_refuses(
    hostile_folder: tuple[str, list[str]],
) -> None:
    from vsrkit.monitor.runfolder import _read_inside, _tail_inside

    root, names = hostile_folder
    for name in names:
        whole, tail = _outcome(_read_inside, root, name), _outcome(_tail_inside, root, name)
        assert whole == tail, name
        if whole[0] == "refused":  # one printable line, whatever the name holds
            assert whole[1].isprintable(), whole[1]
    outcomes = {n: _outcome(_tail_inside, root, n) for n in names[2:]}
    assert all(kind == "refused" for kind, _ in outcomes.values()), outcomes
    refused = {n: text for n, (_, text) in outcomes.items()}
    assert refused["sub/inside.jsonl"] == "sub/inside.jsonl: not a plain file name"
    assert "a link that leads out of the run folder" in refused["link_out.jsonl"]
    assert "a link that leads out of the run folder" in refused["link_root.jsonl"]
    assert refused["fifo.jsonl"] == "fifo.jsonl: not a regular file, not read"
    assert refused["fifo\n\x1b[31mforged.jsonl"].startswith("fifo\\n\\x1b[31mforged.jsonl: ")
    assert all(b"TOP-SECRET" not in str(v).encode() for v in refused.values())
    assert _tail_inside(root, "link_in.jsonl", 1 << 20) == b'{"key": "a"}\n{"key": "b"}\n'
    assert _tail_inside(root, "config_changes.jsonl", 16) == b'{"key": "b"}\n'  # a line start


@given(name=st.one_of(st.text(max_size=40), st.sampled_from(["sub", "dir.jsonl", "link_in.jsonl"])))
def test_read_and_tail_agree_on_any_name(hostile_folder: tuple[str, list[str]], name: str) -> None:
    from vsrkit.monitor.runfolder import _read_inside, _tail_inside

    root, _ = hostile_folder
    assert _outcome(_read_inside, root, name) == _outcome(_tail_inside, root, name)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_statistics_are_null_with_a_reason(tmp_path: Path, bad: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    text = json.dumps(_statistik(10, total_loss_value=1.0, quality_ki_value=0.5))
    (run / "Statistik_10.json").write_text(text)
    broken = json.dumps(
        _statistik(
            20,
            total_loss_value=0.0,
            quality_ki_value=0.0,
            layer_activity_map={"Final_Fusion": 0.0},
        )
    )
    broken = broken.replace('"total_loss_value": 0.0', f'"total_loss_value": {bad}')
    broken = broken.replace('"quality_ki_value": 0.0', f'"quality_ki_value": {bad}')
    broken = broken.replace('"Final_Fusion": 0.0', f'"Final_Fusion": {bad}')
    (run / "Statistik_20.json").write_text(broken)
    with _folder_server(run, sse_interval=0.05) as srv:
        status_code, _, body = request(srv, "GET", "/api/status")
        assert status_code == 200
        doc = json.loads(body)
        assert doc["iteration"] == 20 and doc["total_loss"] is None
        assert "is not a number JSON can hold" in doc["missing_reasons"]["total_loss_value"]
        assert doc["fields"]["layer_activity_map"] == {"Final_Fusion": None}
        stats_code, _, stats_body = request(srv, "GET", "/api/stats")
        assert stats_code == 200
        stats = json.loads(stats_body)
        assert stats["total_loss_value"] is None and stats["quality_ki_value"] is None
        assert "Statistik_20.json" in stats["missing_reasons"]["quality_ki_value"]
        data = f"GET /events HTTP/1.1\r\nHost: {host(srv)}\r\nX-Vsrkit-Token: {srv.token}\r\n\r\n"
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(data.encode())
        seen = b""
        while b"event: status" not in seen:
            seen += sock.recv(65536)
        sock.close()
        assert seen.startswith(b"HTTP/1.1 200") and b" 500" not in seen


def test_a_stream_reports_a_failing_snapshot_inside_it(caplog) -> None:
    calls = {"n": 0}

    def flaky() -> dict:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise RuntimeError("snapshot broke")
        return {"step_current": calls["n"]}

    with MonitorServer(
        snapshot=flaky, actions=None, port=0, sse_interval=0.02, max_rate=1000
    ) as srv:
        data = f"GET /events HTTP/1.1\r\nHost: {host(srv)}\r\nX-Vsrkit-Token: {srv.token}\r\n\r\n"
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(data.encode())
        seen = b""
        while seen.count(b"event: problem") < 2 or seen.count(b"event: status") < 2:
            seen += sock.recv(65536)
        sock.close()
    assert seen.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 500" not in seen
    assert b'"status unavailable: RuntimeError"' in seen


def test_a_dead_run_is_stopped_not_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for step in (10, 20):
        (run / f"Statistik_{step}.json").write_text(json.dumps(_statistik(step)))
    with _folder_server(run, stale_after=60) as srv:
        fresh = json.loads(request(srv, "GET", "/api/status")[2])
    assert fresh["run_state"]["state"] == "training"  # files written just now: alive
    old = time.time() - 3600
    for path in run.iterdir():
        os.utime(path, (old, old), follow_symlinks=False)
    with _folder_server(run, stale_after=60) as srv:
        (run / VIEW_TOKEN_FILE).touch()  # the viewer's own file is no sign of life
        dead = json.loads(request(srv, "GET", "/api/status")[2])
    assert dead["run_state"]["state"] == "stopped"
    assert dead["run_state"]["reason"].startswith("no sign of life from the run for 01:00")
    assert dead["time_remaining"] is None and dead["heartbeat_age_s"] > 3000


# -- actions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("order", "paused"),
    [(("pause", "resume"), False), (("resume", "pause"), True), (("pause", "pause"), True)],
)
def test_the_last_of_pause_and_resume_in_a_batch_wins(live, order, paused: bool) -> None:
    for command in order:  # both pressed before the loop's next step boundary
        assert post_json(live, "/api/action", {"command": command})[0] == 202
    assert live.actions is not None
    commands = [a.command for a in live.actions.drain()]
    assert commands == list(order)
    assert pause_state(commands, False) is paused
    assert pause_state(commands, True) is paused
    assert pause_state(["validate", "save"], paused) is paused  # others change nothing
