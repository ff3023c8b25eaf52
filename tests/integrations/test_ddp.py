"""Two CPU processes under Lightning DDP (gloo): every rank makes the same decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsrkit.config import read_changes

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_rank0_reads_the_runtime_config_and_every_rank_applies_it_at_the_same_step(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    out = subprocess.run(
        [sys.executable, str(HERE / "ddp_lightning_run.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # the file was edited by rank 0 after step 3; the poll at step 4 hands it to both ranks
    for doc in ranks:
        assert [doc["seen"][str(s)]["patience"] for s in range(1, 13)] == [3] * 4 + [400] * 8
    assert ranks[0]["seen"] == ranks[1]["seen"]
    # losses averaged over ranks: the same interval means, the same plateau decisions
    assert ranks[0]["intervals"] == ranks[1]["intervals"]
    assert [s for s, _ in ranks[0]["intervals"]] == [2, 4, 6, 8, 10, 12]
    assert ranks[0]["triggers"] == ranks[1]["triggers"]
    changes = [(c.step, c.key, c.new) for c in read_changes(tmp_path / "run") if c.accepted]
    assert changes == [(4, "plateau_patience", 400)]  # written once, by rank 0
    assert (tmp_path / "run" / "Statistik_4.json").exists()


def torchrun(script, *args, timeout=240):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.slow
def test_accelerate_two_processes_agree_save_and_resume_with_the_settings_in_effect(tmp_path):
    torchrun("ddp_accelerate_run.py", tmp_path)
    torchrun("ddp_accelerate_run.py", tmp_path)  # resumes from step 6
    first = [json.loads((tmp_path / f"rank{r}_from0.json").read_text()) for r in (0, 1)]
    second = [json.loads((tmp_path / f"rank{r}_from6.json").read_text()) for r in (0, 1)]
    assert first[0] == first[1] and second[0] == second[1]
    assert list(first[0]["seen"].values()) == [300, 300, 300, 400, 400, 400]
    # the runtime setting in effect at the checkpoint is in effect after the resume
    assert list(second[0]["seen"].values()) == [400] * 6
    assert [s for s, _ in second[0]["intervals"]] == [8, 10, 12]
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pth"))
    assert ckpts == ["checkpoint_step_0000006.pth", "checkpoint_step_0000012.pth"]
    changes = [(c.step, c.key, c.new) for c in read_changes(tmp_path / "run") if c.accepted]
    assert changes == [(4, "plateau_patience", 400)]
