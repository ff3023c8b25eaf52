"""Checkpoint speed, side by side against durable raw torch baselines in the same run.

Run: ``python benchmarks/checkpoint_bench.py [--mb 75] [--repeat 7] [--dir PATH]``

Rows give the median and the best of ``--repeat`` runs, each run alternating with its baseline
(on a busy shared machine the best is the least noisy figure). The files go to the disk of
``--dir`` (default: a temp folder under the current directory, so tmpfs does not make fsync
free). The rows:

- sync ``save`` vs the durable baseline ``torch.save`` to an open file + flush + fsync, a new
  file per save and the one from two saves ago deleted, the same file work as the manager
  with ``keep=LatestN(2)`` (target ratio <= 1.10); raw ``torch.save(state, path)`` without
  fsync is printed for reference;
- time the caller is blocked by an async ``save`` vs a sync ``save`` (target <= 0.15);
- ``restore`` vs raw ``torch.load(weights_only=True)`` (target <= 1.10);
- mirror: time the caller is blocked by a ``save`` with ``mirror_dir`` vs the same manager
  without, sync and async (target <= 1.05); between saves the mirror copy finishes
  (untimed, as during the training steps between two checkpoints); a third row saves
  back to back while the previous copy still runs (no target: a worst case);
- ``list()`` over 10,000 checkpoints (target < 1 s);
- ``vsrkit checkpoints list DIR`` in a folder of 10,000, wall time with start-up (target < 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vsrkit.checkpoint import CheckpointManager, LatestN, format_checkpoint_name, manifest_name


def make_state(mb: float) -> dict[str, object]:
    """A model-like state: float32 weights of about ``mb`` MB plus optimizer-ish plain values."""
    n = int(mb * 1e6 / 4)
    sizes = [n // 2, n // 4, n // 8, n - n // 2 - n // 4 - n // 8]
    model = {f"layer{i}.weight": torch.randn(s) for i, s in enumerate(sizes)}
    return {"model": model, "step": 1, "epoch": 0, "lr": [1e-4, 2e-4], "note": "bench"}


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def paired(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeat: int
) -> tuple[list[float], list[float]]:
    """Times of ``fn_a`` and ``fn_b`` run alternately (fair under drifting machine load)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for fn, out in ((fn_a, a), (fn_b, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return a, b


class DurableBaseline:
    """The baseline a careful user writes by hand: each step a new file, torch.save, flush,
    fsync; the file from two saves ago is deleted (the same work as ``keep=LatestN(2)``)."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.i = directory, 0
        directory.mkdir()

    def save(self, state: object) -> None:
        self.i += 1
        durable_torch_save(state, self.directory / f"base_{self.i}.pth")
        (self.directory / f"base_{self.i - 2}.pth").unlink(missing_ok=True)

    def last(self) -> Path:
        return self.directory / f"base_{self.i}.pth"


def durable_torch_save(state: object, path: Path) -> None:
    with open(path, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())


def fill_fake_folder(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for step in range(1, n + 1):
        name = format_checkpoint_name(step * 10)
        (d / name).write_bytes(b"x" * 16)
        manifest = {
            "format": "vsrkit-checkpoint",
            "manifest_version": 1,
            "file": name,
            "step": step * 10,
            "tag": None,
            "type": "regular",
            "metrics": {"quality": 0.5, "loss": 0.01},
            "size_bytes": 16,
            "sha256": "0" * 64,
            "time": "2026-01-01T00:00:00+00:00",
            "unix_time": 1.7e9 + step,
            "run_id": "bench",
            "runtime_config": None,
            "vsrkit_version": "0",
            "torch_version": torch.__version__,
            "async": False,
            "write_seconds": 0.1,
        }
        (d / manifest_name(name)).write_text(json.dumps(manifest, indent=2))


Row = tuple[str, list[float], list[float] | None, str]


def print_table(rows: list[Row]) -> None:
    """Median and best (min) of each side, with their ratios; the best is the least noisy."""
    print(f"{'':<34} {'------ median ------':>25} | {'------- best -------':>24}")
    print(
        f"{'measure (seconds)':<34} {'vsrkit':>8} {'baseline':>9} {'ratio':>6} | "
        f"{'vsrkit':>7} {'baseline':>8} {'ratio':>6}  target"
    )
    for name, ours, ref, target in rows:
        om, ob = statistics.median(ours), min(ours)
        if ref is None:
            rm_s = rb_s = ratio_m = ratio_b = "-"
        else:
            rm, rb = statistics.median(ref), min(ref)
            rm_s, rb_s = f"{rm:.3f}", f"{rb:.3f}"
            ratio_m, ratio_b = f"{om / rm:.2f}", f"{ob / rb:.2f}"
        print(
            f"{name:<34} {om:>8.3f} {rm_s:>9} {ratio_m:>6} | "
            f"{ob:>7.3f} {rb_s:>8} {ratio_b:>6}  {target}"
        )


def mirror_rows(root: Path, state: dict[str, object], n: int, rows: list[Row]) -> None:
    """Caller-blocked time of saves with a mirror vs without (same settings otherwise).

    Each case is followed by an A/A row (two managers without a mirror, timed the same way):
    its ratio shows how far from 1.00 noise alone moves a ratio on this machine.
    """
    step = iter(range(1, 10**6))
    for async_save in (False, True):
        kind = "async" if async_save else "sync"
        for with_mirror in (True, False):
            tag = f"{kind}-{with_mirror}"
            plain = CheckpointManager(
                root / f"plain-{tag}", run_id="p", keep=LatestN(2), async_save=async_save
            )
            mirrored = CheckpointManager(
                root / f"mirrored-{tag}",
                run_id="m",
                keep=LatestN(2),
                async_save=async_save,
                mirror_dir=root / f"mirror-{tag}" if with_mirror else None,
            )
            ours: list[float] = []
            base: list[float] = []
            copies: list[float] = []
            for i in range(n + 1):  # the first round allocates async buffers: dropped
                pair = ((mirrored, ours), (plain, base))
                for mgr, out in pair if i % 2 else pair[::-1]:  # alternate who goes first
                    t = time.perf_counter()
                    mgr.save(next(step), state)
                    out.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    mgr.wait()  # the steps between two checkpoints: the copy finishes here
                    if mgr is mirrored and i:
                        copies.append(time.perf_counter() - t)
            ours.pop(0)
            base.pop(0)
            if not with_mirror:
                rows.append(("  A/A: none vs none (noise)", ours, base, ""))
            else:
                rows.append((f"{kind} save blocked, mirror vs none", ours, base, "<= 1.05"))
            if with_mirror and not async_save:
                busy = [0.0] * n
                for i in range(n):  # back to back: each save runs beside the previous copy
                    t = time.perf_counter()
                    mirrored.save(next(step), state)
                    busy[i] = time.perf_counter() - t
                mirrored.wait()
                rows.append(("  same, copy of the previous running", busy, base, "(worst case)"))
                print(
                    f"mirror copy in the background (sync saves): median "
                    f"{statistics.median(copies):.3f} s, best {min(copies):.3f} s"
                )
            for mgr in (plain, mirrored):
                mgr.close()
            assert not mirrored.mirror_errors, mirrored.mirror_errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=75.0)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--n-list", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    ap.add_argument("--mirror-only", action="store_true", help="Only the mirror rows.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    try:
        state = make_state(args.mb)
        n = args.repeat
        # LatestN(2): a real run keeps a few, and the folder does not fill the page cache
        sync = CheckpointManager(root / "mgr", run_id="sync", keep=LatestN(2))
        step = iter(range(1, 10**6))
        rows: list[Row] = []
        if args.mirror_only:
            mirror_rows(root, state, n, rows)
            print_table(rows)
            return

        raw = timed(lambda: torch.save(state, root / "raw.pth"), n)
        baseline = DurableBaseline(root / "baseline")
        ours, base = paired(lambda: sync.save(next(step), state), lambda: baseline.save(state), n)
        rows.append(("sync save vs torch.save+fsync", ours, base, "<= 1.10"))
        nosum = CheckpointManager(root / "nosum", run_id="nosum", keep=LatestN(2), checksum=False)
        ours2, base2 = paired(
            lambda: nosum.save(next(step), state), lambda: baseline.save(state), n
        )
        nosum.close()
        rows.append(("  same, checksum=False (no sha256)", ours2, base2, ""))

        asyn = CheckpointManager(root / "async", async_save=True, run_id="async", keep=LatestN(2))
        blocked, sync_again = [], []
        for _ in range(n + 1):  # the first async save allocates its buffers
            t = time.perf_counter()
            asyn.save(next(step), state)
            blocked.append(time.perf_counter() - t)
            asyn.wait()
            t = time.perf_counter()
            sync.save(next(step), state)
            sync_again.append(time.perf_counter() - t)
        asyn.close()
        first = blocked.pop(0)
        sync_again.pop(0)
        rows.append(("async save blocked vs sync save", blocked, sync_again, "<= 0.15"))

        mirror_rows(root, state, n, rows)

        restored, loaded = paired(
            lambda: sync.restore(),
            lambda: torch.load(baseline.last(), map_location="cpu", weights_only=True),
            n,
        )
        rows.append(("restore vs torch.load", restored, loaded, "<= 1.10"))
        sync.close()

        many = root / "many"
        fill_fake_folder(many, args.n_list)
        lister = CheckpointManager(many, run_id="bench")
        rows.append((f"list() of {args.n_list:,}", timed(lister.list, n), None, "< 1 s"))
        cmd = [sys.executable, "-m", "vsrkit", "checkpoints", "list", str(many)]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
        cli = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), n)
        rows.append((f"CLI list table of {args.n_list:,} (wall)", cli, None, "< 0.5 s"))

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"state {args.mb:.0f} MB, {n} runs each, folder {root.parent}, "
            f"{os.cpu_count()} CPUs, load average {load:.1f}"
        )
        print(
            f"raw torch.save(state, path), no fsync: median {statistics.median(raw):.3f} s, "
            f"best {min(raw):.3f} s (reference only: not durable)"
        )
        print(f"first async save (allocates its CPU buffers): blocked {first:.3f} s")
        print_table(rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
