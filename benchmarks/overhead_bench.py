"""What vsrkit's components cost a training loop, and what the `quick` preset achieves.

Part 1 runs the same training step of the reference model twice, side by side in one process
(alternating, several repeats): once bare (fixed loss weights, a fixed clip, one ``.item()`` per
log interval) and once with every component the recipe wires in (AdaptiveLossWeights.combine,
GradClipAdapter, the device-side interval sums with the fused-AdamW skip of non-finite steps;
layer-activity hooks on the last step of each log interval; per log interval PlateauTracker,
LRBoostPolicy, weight and clip updates, MetricsSnapshot/DeferredStatsWriter, TensorBoard;
RuntimeConfigManager.poll and the monitor's action queue every step). Target: at most 1%
slower at the `small` size.

Part 2 runs ``vsrkit train --preset quick`` (in-process) and reports its wall time and the final
SSIM improvement over bicubic (it must be above zero).

Part 3 (``--threads-bench``) runs ``vsrkit train --preset quick --steps N`` as a child process
alone and beside one CPU-busy process (``python -c "while True: pass"``), once with torch's
default thread count (``--threads K``, K = what torch picks in a fresh process) and once with
vsrkit's default (``--threads auto``), interleaved over ``--rounds`` rounds. It prints the
child's wall time and its steps per second (the last progress line) and the ratio of the two
defaults. Run it on an otherwise quiet machine (under the CPU lock here).

Usage::

    python benchmarks/overhead_bench.py                 # parts 1 and 2
    python benchmarks/overhead_bench.py --skip-quick --model tiny --steps 40
    python benchmarks/overhead_bench.py --skip-overhead --skip-quick --threads-bench
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vsrkit.adaptive import AdaptiveLossWeights, GradClipAdapter, LRBoostPolicy, PlateauTracker
from vsrkit.config import RuntimeConfigManager
from vsrkit.monitor.actions import ActionQueue
from vsrkit.stats import DeferredStatsWriter, LossAccumulator, MetricsSnapshot, TensorBoardLogger
from vsrkit.stats.fields import loss_field
from vsrkit.train import TrainConfig, train
from vsrkit.train.distributed import DistContext
from vsrkit.train.setup import TERMS
from vsrkit.vsr import LayerActivityMonitor, VSRLoss, build_model

WEIGHTS = {"l1": 0.6, "ms": 0.2, "grad": 0.1, "perceptual": 0.1}


def make_step(
    model_name: str,
    batch: int,
    frames: int,
    lr_size: int,
    components: bool,
    run_dir: Path,
    log_every: int,
):
    """A closure that runs one training step (and its log-interval work) and returns nothing."""
    torch.manual_seed(0)
    net = build_model(model_name)
    criterion = VSRLoss()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, fused=True)
    lrs = torch.rand(batch, frames, 3, lr_size, lr_size)
    gts = torch.rand(batch, frames, 3, lr_size * 4, lr_size * 4)
    params = list(net.parameters())
    step = 0

    if not components:

        def bare() -> None:
            nonlocal step
            losses = criterion(net(lrs), gts)
            total = sum(WEIGHTS[k] * v for k, v in losses.items())
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
            step += 1
            if step % log_every == 0:
                float(total.detach())

        return bare, None

    ctx = DistContext()
    weights = AdaptiveLossWeights(TERMS, mode="plateau", initial=WEIGHTS, cooldown=50)
    tracker, policy, clip = (
        PlateauTracker(patience=200),
        LRBoostPolicy(max_lr=8e-4),
        GradClipAdapter(),
    )
    snapshot = MetricsSnapshot()
    stats = DeferredStatsWriter(run_dir, snapshot=snapshot)
    tb = TensorBoardLogger(run_dir / "tensorboard")
    initial = {
        "plateau_patience": 200,
        "plateau_safety_threshold": 1000,
        "cooldown_duration": 50,
        "max_lr": 8e-4,
        "min_lr": 1e-6,
        "grad_clip": 1.0,
        "l1_weight": 0.6,
        "ms_weight": 0.2,
        "grad_weight": 0.1,
        "perceptual_weight": 0.1,
        "val_every": 100,
        "log_every": log_every,
        "ckpt_every": 200,
        "preset": "quick",
        "n_feats": 16,
        "n_blocks": 2,
        "batch_size": batch,
        "scale": 4,
        "num_frames": frames,
        "crop_size": lr_size * 4,
        "data": None,
        "seed": 0,
    }
    runtime = RuntimeConfigManager(run_dir, initial=initial)
    actions = ActionQueue()
    activity = LayerActivityMonitor(net)
    sums = LossAccumulator(TERMS)

    def full() -> None:
        nonlocal step
        activity.enabled = (step + 1) % log_every == 0  # sampled as the recipe does
        losses = criterion(net(lrs), gts)
        total = weights.combine(losses)
        opt.zero_grad(set_to_none=True)
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip.clip_value, foreach=True)
        opt.found_inf = sums.add(losses, total, grad_norm=norm).float()
        opt.step()
        step += 1
        if step % log_every == 0:
            m = sums.read(ctx.mean)
            event = tracker.update(step, m["total"])
            policy.on_event(event, step=step, lrs=[2e-4])
            weights.update(step, {t: m[t] for t in TERMS}, plateau=event)
            clip.observe(step, m["grad_norm"])
            tb.log_losses({t: m[t] for t in TERMS}, step)
            tb.log_plateau_state(event, step)
            tb.log_weights(weights.weights, step)
            report = activity.read(reset=True)
            stats.observe(
                step,
                {
                    "total_loss_value": m["total"],
                    **{loss_field(t): m[t] for t in TERMS},
                    **weights.status(),
                    "layer_activity_map": report.as_stats_field(),
                },
            )
        runtime.poll(step)
        actions.drain()

    def close() -> None:
        activity.close()
        stats.close()
        tb.close()

    return full, close


def overhead(args: argparse.Namespace) -> None:
    print(
        f"# Part 1: components on vs off, model {args.model}, batch {args.batch} x "
        f"{args.frames} frames of {args.lr_size}px, {args.steps} steps x {args.repeats} "
        f"repeats, log every {args.log_every}, {torch.get_num_threads()} threads, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        steps = {
            c: make_step(
                args.model,
                args.batch,
                args.frames,
                args.lr_size,
                c,
                Path(tmp) / str(c),
                args.log_every,
            )
            for c in (False, True)
        }
        for fn, _ in steps.values():  # warm-up
            for _ in range(args.log_every):
                fn()
        for _ in range(args.repeats):
            for comp in (False, True):
                fn = steps[comp][0]
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times[comp].append((time.perf_counter() - t0) / args.steps)
        for _, close in steps.values():
            if close:
                close()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{'loop':<28}{'median s/step':>14}{'best s/step':>13}{'ratio':>8}")
    print(f"{'bare (no vsrkit)':<28}{off:>14.4f}{min(times[False]):>13.4f}{1.0:>8.3f}")
    print(f"{'all vsrkit components':<28}{on:>14.4f}{min(times[True]):>13.4f}{on / off:>8.3f}")
    print(
        f"target <= 1.010: {'met' if on / off <= 1.01 else 'NOT met'} "
        f"(best-of ratio {min(times[True]) / min(times[False]):.3f})"
    )


def quick(args: argparse.Namespace) -> None:
    print(f"\n# Part 2: vsrkit train --preset quick (load {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_sources(
            preset="quick", overrides={"run_dir": tmp, "monitor": False, "tensorboard": True}
        )
        t0 = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - t0
    val = result.last_validation or {}
    print(
        f"{'steps':<10}{'wall s':>9}{'SSIM model':>12}{'SSIM bicubic':>14}{'improvement':>13}"
        f"{'PSNR model':>12}{'PSNR bicubic':>14}"
    )
    print(
        f"{result.step:<10}{wall:>9.1f}{val.get('quality_ki_value', float('nan')):>12.4f}"
        f"{val.get('quality_lr_value', float('nan')):>14.4f}"
        f"{val.get('quality_improvement_value', float('nan')):>+13.4f}"
        f"{val.get('psnr_ki_db', float('nan')):>12.2f}{val.get('psnr_lr_db', float('nan')):>14.2f}"
    )


def _child_env() -> dict[str, str]:
    """The environment of a user who set no thread variables."""
    drop = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _quick_child(threads: str, steps: int) -> tuple[float, float, str]:
    """Wall seconds, steps/s of the final progress line, and the threads line of the log."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "vsrkit", "train", "--preset", "quick"]
        cmd += ["--steps", str(steps), "--run-dir", tmp, "--threads", threads, "--no-monitor"]
        cmd += ["--no-tensorboard", "--no-terminal-view"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"vsrkit train failed: {proc.stderr[-2000:]}")
        rates = re.findall(r"([0-9.]+) it/s", proc.stdout)
        chosen = re.search(r"(\d+) CPU thread\(s\) \(([^)]*)\)", proc.stdout)
    return wall, float(rates[-1]), f"{chosen.group(1)} ({chosen.group(2)})" if chosen else "?"


