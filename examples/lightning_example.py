"""vsrkit in a Lightning run: plateau LR policy, loss weights with a warm-up, runtime config,
statistics files, gradient monitor and vsrkit checkpoints, then a resume.

Usage: ``python examples/lightning_example.py [--out DIR] [--steps N]`` (CPU, a few seconds).
Needs ``pip install 'vsrkit[lightning]'``. Without ``--out`` it writes into a temp folder.
While it runs, edit ``DIR/runtime_config.json`` (e.g. ``plateau_patience``) to see a change
land at the next poll step in ``DIR/config_changes.jsonl``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch

from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker
from vsrkit.adaptive.gradients import GradientMonitor
from vsrkit.adaptive.warmup import LossWarmup
from vsrkit.checkpoint import LatestN
from vsrkit.config import example_settings
from vsrkit.integrations.lightning import VsrkitCallback, VsrkitCheckpoint


class Regressor(pl.LightningModule):
    """A tiny model with two loss terms; the callback provides ``self.vsrkit``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU())
        self.head = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        pred = self(x)
        losses = {
            "l1": (pred - y).abs().mean(),
            # a second term that warms up: match the differences between neighbours
            "perceptual": (pred.diff(dim=1) - y.diff(dim=1)).pow(2).mean(),
        }
        total = self.vsrkit.combine(losses, step=self.global_step)
        return {"loss": total, "losses": losses}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        err = (self(x) - y).pow(2).mean()
        self.log("val_loss", err)
        self.log("val_quality", 1.0 / (1.0 + err))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def loaders() -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = torch.tanh(x.flip(1))
    train = torch.utils.data.TensorDataset(x[:448], y[:448])
    val = torch.utils.data.TensorDataset(x[448:], y[448:])
    return (
        torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, generator=g),
        torch.utils.data.DataLoader(val, batch_size=64),
    )


def fit(out: Path, model: Regressor, max_steps: int) -> tuple[pl.Trainer, VsrkitCallback]:
    base = AdaptiveLossWeights(
        ("l1", "perceptual"), mode="balance", initial={"l1": 0.7, "perceptual": 0.3}
    )
    vsrkit = VsrkitCallback(
        out,
        log_every=5,
        plateau=PlateauTracker(patience=40, cooldown=10),
        lr_policy=LRBoostPolicy(mode="reduce", factor=0.5, min_lr=1e-5),
        loss_weights=LossWarmup(base, schedules={"perceptual": {"start": 0.0, "length": 30}}),
        grad_monitor=GradientMonitor({"body": model.body, "head": model.head}),
        runtime_config=example_settings(),
        poll_every=5,
        validation_fields={"val_quality": "quality_ki_value", "val_loss": "validation_loss_value"},
        tensorboard=True,
    )
    ckpt = VsrkitCheckpoint(
        out / "checkpoints", every_n_steps=20, keep=LatestN(2), metrics={"quality": "val_quality"}
    )
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        callbacks=[vsrkit, ckpt],
        plugins=[ckpt.io],
        val_check_interval=20,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train, val = loaders()
    trainer.fit(model, train, val, ckpt_path=ckpt.resume_path())
    return trainer, vsrkit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: temp)")
    parser.add_argument("--steps", type=int, default=60, help="steps of the first fit")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vsrkit-lightning-"))
    torch.manual_seed(0)

    trainer, vsrkit = fit(out, Regressor(), args.steps)
    print(f"first fit: step {trainer.global_step}")
    trainer, vsrkit = fit(out, Regressor(), args.steps + 20)  # resumes from the vsrkit checkpoint
    print(f"resumed fit: step {trainer.global_step} (intervals from {vsrkit.outcomes[0].step})")
    last = vsrkit.outcomes[-1]
    print(f"loss {last.losses['total']:.4f}, weights {last.weights}")
    print(f"gradient norms {last.gradients.norms}")
    for path in sorted(out.glob("Statistik_*.json")) + sorted((out / "checkpoints").glob("*.pth")):
        print(f"wrote {path.relative_to(out)}")


if __name__ == "__main__":
    main()
