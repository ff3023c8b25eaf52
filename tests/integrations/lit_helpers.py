"""A tiny LightningModule and data for the adapter tests (CPU, a few steps)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint

TERMS = ("mse", "l1")


class TinyModule(pl.LightningModule):
    """Linear regression with two loss terms weighted by the vsrkit loss weights."""

    def __init__(self, lr: float = 0.05, scheduler: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.lr = lr
        self.scheduler = scheduler

    def training_step(self, batch, batch_idx):
        x, y = batch
        pred = self.net(x)
        losses = {"mse": (pred - y).pow(2).mean(), "l1": (pred - y).abs().mean()}
        total = self.vsrkit.combine(losses, step=self.global_step)
        return {"loss": total, "losses": losses}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = (self.net(x) - y).pow(2).mean()
        self.log("val_loss", loss)
        self.log("val_quality", 1.0 / (1.0 + loss))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        if not self.scheduler:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(n: int = 64, *, constant: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    if constant:  # every batch the same: a flat loss curve once the LR is ~0
        x, y = x[:1].repeat(n, 1), y[:1].repeat(n, 1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def trainer(tmp_path, callbacks, *, max_steps: int, plugins=(), **kw) -> pl.Trainer:
    callbacks = list(callbacks)
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        plugins=list(plugins),
        logger=False,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        **kw,
    )
