"""Does the web monitor slow training down? A CPU training-like loop, side by side.

Run: ``python benchmarks/monitor_bench.py [--seconds 2] [--pairs 8] [--stress-seconds 10]``
(``--only patches`` or ``--only flood`` for one of the hostile scenarios E and F).

The loop does what a training step does to the monitor's shared objects: matmuls (torch,
forward + backward of a small MLP), a ``MetricsSnapshot.update`` every step and an
``ActionQueue.drain`` at every step boundary. Scenarios, all on loopback:

- A  no monitor (baseline)
- B  monitor serving, no client
- C  one open dashboard: a client process that loads ``/`` and ``/api/config`` and holds
     ``/events`` open, like a browser tab
- D  8 concurrent clients for ``--stress-seconds``: a process with 8 threads fetching
     ``/api/status`` back to back on keep-alive connections; requests/s, p50/p99 latency,
     errors and the training slowdown under that stress, with the default pacing
     (``max_request_rate=50``)
- D' the same flood against a server without pacing (``max_request_rate=None``)

- E  100 oversized config patches (about 1,300 unknown keys each, within the 16 KB body
     limit) sent with the token during training, which polls a real RuntimeConfigManager
     every 10 steps; alternating with windows of the same loop without them (A')
- F  a normal client polling ``/api/status`` (with the token, every 100 ms) while 200
     clients flood the server with refused requests (no token, or a foreign Host),
     against the same client alone; p50/p99/max latency and its errors

A and C (A' and E) alternate in ``--pairs`` short windows; a slowdown is the median of the
paired ratios, which cancels most of the drift of a shared machine. Targets: C <= 1 %, D
errors 0, E within 5 % of A'. The clients run in other processes, so D, E and F include the
CPU they take from the machine. All traffic goes to 127.0.0.1; every client stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from vsrkit.config import RuntimeConfigManager, example_settings
from vsrkit.monitor import ActionQueue, MonitorServer
from vsrkit.stats import MetricsSnapshot

TOKEN_ENV = "VSRKIT_BENCH_TOKEN"  # the clients get the token here, not on a command line


def _auth() -> dict[str, str]:
    return {"X-Vsrkit-Token": os.environ.get(TOKEN_ENV, "")}


def _percentiles(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": lat[-1] * 1000 if lat else 0}


# -- clients (run in a child process: ``--client sse|stress``) --------------------------------
def client_sse(port: int) -> dict[str, Any]:
    """A dashboard tab that comes and goes: obeys "on" / "off" / "quit" lines on stdin."""
    events = 0
    conn: http.client.HTTPConnection | None = None

    def read(resp: Any) -> None:
        nonlocal events
        while True:
            try:
                line = resp.fp.readline()
            except (OSError, ValueError, AttributeError):
                return
            if not line:
                return
            events += line.startswith(b"data: ")

    for command in sys.stdin:
        command = command.strip()
        if command == "on":
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for path in ("/", "/api/config"):
                conn.request("GET", path, headers=_auth())
                conn.getresponse().read()
            conn.request("GET", "/events", headers=_auth())
            threading.Thread(target=read, args=(conn.getresponse(),), daemon=True).start()
        elif command in ("off", "quit") and conn is not None:
            if conn.sock is not None:
                conn.sock.close()
            conn.close()
            conn = None
        print("ok", flush=True)
        if command == "quit":
            break
    return {"events": events}


def client_stress(port: int, seconds: float, threads: int) -> dict[str, Any]:
    """``threads`` clients fetching ``/api/status`` back to back for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                conn.request("GET", "/api/status", headers=_auth())
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or not body:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            latencies[i].append(time.perf_counter() - t)
        conn.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    lat = [x for part in latencies for x in part]
    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        **_percentiles(lat),
        "errors": sum(errors),
    }


