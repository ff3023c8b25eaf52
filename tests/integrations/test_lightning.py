"""Real Lightning runs on the CPU with the vsrkit callbacks (a few steps each)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch

from vsrkit._atomic import atomic_write_json
from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker
from vsrkit.adaptive.gradients import GradientMonitor
from vsrkit.checkpoint import LatestN, read_manifest
from vsrkit.config import example_settings, read_changes
from vsrkit.errors import StateError, VsrkitError
from vsrkit.integrations import IntegrationError
from vsrkit.integrations.lightning import VsrkitCallback, VsrkitCheckpoint

from .lit_helpers import TERMS, TinyModule, loader, trainer

pytestmark = [
    pytest.mark.filterwarnings("ignore:You defined a `validation_step`"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before"),
]


def weights():
    return AdaptiveLossWeights(TERMS, initial={"mse": 0.5, "l1": 0.5})


class AtStep(pl.Callback):
    """Runs ``action(trainer)`` once, after the optimizer step ``step``."""

    def __init__(self, step, action):
        self.step, self.action, self.done = step, action, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and not self.done:
            self.done = True
            self.action(trainer)


def test_forced_plateau_triggers_and_the_lr_policy_reduces_the_lr(tmp_path):
    cb = VsrkitCallback(
        tmp_path,
        loss_weights=weights(),
        log_every=1,
        plateau=PlateauTracker(patience=3, cooldown=0),
        lr_policy=LRBoostPolicy(mode="reduce", factor=0.5),
        statistics=False,
    )
    model = TinyModule(lr=1e-12, scheduler=True)  # the loss cannot move: a plateau
    t = trainer(tmp_path, [cb], max_steps=12)
    t.fit(model, loader(constant=True))
    triggered = [o for o in cb.outcomes if o.event is not None and o.event.triggered]
    assert triggered, [o.event.reason for o in cb.outcomes]
    first = triggered[0]
    assert first.event.reason.value == "plateau"
    assert first.new_lrs == pytest.approx([0.5e-12])
    lr = t.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-12 * 0.5 ** len(triggered))
    # the scheduler keeps the reduced LR instead of recomputing it from its base_lrs
    assert t.lr_scheduler_configs[0].scheduler.base_lrs[0] == pytest.approx(lr)
    assert [o.step for o in cb.outcomes] == list(range(1, 13))
    assert model.vsrkit_weights is cb.loop.loss_weights


def test_runtime_change_lands_on_the_next_poll_on_the_same_step(tmp_path):
    tracker = PlateauTracker(patience=250)
    cb = VsrkitCallback(
        tmp_path,
        loss_weights=weights(),
        plateau=tracker,
        log_every=2,
        runtime_config=example_settings(),
        poll_every=3,
        statistics=False,
    )
    seen = {}

    def edit(trainer):
        doc = json.loads((tmp_path / "runtime_config.json").read_text())
        atomic_write_json(tmp_path / "runtime_config.json", {**doc, "plateau_patience": 400})

    def look(trainer):
        seen[trainer.global_step] = tracker.patience

    t = trainer(
        tmp_path,
        [AtStep(4, edit), cb, AtStep(5, look), AtStep(6, look)],
        max_steps=8,
    )
    t.fit(TinyModule(), loader())
    assert seen == {5: 250, 6: 400}  # step 6 is the next poll step after the edit
    changes = [c for c in read_changes(tmp_path) if c.key == "plateau_patience"]
    assert [(c.step, c.old, c.new, c.accepted) for c in changes] == [(6, 250, 400, True)]
    assert cb.loop.live["plateau_patience"] == 400


def test_statistics_files_appear_after_validation(tmp_path):
    cb = VsrkitCallback(
        tmp_path,
        loss_weights=weights(),
        log_every=2,
        plateau=PlateauTracker(patience=50),
        validation_fields={"val_quality": "quality_ki_value", "val_loss": "validation_loss_value"},
        tensorboard=True,
    )
    t = trainer(tmp_path, [cb], max_steps=10, val_check_interval=4, limit_val_batches=1)
    t.fit(TinyModule(), loader(), loader(8))
    files = sorted(p.name for p in tmp_path.glob("Statistik_*.json"))
    assert files == ["Statistik_4.json", "Statistik_8.json"]
    doc = json.loads((tmp_path / "Statistik_4.json").read_text())
    assert doc["complete"] is True and doc["stale_fields"] == []
    assert doc["step_current"] == 4 and doc["measured_at_step"]["total_loss_value"] == 6
    assert 0 < doc["quality_ki_value"] <= 1 and doc["validation_loss_value"] > 0
    assert doc["learning_rate_value"] == pytest.approx(0.05)
    assert list((tmp_path / "tensorboard").iterdir())


def test_resume_from_a_vsrkit_checkpoint_continues_the_step_count(tmp_path):
    run, ckdir = tmp_path / "run", tmp_path / "run" / "checkpoints"

    def callbacks():
        cb = VsrkitCallback(
            run,
            loss_weights=AdaptiveLossWeights(TERMS, mode="balance", max_change=0.05),
            log_every=1,
            plateau=PlateauTracker(patience=50),
            runtime_config=example_settings(),
            poll_every=2,
            statistics=False,
        )
        return cb, VsrkitCheckpoint(ckdir, every_n_steps=3, keep=LatestN(2))

    cb1, ck1 = callbacks()
    t1 = trainer(tmp_path, [cb1, ck1], max_steps=6, plugins=[ck1.io])
    t1.fit(TinyModule(), loader())
    assert sorted(p.name for p in ckdir.glob("*.pth")) == [
        "checkpoint_step_0000003.pth",
        "checkpoint_step_0000006.pth",
    ]
    manifest = read_manifest(ckdir / "checkpoint_step_0000006.json")
    assert manifest["step"] == 6 and manifest["runtime_config"] == "runtime_config_step_6.json"
    assert (run / "runtime_config_step_6.json").exists()
    before = cb1.loop.state_dict()["components"]

    cb2, ck2 = callbacks()
    path = ck2.resume_path()
    assert path is not None and path.endswith("checkpoint_step_0000006.pth")
    model = TinyModule()
    t2 = trainer(tmp_path, [cb2, ck2], max_steps=10, plugins=[ck2.io])
    t2.fit(model, loader(), ckpt_path=path)
    assert t2.global_step == 10
    assert [o.step for o in cb2.outcomes] == [7, 8, 9, 10]
    state = cb2.loop.plateau.state_dict()
    assert state["n"] == before["plateau"]["n"] + 4 and state["last_step"] == 10
    assert cb2.loop.loss_weights.state_dict()["n"] == before["loss_weights"]["n"] + 4
    assert sorted(p.name for p in ckdir.glob("*.pth")) == [
        "checkpoint_step_0000006.pth",
        "checkpoint_step_0000009.pth",
    ]
    assert ck2.manager.run_id == ck1.manager.run_id  # the same run goes on


def test_sigterm_writes_an_emergency_checkpoint_and_stops(tmp_path):
    cb = VsrkitCallback(tmp_path, loss_weights=weights(), statistics=False)
    ck = VsrkitCheckpoint(tmp_path / "ck", every_n_steps=100)
    kill = AtStep(3, lambda trainer: os.kill(os.getpid(), signal.SIGTERM))
    t = trainer(tmp_path, [kill, cb, ck], max_steps=20, plugins=[ck.io])
    t.fit(TinyModule(), loader())
    assert t.global_step == 3
    assert [p.name for p in (tmp_path / "ck").glob("*.pth")] == [
        "checkpoint_step_0000003_emergency.pth"
    ]
    assert signal.getsignal(signal.SIGTERM) is not ck._stop  # handlers put back
    step, state = ck.manager.restore()
    assert step == 3 and state["global_step"] == 3


def test_gradient_monitor_reports_a_frozen_layer(tmp_path):
    model = TinyModule()
    frozen = torch.nn.Linear(4, 4)  # registered but never used: no gradient
    model.unused = frozen
    mon = GradientMonitor({"net": model.net, "unused": frozen}, zero_checks=2)
    cb = VsrkitCallback(
        tmp_path, loss_weights=weights(), log_every=2, grad_monitor=mon, statistics=False
    )
    trainer(tmp_path, [cb], max_steps=6).fit(model, loader())
    reports = [o.gradients for o in cb.outcomes]
    assert [r.step for r in reports] == [2, 4, 6]
    assert reports[1].alerts and "'unused'" in reports[1].alerts[0]
    assert all(r.norms["net"] > 0 for r in reports)
    assert cb.loop.snapshot.get("gradient_zero_streak").value["unused"] == 3


def test_checkpoint_without_its_plugin_or_with_model_checkpoint_is_refused(tmp_path):
    ck = VsrkitCheckpoint(tmp_path / "ck")
    cb = VsrkitCallback(tmp_path, loss_weights=weights(), statistics=False)
    with pytest.raises(IntegrationError, match=r"plugins=\[ckpt.io\]"):
        trainer(tmp_path, [cb, ck], max_steps=2).fit(TinyModule(), loader())
    from lightning.pytorch.callbacks import ModelCheckpoint

    ck2 = VsrkitCheckpoint(tmp_path / "ck2")
    t = trainer(
        tmp_path, [cb, ck2, ModelCheckpoint(tmp_path / "mc")], max_steps=2, plugins=[ck2.io]
    )
    with pytest.raises(IntegrationError, match="replaces ModelCheckpoint"):
        t.fit(TinyModule(), loader())


def test_missing_loss_terms_are_named(tmp_path):
    class NoTerms(TinyModule):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return (self.net(x) - y).pow(2).mean()

    cb = VsrkitCallback(tmp_path, loss_weights=weights(), statistics=False)
    with pytest.raises(VsrkitError, match="no loss for term"):
        trainer(tmp_path, [cb], max_steps=2).fit(NoTerms(), loader())


def test_callback_state_round_trips_through_json(tmp_path):
    cb = VsrkitCallback(
        tmp_path,
        loss_weights=weights(),
        log_every=1,
        plateau=PlateauTracker(patience=50),
        lr_policy=LRBoostPolicy(),
        runtime_config=example_settings(),
    )
    trainer(tmp_path, [cb], max_steps=3).fit(TinyModule(), loader())
    state = json.loads(json.dumps(cb.state_dict(), allow_nan=False))
    other = VsrkitCallback(
        tmp_path / "other",
        loss_weights=weights(),
        plateau=PlateauTracker(patience=60),
        lr_policy=LRBoostPolicy(),
        runtime_config=example_settings(),
    )
    other.load_state_dict(state)  # kept until the trainer binds it
    other.loop.bind(cb.loop.dist)
    assert other.state_dict() == state and other.loop.plateau.patience == 60
    with pytest.raises(StateError, match="LoopCore state: version 0 is not supported"):
        other.load_state_dict({**state, "version": 0})


def test_missing_lightning_gives_one_clear_message():
    code = (
        "import sys\n"
        "sys.modules['lightning'] = None\n"
        "sys.modules['lightning.pytorch'] = None\n"
        "try:\n"
        "    import vsrkit.integrations.lightning\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "vsrkit.integrations.lightning needs lightning: pip install 'vsrkit[lightning]'"
    )


def test_package_import_is_light():
    code = (
        "import sys, vsrkit.integrations\n"
        "print(sorted({'torch', 'lightning', 'accelerate'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")
def test_a_skipped_batch_is_left_out_of_the_interval(tmp_path):
    class SkipsOdd(TinyModule):
        def training_step(self, batch, batch_idx):
            if batch_idx % 2:
                return None  # Lightning skips the optimizer step
            return super().training_step(batch, batch_idx)

    cb = VsrkitCallback(tmp_path, loss_weights=weights(), log_every=2, statistics=False)
    t = trainer(tmp_path, [cb], max_steps=4)
    t.fit(SkipsOdd(), loader())
    assert t.global_step == 4 and [o.step for o in cb.outcomes] == [2, 4]
    assert all(math.isfinite(o.losses["total"]) for o in cb.outcomes)


def test_docstring_examples_run(tmp_path, monkeypatch):
    import doctest

    from vsrkit.integrations import lightning as module

    monkeypatch.chdir(tmp_path)  # VsrkitCallback's example names a relative run folder
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
