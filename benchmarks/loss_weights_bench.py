"""AdaptiveLossWeights modes on a toy problem whose four loss terms differ 100x in scale.

A 32-parameter model is trained with Adam on four conflicting least-squares terms scaled
1, 0.1, 0.01 and 0.05 (named like the VSR trainer's ``l1``, ``ms``, ``grad``,
``perceptual``). The weights are updated every ``--interval`` steps from floats (one sync
per interval), ``combine`` builds the loss every step. Per mode (mean over ``--seeds``):

- contrib max/min: spread of the weighted terms ``w_i * L_i`` at the end (1 = balanced);
- progress max/min: spread of the normalized terms ``L_i(end) / L_i(0)`` (1 = every term
  made the same relative progress; a large value = some term was left behind);
- oscillation: mean ``sum_i |w_i(t) - w_i(t-1)|`` per update over the second half;
- max |sum-1|: the largest deviation of the weights' sum from 1 over all updates;
- us/update, us/combine: cost of ``update`` (pure Python) and ``combine`` (CPU tensors)
  inside the training loop; "(alone)": ``update`` timed in a tight loop by itself.

Run: ``.venv/bin/python benchmarks/loss_weights_bench.py [--seeds 5] [--steps 1500]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vsrkit.adaptive import AdaptiveLossWeights, PlateauTracker

TERMS = ("l1", "ms", "grad", "perceptual")
SCALES = (1.0, 0.1, 0.01, 0.05)
MODES = ("fixed", "balance", "cv", "dwa", "plateau")


def run(mode: str, seed: int, steps: int, interval: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    dim = 32
    mats = [torch.randn(48, dim, generator=gen) / dim**0.5 for _ in TERMS]
    targets = [torch.randn(48, generator=gen) for _ in TERMS]
    theta = torch.zeros(dim, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.01)
    weights = AdaptiveLossWeights(TERMS, mode=mode, max_change=0.05, cooldown=100)
    tracker = PlateauTracker(patience=100, cooldown=50)

    def losses() -> dict[str, torch.Tensor]:
        return {
            t: s * ((a @ theta - b) ** 2).mean()
            for t, s, a, b in zip(TERMS, SCALES, mats, targets, strict=True)
        }

    with torch.no_grad():
        first = {t: float(v) for t, v in losses().items()}
    history = [weights.weights]
    update_s = combine_s = 0.0
    updates = combines = 0
    for step in range(steps):
        terms = losses()
        start = time.perf_counter()
        total = weights.combine(terms)
        combine_s += time.perf_counter() - start
        combines += 1
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if step % interval == 0:
            values = {t: float(v.detach()) for t, v in terms.items()}  # the one sync
            event = tracker.update(step, float(total.detach()))
            start = time.perf_counter()
            history.append(weights.update(step, values, event))
            update_s += time.perf_counter() - start
            updates += 1
    with torch.no_grad():
        last = {t: float(v) for t, v in losses().items()}
    w = history[-1]
    contrib = [w[t] * last[t] for t in TERMS]
    progress = [last[t] / first[t] for t in TERMS]
    half = history[len(history) // 2 :]
    osc = [sum(abs(b[t] - a[t]) for t in TERMS) for a, b in zip(half, half[1:], strict=False)]
    return {
        "contrib": max(contrib) / min(contrib),
        "progress": max(progress) / min(progress),
        "osc": statistics.mean(osc) if osc else 0.0,
        "sum": max(abs(sum(h.values()) - 1.0) for h in history),
        "us_update": 1e6 * update_s / max(updates, 1),
        "us_combine": 1e6 * combine_s / max(combines, 1),
    }


def isolated_update_us(mode: str, calls: int = 3000) -> float:
    """Cost of ``update`` alone, in a tight loop (no torch work in between)."""
    weights = AdaptiveLossWeights(TERMS, mode=mode, max_change=0.05)
    values = [
        {
            t: s * (1.0 + 0.1 * ((i * 7 + j) % 5))
            for j, (t, s) in enumerate(zip(TERMS, SCALES, strict=True))
        }
        for i in range(calls)
    ]
    start = time.perf_counter()
    for i, v in enumerate(values):
        weights.update(i, v)
    return 1e6 * (time.perf_counter() - start) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--interval", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f"{args.seeds} seeds x {args.steps} steps, weights updated every {args.interval} steps, "
        f"term scales {SCALES}"
    )
    header = (
        f"{'mode':<9} {'contrib max/min':>15} {'progress max/min':>16} {'oscillation':>11} "
        f"{'max |sum-1|':>11} {'us/update':>9} {'(alone)':>7} {'us/combine':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode in MODES:
        rows = [run(mode, seed, args.steps, args.interval) for seed in range(args.seeds)]
        avg = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
        print(
            f"{mode:<9} {avg['contrib']:>15.2f} {avg['progress']:>16.2f} {avg['osc']:>11.4f} "
            f"{avg['sum']:>11.1e} {avg['us_update']:>9.1f} {isolated_update_us(mode):>7.1f} "
            f"{avg['us_combine']:>10.1f}"
        )


if __name__ == "__main__":
    main()
