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
from vsrkit.cli.prompt import prompt_for_checkpoint
from vsrkit.train.config import TrainConfig, TrainConfigError
from vsrkit.train.data import EpochBatchSampler, SeededSamples
from vsrkit.train.distributed import DistContext
from vsrkit.train.output import ProgressLine
from vsrkit.train.resume import (
    ResumeError,
    resolve_resume,
    resolve_run_dir,
    resume_block,
    resume_config,
)
from vsrkit.train.schedule import WarmupCosine
from vsrkit.train.telemetry import format_eta
from vsrkit.train.threads import CpuSample, CpuThreads, ThreadChoice, read_cpu_sample

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


def resume(run: Path, how: str, choose=prompt_for_checkpoint) -> int | None:
    cfg = TrainConfig.from_sources(overrides={"run_dir": str(run), "resume": how})
    mgr = CheckpointManager(run / "checkpoints")
    got = resolve_resume(cfg, mgr, run, DistContext(), choose=choose)
    return None if got is None else got.step


def test_resume_choices(run_with_checkpoints: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_with_checkpoints
    assert resume(run, "latest") == 30
    assert resume(run, "best") == 20
    assert resume(run, "10") == 10
    assert resume(run, str(run / "checkpoints" / "checkpoint_step_0000020.pth")) == 20
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert resume(run, "ask") == 30  # Enter = newest
    with pytest.raises(ResumeError, match="--resume ask needs someone to ask"):
        resume(run, "ask", choose=None)
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


@pytest.mark.parametrize(
    "text", ["\u00b2", "\u0663", "gone.pth", "checkpoints/checkpoint_step_0000010.pth"]
)
def test_a_resume_path_that_is_no_file_is_refused_before_any_folder_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """``"²"`` passes ``str.isdigit`` but is no step: it is a path, and there is no such file;
    the folder a path would imply (two levels up) is not created, not even ``checkpoints/``."""
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.from_sources(overrides={"resume": text})
    with pytest.raises(ResumeError, match=f"--resume {text}: no such checkpoint file"):
        resolve_run_dir(cfg)
    assert list(tmp_path.iterdir()) == []


def test_best_falls_back_to_the_next_best_when_the_best_is_damaged(
    run_with_checkpoints: Path,
) -> None:
    run = run_with_checkpoints
    best = run / "checkpoints" / "checkpoint_step_0000020.pth"
    data = bytearray(best.read_bytes())
    data[-300:-280] = bytes(20)  # inside the zip directory: same size
    best.write_bytes(bytes(data))
    assert resume(run, "best") == 30  # quality 0.6, the next best
    assert best.with_name(best.name + ".corrupt").is_file()


def test_an_explicit_damaged_step_is_one_error_and_is_not_renamed(
    run_with_checkpoints: Path,
) -> None:
    run = run_with_checkpoints
    path = run / "checkpoints" / "checkpoint_step_0000010.pth"
    path.write_bytes(path.read_bytes()[:-10] + bytes(10))
    with pytest.raises(ResumeError, match=r"--resume 10: .*sha256 differs") as info:
        resume(run, "10")
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert path.is_file()


# ---------------------------------------------------------------- settings on resume

_RUN_KEYS = ("steps", "lr", "batch_size", "model", "log_every", "val_every", "max_lr", "seed")
_SAVED = {
    "steps": 900,
    "lr": 2e-4,
    "batch_size": 3,
    "model": "small",
    "log_every": 7,
    "val_every": 70,
    "max_lr": 5e-4,
    "seed": 4,
    "monitor_port": 6000,  # a process setting: never taken from the checkpoint
}
_FLAGS = {
    "steps": 1500,
    "lr": 3e-4,
    "batch_size": 2,
    "model": "tiny",
    "log_every": 3,
    "val_every": 30,
    "max_lr": 6e-4,
    "seed": 9,
}


@given(
    flags=st.sets(st.sampled_from(_RUN_KEYS)),
    in_file=st.sets(st.sampled_from(_RUN_KEYS)),
    snapshot=st.fixed_dictionaries({}, optional={"log_every": st.integers(1, 50)}),
)
def test_what_the_user_gives_wins_and_the_rest_comes_from_the_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, flags: set, in_file: set, snapshot: dict
) -> None:
    file = tmp_path_factory.mktemp("cfg") / "c.json"
    file.write_text(json.dumps({k: _FLAGS[k] for k in in_file}))
    cfg = TrainConfig.from_sources(file=file, overrides={k: _FLAGS[k] for k in flags})
    got = resume_config(cfg, _SAVED, snapshot)
    new, rows = got.config, got.rows
    given_keys = flags | in_file
    for key in _RUN_KEYS:
        if key in given_keys:
            assert getattr(new, key) == _FLAGS[key]
            assert new.origin(key) in ("command line", "config file")
        else:  # startup settings: the checkpoint's
            assert (getattr(new, key), new.origin(key)) == (_SAVED[key], "checkpoint")
    if snapshot:  # live settings: the snapshot's unless given
        want = _FLAGS["log_every"] if "log_every" in given_keys else snapshot["log_every"]
        assert got.live == {"log_every": want}
    else:
        assert got.live == {}
    assert new.monitor_port == cfg.monitor_port
    shown = {r.key: r for r in rows}
    for key in given_keys:  # each given value that differs from the run's is in the block
        offered = snapshot.get(key, _SAVED[key]) if key == "log_every" else _SAVED[key]
        if offered == _FLAGS[key]:
            assert key not in shown
            continue
        assert shown[key].source == ("command line" if key in flags else "config file")
        assert shown[key].instead_of is not None
    keys = [r.key for r in rows]
    given_rows = [k for k in keys if shown[k].source in ("command line", "config file")]
    assert keys[: len(given_rows)] == given_rows  # what the user gave comes first
    text = resume_block(600, Path("checkpoint_step_0000600.pth"), rows)
    assert text.startswith("resumed from step 600 (checkpoint_step_0000600.pth)")
    assert all(key in text for key in keys)


