"""PlateauTracker against torch's ReduceLROnPlateau on synthetic loss curves with known plateaus.

Every scenario draws ``--seeds`` curves with numpy (exponential-decay segments joined by flat
plateaus, slow steady declines that must not trigger, a spike then recovery; Gaussian,
level-proportional and heavy-tailed noise; scales x1e-3 and x1e3) and feeds the same curve,
one value per step, to both detectors with the same patience and cooldown.

A trigger inside ``[start, end + patience)`` of a plateau belongs to that plateau (the first
one gives the detection delay ``trigger - start``); any other trigger is a false trigger,
counted per 1,000 steps outside those windows. A plateau without a trigger is missed; a
plateau cut shorter than ``2 x patience`` by the end of the curve only excuses triggers.

Run: ``.venv/bin/python benchmarks/plateau_bench.py [--seeds 100] [--patience 100]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from vsrkit.adaptive import PlateauTracker

Curve = tuple[np.ndarray, list[tuple[int, int]]]


def _staircase(rng: np.random.Generator, n: int, patience: int) -> tuple[np.ndarray, list]:
    """Exponential decay segments joined by plateaus; returns the clean level and plateaus."""
    level = np.empty(n)
    plateaus = []
    t, value = 0, 1.0
    while t < n:
        length = int(rng.integers(2 * patience, 5 * patience))
        target = value * rng.uniform(0.3, 0.6)
        rate = np.log(value / target) / length
        end = min(n, t + length)
        level[t:end] = value * np.exp(-rate * np.arange(end - t))
        t, value = end, target
        if t >= n:
            break
        length = int(rng.integers(3 * patience, 5 * patience))
        end = min(n, t + length)
        level[t:end] = value
        plateaus.append((t, end))
        t = end
    return level, plateaus


def _noise(rng: np.random.Generator, level: np.ndarray, kind: str) -> np.ndarray:
    if kind == "gauss":  # absolute: 0.3% of the starting level
        return level + rng.normal(0.0, 0.003 * level[0], level.size)
    if kind == "prop":  # 2% of the current level
        return level * (1.0 + rng.normal(0.0, 0.02, level.size))
    if kind == "heavy":  # Student t, 2 degrees of freedom, 1% of the level
        return level * (1.0 + 0.01 * rng.standard_t(2, level.size))
    raise ValueError(kind)


def scenarios(n: int, patience: int) -> dict[str, Callable[[np.random.Generator], Curve]]:
    def stairs(kind: str, scale: float = 1.0) -> Callable[[np.random.Generator], Curve]:
        def make(rng: np.random.Generator) -> Curve:
            level, plateaus = _staircase(rng, n, patience)
            return scale * _noise(rng, level, kind), plateaus

        return make

    def slow(kind: str) -> Callable[[np.random.Generator], Curve]:
        def make(rng: np.random.Generator) -> Curve:
            # 3% drop per `patience` steps under noise: must never trigger
            level = np.exp(-0.03 / patience * np.arange(n))
            return _noise(rng, level, kind), []

        return make

    def spike(rng: np.random.Generator) -> Curve:
        # steady decay, a spike to 3x that recovers over ~50 steps, then a final plateau
        split = int(n * 0.7)
        t = np.arange(n)
        level = np.exp(-1.2 * np.minimum(t, split) / split)
        t0 = int(rng.integers(n // 5, n // 2))
        after = np.clip(t - t0, 0, None)
        level = level * (1.0 + 2.0 * np.exp(-after / 15.0) * (t >= t0))
        return _noise(rng, level, "prop"), [(split, n)]

    return {
        "stairs gauss": stairs("gauss"),
        "stairs prop": stairs("prop"),
        "stairs heavy-tail": stairs("heavy"),
        "stairs prop x1e-3": stairs("prop", 1e-3),
        "stairs prop x1e3": stairs("prop", 1e3),
        "slow decline prop": slow("prop"),
        "slow decline heavy": slow("heavy"),
        "spike + recovery": spike,
    }


def run_tracker(curve: np.ndarray, patience: int, cooldown: int) -> tuple[list[int], float]:
    tracker = PlateauTracker(patience=patience, cooldown=cooldown)
    update = tracker.update
    values = curve.tolist()
    start = time.perf_counter()
    hits = [step for step, v in enumerate(values) if update(step, v).triggered]
    return hits, time.perf_counter() - start


def run_torch(curve: np.ndarray, patience: int, cooldown: int) -> tuple[list[int], float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=0.5, patience=patience, cooldown=cooldown
    )
    group = opt.param_groups[0]
    hits = []
    start = time.perf_counter()
    for step, v in enumerate(curve.tolist()):
        sched.step(v)
        if group["lr"] != 1.0:
            hits.append(step)
            group["lr"] = 1.0
    return hits, time.perf_counter() - start


def score(hits: list[int], plateaus: list[tuple[int, int]], n: int, patience: int) -> dict:
    """Plateaus cut short by the end of the curve (< 2 x patience) only excuse triggers."""
    windows = [(s, min(n, e + patience)) for s, e in plateaus]
    scored = [e - s >= 2 * patience for s, e in plateaus]
    counts = [0] * len(windows)
    delays: list[int] = []
    false = 0
    for h in hits:
        for i, (s, e) in enumerate(windows):
            if s <= h < e:
                if counts[i] == 0 and scored[i]:
                    delays.append(h - s)
                counts[i] += 1
                break
        else:
            false += 1
    free = n - sum(e - s for s, e in windows)
    return {
        "false": false,
        "free": free,
        "delays": delays,
        "missed": sum(c == 0 for c, ok in zip(counts, scored, strict=True) if ok),
        "plateaus": sum(scored),
        "counts": [c for c, ok in zip(counts, scored, strict=True) if ok],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--patience", type=int, default=100)
    ap.add_argument("--cooldown", type=int, default=50)
    args = ap.parse_args()
    n, p, c = args.steps, args.patience, args.cooldown
    print(f"{args.seeds} seeds x {n} steps per scenario, patience={p}, cooldown={c}")
    header = (
        f"{'scenario':<20} {'detector':<9} {'false/1k':>8} {'med delay':>9} "
        f"{'missed':>9} {'trig/plat':>9}"
    )
    print(header)
    print("-" * len(header))
    times = {"tracker": [0.0, 0], "torch": [0.0, 0]}
    verdicts = []
    for name, make in scenarios(n, p).items():
        rows = {}
        for det, fn in (("tracker", run_tracker), ("torch", run_torch)):
            false = free = missed = plats = 0
            delays: list[int] = []
            counts: list[int] = []
            for seed in range(args.seeds):
                curve, plateaus = make(np.random.default_rng(seed))
                hits, secs = fn(curve, p, c)
                times[det][0] += secs
                times[det][1] += len(curve)
                s = score(hits, plateaus, n, p)
                false += s["false"]
                free += s["free"]
                missed += s["missed"]
                plats += s["plateaus"]
                delays += s["delays"]
                counts += s["counts"]
            rows[det] = (
                1000.0 * false / max(free, 1),
                statistics.median(delays) if delays else float("nan"),
                missed,
                statistics.mean(counts) if counts else float("nan"),
            )
            fr, md, mi, tp = rows[det]
            print(f"{name:<20} {det:<9} {fr:>8.3f} {md:>9.1f} {mi:>4}/{plats:<4} {tp:>9.2f}")
        t, r = rows["tracker"], rows["torch"]
        ok = (t[0] <= r[0] / 3 or t[0] == 0) and t[2] <= r[2]
        if t[1] == t[1]:  # has plateaus
            ok = ok and t[1] <= 1.25 * r[1]
        verdicts.append((name, ok))
    print()
    for det, (secs, count) in times.items():
        print(f"{det:<9} {1e6 * secs / count:6.2f} us per update")
    print("targets (false <= 1/3 of torch, median delay <= 1.25x, missed <= torch):")
    for name, ok in verdicts:
        print(f"  {name:<20} {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
