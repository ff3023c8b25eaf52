"""One loop core, three loops: the same loss and quality stream through the core as the
reference recipe drives it, through the Lightning callback and through the Accelerate helpers
gives the same plateau events, loss weights, learning rates and clip values."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from vsrkit.adaptive import AdaptiveLossWeights, GradClipAdapter, LRBoostPolicy, PlateauTracker
from vsrkit.config import example_settings
from vsrkit.loop import LocalOps, LoopCore, ScheduledLR

pl = pytest.importorskip("lightning.pytorch")
accelerate = pytest.importorskip("accelerate")

TERMS = ("l1", "grad")
STEPS, LOG_EVERY, VAL_EVERY, CHANGE_AT = 200, 2, 20, 51
LR0 = 2.0**-13  # a power of two: the schedule's scale and the optimizer's LR multiply exactly
LIVE = {**example_settings(), "log_every": LOG_EVERY, "l1_weight": 0.5, "grad_weight": 0.5,
        "ms_weight": 0.0, "perceptual_weight": 0.0}  # fmt: skip
CHANGE = {"cooldown_duration": 20, "l1_weight": 0.55, "grad_weight": 0.45}  # applied at step 60


def stream(seed: int = 7) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, Any]], dict]:
    """Per step: the two loss values, their gradients (on a 4-vector parameter) and, every
    ``VAL_EVERY`` steps, a validation quality. A decaying loss that levels off, with noise."""
    rng = random.Random(seed)
    values, grads, quality = {}, {}, {}
    for step in range(1, STEPS + 1):
        level = 0.2 + math.exp(-step / 25)
        values[step] = {
            "l1": level * (1 + 0.05 * rng.gauss(0, 1)),
            "grad": 0.1 * level * (1 + 0.05 * rng.gauss(0, 1)),
        }
        grads[step] = {
            "l1": torch.tensor([rng.uniform(0.5, 2), 0.0, rng.uniform(-1, 1), 0.0]),
            "grad": torch.tensor([0.0, rng.uniform(0.5, 4), 0.0, rng.uniform(-1, 1)]),
        }
        if step % VAL_EVERY == 0:
            quality[step] = 0.6 + 0.002 * (step <= 40) * step / 40 + 1e-5 * rng.gauss(0, 1)
    return values, grads, quality


VALUES, GRADS, QUALITY = stream()


def scripted_losses(p: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
    """Losses whose values are the stream's exactly and whose gradient is the stream's: the
    value plus ``x - x.detach()`` (zero, with ``x``'s gradient)."""
    out = {}
    for t in TERMS:
        x = (p * GRADS[step][t]).sum()
        out[t] = torch.tensor(VALUES[step][t]) + (x - x.detach())
    return out


def components() -> dict[str, Any]:
    return {
        "log_every": LOG_EVERY,
        "plateau": PlateauTracker(patience=20, cooldown=4),
        "lr_policy": LRBoostPolicy(mode="reduce", factor=0.5, min_lr=1e-7),
        "loss_weights": AdaptiveLossWeights(
            TERMS,
            mode="plateau",
            max_change=0.01,
            cooldown=10,
            initial={"l1": 0.5, "grad": 0.5},
            aggressive_terms=("grad",),
        ),  # fmt: skip
        "clip": GradClipAdapter(quantile=0.5, window=20, min_history=3, initial=1.0),
        "runtime_config": LIVE,
    }


def record(outcomes: list[Any]) -> list[tuple]:
    return [
        (o.step, tuple(o.event), o.new_lrs, o.lrs, o.weights, o.clip_value, o.losses)
        for o in outcomes
    ]


# ---------------------------------------------------------------- the three loops


def recipe_core(run_dir: Path) -> tuple[list, list[float]]:
    """The loop core as the reference recipe drives it: a schedule times the loop's LR scale
    (ScheduledLR), clip_grad_norm_ with the core's clip value, the core's calls in order."""

    class Constant:
        def lr(self, step: int) -> float:
            return LR0

        def state_dict(self) -> dict[str, float]:
            return {"lr": LR0}

    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=LR0)
    loop = LoopCore(run_dir=run_dir, terms=TERMS, lr=ScheduledLR(opt, Constant()), **components())
    loop.bind(LocalOps())
    loop.begin(0)
    outcomes = []
    for step in range(1, STEPS + 1):
        losses = scripted_losses(p, step)
        total = loop.combine(losses, step=step - 1)
        opt.zero_grad()
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_([p], loop.clip.clip_value, foreach=True)
        loop.accumulate(losses, total, grad_norm=norm)
        opt.step()
        if step == CHANGE_AT:
            loop.runtime.submit(CHANGE)
        out = loop.end_of_step(step)
        if out is not None:
            outcomes.append(out)
        if step % VAL_EVERY == 0:
            loop.validation_end(step, {"quality_ki_value": QUALITY[step]})
    loop.close()
    return record(outcomes), [g["lr"] for g in opt.param_groups]


