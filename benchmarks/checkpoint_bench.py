"""Checkpoint speed, side by side against durable raw torch baselines in the same run.

Run: ``python benchmarks/checkpoint_bench.py [--mb 75] [--repeat 5] [--dir PATH]``

Rows (median of ``--repeat`` runs; the folder is on the disk of ``--dir``, default: a temp
folder under the current directory so tmpfs does not make fsync free):

- sync ``save`` vs the durable baseline ``torch.save`` to an open file + flush + fsync, a new
  file per save and the one from two saves ago deleted, the same file work as the manager
  with ``keep=LatestN(2)`` (target ratio <= 1.10); raw ``torch.save(state, path)`` without
  fsync is printed for reference;
- time the caller is blocked by an async ``save`` vs a sync ``save`` (target <= 0.15);
- ``restore`` vs raw ``torch.load(weights_only=True)`` (target <= 1.10);
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


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Medians of ``fn_a`` and ``fn_b`` run alternately (fair under drifting machine load)."""
    a, b = [], []
    for _ in range(repeat):
        for fn, out in ((fn_a, a), (fn_b, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=75.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n-list", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    try:
        state = make_state(args.mb)
        base = root / "baseline.pth"
        mgr_dir = root / "mgr"
        # LatestN(2): a real run keeps a few, and the folder does not fill the page cache
        sync = CheckpointManager(mgr_dir, run_id="sync", keep=LatestN(2))
        step = iter(range(1, 10**6))
        rows: list[tuple[str, float, float, str]] = []

        t_raw = median_time(lambda: torch.save(state, base), args.repeat)
        baseline = DurableBaseline(root / "baseline")
        t_save, t_durable = paired(
            lambda: sync.save(next(step), state), lambda: baseline.save(state), args.repeat
        )
        rows.append(("sync save vs torch.save+fsync", t_save, t_durable, "<= 1.10"))
        nosum = CheckpointManager(root / "nosum", run_id="nosum", keep=LatestN(2), checksum=False)
        t_nosum, t_durable2 = paired(
            lambda: nosum.save(next(step), state), lambda: baseline.save(state), args.repeat
        )
        nosum.close()
        rows.append(("  same, checksum=False (no sha256)", t_nosum, t_durable2, ""))

        asyn = CheckpointManager(root / "async", async_save=True, run_id="async", keep=LatestN(2))
        blocked, sync_again = [], []
        for _ in range(args.repeat + 1):  # the first async save allocates its buffers
            t = time.perf_counter()
            asyn.save(next(step), state)
            blocked.append(time.perf_counter() - t)
            asyn.wait()
            t = time.perf_counter()
            sync.save(next(step), state)
            sync_again.append(time.perf_counter() - t)
        asyn.close()
        first_blocked = blocked.pop(0)
        t_sync2 = statistics.median(sync_again)
        rows.append(
            ("async save blocked vs sync save", statistics.median(blocked), t_sync2, "<= 0.15")
        )
        rows.append(("  (first async save, allocating)", first_blocked, t_sync2, ""))

        t_restore, t_load = paired(
            lambda: sync.restore(),
            lambda: torch.load(baseline.last(), map_location="cpu", weights_only=True),
            args.repeat,
        )
        rows.append(("restore vs torch.load", t_restore, t_load, "<= 1.10"))
        sync.close()

        many = root / "many"
        fill_fake_folder(many, args.n_list)
        lister = CheckpointManager(many, run_id="bench")
        t_list = median_time(lister.list, args.repeat)
        rows.append((f"list() of {args.n_list:,}", t_list, float("nan"), "< 1 s"))
        cmd = [sys.executable, "-m", "vsrkit", "checkpoints", "list", str(many)]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
        t_cli = median_time(
            lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat
        )
        rows.append((f"CLI list table of {args.n_list:,}", t_cli, float("nan"), "< 0.5 s"))

        print(f"state {args.mb:.0f} MB, median of {args.repeat}, folder {root.parent}")
        print(f"raw torch.save(state, path), no fsync: {t_raw:.3f} s (for reference)")
        print(f"{'measure':<34} {'vsrkit s':>9} {'baseline s':>11} {'ratio':>7}  target")
        for name, ours, ref, target in rows:
            ratio = ours / ref if ref == ref else float("nan")
            ref_s = f"{ref:.3f}" if ref == ref else "-"
            ratio_s = f"{ratio:.2f}" if ratio == ratio else "-"
            print(f"{name:<34} {ours:>9.3f} {ref_s:>11} {ratio_s:>7}  {target}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
