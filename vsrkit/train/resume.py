"""Where a run lives and where it resumes from (``--run-dir``, ``--resume``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import platformdirs

from vsrkit.checkpoint import (
    CheckpointManager,
    CheckpointNotFoundError,
    parse_checkpoint_name,
    prompt_for_checkpoint,
)
from vsrkit.errors import VsrkitError
from vsrkit.train.config import TrainConfig
from vsrkit.train.distributed import DistContext

__all__ = ["ResumeError", "default_runs_root", "resolve_resume", "resolve_run_dir"]

logger = logging.getLogger(__name__)


class ResumeError(VsrkitError):
    """``--resume`` names something that cannot be resumed from."""


def default_runs_root() -> Path:
    """The folder that holds runs started without ``--run-dir`` (the user data dir)."""
    return Path(platformdirs.user_data_dir("vsrkit", appauthor=False)) / "runs"


def _checkpoint_path(resume: str | None) -> Path | None:
    """``resume`` as a checkpoint file path, if it is one."""
    if resume is None or resume in ("latest", "best", "ask") or resume.isdigit():
        return None
    return Path(resume).expanduser()


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """The run folder: ``--run-dir``, else the folder of a ``--resume PATH`` checkpoint, else a
    new folder under :func:`default_runs_root`. Created if missing.

    Raises:
        ResumeError: ``--resume latest|best|STEP|ask`` without ``--run-dir``.
    """
    path = _checkpoint_path(cfg.resume)
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir).expanduser()
    elif path is not None:
        run_dir = path.resolve().parent.parent  # <run>/checkpoints/<file>.pth
    elif cfg.resume is not None:
        raise ResumeError(f"--resume {cfg.resume} needs --run-dir (the run folder to resume)")
    else:
        run_dir = default_runs_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.preset}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VsrkitError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from exc
    return run_dir


def resolve_resume(
    cfg: TrainConfig, ckpts: CheckpointManager | None, run_dir: Path, ctx: DistContext
) -> tuple[int, dict[str, Any]] | None:
    """Pick the checkpoint named by ``--resume`` on rank 0 and load it on every rank.

    ``latest`` with no checkpoint yet starts from scratch (with a warning), so one command line
    both starts and resumes a job; ``best``, a step, a path or ``ask`` that find nothing raise.

    Returns:
        ``(step, state)`` or ``None`` to start from scratch.

    Raises:
        ResumeError: Nothing matches ``--resume``.
    """
    step: int | None = None
    error: str | None = None
    if ctx.is_main:
        assert ckpts is not None
        try:
            step = _choose_step(cfg.resume or "latest", ckpts)
        except (ResumeError, CheckpointNotFoundError) as exc:
            error = str(exc)
    step, error = ctx.broadcast((step, error))
    if error is not None:
        raise ResumeError(error)
    if step is None:
        logger.warning("--resume latest: no checkpoint in %s yet, starting from scratch", run_dir)
        return None
    reader = ckpts or CheckpointManager(run_dir / "checkpoints", mirror_dir=cfg.mirror_dir)
    return reader.restore(step, map_location="cpu")


def _choose_step(resume: str, ckpts: CheckpointManager) -> int | None:
    valid = [r for r in ckpts.list() if r.valid]
    if resume == "latest":
        return ckpts.latest_step()
    if resume == "best":
        best = ckpts.best_step()
        if best is None:
            raise ResumeError(f"--resume best: no checkpoint with a quality in {ckpts.directory}")
        return best
    if resume == "ask":
        if not valid:
            raise ResumeError(f"--resume ask: no checkpoint in {ckpts.directory}")
        latest = ckpts.latest_step()  # Enter = what "latest" would take (run-id aware)
        default = next((r for r in reversed(valid) if r.step == latest), None)
        chosen = prompt_for_checkpoint(valid, default=default)
        return chosen.step if chosen is not None else None
    if resume.isdigit():
        step = int(resume)
        if not any(r.step == step for r in valid):
            steps = ", ".join(str(r.step) for r in valid[-10:]) or "none"
            raise ResumeError(f"--resume {step}: no valid checkpoint at that step (have: {steps})")
        return step
    path = Path(resume).expanduser()
    parsed = parse_checkpoint_name(path.name)
    if not path.is_file() or parsed is None:
        raise ResumeError(f"--resume {resume}: not a checkpoint file (checkpoint_step_<N>.pth)")
    if path.resolve().parent != ckpts.directory.resolve():
        raise ResumeError(f"--resume {resume}: the checkpoint is not in {ckpts.directory}")
    return parsed.step
