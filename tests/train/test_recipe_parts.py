"""The recipe's pure parts: startup config, LR schedule, resumable sample order, resume choice."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.checkpoint import CheckpointManager
from vsrkit.train.config import TrainConfig, TrainConfigError
from vsrkit.train.data import EpochBatchSampler, SeededSamples
from vsrkit.train.distributed import DistContext
from vsrkit.train.resume import ResumeError, resolve_resume, resolve_run_dir
from vsrkit.train.schedule import WarmupCosine
from vsrkit.train.telemetry import format_eta

# ---------------------------------------------------------------- startup config


def test_sources_merge_in_order(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 50, "lr": 1e-4, "batch_size": 3}))
    cfg = TrainConfig.from_sources(preset="quick", file=f, overrides={"steps": 70, "seed": None})
    assert (cfg.steps, cfg.lr, cfg.batch_size, cfg.seed) == (70, 1e-4, 3, 0)
    assert TrainConfig.from_sources(preset="paper").model == "paper"


def test_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('steps = 12\ndata = "synthetic"\n')
    assert TrainConfig.from_sources(file=f).steps == 12


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"stepz": 5}, "did you mean 'steps'"),
        ({"steps": "5"}, "steps must be int"),
        ({"lr": True}, "lr must be float"),
        ({"compile": 1}, "compile must be bool"),
        ({"model": "huge"}, "model must be one of"),
        ({"min_lr": 1e-2}, "min_lr <= lr"),
        ({"crop_size": 30}, "multiple of the scale"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"preset": None}, "preset may not be empty"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, doc: dict, needle: str) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(TrainConfigError, match=needle):
        TrainConfig.from_sources(file=f)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="cannot read config file"):
        TrainConfig.from_sources(file=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(TrainConfigError, match="bad.json is not valid json"):
        TrainConfig.from_sources(file=bad)
    bad.write_text("[1]")
    with pytest.raises(TrainConfigError, match="must hold a table"):
        TrainConfig.from_sources(file=bad)


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
        max_size=4,
    )
)
def test_any_mapping_gives_a_config_or_a_clear_error(doc: dict) -> None:
    try:
        cfg = TrainConfig.from_sources(overrides=doc)
    except TrainConfigError as exc:
        assert str(exc)
    else:
        assert cfg.steps >= 1 and 0 < cfg.min_lr <= cfg.lr <= cfg.max_lr


def test_runtime_initial_holds_every_schema_key() -> None:
    from vsrkit.config import describe_keys

    keys = {k.name for k in describe_keys()}
    assert keys == set(TrainConfig().runtime_initial())


# ---------------------------------------------------------------- schedule


@given(st.integers(0, 5000), st.integers(1, 5000), st.integers(0, 6000))
def test_schedule_stays_between_bounds(warmup: int, total: int, step: int) -> None:
    s = WarmupCosine(base_lr=1e-3, warmup_steps=warmup, total_steps=warmup + total, final_lr=1e-6)
    lr = s.lr(step)
    assert 1e-6 - 1e-15 <= lr <= 1e-3 + 1e-15
    assert s.phase(step) in ("warmup", "cosine", "done")


def test_schedule_shape() -> None:
    s = WarmupCosine(base_lr=1.0, warmup_steps=10, total_steps=110, final_lr=0.0)
    assert s.lr(0) == pytest.approx(0.01) and s.lr(10) == pytest.approx(1.0)
    assert s.lr(60) == pytest.approx(0.5) and s.lr(110) == pytest.approx(0.0)
    assert all(s.lr(i) >= s.lr(i + 1) for i in range(10, 120))


# ---------------------------------------------------------------- sample order


def take(sampler: EpochBatchSampler, n: int) -> list[list[tuple[int, int]]]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


@given(size=st.integers(4, 40), batch=st.integers(1, 4), start=st.integers(0, 60))
def test_sampler_resumes_at_any_step(size: int, batch: int, start: int) -> None:
    full = take(EpochBatchSampler(size, batch, seed=3), start + 5)
    resumed = take(EpochBatchSampler(size, batch, seed=3, start_step=start), 5)
    assert resumed == full[start:]


def test_sampler_ranks_split_each_epoch_without_overlap() -> None:
    per_rank = [take(EpochBatchSampler(10, 2, seed=1, rank=r, world_size=2), 2) for r in (0, 1)]
    seen = [i for batches in per_rank for b in batches for _, i in b]
    assert len(seen) == len(set(seen)) == 8
    assert all(e == 0 for batches in per_rank for b in batches for e, _ in b)


def test_sampler_refuses_a_dataset_smaller_than_a_batch() -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(3, 2, seed=0, world_size=2)


class _RandomItems:
    """A dataset whose items draw from the global RNG, like many user datasets."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.rand(2) + i


def test_seeded_samples_are_reproducible_and_leave_the_caller_rng_alone() -> None:
    ds = SeededSamples(_RandomItems(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = ds[(1, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, ds[(1, 2)])
    assert not torch.equal(a, ds[(2, 2)])


def test_format_eta() -> None:
    assert format_eta(3725.4) == "01:02:05"
    assert format_eta(90000) == "25:00:00"
    assert format_eta(None) is None and format_eta(float("nan")) is None


# ---------------------------------------------------------------- resume choice


@pytest.fixture
def run_with_checkpoints(tmp_path: Path) -> Path:
    with CheckpointManager(tmp_path / "checkpoints") as mgr:
        for step, q in ((10, 0.5), (20, 0.7), (30, 0.6)):
            mgr.save(step, {"w": torch.ones(1) * step}, metrics={"quality": q})
    return tmp_path


def resume(run: Path, how: str) -> int | None:
    cfg = TrainConfig.from_sources(overrides={"run_dir": str(run), "resume": how})
    got = resolve_resume(cfg, CheckpointManager(run / "checkpoints"), run, DistContext())
    return None if got is None else got[0]


def test_resume_choices(run_with_checkpoints: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_with_checkpoints
    assert resume(run, "latest") == 30
    assert resume(run, "best") == 20
    assert resume(run, "10") == 10
    assert resume(run, str(run / "checkpoints" / "checkpoint_step_0000020.pth")) == 20
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert resume(run, "ask") == 30  # Enter = newest
    with pytest.raises(ResumeError, match="no valid checkpoint at that step"):
        resume(run, "15")
    with pytest.raises(ResumeError, match="not a checkpoint file"):
        resume(run, str(run / "notes.txt"))


def test_latest_in_an_empty_run_starts_fresh_but_best_does_not(tmp_path: Path) -> None:
    assert resume(tmp_path, "latest") is None
    with pytest.raises(ResumeError, match="--resume best"):
        resume(tmp_path, "best")


def test_run_dir_from_a_checkpoint_path(run_with_checkpoints: Path) -> None:
    path = run_with_checkpoints / "checkpoints" / "checkpoint_step_0000010.pth"
    cfg = TrainConfig.from_sources(overrides={"resume": str(path)})
    assert resolve_run_dir(cfg) == run_with_checkpoints.resolve()
    with pytest.raises(ResumeError, match="needs --run-dir"):
        resolve_run_dir(TrainConfig.from_sources(overrides={"resume": "latest"}))
