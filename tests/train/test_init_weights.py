"""``vsrkit train --init-weights``: fine-tuning starts from a published model's weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.train.conftest import TINY, run_train
from vsrkit.vsr import build_model, to_basicsr_keys


def _published(tmp_path: Path, *, skip: str = "bilinear", preset: str = "tiny") -> Path:
    """A random model of ``preset`` saved as BasicSR saves BasicVSR ({"params": ...})."""
    torch.manual_seed(7)
    net = build_model(preset, skip=skip)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path / "BasicVSR_published.pth"
    torch.save({"params": to_basicsr_keys(net.state_dict())}, path)
    return path


def test_init_weights_start_the_run_from_the_file(tmp_path: Path) -> None:
    published = _published(tmp_path)
    config = tmp_path / "c.json"
    # a learning rate so small that one step leaves the weights where they started
    config.write_text(json.dumps({**TINY, "lr": 1e-8, "min_lr": 1e-8, "warmup_steps": 0}))
    run = tmp_path / "run"
    proc = run_train(
        config, run, "--steps", "1", "--skip", "bilinear", "--init-weights", str(published)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"initialised the model from {published} (a basicsr BasicVSR)" in out
    assert "the optimizer, the LR schedule and the adaptive components start fresh" in out
    state = torch.load(run / "checkpoints" / "checkpoint_step_0000001.pth", weights_only=True)
    assert state["train"]["config"]["skip"] == "bilinear"
    from vsrkit.vsr.pretrained import read_pretrained

    want = read_pretrained(published).state_dict
    for key, value in want.items():
        assert torch.allclose(state["model"][key], value, atol=1e-5), key


def test_init_weights_of_another_size_is_one_line(tmp_path: Path) -> None:
    published = _published(tmp_path, skip="bicubic")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(TINY))
    proc = run_train(config, tmp_path / "run", "--steps", "1", "--init-weights", str(published))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "a basicsr BasicVSR model with" in errors[0] and "skip bilinear" in errors[0]
    proc = run_train(
        config, tmp_path / "run2", "--resume", "latest", "--init-weights", str(published)
    )
    assert proc.returncode == 2 and "leave out one of the two" in proc.stderr