def threads_bench(args: argparse.Namespace) -> None:
    torch_default = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=_child_env(),
        check=True,
    ).stdout.strip()
    print(
        f"\n# Part 3: vsrkit train --preset quick --steps {args.quick_steps}, alone and beside "
        f"one busy process, {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, "
        f"torch's default {torch_default} threads, load {os.getloadavg()[0]:.1f}"
    )
    modes = [(f"torch default ({torch_default})", torch_default), ("vsrkit auto", "auto")]
    results: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for _ in range(args.rounds):
        for load in ("alone", "beside 1 busy"):
            busy = None
            if load != "alone":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for name, threads in modes:
                    results.setdefault((load, name), []).append(
                        _quick_child(threads, args.quick_steps)
                    )
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"{'load':<15}{'threads':<22}{'wall s':>8}{'it/s':>8}{'vs torch':>10}  chosen")
    for load in ("alone", "beside 1 busy"):
        base = statistics.median(r[1] for r in results[(load, modes[0][0])])
        for name, _ in modes:
            rows = results[(load, name)]
            wall = statistics.median(r[0] for r in rows)
            rate = statistics.median(r[1] for r in rows)
            print(
                f"{load:<15}{name:<22}{wall:>8.1f}{rate:>8.2f}{rate / base:>9.2f}x  {rows[-1][2]}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small", choices=("tiny", "small", "paper"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--lr-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--skip-quick", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--threads-bench", action="store_true", help="run part 3")
    p.add_argument("--quick-steps", type=int, default=100, help="part 3: steps per child run")
    p.add_argument("--rounds", type=int, default=2, help="part 3: interleaved rounds")
    args = p.parse_args()
    if not args.skip_overhead:
        overhead(args)
    if not args.skip_quick:
        quick(args)
    if args.threads_bench:
        threads_bench(args)


if __name__ == "__main__":
    main()
