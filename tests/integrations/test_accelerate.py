"""Real Accelerate loops on the CPU with VsrkitAccelerate (a few steps each)."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator

from vsrkit._atomic import atomic_write_json
from vsrkit.adaptive import AdaptiveLossWeights, LRBoostPolicy, PlateauTracker
from vsrkit.checkpoint import LatestN, read_manifest
from vsrkit.config import example_settings, read_changes
from vsrkit.integrations import IntegrationError
from vsrkit.integrations.accelerate import VsrkitAccelerate
from vsrkit.loop import LoopError

TERMS = ("mse", "l1")


def data(constant=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    if constant:
        x, y = x[:1].repeat(64, 1), y[:1].repeat(64, 1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def make(tmp_path, *, lr=0.05, **kw):
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model, opt, loader = acc.prepare(model, opt, data(kw.pop("constant", False)))
    kw.setdefault("loss_weights", AdaptiveLossWeights(TERMS, initial={"mse": 0.5, "l1": 0.5}))
    vsr = VsrkitAccelerate(acc, run_dir=tmp_path, **kw)
    return acc, model, opt, loader, vsr


def run(acc, model, opt, loader, vsr, *, start, stop, on_step=None, validate_every=None):
    """The user's loop, with the vsrkit calls; returns the outcomes and the last step."""
    outcomes, step = [], start
    batches = iter(loader)
    with vsr.catch_signals():
        while step < stop:
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            pred = model(x)
            losses = {"mse": (pred - y).pow(2).mean(), "l1": (pred - y).abs().mean()}
            total = vsr.combine(losses, step=step)
            acc.backward(total)
            vsr.after_backward(losses, total)
            opt.step()
            opt.zero_grad()
            step += 1
            out = vsr.end_of_step(step, opt)
            if out is not None:
                outcomes.append(out)
            if validate_every and step % validate_every == 0:
                with torch.no_grad():
                    val = float((model(x) - y).pow(2).mean())
                vsr.validation_end(
                    step, {"quality_ki_value": 1 / (1 + val), "validation_loss_value": val}
                )
            if on_step is not None:
                on_step(step)
            if vsr.stop_requested(step):
                vsr.save(step, {"model": acc.unwrap_model(model).state_dict()}, tag="emergency")
                break
    return outcomes, step


def test_forced_plateau_triggers_and_the_lr_is_boosted(tmp_path):
    acc, model, opt, loader, vsr = make(
        tmp_path,
        lr=1e-12,
        constant=True,
        log_every=1,
        plateau=PlateauTracker(patience=3, cooldown=0),
        lr_policy=LRBoostPolicy(mode="boost", factor=2.0, max_boosts=1),
        statistics=False,
    )
    outcomes, _ = run(acc, model, opt, loader, vsr, start=0, stop=12)
    fired = [o for o in outcomes if o.event.triggered]
    assert fired and fired[0].event.reason.value == "plateau"
    assert fired[0].new_lrs == pytest.approx([2e-12])
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-12)  # max_boosts=1
    vsr.close()


def test_runtime_change_lands_on_the_next_poll(tmp_path):
    tracker = PlateauTracker(patience=250)
    acc, model, opt, loader, vsr = make(
        tmp_path, plateau=tracker, runtime_config=example_settings(), poll_every=4, statistics=False
    )
    seen = {}

    def on_step(step):
        seen[step] = tracker.patience
        if step == 5:
            doc = json.loads((tmp_path / "runtime_config.json").read_text())
            atomic_write_json(tmp_path / "runtime_config.json", {**doc, "plateau_patience": 500})

    run(acc, model, opt, loader, vsr, start=0, stop=10, on_step=on_step)
    assert seen[7] == 250 and seen[8] == 500
    changes = [(c.step, c.new) for c in read_changes(tmp_path) if c.key == "plateau_patience"]
    assert changes == [(8, 500)]
    vsr.close()


def test_statistics_files_appear(tmp_path):
    acc, model, opt, loader, vsr = make(tmp_path, log_every=2, plateau=PlateauTracker(patience=50))
    run(acc, model, opt, loader, vsr, start=0, stop=10, validate_every=4)
    vsr.close()
    assert sorted(p.name for p in tmp_path.glob("Statistik_*.json")) == [
        "Statistik_4.json",
        "Statistik_8.json",
    ]
    doc = json.loads((tmp_path / "Statistik_8.json").read_text())
    assert doc["complete"] is True and doc["measured_at_step"]["learning_rate_value"] == 10
    assert doc["quality_ki_value"] > 0 and doc["adaptive_plateau_counter"] is not None


