"""A 2-process CPU DDP Lightning run (gloo) with the vsrkit callbacks; run by test_ddp.py.

Usage: python ddp_lightning_run.py OUT_DIR. Every rank writes ``OUT_DIR/rank<k>.json`` with
what it saw: the plateau patience and LR at each step, the interval losses, the triggers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lit_helpers import TERMS, TinyModule, loader  # noqa: E402

from vsrkit._atomic import atomic_write_json  # noqa: E402
from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker  # noqa: E402
from vsrkit.config import example_settings  # noqa: E402
from vsrkit.integrations.lightning import VsrkitCallback  # noqa: E402


class Recorder(pl.Callback):
    def __init__(self, out: Path, cb: VsrkitCallback) -> None:
        self.out, self.cb, self.seen = out, cb, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step == 3 and trainer.is_global_zero:  # only rank 0 sees the file edit
            path = self.out / "run" / "runtime_config.json"
            atomic_write_json(path, {**json.loads(path.read_text()), "plateau_patience": 400})
        self.seen[step] = {
            "patience": self.cb.loop.plateau.patience,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        }

    def on_train_end(self, trainer, pl_module):
        doc = {
            "seen": self.seen,
            "intervals": [[o.step, o.losses["total"]] for o in self.cb.outcomes],
            "triggers": [o.step for o in self.cb.outcomes if o.event and o.event.triggered],
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(doc))


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    cb = VsrkitCallback(
        out / "run",
        loss_weights=AdaptiveLossWeights(TERMS, initial={"mse": 0.5, "l1": 0.5}),
        log_every=2,
        plateau=PlateauTracker(patience=3, cooldown=0),
        lr_policy=LRBoostPolicy(mode="reduce", factor=0.5),
        runtime_config=example_settings(),
        poll_every=2,
        validation_fields={"val_quality": "quality_ki_value"},
    )
    trainer = pl.Trainer(
        max_steps=12,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[Recorder(out, cb), cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=4,
        limit_val_batches=1,
    )
    # each rank sees different batches (DistributedSampler): the interval means differ per
    # rank before the all-reduce, and every rank must still make the same decisions
    trainer.fit(TinyModule(lr=1e-12), loader(), loader(8))


if __name__ == "__main__":
    main()
