"""``vsrkit train`` does what a user means, in real child processes: a final checkpoint and
validation, damaged checkpoints set aside, honest resume, one line for every mistake."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.train.conftest import TINY, child_env, run_train, scalars
from vsrkit.checkpoint import CheckpointManager
from vsrkit.stats import LOSS_FIELDS, load_statistics
from vsrkit.train.schedule import WarmupCosine

ADVICE = ("weights_only", "arbitrary code")  # torch's advice must never reach a user


def pth(run: Path, step: int, tag: str = "") -> Path:
    return run / "checkpoints" / f"checkpoint_step_{step:07d}{'_' + tag if tag else ''}.pth"


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``Error: ...`` line of a failed run (and no traceback anywhere)."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One finished 20-step run (checkpoints 10 and 20); tests work on copies of it."""
    root = tmp_path_factory.mktemp("base")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    run = root / "run"
    proc = run_train(config, run, "--steps", "20", "--lr", "3e-4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return config, run


@pytest.fixture
def run_copy(base_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    config, run = base_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return config, copy


# ------------------------------------------------------------------ short runs, final files


def test_a_short_run_ends_with_a_checkpoint_a_validation_and_complete_statistics(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = run_train(tiny_config, run, "--steps", "13")  # not a multiple of ckpt_every 10
    assert proc.returncode == 0, proc.stdout + proc.stderr
    regular = {r.step for r in CheckpointManager(run / "checkpoints").list() if not r.tag}
    assert regular == {10, 13}
    assert "validation at step 13" in proc.stdout
    stats = {d["step_current"]: d for d in load_statistics(run)}
    assert sorted(stats) == [10, 13]
    last = stats[13]
    assert last["complete"] is True and last["stale_fields"] == []
    for field in LOSS_FIELDS:  # the interval that ended at the last step: as fresh as it gets
        assert last[field] is not None and last["measured_at_step"][field] == 13
    assert last["learning_rate_value"] is not None
    assert "incomplete" not in proc.stdout + (run / "training.log").read_text()
    # the commands of the summary find what the run wrote (the run folder is accepted too)
    for args in (["checkpoints", "list", str(run)], ["stats", "list", str(run)]):
        listed = subprocess.run(
            [sys.executable, "-m", "vsrkit", *args], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0 and "13" in listed.stdout, listed.stdout + listed.stderr
        assert "no checkpoints" not in listed.stdout


# ------------------------------------------------------------------ damaged checkpoints


def _zero_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # same size: only the sha256 can tell
    path.write_bytes(bytes(data))


def _zero_head(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[40:104] = bytes(64)  # inside the zip's first records
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_zero_middle, _zero_head, _truncate], ids=lambda f: f.__name__)
def test_a_damaged_newest_checkpoint_is_set_aside_once_and_the_previous_one_used(
    run_copy: tuple[Path, Path], damage
) -> None:
    config, run = run_copy
    damage(pth(run, 20))
    proc = run_train(config, run, "--steps", "25", "--resume", "latest")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "resumed from step 10" in out
    assert pth(run, 20).with_name(pth(run, 20).name + ".corrupt").is_file()
    assert (run / "checkpoints" / "checkpoint_step_0000020.json.corrupt").is_file()
    before = proc.stdout[: proc.stdout.index("resumed from step")] + proc.stderr
    assert before.count("checkpoint_step_0000020.pth") == 1  # one warning, nothing else
    assert "renamed to *.corrupt" in out
    assert not any(a in out for a in ADVICE)
    log = (run / "training.log").read_text()
    assert log.count("checkpoint_step_0000020.pth") >= 1 and not any(a in log for a in ADVICE)
    # the run continued from 10 and wrote its own 20 and 25
    steps = {r.step for r in CheckpointManager(run / "checkpoints").list() if r.valid}
    assert {20, 25} <= steps


def test_every_checkpoint_damaged_is_one_line(run_copy: tuple[Path, Path]) -> None:
    config, run = run_copy
    for path in (run / "checkpoints").glob("*.pth"):
        _zero_middle(path)
    proc = run_train(config, run, "--steps", "25", "--resume", "latest")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "every checkpoint in" in line and "is damaged" in line and "3 renamed" in line
    assert not any(a in proc.stdout + proc.stderr for a in ADVICE)
    assert not list((run / "checkpoints").glob("*.pth"))


# ------------------------------------------------------------------ resume mistakes


def test_a_missing_resume_step_errs_at_once_and_lists_each_step_once(
    run_copy: tuple[Path, Path],
) -> None:
    config, run = run_copy
    proc = run_train(config, run, "--resume", "999999")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "--resume 999999: no valid checkpoint at that step" in line
    assert "(have: 10, 20)" in line  # 10 and 10_best are one step
    assert "built tiny model" not in proc.stdout  # refused before the model was built


def test_a_failed_resume_leaves_no_skeleton_run_folder(tiny_config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "new"
    proc = run_train(tiny_config, missing, "--resume", "5")
    assert proc.returncode == 2 and "does not exist" in one_error_line(proc)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_train(tiny_config, empty, "--resume", "best")
    assert proc.returncode == 2 and "--resume best" in one_error_line(proc)
    assert list(empty.iterdir()) == []  # no checkpoints/, no training.log


# ------------------------------------------------------------------ settings on resume


def test_flags_on_resume_win_and_the_run_says_where_each_setting_came_from(
    run_copy: tuple[Path, Path],
) -> None:
    config, run = run_copy
    live = run / "runtime_config.json"
    doc = json.loads(live.read_text())
    doc.update(grad_clip=2.0, val_every=9)  # edits while the run was stopped
    live.write_text(json.dumps(doc))
    proc = run_train(
        config, run, "--steps", "30", "--resume", "latest", "--log-every", "2", "--val-every", "4"
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    block = out[out.index("resumed from step 20") :].split("\n\n")[0]
    rows = {ln.split()[0]: ln for ln in block.splitlines()[2:] if "from " in ln}
    assert re.search(
        r"log_every\s+2\s+from command line\s+\(instead of runtime snapshot: 5\)", block
    )
    assert "val_every" in rows and "from command line" in rows["val_every"]
    assert "steps" in rows and "(instead of checkpoint: 20)" in rows["steps"]
    # --lr was given to the first run only: the checkpoint's value, said so
    assert re.search(r"lr\s+0.0003\s+from checkpoint\s+\(instead of default: 0.0004\)", block)
    assert "every other setting as the run had it" in block
    # nothing silently overrides the flags; the edit of an unflagged key is applied
    assert "Config Update: log_every" not in out and "Config Update: val_every" not in out
    assert "Config Update: grad_clip 1 -> 2" in out
    assert sorted(s for s in scalars(run, "Loss/total") if s > 20) == list(range(22, 31, 2))
    stats = sorted(d["step_current"] for d in load_statistics(run))
    assert [s for s in stats if s > 20] == [24, 28, 30]
    assert json.loads(live.read_text())["val_every"] == 4


def test_changed_steps_on_resume_continue_the_lr_without_a_jump(
    run_copy: tuple[Path, Path],
) -> None:
    config, run = run_copy  # 20 steps, lr 3e-4, warm-up 2, min_lr 1e-6
    proc = run_train(config, run, "--resume", "10", "--steps", "50")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LR schedule (steps 20 -> 50): the LR continues from" in proc.stdout
    lrs = scalars(run, "LR")  # read back from the event files (the resumed run's values)
    old = WarmupCosine(3e-4, 2, 20, final_lr=1e-6)
    expected = old.continued(10, total_steps=50)
    assert lrs[10] == pytest.approx(old.lr(10), rel=1e-6)  # the first run, up to the checkpoint
    for step in range(15, 51, 5):
        assert lrs[step] == pytest.approx(expected.lr(step), rel=1e-6)
    after = [lrs[s] for s in sorted(lrs) if s >= 10]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(after, after[1:], strict=False))
    # a schedule recomputed for 50 steps would jump up after the resume (1.8e-4 -> 2.7e-4)
    assert WarmupCosine(3e-4, 2, 50, final_lr=1e-6).lr(15) > 1.4 * lrs[10]
    assert lrs[50] == pytest.approx(1e-6, rel=1e-6)


# ------------------------------------------------------------------ retention


def test_keep_last_counts_regular_checkpoints(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(tiny_config, run, "--steps", "50", "--keep-last", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = CheckpointManager(run / "checkpoints").list()
    assert sorted(r.step for r in records if r.type == "regular") == [40, 50]
    best = [r for r in records if r.type == "best"]
    assert len(best) == 1  # the best by SSIM, kept by its own rule
    top = max(d["quality_ki_value"] for d in load_statistics(run))
    assert best[0].quality == pytest.approx(top, abs=1e-12)
    assert (
        "the 2 newest regular checkpoints, the best by SSIM, the newest emergency checkpoint "
        "and the one a resume would pick are kept" in (run / "training.log").read_text()
    )
    # a resume without --keep-last keeps the run's own rule
    proc = run_train(tiny_config, run, "--steps", "70", "--resume", "latest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = CheckpointManager(run / "checkpoints").list()
    assert sorted(r.step for r in records if r.type == "regular") == [60, 70]


# ------------------------------------------------------------------ data mistakes


def test_too_few_clips_for_a_batch_is_one_line(tiny_config: Path, tmp_path: Path) -> None:
    proc = run_train(tiny_config, tmp_path / "run", "--batch-size", "9")  # 8 clips
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "has 8 training clip(s), fewer than one batch of 9 (--batch-size)" in line


def _reds(root: Path, odd: tuple[str, int] | None = None) -> Path:
    """A REDS-style folder (GT and LR) with clips a, b, c; ``odd``: one LR frame of a wrong
    size."""
    for clip in ("a", "b", "c"):
        for i in range(4):
            for kind, size in (("GT", 64), ("LR", 16)):
                folder = root / kind / clip
                folder.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (size, size), (i * 50, 90, 30)).save(folder / f"{i:08d}.png")
    if odd is not None:
        Image.new("RGB", (20, 16)).save(root / "LR" / odd[0] / f"{odd[1]:08d}.png")
    return root


def test_a_frame_of_another_size_is_one_line_naming_it(tiny_config: Path, tmp_path: Path) -> None:
    data = _reds(tmp_path / "data", odd=("b", 2))
    proc = run_train(
        tiny_config,
        tmp_path / "run",
        "--data",
        str(data),
        "--val-clip-names",
        "a",
        "--batch-size",
        "1",
        "--num-workers",
        "1",  # the error comes back from a DataLoader worker
        "--steps",
        "6",
    )
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert str(data / "LR" / "b" / "00000002.png") in line and "20x16" in line


def test_too_few_clips_of_a_folder_is_one_line(tiny_config: Path, tmp_path: Path) -> None:
    data = _reds(tmp_path / "data")
    proc = run_train(tiny_config, tmp_path / "run", "--data", str(data), "--val-clip-names", "a,b")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"--data {data} has 1 training clip(s), fewer than one batch of 2" in line
    proc = run_train(tiny_config, tmp_path / "run2", "--data", str(data), "--val-clip-names", "x")
    assert proc.returncode == 1
    assert "validation clip 'x' is not a folder in" in one_error_line(proc)


# ------------------------------------------------------------------ the terminal view


class _Pty:
    def __init__(self, args: list[str], cols: int) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        env = {k: v for k, v in child_env().items() if k != "COLUMNS"}
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env
        )
        os.close(slave)
        self.out = b""

    def read_until(self, needle: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    break
        assert needle in self.text(), self.text()[-3000:]
        return self.text()

    def text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", self.out.decode("utf-8", "replace"))


def test_q_in_a_zero_column_terminal_saves_once_and_stops(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "vsrkit", "train", "--config", str(tiny_config)]
    term = _Pty([*args, "--run-dir", str(run), "--steps", "100000"], cols=0)
    try:
        text = term.read_until("keys: v validate  p pause/resume")  # a line, not a column
        assert "vsrkit  step " in text
        term.read_until("validation at step 10")
        term.read_until("/100000")  # the panel shows the step
        os.write(term.master, b"q")
        term.read_until("stopped at step")
        assert term.proc.wait(timeout=60) == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
        os.close(term.master)
    records = CheckpointManager(run / "checkpoints").list()
    stop = max(r.step for r in records)
    assert [r.type for r in records if r.step == stop] in (["regular"], ["regular", "best"])
    assert not [r for r in records if r.type == "emergency"]


# ------------------------------------------------------------------ checkpoints of older vsrkit


def _layout_1(state: dict) -> dict:
    """The checkpoint layout ``vsrkit train`` wrote before the loop core, built by its schema:
    the components under ``components`` by their old names, the loop's variables under
    ``loop`` (the pending quality as the whole validation result), the sums under ``interval``."""
    loop, comps = state["vsrkit"]["loop"], state["vsrkit"]["components"]
    pending = loop["pending_quality"]
    return {
        "model": state["model"],
        "optimizer": state["optimizer"],
        "scaler": state["scaler"],
        "rng": state["rng"],
        "interval": loop["interval"],
        "components": {
            "tracker": comps["plateau"],
            "lr_policy": comps["lr_policy"],
            "weights": comps["loss_weights"],
            "clip": comps["clip"],
        },
        "loop": {
            "lr_scale": loop["lr_scale"],
            "best_quality": loop["best_quality"],
            "config_version": loop["config_version"],
            "pending_quality": None if pending is None else {"quality_ki_value": pending},
            "runtime_snapshot": state["train"]["runtime_snapshot"],
            "config": state["train"]["config"],
            "schedule": loop["schedule"],
            "clip_reported": loop["clip_reported"],
        },
    }


def _rewrite(run: Path, step: int, change) -> None:
    """Replace the checkpoints of ``run`` by the one of ``step``, its state changed."""
    import torch

    mgr = CheckpointManager(run / "checkpoints")
    _, state = mgr.restore(step)
    mgr.close()
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    with CheckpointManager(run / "checkpoints") as again:
        again.save(step, change(state), metrics={"quality": 0.5})
    assert isinstance(torch.load(pth(run, step), weights_only=True), dict)


def test_a_checkpoint_of_the_layout_before_the_loop_core_resumes_exactly(
    base_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config, base = base_run
    runs = {}
    for name, change in (("current", lambda s: s), ("layout_1", _layout_1)):
        run = tmp_path / name
        shutil.copytree(base, run)
        _rewrite(run, 20, change)
        proc = run_train(config, run, "--steps", "30", "--resume", "latest")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "resumed from step 20" in proc.stdout
        runs[name] = run
    log = (runs["layout_1"] / "training.log").read_text()
    assert "a checkpoint of an earlier vsrkit (layout 1), read as layout 2" in log
    for tag in ("Loss/total", "LR", "Weights/Sum"):
        got, want = scalars(runs["layout_1"], tag), scalars(runs["current"], tag)
        assert {s: v for s, v in got.items() if s > 20} == {
            s: v for s, v in want.items() if s > 20
        }, tag  # the same state: the same losses, LRs and weights, bit for bit
    assert max(scalars(runs["layout_1"], "Loss/total")) == 30


def test_an_old_checkpoint_that_cannot_be_continued_says_how_to_go_on(
    run_copy: tuple[Path, Path],
) -> None:
    config, run = run_copy

    def broken(state: dict) -> dict:
        old = _layout_1(state)
        del old["components"]["clip"]
        return old

    _rewrite(run, 20, broken)
    proc = run_train(config, run, "--steps", "30", "--resume", "latest")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "checkpoint_step_0000020.pth: the checkpoint of step 20 cannot be continued" in line
    assert "it lacks components.clip" in line
    assert "start a new run, or keep its weights with `vsrkit train --init-weights" in line
    # what the line advises works: its weights start a new run
    fresh = run.parent / "fresh"
    proc = run_train(config, fresh, "--steps", "5", "--init-weights", str(pth(run, 20)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"initialised the model from {pth(run, 20)}" in proc.stdout
