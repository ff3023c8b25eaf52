"""Does the web monitor slow training down? A CPU training-like loop, side by side.

Run: ``python benchmarks/monitor_bench.py [--seconds 2] [--pairs 8] [--stress-seconds 10]``

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

A and C alternate in ``--pairs`` short windows; C's slowdown is the median of the paired
ratios, which cancels most of the drift of a shared machine. Targets: C <= 1 %, D errors 0.
The clients run in another process, so D includes the CPU they take from the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from vsrkit.monitor import ActionQueue, MonitorServer
from vsrkit.stats import MetricsSnapshot


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
                conn.request("GET", path)
                conn.getresponse().read()
            conn.request("GET", "/events")
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
                conn.request("GET", "/api/status")
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
    lat = sorted(x for part in latencies for x in part)

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "errors": sum(errors),
    }


# -- the training-like loop -------------------------------------------------------------------
OTHER_CPU: list[float] = []  # per window: CPU seconds of other threads per wall second


def train_for(seconds: float, size: int, snap: MetricsSnapshot, queue: ActionQueue) -> float:
    """Run steps for ``seconds``; return the median step time over 20-step blocks (s).

    Also appends to ``OTHER_CPU`` the CPU time that threads other than this one (the
    monitor's) used per second of wall time: a measure that other processes cannot disturb.
    """
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(size, size), torch.nn.ReLU(), torch.nn.Linear(size, size)
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, size)
    blocks: list[float] = []
    cpu0, own0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    step, t_block = 0, time.perf_counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(blocks) < 3:
        loss = model(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
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
        if step % 20 == 0:
            now = time.perf_counter()
            blocks.append((now - t_block) / 20)
            t_block = now
    other = (time.process_time() - cpu0) - (time.thread_time() - own0)
    OTHER_CPU.append(max(0.0, other) / (time.perf_counter() - wall0))
    return statistics.median(blocks)


def spawn(kind: str, port: int, seconds: float = 0.0) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--client", kind, "--port", str(port)]
    cmd += ["--seconds", str(seconds)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def tell(client: subprocess.Popen[str], command: str) -> None:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(command + "\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of an A/B/C window")
    ap.add_argument("--pairs", type=int, default=8, help="alternating A/C window pairs")
    ap.add_argument("--stress-seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=512, help="MLP width")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--client", choices=["sse", "stress"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client == "sse":
        print(json.dumps(client_sse(args.port)), flush=True)
        return
    if args.client == "stress":
        print(json.dumps(client_stress(args.port, args.seconds, 8)))
        return

    import torch

    torch.set_num_threads(args.torch_threads)
    snap, queue = MetricsSnapshot(), ActionQueue()
    train_for(1.0, args.size, snap, queue)  # warm-up
    srv = MonitorServer(snapshot=snap, actions=queue, port=0).start()
    port = srv.port
    idle = train_for(args.seconds, args.size, snap, queue)  # B
    idle_cpu = OTHER_CPU[-1]
    base, dash, ratios, base_cpu, dash_cpu = [], [], [], [], []
    dashboard = spawn("sse", port)
    for _ in range(args.pairs):
        srv.stop()  # A: no monitor at all
        base.append(train_for(args.seconds, args.size, snap, queue))
        base_cpu.append(OTHER_CPU[-1])
        srv = MonitorServer(snapshot=snap, actions=queue, port=port).start()
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
    client = spawn("stress", port, args.stress_seconds)
    time.sleep(0.3)
    stress_step = train_for(args.stress_seconds - 0.6, args.size, snap, queue)  # D
    stress_cpu = OTHER_CPU[-1]
    stress = json.loads(client.communicate(timeout=120)[0])
    builds = srv.builds
    srv.stop()
    srv = MonitorServer(snapshot=snap, actions=queue, port=port, max_request_rate=None).start()
    client = spawn("stress", port, args.stress_seconds)
    time.sleep(0.3)
    flood_step = train_for(args.stress_seconds - 0.6, args.size, snap, queue)  # D'
    flood_cpu = OTHER_CPU[-1]
    flood = json.loads(client.communicate(timeout=120)[0])
    srv.stop()
    a = statistics.median(base)

    def row(name: str, t: float, ratio: float, cpu: float, extra: str = "") -> None:
        print(
            f"| {name:<36} | {t * 1000:9.3f} | {100 * (ratio - 1):+7.2f} % | "
            f"{100 * cpu:8.3f} % | {extra}"
        )

    print(
        f"\nmonitor_bench: MLP {args.size}x{args.size}, batch 64, torch threads "
        f"{args.torch_threads}; {args.pairs} alternating A/C pairs of {args.seconds:g} s; "
        "step time = median over 20-step blocks\n"
    )
    print(f"| {'scenario':<36} | {'step (ms)':>9} | {'vs A':>9} | {'mon. CPU':>10} | notes")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 11}|{'-' * 12}|------")
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


if __name__ == "__main__":
    main()