def lightning_callback(run_dir: Path) -> tuple[list, list[float]]:
    from vsrkit.integrations.lightning import VsrkitCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(4))

        def training_step(self, batch, batch_idx):
            step = self.global_step + 1
            if step == CHANGE_AT:
                self.vsrkit.runtime.submit(CHANGE)
            losses = scripted_losses(self.p, step)
            return {"loss": self.vsrkit.combine(losses, step=step - 1), "losses": losses}

        def validation_step(self, batch, batch_idx):
            self.log("val_q", QUALITY[self.global_step])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR0)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(STEPS, 1)))
    cb = VsrkitCallback(run_dir, terms=TERMS, validation_fields={"val_q": "quality_ki_value"},
                        **components())  # fmt: skip
    module = Module()
    trainer = pl.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        callbacks=[cb],
        gradient_clip_val=1.0,
        val_check_interval=VAL_EVERY,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.zeros(1, 1))))  # fmt: skip
    return record(cb.outcomes), [g["lr"] for g in trainer.optimizers[0].param_groups]


def accelerate_helpers(run_dir: Path) -> tuple[list, list[float]]:
    from vsrkit.integrations.accelerate import VsrkitAccelerate

    acc = accelerate.Accelerator(cpu=True)
    p = torch.nn.Parameter(torch.zeros(4))
    opt = acc.prepare(torch.optim.SGD([p], lr=LR0))
    vsr = VsrkitAccelerate(acc, run_dir=run_dir, terms=TERMS, **components())
    outcomes = []
    for step in range(1, STEPS + 1):
        losses = scripted_losses(p, step)
        total = vsr.combine(losses, step=step - 1)
        acc.backward(total)
        norm = acc.clip_grad_norm_([p], vsr.clip_value)
        vsr.after_backward(losses, total, grad_norm=norm)
        opt.step()
        opt.zero_grad()
        if step == CHANGE_AT:
            vsr.loop.runtime.submit(CHANGE)
        out = vsr.end_of_step(step, opt)
        if out is not None:
            outcomes.append(out)
        if step % VAL_EVERY == 0:
            vsr.validation_end(step, {"quality_ki_value": QUALITY[step]})
    vsr.close()
    return record(outcomes), [g["lr"] for g in opt.param_groups]


def test_the_recipe_core_and_both_adapters_decide_alike(tmp_path: Path) -> None:
    reference, lrs = recipe_core(tmp_path / "recipe")
    events = [r[1] for r in reference]
    assert len(reference) == STEPS // LOG_EVERY
    # the stream exercises every decision: plateau triggers, LR changes, adapted weights,
    # an adaptive clip value, the quality, and the runtime change at the poll step 60
    assert any(e[1] for e in events), "no plateau trigger in the stream"
    assert sum(r[2] is not None for r in reference) >= 2, "fewer than two LR changes"
    assert lrs[0] == LR0 / 4
    assert len({tuple(sorted(r[4].items())) for r in reference}) > 3
    assert len({r[5] for r in reference}) > 3 and reference[0][5] == 1.0
    assert any(r[0] >= 60 and r[4] == {"l1": 0.55, "grad": 0.45} for r in reference)
    for name, run in (("lightning", lightning_callback), ("accelerate", accelerate_helpers)):
        got, got_lrs = run(tmp_path / name)
        assert len(got) == len(reference), name
        for want_row, got_row in zip(reference, got, strict=True):
            assert got_row == want_row, (name, want_row[0])
        assert got_lrs == lrs, name