def oversized_patch(keys: int = 1300) -> bytes:
    """A config patch of ``keys`` unknown keys that still fits the 16 KB body limit."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = []
    for i in range(keys):
        name = letters[i % 26]
        while i >= 26:
            i = i // 26 - 1
            name = letters[i % 26] + name
        names.append("z" + name)
    return json.dumps(dict.fromkeys(names, 0)).encode()


def client_patches(port: int, count: int) -> dict[str, Any]:
    """Waits for "go" on stdin, then sends ``count`` oversized patches back to back."""
    body = oversized_patch()
    headers = {**_auth(), "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    lat: list[float] = []
    print("ready", flush=True)
    sys.stdin.readline()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        t = time.perf_counter()
        try:
            conn.request("POST", "/api/config", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException):
            statuses[0] = statuses.get(0, 0) + 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat.append(time.perf_counter() - t)
    conn.close()
    return {"statuses": statuses, "bytes": len(body), **_percentiles(lat)}


def client_flood(port: int, seconds: float, threads: int) -> dict[str, Any]:
    """``threads`` clients sending refused requests (no token / a foreign Host) for ``seconds``:
    connect, one request, read the answer, close, again."""
    deadline = time.monotonic() + seconds
    counts = [0] * threads
    answers: dict[str, int] = {}
    lock = threading.Lock()
    requests = [
        f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(),
        f"GET /api/status HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n".encode(),
        f"POST /api/config HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n"
        "Content-Type: application/json\r\n\r\n{}".encode(),
    ]

    def worker(i: int) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(requests[counts[i] % len(requests)])
                    head = sock.recv(64)
                code = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "closed"
            except OSError as exc:
                code = type(exc).__name__
            counts[i] += 1
            with lock:
                answers[code] = answers.get(code, 0) + 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"requests": sum(counts), "answers": answers}


def client_normal(port: int, seconds: float, interval: float, keep: bool) -> dict[str, Any]:
    """A page polling ``/api/status`` with the token every ``interval`` s: a new connection
    each time (``keep`` False), or one kept-alive connection as a browser tab holds."""
    deadline = time.monotonic() + seconds
    lat: list[float] = []
    errors: dict[str, int] = {}
    conn = None
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/status", headers=_auth())
            resp = conn.getresponse()
            resp.read()
            if not keep or resp.will_close:
                conn.close()
                conn = None
            if resp.status != 200:
                errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
            else:
                lat.append(time.perf_counter() - t)
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, interval - (time.perf_counter() - t)))
    return {"requests": len(lat) + sum(errors.values()), **_percentiles(lat), "errors": errors}


# -- the training-like loop -------------------------------------------------------------------
OTHER_CPU: list[float] = []  # per window: CPU seconds of other threads per wall second
POLL_S: list[float] = []  # seconds of each RuntimeConfigManager.poll that did work


_STEPS: dict[str, Any] = {}


def make_step(model: str, size: int) -> tuple[Any, int]:
    """A training step (returns the loss tensor) and the block size its times are taken over.

    ``mlp``: forward + backward of a small MLP (about 2 ms: a worst case for contention);
    ``vsr``: one step of the reference model as ``vsrkit train --preset quick`` runs it
    (the ``tiny`` BasicVSR-style model, 4 clips of 5 frames, 16x16 -> 64x64, AdamW).
    """
    import torch

    key = f"{model}-{size}"
    if key in _STEPS:
        return _STEPS[key]
    torch.manual_seed(0)
    if model == "vsr":
        from vsrkit.vsr import build_model

        net = build_model("tiny")
        opt: Any = torch.optim.AdamW(net.parameters(), lr=1e-4)
        lrs, gts = torch.rand(4, 5, 3, 16, 16), torch.rand(4, 5, 3, 64, 64)

        def vsr() -> Any:
            loss = (net(lrs) - gts).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        _STEPS[key] = (vsr, 1)
    else:
        mlp = torch.nn.Sequential(
            torch.nn.Linear(size, size), torch.nn.ReLU(), torch.nn.Linear(size, size)
        )
        opt = torch.optim.SGD(mlp.parameters(), lr=1e-3)
        x = torch.randn(64, size)

        def step_mlp() -> Any:
            loss = mlp(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        _STEPS[key] = (step_mlp, 20)
    return _STEPS[key]


def train_for(
    seconds: float,
    size: int,
    snap: MetricsSnapshot,
    queue: ActionQueue,
    config: RuntimeConfigManager | None = None,
    model: str = "mlp",
) -> float:
    """Run steps for ``seconds``; return the median step time over blocks of steps (s).

    With ``config``, ``config.poll(step)`` runs every step (it works every 10th), as in the
    recipe. Also appends to ``OTHER_CPU`` the CPU time that threads other than this one (the
    monitor's) used per second of wall time: a measure that other processes cannot disturb.
    """
    train_step, block = make_step(model, size)
    blocks: list[float] = []
    cpu0, own0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    step, t_block = 0, time.perf_counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(blocks) < 3:
        loss = train_step()
        step += 1
        snap.update(
            step,
            step_current=step,
            total_loss_value=float(loss.detach()),
            learning_rate_value=1e-3,
            iteration_duration=0.01,
            layer_activity_map={"Backward_1": 0.4, "Forward_1": 0.7, "Fusion": 1.1},
        )
        queue.drain()
        if config is not None:
            t_poll = time.perf_counter()
            config.poll(step)
            if step % config.poll_every == 0:
                POLL_S.append(time.perf_counter() - t_poll)
        if step % block == 0:
            now = time.perf_counter()
            blocks.append((now - t_block) / block)
            t_block = now
    other = (time.process_time() - cpu0) - (time.thread_time() - own0)
    OTHER_CPU.append(max(0.0, other) / (time.perf_counter() - wall0))
    return statistics.median(blocks)


def spawn(
    kind: str, srv: MonitorServer, seconds: float = 0.0, *extra: str
) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--client", kind, "--port", str(srv.port)]
    cmd += ["--seconds", str(seconds), *extra]
    env = {**os.environ, TOKEN_ENV: srv.token}
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def tell(client: subprocess.Popen[str], command: str) -> None:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(command + "\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "ok"


TOKEN = ""  # one token for every server of a run, so a client outlives a server restart


def server(snap: MetricsSnapshot, queue: ActionQueue, port: int = 0, **kw: Any) -> MonitorServer:
    return MonitorServer(snapshot=snap, actions=queue, port=port, token=TOKEN, **kw).start()


def row(name: str, t: float, ratio: float, cpu: float, extra: str = "") -> None:
    change = f"{100 * (ratio - 1):+7.2f} %"
    print(f"| {name:<36} | {t * 1000:9.3f} | {change} | {100 * cpu:8.3f} % | {extra}")


def table_head(base: str) -> None:
    print(f"| {'scenario':<36} | {'step (ms)':>9} | {'vs ' + base:>9} | {'mon. CPU':>10} | notes")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 11}|{'-' * 12}|------")


def run_dashboard(args: argparse.Namespace, snap: MetricsSnapshot, queue: ActionQueue) -> None:
    """Scenarios A-D': no monitor, idle monitor, one dashboard, 8 clients (paced, unpaced)."""
    srv = server(snap, queue)
    port = srv.port
    idle = train_for(args.seconds, args.size, snap, queue)  # B
    idle_cpu = OTHER_CPU[-1]
    base, dash, ratios, base_cpu, dash_cpu = [], [], [], [], []
    dashboard = spawn("sse", srv)
    for _ in range(args.pairs):
        srv.stop()  # A: no monitor at all
        base.append(train_for(args.seconds, args.size, snap, queue))
        base_cpu.append(OTHER_CPU[-1])
        srv = server(snap, queue, port)
        tell(dashboard, "on")  # C: one open dashboard
        time.sleep(0.3)
        dash.append(train_for(args.seconds, args.size, snap, queue))
        dash_cpu.append(OTHER_CPU[-1])
        tell(dashboard, "off")
        ratios.append(dash[-1] / base[-1])
    tell(dashboard, "quit")
    assert dashboard.stdout is not None
    events = json.loads(dashboard.stdout.readline())["events"]
    dashboard.wait(timeout=30)
    client = spawn("stress", srv, args.stress_seconds)
    time.sleep(0.3)
    stress_step = train_for(args.stress_seconds - 0.6, args.size, snap, queue)  # D
    stress_cpu = OTHER_CPU[-1]
    stress = json.loads(client.communicate(timeout=120)[0])
    builds = srv.builds
    srv.stop()
    srv = server(snap, queue, port, max_request_rate=None)
    client = spawn("stress", srv, args.stress_seconds)
    time.sleep(0.3)
    flood_step = train_for(args.stress_seconds - 0.6, args.size, snap, queue)  # D'
    flood_cpu = OTHER_CPU[-1]
    flood = json.loads(client.communicate(timeout=120)[0])
    srv.stop()
    a = statistics.median(base)
    print(
        f"\nA-D: {args.pairs} alternating A/C pairs of {args.seconds:g} s; "
        "step time = median over 20-step blocks\n"
    )
    table_head("A")
    row(
        "A  no monitor (baseline)",
        a,
        1.0,
        statistics.median(base_cpu),
        f"windows {min(base) * 1e3:.3f}-{max(base) * 1e3:.3f}",
    )
    row("B  monitor serving, no client", idle, idle / a, idle_cpu, "one window")
    row(
        "C  one open dashboard (/events)",
        statistics.median(dash),
        statistics.median(ratios),
        statistics.median(dash_cpu),
        f"median of paired ratios; windows {min(dash) * 1e3:.3f}-{max(dash) * 1e3:.3f}; "
        f"{events} events pushed",
    )
    row(
        f"D  8 clients, {args.stress_seconds:g} s (paced)", stress_step, stress_step / a, stress_cpu
    )
    row("D' 8 clients, max_request_rate=None", flood_step, flood_step / a, flood_cpu)
    print(
        "\nmon. CPU = CPU time of the process's other threads (the monitor) per second of "
        "training wall time; unlike step times it is not disturbed by other processes."
    )
    print(f"\n8 concurrent clients on /api/status, {args.stress_seconds:g} s each:\n")
    print("| server                         | requests | req/s | p50 (ms) | p99 (ms) | errors |")
    print("|--------------------------------|----------|-------|----------|----------|--------|")
    for name, r in (("D  default (50 req/s paced)", stress), ("D' max_request_rate=None", flood)):
        print(
            f"| {name:<30} | {r['requests']:8d} | {r['rps']:5.0f} | {r['p50_ms']:8.2f} | "
            f"{r['p99_ms']:8.2f} | {r['errors']:6d} |"
        )
    print(f"\nthe status document was built {builds} times during D (max_rate 5/s)")


def run_patches(args: argparse.Namespace, snap: MetricsSnapshot, queue: ActionQueue) -> None:
    """Scenario E: 100 oversized config patches per window, against windows without."""
    models = ["mlp", "vsr"] if args.patch_model == "both" else [args.patch_model]
    print(
        f"\nE: alternating A'/E window pairs; in each E window {args.patches} patches of "
        f"{len(oversized_patch())} bytes (1,300 unknown keys) sent with the token, back to back "
        "(paced by the server); the loop polls a RuntimeConfigManager every 10 steps\n"
    )
    table_head("A'")
    notes = []
    for model in models:
        seconds = args.patch_seconds if model == "mlp" else max(args.patch_seconds, 8.0)
        pairs = args.patch_pairs
        with tempfile.TemporaryDirectory(prefix="vsrkit-bench-") as tmp:
            run = Path(tmp)
            config = RuntimeConfigManager(run, initial=example_settings(), poll_every=10)
            srv = server(snap, queue, config=config)
            train_for(1.0, args.size, snap, queue, config, model)  # warm-up of this step
            quiet, hostile, ratios, quiet_cpu, hostile_cpu, answers = [], [], [], [], [], []
            POLL_S.clear()
            for _ in range(pairs):
                quiet.append(train_for(seconds, args.size, snap, queue, config, model))  # A'
                quiet_cpu.append(OTHER_CPU[-1])
                client = spawn("patches", srv, 0.0, "--count", str(args.patches))
                assert client.stdout is not None and client.stdin is not None
                assert client.stdout.readline().strip() == "ready"
                client.stdin.write("go\n")
                client.stdin.flush()
                hostile.append(train_for(seconds, args.size, snap, queue, config, model))  # E
                hostile_cpu.append(OTHER_CPU[-1])
                answers.append(json.loads(client.communicate(timeout=120)[0]))
                ratios.append(hostile[-1] / quiet[-1])
            slowest_poll = max(POLL_S) if POLL_S else float("nan")
            srv.stop()
            log = run / "config_changes.jsonl"
            lines = log.read_text().count("\n") if log.exists() else 0
            size = log.stat().st_size if log.exists() else 0
        label = "MLP" if model == "mlp" else "VSR quick"
        row(
            f"A' {label}: no patches",
            statistics.median(quiet),
            1.0,
            statistics.median(quiet_cpu),
            f"{pairs} pairs of {seconds:g} s; windows "
            f"{min(quiet) * 1e3:.3f}-{max(quiet) * 1e3:.3f}",
        )
        row(
            f"E  {label}: {args.patches} oversized patches",
            statistics.median(hostile),
            statistics.median(ratios),
            statistics.median(hostile_cpu),
            f"median of paired ratios (target <= +5 %); windows "
            f"{min(hostile) * 1e3:.3f}-{max(hostile) * 1e3:.3f}",
        )
        codes: dict[str, int] = {}
        for a in answers:
            for code, n in a["statuses"].items():
                codes[code] = codes.get(code, 0) + n
        notes.append(
            f"{label}: {sum(codes.values())} patches answered {codes} (p99 "
            f"{max(a['p99_ms'] for a in answers):.1f} ms); config_changes.jsonl {lines} lines, "
            f"{size / 1024:.1f} KiB; slowest poll {slowest_poll * 1000:.2f} ms"
        )
    print()
    for note in notes:
        print(note)


def run_flood(args: argparse.Namespace, snap: MetricsSnapshot, queue: ActionQueue) -> None:
    """Scenario F: normal clients alone, then during a flood of 200 refused clients."""
    srv = server(snap, queue)
    results: dict[tuple[str, str], Any] = {}
    steps, cpus = {}, {}
    procs = max(1, args.flood_clients // 50)
    flood_answers: dict[str, int] = {}
    flood_requests = 0
    refused = 0
    for name in ("alone", "flood"):
        refused0 = srv.refused_connections
        floods = []
        if name == "flood":
            for _ in range(procs):
                threads = str(args.flood_clients // procs)
                floods.append(spawn("flood", srv, args.flood_seconds, "--threads", threads))
            time.sleep(0.5)
        normals = {
            kind: spawn(kind, srv, args.flood_seconds - 1.0) for kind in ("normal", "normal-keep")
        }
        steps[name] = train_for(args.flood_seconds - 1.0, args.size, snap, queue)
        cpus[name] = OTHER_CPU[-1]
        for kind, proc in normals.items():
            results[(name, kind)] = json.loads(proc.communicate(timeout=120)[0])
        for proc in floods:
            done = json.loads(proc.communicate(timeout=120)[0])
            flood_requests += done["requests"]
            for code, n in done["answers"].items():
                flood_answers[code] = flood_answers.get(code, 0) + n
        refused = srv.refused_connections - refused0
    srv.stop()
    print(
        f"\nF: a normal client polling /api/status every 100 ms for {args.flood_seconds - 1:g} s "
        f"(a new connection each time, or one kept alive as a browser tab does), alone and "
        f"while {args.flood_clients} clients ({procs} processes) send refused requests (no "
        "token / foreign Host / POST without token), a new connection each\n"
    )
    print(
        "| normal client         | requests | p50 (ms) | p99 (ms) | max (ms) | errors "
        "| step vs alone | mon. CPU |"
    )
    print(
        "|-----------------------|----------|----------|----------|----------|--------"
        "|---------------|----------|"
    )
    for name in ("alone", "flood"):
        for kind in ("normal", "normal-keep"):
            r = results[(name, kind)]
            label = f"{name}, {'new conn.' if kind == 'normal' else 'keep-alive'}"
            print(
                f"| {label:<21} | {r['requests']:8d} | {r['p50_ms']:8.2f} | {r['p99_ms']:8.2f} | "
                f"{r['max_ms']:8.1f} | {sum(r['errors'].values()):6d} | "
                f"{100 * (steps[name] / steps['alone'] - 1):+12.1f} % | {100 * cpus[name]:6.1f} % |"
            )
    errors = {
        k: v for (n, k2), r in results.items() if n == "flood" for k, v in r["errors"].items()
    }
    print(
        f"\nflood: {flood_requests} refused requests answered {flood_answers}; {refused} "
        f"connections got 503 from the accepting thread (max_connections "
        f"{srv.max_connections}); normal-client errors during the flood: {errors or 'none'}; "
        "step and mon. CPU: the training-like loop during the window (the flood processes "
        "share the machine's cores)"
    )


def main() -> None:
    global TOKEN
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of an A/B/C window")
    ap.add_argument("--pairs", type=int, default=8, help="alternating A/C window pairs")
    ap.add_argument("--stress-seconds", type=float, default=10.0)
    ap.add_argument("--patch-pairs", type=int, default=4, help="alternating A'/E window pairs")
    ap.add_argument("--patch-seconds", type=float, default=3.0, help="length of an A'/E window")
    ap.add_argument("--patches", type=int, default=100, help="oversized patches per E window")
    ap.add_argument("--patch-model", choices=["mlp", "vsr", "both"], default="both")
    ap.add_argument("--flood-seconds", type=float, default=9.0)
    ap.add_argument("--flood-clients", type=int, default=200)
    ap.add_argument("--only", choices=["dashboard", "patches", "flood"], default=None)
    ap.add_argument("--size", type=int, default=512, help="MLP width")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument(
        "--client",
        choices=["sse", "stress", "patches", "flood", "normal", "normal-keep"],
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=50, help=argparse.SUPPRESS)
    args = ap.parse_args()
    clients = {
        "sse": lambda: client_sse(args.port),
        "stress": lambda: client_stress(args.port, args.seconds, 8),
        "patches": lambda: client_patches(args.port, args.count),
        "flood": lambda: client_flood(args.port, args.seconds, args.threads),
        "normal": lambda: client_normal(args.port, args.seconds, 0.1, False),
        "normal-keep": lambda: client_normal(args.port, args.seconds, 0.1, True),
    }
    if args.client is not None:
        print(json.dumps(clients[args.client]()), flush=True)
        return

    import logging
    import secrets

    import torch

    logging.getLogger("vsrkit").addHandler(logging.NullHandler())  # refusals: no console noise
    TOKEN = secrets.token_urlsafe(24)
    torch.set_num_threads(args.torch_threads)
    snap, queue = MetricsSnapshot(), ActionQueue()
    train_for(1.0, args.size, snap, queue)  # warm-up
    print(
        f"monitor_bench: MLP {args.size}x{args.size}, batch 64, torch threads "
        f"{args.torch_threads}; all traffic to 127.0.0.1"
    )
    if args.only in (None, "dashboard"):
        run_dashboard(args, snap, queue)
    if args.only in (None, "patches"):
        run_patches(args, snap, queue)
    if args.only in (None, "flood"):
        run_flood(args, snap, queue)


if __name__ == "__main__":
    main()
