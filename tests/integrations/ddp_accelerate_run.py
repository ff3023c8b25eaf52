"""A 2-process CPU Accelerate loop with VsrkitAccelerate; run by test_ddp.py through
``accelerate launch --cpu --num_processes 2``.

Usage: accelerate launch --cpu --num_processes 2 ddp_accelerate_run.py OUT_DIR. Every rank
writes ``OUT_DIR/rank<k>.json`` with the patience it saw per step and the interval losses;
the run saves a checkpoint at step 6 and, run again, resumes from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from vsrkit._atomic import atomic_write_json
from vsrkit.adaptive import AdaptiveLossWeights, PlateauTracker
from vsrkit.config import example_settings
from vsrkit.integrations.accelerate import VsrkitAccelerate


def main() -> None:
    out = Path(sys.argv[1])
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model, opt, data = acc.prepare(model, opt, data)
    tracker = PlateauTracker(patience=300)
    vsr = VsrkitAccelerate(
        acc,
        run_dir=out / "run",
        log_every=2,
        plateau=tracker,
        loss_weights=AdaptiveLossWeights(("mse", "l1"), initial={"mse": 0.5, "l1": 0.5}),
        runtime_config=example_settings(),
        poll_every=2,
        statistics=False,
    )
    resumed = vsr.restore()
    step = 0 if resumed is None else resumed[0]
    if resumed is not None:
        acc.unwrap_model(model).load_state_dict(resumed[1]["model"])
    stop = step + 6
    seen, intervals = {}, []
    batches = iter(data)
    while step < stop:
        xb, yb = next(batches)
        pred = model(xb)
        losses = {"mse": (pred - yb).pow(2).mean(), "l1": (pred - yb).abs().mean()}
        total = vsr.combine(losses, step=step)
        acc.backward(total)
        vsr.after_backward(losses, total)
        opt.step()
        opt.zero_grad()
        step += 1
        if step == 3 and acc.is_main_process:
            path = out / "run" / "runtime_config.json"
            atomic_write_json(path, {**json.loads(path.read_text()), "plateau_patience": 400})
        outcome = vsr.end_of_step(step, opt)
        if outcome is not None:
            intervals.append([step, outcome.losses["total"]])
        seen[step] = tracker.patience
    vsr.save(step, {"model": acc.unwrap_model(model).state_dict()})
    vsr.close()
    doc = {"start": stop - 6, "seen": seen, "intervals": intervals}
    name = f"rank{acc.process_index}_from{stop - 6}.json"
    (out / name).write_text(json.dumps(doc))


if __name__ == "__main__":
    main()