def test_resume_continues_the_step_count_and_the_components(tmp_path):
    def build():
        return make(
            tmp_path,
            log_every=1,
            plateau=PlateauTracker(patience=50),
            runtime_config=example_settings(),
            keep=LatestN(2),
            statistics=False,
        )

    acc, model, opt, loader, vsr = build()
    assert vsr.restore() is None
    run(acc, model, opt, loader, vsr, start=0, stop=6)
    path = vsr.save(
        6, {"model": acc.unwrap_model(model).state_dict(), "optimizer": opt.state_dict()}
    )
    assert path.name == "checkpoint_step_0000006.pth"
    assert (
        read_manifest(path.with_suffix(".json"))["runtime_config"] == "runtime_config_step_6.json"
    )
    weights_at_6 = {k: v.clone() for k, v in acc.unwrap_model(model).state_dict().items()}
    vsr.close()

    acc, model, opt, loader, vsr = build()
    step, state = vsr.restore()
    assert step == 6
    acc.unwrap_model(model).load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    assert torch.equal(acc.unwrap_model(model).weight, weights_at_6["weight"])
    assert vsr.loop.plateau.state_dict()["last_step"] == 6
    outcomes, last = run(acc, model, opt, loader, vsr, start=step, stop=9)
    assert [o.step for o in outcomes] == [7, 8, 9] and last == 9
    assert vsr.loop.plateau.state_dict()["n"] == 9
    vsr.close()


def test_sigterm_gives_an_emergency_checkpoint(tmp_path):
    acc, model, opt, loader, vsr = make(tmp_path, statistics=False)

    def on_step(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    _, last = run(acc, model, opt, loader, vsr, start=0, stop=20, on_step=on_step)
    assert last == 3
    assert [r.filename for r in vsr.checkpoints.list()] == ["checkpoint_step_0000003_emergency.pth"]
    vsr.close()


def test_state_round_trips_through_json(tmp_path):
    acc, model, opt, loader, vsr = make(
        tmp_path, log_every=1, plateau=PlateauTracker(patience=50), statistics=False
    )
    run(acc, model, opt, loader, vsr, start=0, stop=3)
    state = json.loads(json.dumps(vsr.loop.state_dict(), allow_nan=False))
    _, _, _, _, other = make(tmp_path / "b", plateau=PlateauTracker(patience=70), statistics=False)
    other.loop.load_state_dict(state)
    assert other.loop.state_dict() == state and other.loop.plateau.patience == 70


def test_bad_calls_are_named(tmp_path):
    acc, model, opt, loader, vsr = make(tmp_path, statistics=False)
    with pytest.raises(IntegrationError, match="reserved"):
        vsr.save(1, {"vsrkit": {}})
    with pytest.raises(IntegrationError, match="check_every"):
        VsrkitAccelerate(acc, run_dir=tmp_path, check_every=0)
    with pytest.raises(LoopError, match="not statistics validation fields"):
        vsr.validation_end(1, {"psnr": 30.0})
    with pytest.raises(LoopError, match="lr_policy needs plateau"):
        VsrkitAccelerate(acc, run_dir=tmp_path, terms=("a",), lr_policy=LRBoostPolicy())


def test_docstring_example_runs():
    module = importlib.import_module("vsrkit.integrations.accelerate")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_missing_accelerate_gives_one_clear_message():
    code = (
        "import sys\n"
        "sys.modules['accelerate'] = None\n"
        "try:\n"
        "    import vsrkit.integrations.accelerate\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "vsrkit.integrations.accelerate needs accelerate: pip install 'vsrkit[accelerate]'"
    )


def test_the_old_hooks_attribute_is_the_loop_core_with_a_warning(tmp_path):
    from vsrkit.integrations.lightning import VsrkitCallback

    vsr = VsrkitAccelerate(Accelerator(cpu=True), run_dir=tmp_path / "a", terms=TERMS)
    cb = VsrkitCallback(tmp_path / "l", terms=TERMS)
    for adapter in (vsr, cb):
        with pytest.warns(DeprecationWarning, match=r"\.hooks is deprecated; use .*\.loop"):
            assert adapter.hooks is adapter.loop
    vsr.close()
