"""vsrkit in an Accelerate loop: plateau LR policy, adaptive loss weights, runtime config,
statistics files, gradient monitor, checkpoints with an emergency save, and a resume.

Usage: ``python examples/accelerate_example.py [--out DIR] [--steps N]`` (CPU, a few seconds;
``accelerate launch`` works too). Needs ``pip install 'vsrkit[accelerate]'``. Without
``--out`` it writes into a temp folder. Run it twice with the same ``--out`` and a larger
``--steps``: the second run resumes from the last checkpoint. Ctrl-C saves an emergency
checkpoint and stops.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator

from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker
from vsrkit.adaptive.gradients import GradientMonitor
from vsrkit.checkpoint import LatestN
from vsrkit.config import example_settings
from vsrkit.integrations.accelerate import VsrkitAccelerate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: temp)")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vsrkit-accelerate-"))
    torch.manual_seed(0)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randn(512, 8)
    y = torch.tanh(x.flip(1))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    monitor = GradientMonitor({"hidden": model[0], "output": model[2]})
    model, optimizer, data = accelerator.prepare(model, optimizer, data)

    vsr = VsrkitAccelerate(
        accelerator,
        run_dir=out,
        keep=LatestN(2),
        log_every=5,
        plateau=PlateauTracker(patience=40, cooldown=10),
        lr_policy=LRBoostPolicy(mode="reduce", factor=0.5, min_lr=1e-5),
        loss_weights=AdaptiveLossWeights(("l1", "smooth"), mode="balance"),
        grad_monitor=monitor,
        runtime_config=example_settings(),
        poll_every=5,
    )
    step = 0
    resumed = vsr.restore()
    if resumed is not None:
        step, saved = resumed
        accelerator.unwrap_model(model).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        accelerator.print(f"resumed from step {step}")

    def state() -> dict[str, object]:
        return {
            "model": accelerator.unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
        }

    batches = iter(data)
    with vsr.catch_signals():
        while step < args.steps:
            try:
                xb, yb = next(batches)
            except StopIteration:
                batches = iter(data)
                xb, yb = next(batches)
            pred = model(xb)
            losses = {
                "l1": (pred - yb).abs().mean(),
                "smooth": (pred.diff(dim=1) - yb.diff(dim=1)).pow(2).mean(),
            }
            total = vsr.combine(losses, step=step)
            accelerator.backward(total)
            vsr.after_backward(losses, total)
            accelerator.clip_grad_norm_(model.parameters(), vsr.live["grad_clip"])
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            outcome = vsr.end_of_step(step, optimizer)
            if outcome is not None and step % 20 == 0:
                accelerator.print(f"step {step}: loss {outcome.losses['total']:.4f}")
            if step % 20 == 10:  # a validation (here: on the last batch)
                with torch.no_grad():
                    err = float((model(xb) - yb).pow(2).mean())
                vsr.validation_end(step, {"quality_ki_value": 1 / (1 + err)})
            if step % 20 == 0:
                vsr.save(step, state())
            if vsr.stop_requested(step):
                vsr.save(step, state(), tag="emergency")
                break
    vsr.close()
    if accelerator.is_main_process:
        for path in sorted(out.glob("Statistik_*.json")) + sorted(out.glob("checkpoints/*.pth")):
            print(f"wrote {path.relative_to(out)}")


if __name__ == "__main__":
    main()
