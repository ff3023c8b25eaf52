"""Write a small demo checkpoint folder: a tiny model trained for a few steps in plain PyTorch.

Usage: ``python examples/make_demo_checkpoints.py DIR`` then ``vsrkit checkpoints list DIR``.

It shows CheckpointManager embedded in an ordinary loop: a save every 20 steps with the
validation metrics, retention (the last 3, every 100th step and emergencies; the best one is
always kept), a ``best`` copy when quality improves, the RNG state for an exact resume, and
an emergency save on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from vsrkit.checkpoint import (
    AnyOf,
    CheckpointManager,
    EveryNSteps,
    KeepTagged,
    LatestN,
    capture_rng_state,
)
from vsrkit.loop import StopSignal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder to write the checkpoints into")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(256, 8)
    y = x.flip(1) * 0.5
    keep = AnyOf(LatestN(3), EveryNSteps(100), KeepTagged("emergency"))
    best = float("-inf")
    with CheckpointManager(args.directory, keep=keep) as mgr, StopSignal() as stop:
        for step in range(1, args.steps + 1):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

            def state() -> dict[str, object]:
                return {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": capture_rng_state(),
                }

            if stop.requested:
                mgr.save(step, state(), metrics={"loss": loss.item()}, tag="emergency")
                print(f"{stop.signal_name}: emergency checkpoint at step {step}")
                break
            if step % 20 == 0:
                quality = 1.0 / (1.0 + 10 * loss.item())  # a stand-in validation score in [0, 1]
                metrics = {"quality": quality, "loss": loss.item()}
                mgr.save(step, state(), metrics=metrics)
                if quality > best:
                    best = quality
                    mgr.save(step, state(), metrics=metrics, tag="best")
    print(f"wrote {len(mgr.list())} checkpoints to {args.directory}")


if __name__ == "__main__":
    main()
