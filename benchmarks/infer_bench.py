"""Inference side by side: streaming vs whole-clip vs segments, frames/s, peak memory, PSNR.

For 30, 120 and 300 low-resolution frames of one synthetic clip (a trained model, the same
frames for every row) it runs, each case in a fresh child process so that its peak resident
memory is its own:

- ``whole-clip``: ``model(clip)``, the reference (all outputs held, as its API returns them);
- ``streaming (spill)``: :func:`vsrkit.infer.upscale_frames` with ``host_budget=0``: every
  frame's features go to the spill file; the target is peak RSS at 300 frames <= 1.2x that at
  30, and frames/s >= 0.9x whole-clip's;
- ``streaming (memory)``: the same with the default host budget (features kept in RAM);
- ``segments of 10``: the old approximation (independent pieces of 10 frames);
- ``streaming (untuned)``: ``streaming (spill)`` without :func:`vsrkit.infer.tune_cpu_allocator`
  (which every other row calls, as the CLI does): glibc's default allocator maps and unmaps
  each frame's activations (see :mod:`vsrkit.infer.allocator`).

PSNR (Y, BasicSR convention) is against the ground truth; ``dPSNR`` is what a mode loses
against whole-clip. frames/s and peak memory are of the inference alone: a streaming mode is
timed with a consumer that drops each frame, then run again (untimed) to score its frames.
Every mode runs in channels_last (streaming's default). A second table compares the memory
formats (contiguous vs channels_last) for streaming inference on this device, for each model
size, which is what chose the CPU default. Peak memory is the child's ``VmHWM``; with
``--repeat N`` each case runs N times, round robin, and the fastest run is shown.

Usage::

    python benchmarks/infer_bench.py                      # trains the quick preset once; ~7 min
    python benchmarks/infer_bench.py --checkpoint runs/quick --frames 30,120 --lr-size 72x128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vsrkit._system import peak_rss_gib

MODES = (
    "whole-clip",
    "streaming (spill)",
    "streaming (memory)",
    "segments of 10",
    "streaming (untuned)",
)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``; see ``vsrkit._system``)."""
    peak = peak_rss_gib()
    return float("nan") if peak is None else peak * 1024


def _read(path: Path, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """One frame of a raw uint8 file, read (not mapped: mapped pages would count as RSS)."""
    n = int(np.prod(shape))
    return np.fromfile(path, dtype=np.uint8, count=n, offset=index * n).reshape(shape)


def _case(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vsrkit.infer import Upscaler, load_model, tune_cpu_allocator
    from vsrkit.vsr.metrics import psnr

    case = json.loads(args.case)
    if case["mode"] != "streaming (untuned)":
        tune_cpu_allocator()  # as vsrkit upscale/eval do, for every mode alike
    data = Path(case["data"])
    meta = json.loads((data / "meta.json").read_text())
    t, (h, w) = case["frames"], meta["lr"]
    lr_shape, gt_shape = (3, h, w), (3, 4 * h, 4 * w)
    mode = case["mode"]
    model: Any
    if mode == "format":
        from vsrkit.vsr import build_model

        model = build_model(case["preset"]).eval()
    else:
        model = load_model(case["checkpoint"], device="cpu")

    def lr_frames(count: int = t):
        for i in range(count):
            yield torch.from_numpy(_read(data / "lr.u8", i, lr_shape))

    # warm-up (kernel choice, allocator) on two frames, the same way for every mode
    cl = case.get("cl", True)  # every mode in the same memory format (streaming's default)
    options: dict[str, object] = {"device": "cpu", "channels_last": cl}
    if cl:
        model.to(memory_format=torch.channels_last)
    if mode == "whole-clip":
        with torch.no_grad():
            model(torch.stack(list(lr_frames(2))).float()[None] / 255)
    else:
        list(Upscaler(model, **options).stream(lr_frames(2)))  # type: ignore[arg-type]
    base_rss = _peak_rss_mib()

    def psnr_of(i: int, sr: torch.Tensor) -> float:
        gt = torch.from_numpy(_read(data / "gt.u8", i, gt_shape)).float() / 255
        return psnr(sr.clamp(0, 1), gt)

    spill = 0
    scores: list[float] = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if mode == "whole-clip":
        clip = torch.stack(list(lr_frames())).float() / 255
        with torch.no_grad():
            out = model(clip[None])[0]
        seconds = time.perf_counter() - started
        peak, after = _peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF)
        if case.get("psnr", True):
            scores = [psnr_of(i, out[i]) for i in range(t)]
    else:
        if mode in ("streaming (spill)", "streaming (untuned)"):
            options["host_budget"] = 0
        if mode == "segments of 10":
            options["segment"] = 10
        up = Upscaler(model, **options)  # type: ignore[arg-type]
        for _ in up.stream(lr_frames()):  # timed alone: no consumer work between frames
            pass
        seconds = time.perf_counter() - started
        peak, after = _peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF)
        spill = up.stats.spill_bytes
        if case.get("psnr", True):  # the same outputs again (deterministic), scored
            scores = [psnr_of(i, sr) for i, sr in up.stream(lr_frames())]
    return {
        **case,
        "seconds": seconds,
        "frames_per_s": t / seconds,
        "psnr": float(np.mean(scores)) if scores else None,
        "peak_rss_mib": peak,
        "base_rss_mib": base_rss,
        "spill_mib": spill / 2**20,
        "sys_s": after.ru_stime - usage.ru_stime,
        "page_faults": after.ru_minflt - usage.ru_minflt,
    }


