"""The reference recipe behind ``vsrkit train``: every vsrkit component in one readable loop.

Read it top to bottom: where the run lives, the resume and the settings it brings, the data,
the model and optimizer, the loop core, the loop (a short step, then the interval, runtime
config, validation and checkpoint calls), and the end. Components decide, the loop acts; what
the loop does with the components is the loop core's (:class:`vsrkit.loop.LoopCore`, shared
with the Lightning and Accelerate adapters), and only this file touches the model, the
optimizer and the files of the run.

A step makes no host-device sync: losses, grad norms and the non-finite flags are summed on the
device and read once per log interval (one ``tolist()``); a non-finite step is skipped inside
the fused AdamW kernel (its ``found_inf`` input), not by an ``if`` on the host.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from vsrkit.checkpoint import CheckpointManager, capture_rng_state, restore_rng_state
from vsrkit.errors import VsrkitError
from vsrkit.loop import LoopCore, StopSignal
from vsrkit.monitor.actions import ActionQueue, pause_state
from vsrkit.stats.fields import VALIDATION_FIELDS
from vsrkit.train.config import TrainConfig
from vsrkit.train.distributed import DistContext, init_distributed
from vsrkit.train.errors import ResumeError
from vsrkit.train.evaluation import validate
from vsrkit.train.output import (
    ProgressLine,
    log_setup,
    setup_logging,
    start_monitor,
    start_terminal_view,
    summary,
)
from vsrkit.train.resume import (
    Chooser,
    resolve_run_dir,
    resume_block,
    start_resume,
    sync_live_file,
    undo_new_folders,
)
from vsrkit.train.schedule import WarmupCosine, resumed_schedule
from vsrkit.train.setup import (
    build_batches,
    build_datasets,
    build_loop,
    build_network,
    build_optimizer,
    place_network,
    retention,
    worker_message,
)
from vsrkit.train.state import train_state
from vsrkit.train.telemetry import Pace, interval_fields
from vsrkit.train.threads import CpuThreads
from vsrkit.vsr import DatasetLayoutError, LayerActivityMonitor, VSRLoss

__all__ = ["TrainResult", "train"]

logger = logging.getLogger("vsrkit.train")


@dataclasses.dataclass
class TrainResult:
    """How a run ended."""

    run_dir: Path
    step: int
    reason: str  # "finished" | "stopped" | "nonfinite" | "diverged" | "error"
    best_quality: float | None
    last_validation: dict[str, float] | None
    exit_code: int = 0


def train(
    cfg: TrainConfig, *, stream: TextIO | None = None, choose_checkpoint: Chooser | None = None
) -> TrainResult:
    """Train the reference VSR model as ``cfg`` says; returns how the run ended.

    ``choose_checkpoint`` answers ``--resume ask`` (the command line passes its prompt).

    Raises:
        VsrkitError: A user mistake (bad resume, data that cannot be read, a setting the
            checkpoint cannot take), with one line that names the file or setting. A data
            error during training first writes an emergency checkpoint and closes the run.
    """
    ctx = init_distributed(cfg.device)
    log_handlers: list[logging.Handler] = []
    try:
        return _train(cfg, ctx, log_handlers, stream, choose_checkpoint)
    finally:
        for h in log_handlers:
            logging.getLogger("vsrkit").removeHandler(h)
            h.close()
        logging.getLogger("vsrkit").propagate = True
        ctx.close()


@dataclasses.dataclass
class _Run:
    """What this invocation keeps besides the loop state (nothing of it is saved)."""

    cfg: TrainConfig
    ctx: DistContext
    run_dir: Path
    progress: ProgressLine
    ckpts: CheckpointManager | None
    net: Any = None
    optimizer: Any = None
    scaler: Any = None
    criterion: Any = None
    val_set: Any = None
    amp_dtype: torch.dtype | None = None
    loop: LoopCore = dataclasses.field(init=False)
    saved_at: int = -1  # the step of the last regular or emergency checkpoint
    last_validation: dict[str, float] | None = None
    reason: str = "finished"
    exit_code: int = 0


def _train(
    cfg: TrainConfig,
    ctx: DistContext,
    log_handlers: list[logging.Handler],
    stream: TextIO | None,
    choose: Chooser | None,
) -> TrainResult:
    # ---- where we run ------------------------------------------------------------------------
    dev, cuda = ctx.device, ctx.device.type == "cuda"
    new_dirs: list[Path] = []  # folders this call creates: removed again if the resume fails
    if ctx.is_main:
        target = resolve_run_dir(cfg, create=False)
        new_dirs = [p for p in (target / "checkpoints", target) if not p.exists()]
    run_dir = Path(ctx.broadcast(str(resolve_run_dir(cfg)) if ctx.is_main else None))
    progress = ProgressLine(cfg.steps, stream=stream)
    log_handlers += setup_logging(run_dir, ctx, progress)
    if ctx.is_main:
        progress.message(f"vsrkit train: run folder {run_dir}")
    ckpts = (
        CheckpointManager(run_dir / "checkpoints", keep=retention(cfg), mirror_dir=cfg.mirror_dir)
        if ctx.is_main
        else None
    )

    # ---- resume: the checkpoint and the settings it brings ------------------------------------
    try:
        resume = start_resume(cfg, ckpts, run_dir, ctx, choose=choose) if cfg.resume else None
    except VsrkitError:
        undo_new_folders(ckpts, log_handlers, new_dirs)
        raise
    if resume is not None:
        cfg = resume.settings.config  # the checkpoint's settings, what the user gave on top
    run = _Run(cfg, ctx, run_dir, progress, ckpts)
    progress.total = cfg.steps
    if ckpts is not None:
        ckpts.keep = retention(cfg)  # a resumed run keeps its own --keep-last
    if ctx.is_main and resume is not None:
        progress.message(resume_block(resume.step, resume.path, resume.settings.rows))
        sync_live_file(run_dir, resume.settings)
        if resume.step >= cfg.steps:
            progress.message(
                f"the run is at its last step ({cfg.steps}): nothing to train; "
                "give a larger --steps to train on"
            )
    torch.manual_seed(cfg.seed)
    run.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if cuda else None
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ctx.distributed else 1
    threads = CpuThreads(cfg.threads, processes=processes)
    chosen = threads.start()
    torch.set_num_threads(chosen.threads)
    if ctx.is_main:
        log_setup(cfg, ctx, run.amp_dtype, chosen)

    # ---- data ---------------------------------------------------------------------------------
    train_set, run.val_set = build_datasets(cfg, ctx)

    # ---- model, loss, optimizer, LR schedule --------------------------------------------------
    net, note = build_network(cfg, init=resume is None)
    if note is not None and ctx.is_main:
        progress.message(note)
    net, model, forward = place_network(net, cfg, ctx)  # device, memory format, DDP, compile
    activity = LayerActivityMonitor(net)
    run.net, run.criterion = net, VSRLoss(perceptual=cfg.perceptual).to(dev)
    run.optimizer = optimizer = build_optimizer(cfg, net)
    run.scaler = torch.amp.GradScaler(dev.type, enabled=run.amp_dtype is torch.float16)
    schedule = WarmupCosine(cfg.lr, cfg.warmup_steps, cfg.steps, final_lr=cfg.min_lr)
    if resume is not None:  # the saved curve, continued without a jump
        saved = resume.state["vsrkit"].get("loop", {}).get("schedule")
        config = resume.state["train"]["config"]
        schedule, change = resumed_schedule(saved, config, schedule, resume.step)
        if change is not None and ctx.is_main:
            progress.message(change)

    # ---- the loop core: every component, built from the live settings --------------------------
    live = {
        **cfg.runtime_initial(),
        **(resume.settings.live if resume is not None else {}),  # resumed: snapshot + flags
        "n_feats": net.num_feat,
        "n_blocks": net.num_blocks,
    }
    run.loop = loop = build_loop(cfg, run_dir, live, optimizer, schedule)
    loop.bind(ctx, purge_step=resume.step + 1 if resume is not None else None)
    if resume is not None:
        state = resume.state
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ResumeError(
                f"the checkpoint of step {resume.step} does not fit a {cfg.model!r} model "
                f"(n_feats {net.num_feat}, n_blocks {net.num_blocks}): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        optimizer.load_state_dict(state["optimizer"])
        run.scaler.load_state_dict(state["scaler"])
        loop.load_state_dict(state["vsrkit"], settings=False)  # the settings are merged above
        restore_rng_state(state["rng"])
        resume.state.clear()  # the tensors are loaded: let the memory go
    else:
        loop.tb.log_initial_config(cfg.to_dict())
    start = resume.step if resume is not None else 0
    loop.begin(start)

    sampler, batches = build_batches(cfg, ctx, train_set, start)  # resumes the sample order
    actions = ActionQueue() if ctx.is_main else None
    monitor = start_monitor(cfg, ctx, loop.snapshot, loop.runtime, actions, progress)
    view = start_terminal_view(cfg, loop.snapshot, loop.runtime, actions, progress)
    loop.snapshot.update(
        start,
        training_active=True,
        training_paused=False,
        validation_running=False,
        step_max=cfg.steps,
        epoch_step_total=sampler.steps_per_epoch,
    )
    if resume is not None:  # edits of runtime_config.json made while the run was stopped
        loop.apply_changes(loop.runtime.poll(start), start)
    pace = Pace(start)

    # ---- the loop -------------------------------------------------------------------------------
    failure: VsrkitError | None = None
    with StopSignal() as stop:
        try:
            while loop.state.step < cfg.steps:
                step = loop.state.step + 1
                last = step == cfg.steps  # the last step always gets a validation and a save
                # ---- one training step (no host sync) -------------------------------------
                try:
                    lrs, gts = (t.to(dev, non_blocking=True) for t in next(batches))
                except DatasetLayoutError as exc:
                    raise DatasetLayoutError(worker_message(exc)) from exc
                model.train()
                # layer activity is sampled on the last step of each log interval (hooks cost ~2%)
                activity.enabled = loop.at_interval(step, last=last)
                with torch.autocast(
                    dev.type,
                    dtype=run.amp_dtype or torch.float32,
                    enabled=run.amp_dtype is not None,
                ):
                    sr = forward(lrs)
                losses = run.criterion(sr.float(), gts)
                total = loop.combine(losses, step=step)
                optimizer.zero_grad(set_to_none=True)
                run.scaler.scale(total).backward()
                run.scaler.unscale_(optimizer)
                clip = loop.clip.clip_value
                norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip, foreach=True)
                bad = loop.accumulate(losses, total, grad_norm=norm)
                if not run.scaler.is_enabled():  # the fused kernel skips the update
                    optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
                run.scaler.step(optimizer)
                run.scaler.update()

                # ---- the loop core: LR, the interval's decisions, runtime changes -------------
                rate = pace.rate(step) if loop.at_interval(step, last=last) else 0.0
                fields = functools.partial(
                    interval_fields, step=step, total=cfg.steps, rate=rate, sampler=sampler,
                    schedule=schedule, optimizer=optimizer, device=dev, activity=activity,
                )  # fmt: skip
                out = loop.end_of_step(step, last=last, extra=fields)
                if out is not None and out.stop:
                    run.reason, run.exit_code = out.stop, 1
                    logger.error("stopping at step %d with an emergency checkpoint", step)
                    _save(run, step, "emergency")
                    break
                if out is not None and ctx.is_main and out.lrs and out.event is not None:
                    eta = pace.eta(step, cfg.steps, rate)
                    progress.update(
                        step=step, loss=out.losses["total"], lr=out.lrs[0], its=rate, eta=eta
                    )
                if out is not None and (retuned := threads.recheck()) is not None:
                    logger.info("CPU threads -> %d: %s", retuned.threads, retuned.reason)
                    torch.set_num_threads(retuned.threads)

                # ---- monitor actions and stop signals (the same on every rank) ----------------
                commands = ctx.agreed_commands(actions, step, loop.log_every)
                wants_stop = ctx.agreed_stop(stop.requested, step, loop.log_every)
                if pause_state(commands, False) and not wants_stop:  # last pause/resume wins
                    commands, wants_stop = _pause(run, actions, stop, step, commands)
                if "validate" in commands or step % loop.cadence["val_every"] == 0 or last:
                    _validate(run, step)
                if "save" in commands or step % loop.cadence["ckpt_every"] == 0 or last:
                    _save(run, step)
                if wants_stop or "stop" in commands:
                    run.reason = "stopped"
                    why = stop.signal_name or "a stop request"
                    if run.saved_at == step:  # e.g. `q`: save + stop; one checkpoint is enough
                        logger.warning("stopping at step %d after %s", step, why)
                    else:
                        logger.warning(
                            "stopping at step %d after %s: writing an emergency checkpoint",
                            step,
                            why,
                        )
                        _save(run, step, "emergency")
                    break
        except VsrkitError as exc:  # a user mistake found mid-run: save, close, then report
            failure, run.reason, run.exit_code = exc, "error", 1
            step = loop.state.step
            logger.error("stopping at step %d: %s", step, exc)
            if isinstance(exc, DatasetLayoutError) and step > 0 and run.saved_at != step:
                try:
                    _save(run, step, "emergency")
                except VsrkitError as save_error:
                    logger.error("emergency checkpoint not written: %s", save_error)

    step = loop.state.step
    if ctx.distributed:  # DDP keeps replicas equal; check it once, cheaply, at the end
        if ctx.same_everywhere(list(net.parameters())):
            logger.info("weights identical on %d ranks", ctx.world_size)
        else:
            logger.error("weights differ between ranks at step %d", step)
            run.reason, run.exit_code = "diverged", 1

    # ---- the end: flush everything --------------------------------------------------------------
    activity.close()
    progress.close()
    if ckpts is not None:
        ckpts.close()
    best = loop.state.best_quality
    if best is not None:
        loop.tb.log_hyperparameters(cfg.to_dict(), {"hparam/best_quality": best})
    loop.close()  # the last statistics files, TensorBoard
    if monitor is not None:
        monitor.stop()
    if view is not None:
        view.draw()  # the final state stays on screen
        view.stop()
        progress.view = None
    if failure is not None:
        raise failure
    if ctx.is_main:
        progress.message(summary(run_dir, step, run.reason, best, cfg.tensorboard))
    return TrainResult(run_dir, step, run.reason, best, run.last_validation, run.exit_code)


# ------------------------------------------------------------------ what the loop calls


def _save(run: _Run, step: int, tag: str | None = None, metrics: dict | None = None) -> None:
    """Write the checkpoint of ``step`` (rank 0; every rank builds the state alike)."""
    if tag != "best":
        run.saved_at = step
    snap = run.loop.runtime_snapshot(step) if run.ctx.is_main else None
    state = train_state(
        {
            "model": run.net.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": capture_rng_state(),
        },
        config=run.cfg.to_dict(),
        runtime_snapshot=snap,
        loop_state=run.loop.state_dict(),
    )
    if run.ckpts is not None:  # the manager logs the saved file
        run.ckpts.save(step, state, metrics=metrics, tag=tag, runtime_config=snap)


def _validate(run: _Run, step: int) -> None:
    """Validate, hand the result to the loop core, and keep a best checkpoint."""
    loop = run.loop
    loop.snapshot.update(step, validation_running=True)
    results = validate(
        run.net, run.val_set, run.criterion, loop.loss_weights, run.ctx.device, run.amp_dtype
    )
    loop.snapshot.update(step, validation_running=False)
    fields = {k: v for k, v in results.items() if k in VALIDATION_FIELDS}
    improved = loop.validation_end(
        step, fields, extra={k: results[k] for k in results.keys() - fields.keys()}
    )
    run.last_validation = {**results, "best_quality_ever": loop.state.best_quality}  # type: ignore[dict-item]
    if run.ctx.is_main:
        run.progress.message(
            f"validation at step {step}: SSIM {results['quality_ki_value']:.4f} "
            f"(bicubic {results['quality_lr_value']:.4f}, "
            f"improvement {results['quality_improvement_value']:+.4f})"
        )
    if improved and step > 0:
        quality, loss = results["quality_ki_value"], results["validation_loss_value"]
        _save(run, step, "best", {"quality": quality, "loss": loss})


def _pause(
    run: _Run, actions: ActionQueue | None, stop: StopSignal, step: int, commands: list[str]
) -> tuple[list[str], bool]:
    """Wait at ``step`` until a resume or a stop (the same on every rank)."""
    snapshot, ctx = run.loop.snapshot, run.ctx
    snapshot.update(step, training_paused=True)
    logger.info("paused at step %d", step)
    paused, wants_stop = True, False
    while paused and not wants_stop:
        time.sleep(0.2)
        more = ctx.agreed_commands(actions, step, 1)
        commands = commands + more
        paused = pause_state(more, True) and "stop" not in more
        wants_stop = ctx.agreed_stop(stop.requested, step, 1)
    snapshot.update(step, training_paused=False)
    logger.info("resumed at step %d", step)
    return commands, wants_stop
