"""Speed of the reference VSR model: seconds per training step, LR frames/s, FLOPs, peak memory.

A training step is forward + all four :class:`~vsrkit.vsr.VSRLoss` terms + backward + Adam
step on one batch of synthetic clips. Every row runs in its own subprocess so its peak memory
is its own (CPU: peak resident set size of that process; CUDA: ``max_memory_allocated``).
FLOPs are counted once per preset with ``torch.utils.flop_counter.FlopCounterMode`` over an
eager float32 forward + backward (convolutions and matrix products; ``grid_sample`` and
element-wise work are not counted).

Rows side by side in the same run:

- ``bicubic``: the no-model baseline (the skip path alone), frames/s of the upsampling;
- ``cpu fp32``: eager float32 (the reference), and ``cpu fp32 cl`` with channels_last, for
  every preset: the measurement behind ``vsrkit train``'s memory-format default per device;
- on CUDA (when available): ``cuda fp32`` eager (the CUDA baseline), ``cuda fp32 cl``
  (channels_last alone), ``cuda bf16 cl`` (bf16 autocast + channels_last) and
  ``cuda bf16 cl compile`` (+ ``torch.compile``).

With ``--rounds R`` the whole plan runs R times, interleaved (every row once per round), and
the table shows the median over rounds; a second table gives, per preset and device, the
ratio channels_last / contiguous of the s/step within each round (median, min, max): above
1.0 channels_last is slower.

Usage::

    python benchmarks/vsr_bench.py                     # tiny, small, paper on the CPU
    python benchmarks/vsr_bench.py --presets tiny --steps 10
    python benchmarks/vsr_bench.py --rounds 5 --no-flops   # the memory-format decision
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DEFAULT_STEPS = {"tiny": 5, "small": 3, "paper": 2}


def _row(preset: str, mode: str, args: argparse.Namespace) -> dict[str, object]:
    import torch

    from vsrkit.vsr import SyntheticVideoDataset, VSRLoss, bicubic_upsample, build_model

    torch.manual_seed(0)
    device = "cuda" if mode.startswith("cuda") else "cpu"
    ds = SyntheticVideoDataset(
        num_clips=args.batch, num_frames=args.frames, lr_size=args.lr_size, seed=0
    )
    lrs = torch.stack([ds[i][0] for i in range(args.batch)]).to(device)
    gts = torch.stack([ds[i][1] for i in range(args.batch)]).to(device)
    steps = args.steps or DEFAULT_STEPS.get(preset, 3)
    frames = args.batch * args.frames

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if preset == "bicubic":
        bicubic_upsample(lrs)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            bicubic_upsample(lrs)
            sync()
            times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        return {
            "preset": preset,
            "mode": mode,
            "s_per_step": sec,
            "best_s_per_step": min(times),
            "frames_per_s": frames / sec,
        }

    model = build_model(preset).to(device)
    loss_fn = VSRLoss().to(device)
    channels_last = " cl" in mode
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if "compile" in mode else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = "bf16" in mode

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            terms = loss_fn(step_model(lrs), gts)
            total = terms["l1"] + terms["ms"] + terms["grad"] + 0.1 * terms["perceptual"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    sync()
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    row: dict[str, object] = {
        "preset": preset,
        "mode": mode,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "steps": steps,
        "warmup_s": warmup,
        "s_per_step": sec,
        "best_s_per_step": min(times),
        "frames_per_s": frames / sec,
    }
    if args.flops and mode in ("cpu fp32", "cuda fp32"):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            terms = loss_fn(model(lrs), gts)
            sum(terms.values()).backward()
        row["gflop_per_step"] = counter.get_total_flops() / 1e9
    if device == "cuda":
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def _peak_rss_mb() -> float:
    from vsrkit._system import peak_rss_gib

    peak = peak_rss_gib()  # VmHWM: ru_maxrss would count the parent's memory across exec
    return float("nan") if peak is None else peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,paper")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (0: per-preset default)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--lr-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--no-cuda", dest="cuda", action="store_false")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats of the plan")
    parser.add_argument("--row", nargs=2, metavar=("PRESET", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.row:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        row = _row(args.row[0], args.row[1], args)
        if "peak_mem_mb" not in row:
            row["peak_mem_mb"] = _peak_rss_mb()
        print("ROW " + json.dumps(row))
        return

    import torch

    modes = ["cpu fp32", "cpu fp32 cl"]
    cuda = args.cuda and torch.cuda.is_available()
    if cuda:
        modes = ["cuda fp32", "cuda fp32 cl", "cuda bf16 cl", "cuda bf16 cl compile", *modes]
    presets = [p for p in args.presets.split(",") if p]
    plan = [("bicubic", modes[0])]
    for preset in presets:
        plan += [(preset, m) for m in modes]
    base = sys.argv[1:]  # the children parse the same flags (they ignore --rounds)
    rows = []
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} CPU threads, "
        f"cuda={'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}, "
        f"batch {args.batch} x {args.frames} frames of {args.lr_size}x{args.lr_size} LR, "
        f"load average {os.getloadavg()[0]:.1f}; s/step is the median of the timed steps",
        flush=True,
    )
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for r in range(args.rounds):
        for preset, mode in plan:
            if preset != "bicubic" and mode.startswith("cpu") and cuda and preset == "paper":
                continue  # the paper model on the CPU is not useful beside a GPU
            cmd = [sys.executable, __file__, *base, "--row", preset, mode]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
            if proc.returncode != 0 or not lines:
                print(f"{preset} / {mode}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            runs.setdefault((preset, mode), []).append(json.loads(lines[-1][4:]))
            print(f"  round {r + 1}: done {preset} / {mode}", file=sys.stderr, flush=True)
    for samples in runs.values():  # one row per (preset, mode): the median round
        ordered = sorted(samples, key=lambda row: float(row["s_per_step"]))  # type: ignore[arg-type]
        rows.append(ordered[len(ordered) // 2])

    # speed-up against eager float32 of the same preset on the same device
    ref = {
        (r["preset"], r["mode"].split()[0]): r["s_per_step"]
        for r in rows
        if r["mode"] in ("cpu fp32", "cuda fp32") and r["preset"] != "bicubic"
    }
    head = (
        f"{'preset':<8} {'mode':<21} {'params M':>8} {'s/step':>9} {'best':>8} {'LR frames/s':>11} "
        f"{'vs fp32':>7} {'GFLOP/step':>10} {'peak MB':>8}"
    )
    print(head)
    print("-" * len(head))

    def fmt(value: object, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in rows:
        speed = ref.get((r["preset"], r["mode"].split()[0]))
        vs = f"{speed / r['s_per_step']:.2f}x" if speed else "-"
        print(
            f"{r['preset']:<8} {r['mode']:<21} {fmt(r.get('params_m'), '.3f'):>8} "
            f"{r['s_per_step']:>9.4f} {r['best_s_per_step']:>8.4f} "
            f"{r['frames_per_s']:>11.1f} {vs:>7} "
            f"{fmt(r.get('gflop_per_step'), '.2f'):>10} {r['peak_mem_mb']:>8.0f}"
        )

    # channels_last against contiguous, paired within each round
    print(f"\n{'preset':<8} {'device':<6} {'cl / contiguous s/step':>24} {'min':>7} {'max':>7}")
    for preset in presets:
        for device in ("cpu", "cuda"):
            a, b = runs.get((preset, f"{device} fp32")), runs.get((preset, f"{device} fp32 cl"))
            if not a or not b:
                continue
            ratios = [
                float(y["s_per_step"]) / float(x["s_per_step"])  # type: ignore[arg-type]
                for x, y in zip(a, b, strict=False)
            ]
            print(
                f"{preset:<8} {device:<6} {statistics.median(ratios):>24.3f} "
                f"{min(ratios):>7.3f} {max(ratios):>7.3f}"
            )


if __name__ == "__main__":
    main()
