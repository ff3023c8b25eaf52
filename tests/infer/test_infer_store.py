"""The feature store: host records up to the budget, a spill file past it that is always
removed (close, exception, generator close, a killed process), positioned I/O, staged copies."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.infer.conftest import child_env, perturbed_model
from vsrkit.infer import FeatureStore, InferenceError, Upscaler
from vsrkit.infer.store import SPILL_PREFIX, default_host_budget

FIELDS = {"lr": ((3, 5, 7), torch.uint8), "feat": ((3, 4, 5, 7), torch.float32)}


def fd_targets(pid: int | str = "self") -> list[str]:
    """What the open file descriptors of a process point at (Linux ``/proc``)."""
    targets = []
    folder = Path(f"/proc/{pid}/fd")
    for fd in folder.iterdir() if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    return targets


def open_spill_fds(folder: Path) -> list[str]:
    """Targets of this process's open file descriptors that are spill files in ``folder``."""
    return [t for t in fd_targets() if t.startswith(str(folder)) and SPILL_PREFIX in t]


linux_only = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@settings(max_examples=25)
@given(
    frames=st.integers(1, 9),
    budget_frames=st.integers(0, 10),
    staged=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_every_record_comes_back_as_it_was_put(
    frames: int, budget_frames: int, staged: bool, dtype: torch.dtype
) -> None:
    fields = {"lr": FIELDS["lr"], "feat": (FIELDS["feat"][0], dtype)}
    probe = FeatureStore(fields, host_budget=0)
    budget = budget_frames * probe.record_bytes
    probe.close()
    g = torch.Generator().manual_seed(frames)
    lrs = [torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=g) for _ in range(frames)]
    feats = [torch.randn(3, 4, 5, 7, generator=g).to(dtype) for _ in range(frames)]
    with FeatureStore(fields, host_budget=budget, staged=staged) as store:
        for i in range(frames):
            store.put(i, "lr", lrs[i])
        for i in reversed(range(frames)):  # the backward pass writes parts, last frame first
            for part in range(3):
                store.put(i, "feat", feats[i][part], part=part)
        store.flush()
        assert store.host_records == budget_frames
        assert store.spilled_records == max(0, frames - budget_frames)
        for i in range(frames):
            assert torch.equal(store.get(i, "lr"), lrs[i])
            for part in range(3):
                assert torch.equal(store.get(i, "feat", part=part), feats[i][part])
            store.release(i)
        assert not store._ram  # released host records are freed


@linux_only
def test_the_spill_file_lives_in_the_chosen_folder_without_a_name_and_closes(
    tmp_path: Path,
) -> None:
    with FeatureStore(FIELDS, host_budget=0, spill_dir=tmp_path / "spill") as store:
        store.put(0, "lr", torch.zeros(3, 5, 7, dtype=torch.uint8))
        assert store.spill_path is not None and store.spill_path.parent == tmp_path / "spill"
        assert not store.spill_path.exists()  # unlinked at once: nothing can leave it behind
        fds = open_spill_fds(tmp_path / "spill")
        assert len(fds) == 1 and fds[0].endswith("(deleted)")
        assert store.spill_bytes > 0
    assert open_spill_fds(tmp_path / "spill") == []
    assert list((tmp_path / "spill").iterdir()) == []


@linux_only
@pytest.mark.parametrize("how", ["exception", "generator close", "garbage collected"])
def test_streaming_removes_its_spill_file_however_it_ends(tmp_path: Path, how: str) -> None:
    model = perturbed_model(1)
    up = Upscaler(model, device="cpu", host_budget=0, spill_dir=tmp_path)

    def frames():
        yield from torch.rand(4, 3, 8, 8)
        if how == "exception":
            raise RuntimeError("reader failed")

    outputs = up.stream(frames())
    if how == "exception":
        with pytest.raises(RuntimeError, match="reader failed"):
            next(outputs)
    else:
        next(outputs)  # both passes ran: the spill file holds features now
        assert len(open_spill_fds(tmp_path)) == 1
        if how == "generator close":
            outputs.close()
        else:
            del outputs
    assert open_spill_fds(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


@linux_only
def test_a_killed_process_leaves_no_spill_file(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    script = textwrap.dedent(
        f"""
        import sys, torch
        from vsrkit.infer import upscale_frames
        from vsrkit.vsr import build_model
        frames = (torch.rand(3, 16, 16) for _ in range(10_000))
        for i, _ in enumerate(upscale_frames(build_model("tiny"), frames, device="cpu",
                                             host_budget=0, spill_dir={str(spill)!r})):
            pass
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=child_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the file is created with the first spilled frame
            if any(SPILL_PREFIX in t for t in fd_targets(proc.pid)):
                break
            assert proc.poll() is None, "the child ended early"
            time.sleep(0.05)
        else:
            pytest.fail("no spill file appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert list(spill.iterdir()) == []


def test_a_full_disk_is_one_line_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with (
        FeatureStore(FIELDS, host_budget=0, spill_dir=tmp_path) as store,
        pytest.raises(InferenceError, match=r"is full .*--spill-dir.*--host-budget-gb"),
    ):
        store.put(0, "lr", torch.zeros(3, 5, 7, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_spill_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with (
        FeatureStore(FIELDS, host_budget=0, spill_dir=blocker / "sub") as store,
        pytest.raises(InferenceError, match="cannot create a spill file"),
    ):
        store.put(0, "lr", torch.zeros(3, 5, 7, dtype=torch.uint8))


def test_wrong_shapes_and_unknown_fields_are_refused() -> None:
    with FeatureStore(FIELDS, host_budget=10**6) as store:
        with pytest.raises(ValueError, match="expected shape"):
            store.put(0, "lr", torch.zeros(3, 5, 6, dtype=torch.uint8))
        with pytest.raises(KeyError, match="unknown field"):
            store.put(0, "nope", torch.zeros(1))
        with pytest.raises(IndexError, match="part 3"):
            store.put(0, "feat", torch.zeros(4, 5, 7), part=3)
        with pytest.raises(KeyError):
            store.get(5, "lr")
    with pytest.raises(ValueError, match="host_budget"):
        FeatureStore(FIELDS, host_budget=-1)


def test_the_default_budget_is_a_quarter_of_memory_at_most_4_gib() -> None:
    budget = default_host_budget()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < budget <= 4 << 30 and budget <= total // 4 + 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_tuned_allocator_stops_mapping_each_frames_activations_anew() -> None:
    """Counts page faults (not time): with glibc's defaults every frame maps fresh memory for
    its activations; after tune_cpu_allocator the freed memory is reused."""
    script = textwrap.dedent(
        """
        import resource, sys, torch
        from vsrkit.infer import Upscaler, tune_cpu_allocator
        from vsrkit.vsr import build_model
        if sys.argv[1] == "tuned":
            assert tune_cpu_allocator()
        up = Upscaler(build_model("tiny"), device="cpu", host_budget=0)
        clip = torch.rand(24, 3, 40, 64)
        list(up.stream(clip[:2]))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        list(up.stream(clip))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        """
    )
    env = {k: v for k, v in child_env().items() if not k.startswith("MALLOC_")}
    faults = {}
    for how in ("default", "tuned"):
        out = subprocess.run(
            [sys.executable, "-c", script, how], capture_output=True, text=True, env=env, check=True
        )
        faults[how] = int(out.stdout.strip())
    assert faults["tuned"] * 5 < faults["default"], faults
