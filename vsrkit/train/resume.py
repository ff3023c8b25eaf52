"""Where a run lives, where it resumes from, and which settings a resumed run uses.

Resume semantics (``vsrkit train --resume ...``):

- What the user gives on this command line (flags and the ``--config`` file) wins.
- Every other setting of the run comes from the checkpoint: the live settings from the runtime
  snapshot saved with it (they include edits made while the run went on), the rest from the
  startup settings saved in it. Settings of this process (device, monitor, threads, ...; see
  :data:`~vsrkit.train.config.PROCESS_KEYS`) always come from this invocation.
- The run prints one block that says which settings came from where (:func:`resume_block`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import platformdirs

from vsrkit._atomic import atomic_write_json, remove_empty_folders
from vsrkit.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    CheckpointRecord,
    parse_checkpoint_name,
)
from vsrkit.checkpoint.names import parse_step
from vsrkit.errors import VsrkitError
from vsrkit.train.config import PROCESS_KEYS, TrainConfig, TrainConfigError
from vsrkit.train.distributed import DistContext
from vsrkit.train.errors import ResumeError

__all__ = [
    "ResumeError",
    "ResumePoint",
    "Resumed",
    "ResumedSettings",
    "SettingRow",
    "default_runs_root",
    "resolve_resume",
    "resolve_run_dir",
    "resume_block",
    "resume_config",
    "start_resume",
    "undo_new_folders",
]

logger = logging.getLogger(__name__)

#: Live settings (``runtime_config.json``) that a resumed run takes from the snapshot.
LIVE_KEYS = (
    "plateau_patience",
    "plateau_safety_threshold",
    "cooldown_duration",
    "max_lr",
    "min_lr",
    "grad_clip",
    "l1_weight",
    "ms_weight",
    "grad_weight",
    "perceptual_weight",
    "val_every",
    "log_every",
    "ckpt_every",
)


@dataclasses.dataclass(frozen=True)
class Resumed:
    """A loaded checkpoint: its step, its state and the file it came from."""

    step: int
    state: dict[str, Any]
    path: Path | None


@dataclasses.dataclass(frozen=True)
class SettingRow:
    """One line of the resume block: a setting, its value, where it came from, what it
    replaced (``None`` when nothing else was on offer)."""

    key: str
    value: Any
    source: str
    instead_of: str | None = None


def default_runs_root() -> Path:
    """The folder that holds runs started without ``--run-dir`` (the user data dir)."""
    return Path(platformdirs.user_data_dir("vsrkit", appauthor=False)) / "runs"


def _checkpoint_path(resume: str | None) -> Path | None:
    """``resume`` as a checkpoint file path, if it is one."""
    if resume is None or resume in ("latest", "best", "ask") or parse_step(resume) is not None:
        return None
    return Path(resume).expanduser()


def resolve_run_dir(cfg: TrainConfig, *, create: bool = True) -> Path:
    """The run folder: ``--run-dir``, else the folder of a ``--resume PATH`` checkpoint, else a
    new folder under :func:`default_runs_root`. Created if missing (with ``create``).

    Raises:
        ResumeError: ``--resume latest|best|STEP|ask`` without ``--run-dir``,
            ``--resume best|STEP|ask`` with a run folder that does not exist, or a
            ``--resume PATH`` that is not a file.
    """
    path = _checkpoint_path(cfg.resume)
    if path is not None and not path.is_file():  # refused before any folder is made
        raise ResumeError(
            f"--resume {cfg.resume}: no such checkpoint file (give latest, best, ask, a step "
            "or a checkpoint_step_<N>.pth file)"
        )
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir).expanduser()
    elif path is not None:
        run_dir = path.resolve().parent.parent  # <run>/checkpoints/<file>.pth
    elif cfg.resume is not None:
        raise ResumeError(f"--resume {cfg.resume} needs --run-dir (the run folder to resume)")
    else:
        run_dir = default_runs_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.preset}"
    if cfg.resume not in (None, "latest") and not run_dir.is_dir():
        raise ResumeError(f"--resume {cfg.resume}: the run folder {run_dir} does not exist")
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VsrkitError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from exc
    return run_dir


#: ``--resume ask``: shows the checkpoints and returns the chosen one (``None``: start fresh);
#: the command line passes :func:`vsrkit.cli.prompt.prompt_for_checkpoint`.
Chooser = Callable[..., "CheckpointRecord | None"]


def resolve_resume(
    cfg: TrainConfig,
    ckpts: CheckpointManager | None,
    run_dir: Path,
    ctx: DistContext,
    *,
    choose: Chooser | None = None,
) -> Resumed | None:
    """Load the checkpoint named by ``--resume`` (chosen and checked on rank 0, then loaded on
    every rank).

    ``latest`` and ``best`` check each candidate's sha256 against its manifest and set aside
    (rename ``*.corrupt``, one warning each) every one that fails to load, then use the next;
    ``latest`` with no checkpoint yet starts from scratch (with a warning), so one command
    line both starts and resumes a job. A step, a path or ``ask`` load exactly that file;
    ``ask`` asks ``choose(records, default=record)`` which one (the command line's prompt).

    Returns:
        The loaded checkpoint, or ``None`` to start from scratch.

    Raises:
        ResumeError: Nothing matches ``--resume``, the chosen file is damaged, or every
            checkpoint of the folder is damaged (one line each).
    """
    how = cfg.resume or "latest"
    step: int | None = None
    error: str | None = None
    main_state: dict[str, Any] | None = None
    path: Path | None = None
    if ctx.is_main:
        assert ckpts is not None
        try:
            found = _load_on_main(how, ckpts, run_dir, choose)
        except (ResumeError, CheckpointError) as exc:
            error = str(exc)
        else:
            if found is not None:
                step, main_state, path = found.step, found.state, found.path
    step, error, path = ctx.broadcast((step, error, path))
    if error is not None:
        raise ResumeError(error)
    if step is None:
        return None
    if main_state is not None:
        return Resumed(step, main_state, path)
    reader = CheckpointManager(run_dir / "checkpoints", mirror_dir=cfg.mirror_dir)
    return Resumed(step, reader.restore(step, map_location="cpu")[1], path)


def _load_on_main(
    how: str, ckpts: CheckpointManager, run_dir: Path, choose: Chooser | None
) -> Resumed | None:
    before = {r.filename for r in ckpts.list() if r.status != "uncommitted"}
    if how in ("latest", "best"):
        if how == "latest" and not before and ckpts.latest_step() is None:
            logger.warning(
                "--resume latest: no checkpoint in %s yet, starting from scratch", run_dir
            )
            return None
        try:
            step, state = ckpts.restore(best=how == "best", map_location="cpu", verify=True)
        except CheckpointNotFoundError as exc:
            gone = before - {r.filename for r in ckpts.list()}
            if gone:
                raise ResumeError(
                    f"--resume {how}: every checkpoint in {ckpts.directory} is damaged "
                    f"({len(gone)} renamed to *.corrupt); nothing to resume from"
                ) from exc
            if how == "best":
                raise ResumeError(
                    f"--resume best: no checkpoint with a quality in {ckpts.directory}"
                ) from exc
            raise ResumeError(f"--resume latest: {exc}") from exc
        return Resumed(step, state, ckpts.restored_from)
    chosen = _choose_step(how, ckpts, choose)
    if chosen is None:
        return None
    try:
        step, state = ckpts.restore(chosen, map_location="cpu", verify=True)
    except CheckpointError as exc:
        raise ResumeError(f"--resume {how}: {exc}") from exc
    return Resumed(step, state, ckpts.restored_from)


def _valid_steps(ckpts: CheckpointManager) -> str:
    steps = sorted({r.step for r in ckpts.list() if r.valid})
    return ", ".join(map(str, steps[-10:])) or "none"


def _choose_step(resume: str, ckpts: CheckpointManager, choose: Chooser | None) -> int | None:
    valid = [r for r in ckpts.list() if r.valid]
    if resume == "ask":
        if not valid:
            raise ResumeError(f"--resume ask: no checkpoint in {ckpts.directory}")
        if choose is None:
            raise ResumeError(
                "--resume ask needs someone to ask: use it on the command line, or pass "
                "choose_checkpoint= to train()"
            )
        latest = ckpts.latest_step()  # Enter = what "latest" would take (run-id aware)
        default = next((r for r in reversed(valid) if r.step == latest), None)
        chosen = choose(valid, default=default)
        return chosen.step if chosen is not None else None
    step = parse_step(resume)
    if step is not None:
        if not any(r.step == step for r in valid):
            raise ResumeError(
                f"--resume {step}: no valid checkpoint at that step in {ckpts.directory} "
                f"(have: {_valid_steps(ckpts)})"
            )
        return step
    path = Path(resume).expanduser()
    parsed = parse_checkpoint_name(path.name)
    if not path.is_file() or parsed is None:
        raise ResumeError(f"--resume {resume}: not a checkpoint file (checkpoint_step_<N>.pth)")
    if path.resolve().parent != ckpts.directory.resolve():
        raise ResumeError(f"--resume {resume}: the checkpoint is not in {ckpts.directory}")
    return parsed.step


# ---------------------------------------------------------------------- settings on resume


def read_snapshot(run_dir: Path, step: int, name: str | None) -> dict[str, Any] | None:
    """The runtime snapshot saved with the checkpoint of ``step`` (``None`` if unusable)."""
    path = run_dir / (name or f"runtime_config_step_{step}.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning(
            "runtime snapshot %s unusable (%s): live settings from the checkpoint", path, exc
        )
        return None
    return doc if isinstance(doc, dict) else None


@dataclasses.dataclass(frozen=True)
class ResumedSettings:
    """What a resumed run uses.

    Attributes:
        config: The startup settings (the checkpoint's, with what the user gave on top).
        live: The live settings to start the runtime config with (the runtime snapshot's,
            with what the user gave on top).
        rows: The lines of the block that says where each differing setting came from.
    """

    config: TrainConfig
    live: dict[str, Any]
    rows: list[SettingRow]


def resume_config(
    cfg: TrainConfig,
    saved: Mapping[str, Any] | None,
    snapshot: Mapping[str, Any] | None,
) -> ResumedSettings:
    """The settings of a resumed run, and the rows of the block that says where each came from.

    ``cfg`` is this invocation's config (with origins), ``saved`` the startup settings stored
    in the checkpoint, ``snapshot`` the runtime snapshot saved with it. The startup settings
    come from ``saved`` and the live ones (LR bounds, clip, weights, cadence...) from
    ``snapshot``, except where the user gave a value on the command line or in ``--config``.

    Example:
        >>> cfg = TrainConfig.from_sources(overrides={"steps": 900, "log_every": 1})
        >>> got = resume_config(cfg, {"steps": 600, "model": "small"}, {"log_every": 5})
        >>> got.config.steps, got.config.model, got.live["log_every"]
        (900, 'small', 1)
        >>> [(r.key, r.source) for r in got.rows]
        [('steps', 'command line'), ('log_every', 'command line'), ('model', 'checkpoint')]

    Raises:
        ResumeError: A saved setting no longer passes the checks (one line naming it).
    """
    saved = dict(saved or {})
    snapshot = dict(snapshot or {})
    fresh = cfg.to_dict()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    live: dict[str, Any] = {}
    rows: list[SettingRow] = []
    for key, mine in fresh.items():
        if key in PROCESS_KEYS:
            continue
        given = cfg.origin(key) in ("command line", "config file")
        if key in saved and not given:
            values[key], origins[key] = saved[key], "checkpoint"
        offered: tuple[Any, str] | None = None
        if key in LIVE_KEYS and key in snapshot:
            offered = (snapshot[key], "runtime snapshot")
            live[key] = mine if given else snapshot[key]
        elif key in saved:
            offered = (saved[key], "checkpoint")
        if offered is None:
            continue
        value, source = offered
        if given and value != mine:
            rows.append(SettingRow(key, mine, cfg.origin(key), f"{source}: {_show(value)}"))
        elif not given and value != mine:
            rows.append(SettingRow(key, value, source, f"{cfg.origin(key)}: {_show(mine)}"))
    try:
        new = cfg.with_values(values, origins)
    except TrainConfigError as exc:
        raise ResumeError(f"cannot resume with the checkpoint's settings: {exc}") from exc
    order = {k: i for i, k in enumerate(fresh)}
    rows.sort(key=lambda r: (r.source not in ("command line", "config file"), order[r.key]))
    return ResumedSettings(new, live, rows)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)


def resume_block(step: int, path: Path | None, rows: list[SettingRow]) -> str:
    """The lines printed at the start of a resumed run."""
    where = f" ({path.name})" if path is not None else ""
    lines = [f"resumed from step {step}{where}"]
    if rows:
        lines.append("  settings that differ from a fresh start (what you give wins):")
        width = max(len(r.key) for r in rows)
        vwidth = max(len(_show(r.value)) for r in rows)
        for r in rows:
            tail = f"  (instead of {r.instead_of})" if r.instead_of else ""
            lines.append(f"    {r.key:<{width}}  {_show(r.value):<{vwidth}}  from {r.source}{tail}")
    lines.append(f"  every {'other ' if rows else ''}setting as the run had it")
    return "\n".join(lines)


def sync_live_file(run_dir: Path, settings: ResumedSettings) -> None:
    """Write the live settings given on this command line into ``runtime_config.json``, so
    the run does not take the older values there for edits (rank 0, before the manager)."""
    given = {
        r.key: settings.live[r.key]
        for r in settings.rows
        if r.key in settings.live and r.source in ("command line", "config file")
    }
    path = run_dir / "runtime_config.json"
    if not given or not path.is_file():
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the manager reports an unusable live file itself
    if isinstance(doc, dict) and any(doc.get(k) != v for k, v in given.items()):
        atomic_write_json(path, {**doc, **given}, indent=2)


# ---------------------------------------------------------------------- the recipe's resume


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts: the checkpoint's step and file, its state (current layout,
    see :mod:`vsrkit.train.state`) and the settings the run uses.

    Example:
        >>> cfg = TrainConfig.from_sources(overrides={"steps": 900})
        >>> point = ResumePoint(600, None, {}, resume_config(cfg, {"steps": 600}, {}))
        >>> point.step, point.settings.config.steps
        (600, 900)
    """

    step: int
    path: Path | None
    state: dict[str, Any]
    settings: ResumedSettings


def start_resume(
    cfg: TrainConfig,
    ckpts: CheckpointManager | None,
    run_dir: Path,
    ctx: DistContext,
    *,
    choose: Chooser | None = None,
) -> ResumePoint | None:
    """Load the checkpoint ``--resume`` names and merge the settings (``None``: start fresh).

    Raises:
        ResumeError: See :func:`resolve_resume`; a checkpoint layout this version cannot
            continue; ``--steps`` before the checkpoint's step.
    """
    from vsrkit.train.state import read_train_state

    resume = resolve_resume(cfg, ckpts, run_dir, ctx, choose=choose)
    if resume is None:
        return None
    where = str(resume.path or f"the checkpoint of step {resume.step}")
    state = read_train_state(resume.state, step=resume.step, where=where)
    name = state["train"].get("runtime_snapshot")
    snapshot = read_snapshot(run_dir, resume.step, name) if ctx.is_main else None
    settings = resume_config(cfg, state["train"].get("config"), ctx.broadcast(snapshot))
    if settings.config.steps < resume.step:
        raise ResumeError(
            f"--steps {settings.config.steps} is before the checkpoint's step {resume.step}; "
            "give a larger --steps to train on"
        )
    return ResumePoint(resume.step, resume.path, state, settings)


def undo_new_folders(
    ckpts: CheckpointManager | None, handlers: list[logging.Handler], new_dirs: list[Path]
) -> None:
    """After a failed ``--resume``: close what was opened and remove the folders this run
    created, so no skeleton run folder is left behind."""
    if ckpts is not None:
        ckpts.close()
    for h in handlers:  # closed before the folders are looked at
        h.close()
    remove_empty_folders(new_dirs)