def test_a_saved_setting_that_no_longer_fits_is_one_clear_error() -> None:
    cfg = TrainConfig.from_sources(overrides={"lr": 5e-4})
    with pytest.raises(ResumeError, match="min_lr <= lr <= max_lr"):
        resume_config(cfg, {"max_lr": 4e-4}, {})


def test_live_bounds_below_the_peak_lr_stay_live_settings() -> None:
    # a run whose max_lr was lowered live under its peak lr resumes with that clamp
    got = resume_config(TrainConfig(), {"lr": 4e-4, "max_lr": 8e-4}, {"max_lr": 1e-5})
    assert got.config.max_lr == 8e-4 and got.live == {"max_lr": 1e-5}
    (row,) = got.rows
    assert (row.key, row.value, row.source) == ("max_lr", 1e-5, "runtime snapshot")


def test_origins_of_a_config() -> None:
    cfg = TrainConfig.from_sources(preset="paper", overrides={"threads": "auto", "seed": 3})
    assert cfg.threads is None and cfg.origin("threads") == "command line"
    assert cfg.origin("model") == "preset" and cfg.origin("seed") == "command line"
    assert cfg.origin("amp") == "default"
    direct = TrainConfig(steps=7)
    assert direct.origin("steps") == "command line" and direct.origin("lr") == "default"
    listed = TrainConfig.from_sources(overrides={"val_clip_names": ["000", "020"]})
    assert listed.val_clip_name_list() == ("000", "020")
    with pytest.raises(TrainConfigError, match="val_clip_names must name"):
        TrainConfig.from_sources(overrides={"val_clip_names": " , "})


# ---------------------------------------------------------------- LR schedule on resume