def _run_child(script: str, case: dict[str, Any], threads: int) -> dict[str, Any] | None:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(
        [sys.executable, script, "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        env=env,
    )
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    if proc.returncode != 0 or not rows:
        print(f"  {case.get('mode')} / {case.get('frames')}: failed\n{proc.stderr[-2000:]}")
        return None
    return json.loads(rows[-1][4:])


def _prepare(work: Path, frames: int, lr: tuple[int, int]) -> Path:
    """The clip's LR and GT frames as raw uint8 files (made once, in this process)."""
    import torch

    from vsrkit.vsr import SyntheticVideoDataset

    data = work / f"clip-{frames}x{lr[0]}x{lr[1]}"
    if (data / "meta.json").is_file():
        return data
    data.mkdir(parents=True, exist_ok=True)
    ds = SyntheticVideoDataset(num_clips=1, num_frames=frames, lr_size=lr, seed=7, split="val")
    lrs, gts = ds[0]
    for name, x in (("lr.u8", lrs), ("gt.u8", gts)):
        (x * 255).round().to(torch.uint8).numpy().tofile(data / name)
    (data / "meta.json").write_text(json.dumps({"frames": frames, "lr": list(lr)}))
    return data


def _checkpoint(args: argparse.Namespace, work: Path) -> str:
    if args.checkpoint:
        return args.checkpoint
    run = work / "quick-run"
    if not (run / "checkpoints").is_dir() or not any((run / "checkpoints").glob("*.pth")):
        print(f"training the quick preset into {run} (once; reused by later runs) ...", flush=True)
        cmd = [sys.executable, "-m", "vsrkit", "train", "--preset", "quick", "--run-dir", str(run)]
        cmd += ["--no-monitor", "--no-tensorboard", "--no-terminal-view"]
        subprocess.run(cmd, check=True, capture_output=True)
    return str(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="run folder or checkpoint (default: train quick)")
    parser.add_argument("--frames", default="30,120,300")
    parser.add_argument("--lr-size", default="72x128", help="LR frame size HxW")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vsrkit-infer-bench"))
    parser.add_argument("--format-presets", default="tiny,small,paper")
    parser.add_argument("--format-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="OMP threads per child (0: all)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the fastest counts")
    parser.add_argument("--keep", action="store_true", help="keep the clip files in --work")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print("ROW " + json.dumps(_case(args)), flush=True)
        return

    import torch

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    lr = tuple(int(v) for v in args.lr_size.lower().split("x"))
    counts = [int(n) for n in args.frames.split(",") if n]
    checkpoint = _checkpoint(args, work)
    data = _prepare(work, max(counts), lr)  # type: ignore[arg-type]
    script = os.path.abspath(__file__)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cuda: no "
        f"(this table is CPU); model {checkpoint}; LR {lr[0]}x{lr[1]} -> {4 * lr[0]}x{4 * lr[1]}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for t in counts:
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for rep in range(args.repeat):  # round robin, the order reversed every other round
            for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                case = {
                    "mode": mode,
                    "frames": t,
                    "data": str(data),
                    "checkpoint": checkpoint,
                    "psnr": rep == 0,  # scored once; later rounds time only
                }
                row = _run_child(script, case, args.threads)
                if row is not None:
                    runs[mode].append(row)
                print(f"  done {mode} / {t} frames (round {rep + 1})", file=sys.stderr, flush=True)
        for mode in MODES:
            if runs[mode]:  # the fastest run (least disturbed), the highest peak memory
                fastest = dict(max(runs[mode], key=lambda r: r["frames_per_s"]))
                fastest["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs[mode])
                fastest["psnr"] = next(r["psnr"] for r in runs[mode] if r["psnr"] is not None)
                rows.append(fastest)

    ref = {r["frames"]: r for r in rows if r["mode"] == "whole-clip"}
    head = (
        f"{'frames':>6} {'mode':<19} {'frames/s':>9} {'vs whole':>8} {'peak RSS MiB':>12} "
        f"{'vs first':>8} {'spill MiB':>9} {'PSNR dB':>8} {'dPSNR':>7} {'sys s':>6}"
    )
    print(head)
    print("-" * len(head))
    first = {r["mode"]: r for r in rows if r["frames"] == counts[0]}
    for r in rows:
        base = ref.get(r["frames"])
        speed = f"{r['frames_per_s'] / base['frames_per_s']:.2f}x" if base else "-"
        dpsnr = f"{r['psnr'] - base['psnr']:+.3f}" if base else "-"
        growth = first.get(r["mode"])
        grow = f"{r['peak_rss_mib'] / growth['peak_rss_mib']:.2f}x" if growth else "-"
        print(
            f"{r['frames']:>6} {r['mode']:<19} {r['frames_per_s']:>9.2f} {speed:>8} "
            f"{r['peak_rss_mib']:>12.0f} {grow:>8} {r['spill_mib']:>9.1f} {r['psnr']:>8.3f} "
            f"{dpsnr:>7} {r['sys_s']:>6.1f}"
        )

    presets = [p for p in args.format_presets.split(",") if p]
    if presets:
        print(f"\nmemory format, streaming {args.format_frames} frames of {lr[0]}x{lr[1]} (CPU)")
        fmt_rows = []
        for preset in presets:
            for fmt in (False, True):
                case = {
                    "mode": "format",
                    "preset": preset,
                    "cl": fmt,
                    "frames": args.format_frames,
                    "data": str(data),
                    "psnr": False,
                }
                row = _run_child(script, case, args.threads)
                if row is not None:
                    fmt_rows.append(row)
        print(f"{'preset':<7} {'contiguous fr/s':>15} {'channels_last fr/s':>18} {'cl/contig':>9}")
        for preset in presets:
            by = {r["cl"]: r for r in fmt_rows if r["preset"] == preset}
            if len(by) == 2:
                a, b = by[False]["frames_per_s"], by[True]["frames_per_s"]
                print(f"{preset:<7} {a:>15.2f} {b:>18.2f} {b / a:>8.2f}x")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