@given(
    warmup=st.integers(0, 300),
    total=st.integers(1, 3000),
    at=st.integers(0, 3000),
    new_total=st.integers(1, 6000),
    new_lr=st.sampled_from([None, 5e-4, 2e-3]),
)
def test_a_changed_schedule_continues_from_the_lr_in_force(
    warmup: int, total: int, at: int, new_total: int, new_lr: float | None
) -> None:
    old = WarmupCosine(1e-3, warmup, warmup + total, final_lr=1e-6)
    new_total = max(new_total, at + 1, warmup + 1)  # a warm-up longer than the run never decays
    new = old.continued(at, total_steps=new_total, base_lr=new_lr)
    assert new.lr(at) == pytest.approx(old.lr(at), rel=1e-12)  # no jump
    assert new.lr(new_total) == pytest.approx(1e-6, rel=1e-9)
    top = max(old.lr(at), new.base_lr)
    lrs = [new.lr(s) for s in range(at, new_total + 1, max(1, (new_total - at) // 50))]
    assert all(1e-6 * (1 - 1e-9) <= lr <= top * (1 + 1e-9) for lr in lrs)
    past_warmup = [new.lr(s) for s in range(max(at, new.warmup_steps), new_total + 1, 7)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(past_warmup, past_warmup[1:], strict=False))
    again = WarmupCosine.from_state(json.loads(json.dumps(new.state_dict())))
    assert again == new  # saved in the checkpoint: a second resume continues the same curve
    assert again.continued(at + 1, total_steps=new_total) is again


def test_an_unchanged_schedule_is_the_uninterrupted_curve() -> None:
    s = WarmupCosine(4e-4, 50, 600, final_lr=1e-6)
    assert s.continued(300) is s and s.continued(300, total_steps=600, base_lr=4e-4) is s


# ---------------------------------------------------------------- threads


class _FakeCpu:
    """CPU counters where other processes use ``others`` cores and we use ``own`` cores."""

    def __init__(self, cpus: int) -> None:
        self.cpus, self.t, self.busy, self.own = cpus, 0, 0, 0
        self.others, self.mine = 0.0, 1.0

    def tick(self, seconds: float) -> None:
        self.t += int(seconds * 100)
        self.busy += int(seconds * 100 * (self.others + self.mine))
        self.own += int(seconds * 100 * self.mine)

    def sample(self) -> CpuSample:
        return CpuSample(self.busy, self.t * self.cpus, self.own, self.cpus)


def _threads(cpu: _FakeCpu, **kw) -> tuple[CpuThreads, list[float]]:
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s
        cpu.tick(s)

    t = CpuThreads(cores=cpu.cpus, sampler=cpu.sample, clock=lambda: clock[0], sleep=sleep, **kw)
    return t, clock


@pytest.mark.parametrize(
    ("cores", "others", "want"), [(2, 0.0, 2), (2, 0.7, 1), (2, 1.0, 1), (4, 1.0, 3), (8, 2.6, 5)]
)
def test_threads_leave_the_cores_other_processes_use(cores: int, others: float, want: int) -> None:
    cpu = _FakeCpu(cores)
    cpu.others = others
    threads, _ = _threads(cpu, env={})
    choice = threads.start()
    assert choice.threads == want
    assert ("other processes" in choice.reason) or choice.threads == cores


def test_threads_follow_a_change_of_load_after_two_checks_agree() -> None:
    cpu = _FakeCpu(2)
    threads, clock = _threads(cpu, env={}, recheck_seconds=10)
    assert threads.start().threads == 2
    cpu.others = 1.0  # a busy process starts beside the run

    def later(seconds: float) -> ThreadChoice | None:
        clock[0] += seconds
        cpu.tick(seconds)
        return threads.recheck()

    assert later(5) is None  # too soon to look
    assert later(10) is None  # first look: a proposal, not yet a change
    change = later(10)
    assert change is not None and change.threads == 1
    assert later(10) is None  # stays
    cpu.others = 0.0
    assert later(10) is None
    back = later(10)
    assert back is not None and back.threads == 2


def test_a_given_thread_count_is_fixed() -> None:
    cpu = _FakeCpu(2)
    cpu.others = 1.0
    assert _threads(cpu, requested=2)[0].start().threads == 2
    env = _threads(cpu, env={"OMP_NUM_THREADS": "1"})[0]
    assert env.start() == ThreadChoice(1, "OMP_NUM_THREADS=1") and env.recheck() is None
    assert _threads(cpu, env={}, processes=2)[0].start().threads == 1
    assert _threads(cpu, env={"OMP_NUM_THREADS": "3,1"})[0].start().threads == 3  # nested
    for junk in ("", "0", "²", "many"):  # not a count: automatic
        assert _threads(cpu, env={"OMP_NUM_THREADS": junk})[0].start().threads == 1
    unknown = CpuThreads(cores=3, sampler=lambda: None, env={})
    assert unknown.start().threads == 3  # no /proc/stat: every core
    with pytest.raises(ValueError, match="threads"):
        CpuThreads(0)


def test_real_cpu_counters_can_be_read() -> None:
    sample = read_cpu_sample()
    if sample is None:
        pytest.skip("no /proc/stat here")
    assert sample.cpus >= 1 and sample.total >= sample.busy >= 0 and sample.own >= 0


# ---------------------------------------------------------------- what a run shows


def test_plain_progress_lines_fall_on_even_steps() -> None:
    out = io.StringIO()
    line = ProgressLine(total=600, stream=out)
    for step in range(10, 601, 10):  # 3 s per interval at first, then faster
        line.update(step=step, loss=0.1, lr=1e-4, its=3.3 if step < 100 else 7.1, eta=None)
    steps = [int(ln.split()[1].split("/")[0]) for ln in out.getvalue().splitlines()]
    assert steps[0] == 10 and steps[-1] == 600
    stride = steps[2] - steps[1]
    assert stride in (10, 20, 50) and all(s % stride == 0 for s in steps[1:])


def test_component_info_lines_stay_in_the_log_file() -> None:
    import logging

    from vsrkit.train.output import _component_details

    def rec(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "x", None, None)

    assert not _component_details(rec("vsrkit.adaptive.lr", logging.INFO))
    assert _component_details(rec("vsrkit.adaptive.lr", logging.WARNING))
    assert _component_details(rec("vsrkit.train", logging.INFO))


@given(st.text(max_size=8) | st.integers(-3, 300).map(str))
def test_the_threads_flag_takes_auto_or_a_count(text: str) -> None:
    import click

    from vsrkit.cli.train import _Threads

    try:
        value = _Threads().convert(text, None, None)
    except click.BadParameter as exc:
        assert "is not 'auto' or a whole number >= 1" in str(exc)
        assert text.strip().lower() != "auto"
    else:
        if value == "auto":
            assert text.strip().lower() == "auto"
        else:
            assert isinstance(value, int) and value >= 1 and int(text) == value
            assert TrainConfig.from_sources(overrides={"threads": value}).threads == value
