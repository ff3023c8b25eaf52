"""The reference recipe behind ``vsrkit train``: every vsrkit component in one readable loop.

Read it top to bottom: set-up, resume, the loop, and what happens every log interval, every
runtime-config poll, every validation and every checkpoint. Components decide, the loop acts:
the plateau tracker returns an event, the LR policy new rates, the runtime config validated
changes, and only this file touches the model, the optimizer and the files of the run.

A step makes no host-device sync: losses, grad norms and the non-finite flags are summed on the
device and read once per log interval (one ``tolist()``); a non-finite step is skipped inside
the fused AdamW kernel (its ``found_inf`` input), not by an ``if`` on the host.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from torch.utils.data import DataLoader

from vsrkit._system import process_rss_gib
from vsrkit.adaptive import (
    AdaptiveLossWeights,
    GradClipAdapter,
    LRBoostPolicy,
    PlateauTracker,
    apply_lr,
)
from vsrkit.checkpoint import (
    AnyOf,
    BestN,
    CheckpointManager,
    LatestN,
    StopSignal,
    capture_rng_state,
    restore_rng_state,
)
from vsrkit.config import RuntimeConfigManager
from vsrkit.errors import VsrkitError
from vsrkit.monitor.actions import ActionQueue, pause_state
from vsrkit.stats import DeferredStatsWriter, LossAccumulator, MetricsSnapshot, TensorBoardLogger
from vsrkit.stats.fields import VALIDATION_FIELDS
from vsrkit.train.config import InitWeightsError, TrainConfig, TrainConfigError
from vsrkit.train.data import CachedClips, EpochBatchSampler, SeededSamples
from vsrkit.train.distributed import DistContext, init_distributed
from vsrkit.train.evaluation import activity_fields, validate
from vsrkit.train.output import ProgressLine, setup_logging, start_monitor, summary
from vsrkit.train.resume import (
    ResumeError,
    read_snapshot,
    resolve_resume,
    resolve_run_dir,
    resume_block,
    resume_config,
    sync_live_file,
)
from vsrkit.train.schedule import WarmupCosine
from vsrkit.train.telemetry import adam_momentum_avg, format_eta, vram_gib
from vsrkit.train.threads import CpuThreads
from vsrkit.vsr import (
    DatasetLayoutError,
    LayerActivityMonitor,
    VSRLoss,
    build_dataset,
    build_model,
)

__all__ = ["TrainResult", "train"]

logger = logging.getLogger("vsrkit.train")

TERMS = ("l1", "ms", "grad", "perceptual")
LOSS_FIELDS = {
    "l1": "l1_loss_value",
    "ms": "ms_loss_value",
    "grad": "gradient_loss_value",
    "perceptual": "perceptual_loss_value",
}
MAX_NONFINITE_STREAK = 5  # this many non-finite steps in a row end the run
CACHE_LIMIT_BYTES = 2 << 30  # synthetic clips are kept in memory up to this size


@dataclasses.dataclass
class TrainResult:
    """How a run ended."""

    run_dir: Path
    step: int
    reason: str  # "finished" | "stopped" | "nonfinite" | "diverged" | "error"
    best_quality: float | None
    last_validation: dict[str, float] | None
    exit_code: int = 0


def train(cfg: TrainConfig, *, stream: TextIO | None = None) -> TrainResult:
    """Train the reference VSR model as ``cfg`` says; returns how the run ended.

    Raises:
        VsrkitError: A user mistake (bad resume, data that cannot be read, a setting the
            checkpoint cannot take), with one line that names the file or setting. A data
            error during training first writes an emergency checkpoint and closes the run.
    """
    ctx = init_distributed(cfg.device)
    log_handlers: list[logging.Handler] = []
    try:
        return _train(cfg, ctx, log_handlers, stream)
    finally:
        for h in log_handlers:
            logging.getLogger("vsrkit").removeHandler(h)
            h.close()
        logging.getLogger("vsrkit").propagate = True
        ctx.close()


def _train(
    cfg: TrainConfig, ctx: DistContext, log_handlers: list[logging.Handler], stream: TextIO | None
) -> TrainResult:
    # ---- where we run ------------------------------------------------------------------------
    dev = ctx.device
    cuda = dev.type == "cuda"
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
        CheckpointManager(run_dir / "checkpoints", keep=_retention(cfg), mirror_dir=cfg.mirror_dir)
        if ctx.is_main
        else None
    )

    # ---- resume: the checkpoint and the settings it brings ------------------------------------
    resume, live_start = None, {}
    try:
        resume = resolve_resume(cfg, ckpts, run_dir, ctx) if cfg.resume else None
        if resume is not None:
            loop_state = resume.state["loop"]
            snap = (
                read_snapshot(run_dir, resume.step, loop_state.get("runtime_snapshot"))
                if ctx.is_main
                else None
            )
            settings = resume_config(cfg, loop_state.get("config"), ctx.broadcast(snap))
            cfg, live_start = settings.config, settings.live
            if cfg.steps < resume.step:
                raise ResumeError(
                    f"--steps {cfg.steps} is before the checkpoint's step {resume.step}; "
                    "give a larger --steps to train on"
                )
    except VsrkitError:
        if ckpts is not None:
            ckpts.close()
        for h in log_handlers:  # closed before the folders are looked at
            h.close()
        for path in new_dirs:  # a failed --resume leaves no skeleton run folder behind
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    progress.total = cfg.steps
    if ckpts is not None:
        ckpts.keep = _retention(cfg)  # a resumed run keeps its own --keep-last
    if ctx.is_main and resume is not None:
        progress.message(resume_block(resume.step, resume.path, settings.rows))
        sync_live_file(run_dir, settings)
        if resume.step >= cfg.steps:
            progress.message(
                f"the run is at its last step ({cfg.steps}): nothing to train; "
                "give a larger --steps to train on"
            )
    torch.manual_seed(cfg.seed)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if cuda else None
    threads = CpuThreads(
        cfg.threads,
        processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ctx.distributed else 1,
    )
    chosen = threads.start()
    torch.set_num_threads(chosen.threads)
    if ctx.is_main:
        logger.info(
            "device %s, world size %d, amp %s, %s memory format, %d CPU thread(s) (%s)",
            dev,
            ctx.world_size,
            amp_dtype or "off",
            "channels_last" if cfg.channels_last else "contiguous",
            chosen.threads,
            chosen.reason,
        )
        logger.info(
            "retention: the %d newest regular checkpoints, the best by SSIM and the newest "
            "emergency checkpoint are kept",
            cfg.keep_last,
        )

    # ---- data ---------------------------------------------------------------------------------
    lr_size = cfg.crop_size // cfg.scale
    datasets: list[Any] = [
        build_dataset(
            cfg.data,
            split=split,
            num_frames=cfg.num_frames,
            lr_size=lr_size,
            num_clips=clips,
            scale=cfg.scale,
            degradation=cfg.degradation,
            seed=cfg.seed,
            val_clips=cfg.val_clip_name_list(),
        )
        for split, clips in (("train", cfg.train_clips), ("val", cfg.val_clips))
    ]
    train_set, val_set = datasets
    synthetic = cfg.data in (None, "synthetic")
    if len(train_set) < cfg.batch_size * ctx.world_size:
        where = "the synthetic data (train_clips)" if synthetic else f"--data {cfg.data}"
        raise TrainConfigError(
            f"{where} has {len(train_set)} training clip(s), fewer than one batch of "
            f"{cfg.batch_size} (--batch-size) on each of {ctx.world_size} process(es)"
        )
    if synthetic:  # fixed clips: generate each once, keep it
        clip_bytes = 4 * 3 * cfg.num_frames * (lr_size**2 + cfg.crop_size**2)
        if clip_bytes * (cfg.train_clips + cfg.val_clips) <= CACHE_LIMIT_BYTES:
            train_set, val_set = CachedClips(train_set), CachedClips(val_set)

    # ---- model, loss, optimizer -------------------------------------------------------------
    net = build_model(
        cfg.model,
        num_feat=cfg.n_feats,
        num_blocks=cfg.n_blocks,
        spynet_weights=cfg.spynet_weights,
        skip=cfg.skip,
    )
    if cfg.init_weights is not None and resume is None:  # fine-tuning a published model
        note = _init_weights(net, cfg.init_weights)
        if ctx.is_main:
            progress.message(note)
    net = net.to(dev)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    activity = LayerActivityMonitor(net)
    model: torch.nn.Module = net
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if cuda else None, find_unused_parameters=False
        )
    forward = torch.compile(model) if cfg.compile else model
    criterion = VSRLoss(perceptual=cfg.perceptual).to(dev)
    flow_params = list(net.spynet.parameters())
    flow_ids = {id(p) for p in flow_params}
    main_params = [p for p in net.parameters() if id(p) not in flow_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": main_params, "lr": cfg.lr},
            {"params": flow_params, "lr": cfg.lr * cfg.flow_lr_mult},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.99),
        weight_decay=cfg.weight_decay,
        fused=True,
    )
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype is torch.float16)
    schedule = WarmupCosine(cfg.lr, cfg.warmup_steps, cfg.steps, final_lr=cfg.min_lr)
    if resume is not None:  # the saved curve; changed settings shape only what is left of it
        saved_schedule = _saved_schedule(resume.state["loop"], schedule)
        schedule = saved_schedule.continued(
            resume.step, base_lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps
        )
        if schedule != saved_schedule and ctx.is_main:
            progress.message(_schedule_note(saved_schedule, schedule, resume.step))

    # ---- vsrkit components ------------------------------------------------------------------
    initial = {
        **cfg.runtime_initial(),
        **live_start,  # a resumed run: the live settings of its snapshot (and the flags)
        "n_feats": net.num_feat,
        "n_blocks": net.num_blocks,
    }
    runtime = RuntimeConfigManager(
        run_dir, initial=initial, broadcast=ctx.broadcast, is_main=ctx.is_main
    )
    live = runtime.current
    tracker = PlateauTracker(
        patience=live["plateau_patience"],
        cooldown=live["cooldown_duration"],
        safety_steps=live["plateau_safety_threshold"],
    )
    lr_policy = LRBoostPolicy(
        mode="boost" if cfg.lr_policy == "off" else cfg.lr_policy,
        max_lr=live["max_lr"],
        min_lr=live["min_lr"],
        cooldown=live["cooldown_duration"],
    )
    weights = AdaptiveLossWeights(
        TERMS,
        mode="plateau",
        cooldown=live["cooldown_duration"],
        initial={t: live[f"{t}_weight"] for t in TERMS},
    )
    clip = GradClipAdapter(initial=live["grad_clip"])
    snapshot = MetricsSnapshot()
    stats = DeferredStatsWriter(
        run_dir,
        snapshot=snapshot,
        is_main=ctx.is_main,
        runtime_config_version=lambda: config_version,
    )

    cadence = {k: live[k] for k in ("log_every", "val_every", "ckpt_every")}
    lr_scale, best_quality, last_val, config_version = 1.0, None, None, 0
    pending_quality: dict[str, float] | None = None  # last validation, for the plateau tracker
    clip_reported = False  # the one line saying the adaptive clip value took over

    # ---- load the resumed state ---------------------------------------------------------------
    step = 0
    sums = LossAccumulator(TERMS)  # this log interval's losses, on the device
    interval_started = time.perf_counter()
    if resume is not None:
        step, state = resume.step, resume.state
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ResumeError(
                f"the checkpoint of step {step} does not fit a {cfg.model!r} model "
                f"(n_feats {net.num_feat}, n_blocks {net.num_blocks}): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        comp = state["components"]
        tracker.load_state_dict(comp["tracker"])
        lr_policy.load_state_dict(comp["lr_policy"])
        weights.load_state_dict(comp["weights"])
        clip.load_state_dict(comp["clip"])
        loop_state = state["loop"]
        lr_scale, best_quality = loop_state["lr_scale"], loop_state["best_quality"]
        config_version, pending_quality = (
            loop_state["config_version"],
            loop_state["pending_quality"],
        )
        sums.load_state_dict(state["interval"], device=dev)
        restore_rng_state(state["rng"])
        clip_reported = bool(loop_state.get("clip_reported", False))
        del state
    tb = TensorBoardLogger(
        run_dir / "tensorboard" if cfg.tensorboard else None,
        is_main=ctx.is_main,
        purge_step=step + 1 if resume else None,  # events up to the checkpoint stay,
    )
    if resume is None:
        tb.log_initial_config(cfg.to_dict())

    sampler = EpochBatchSampler(
        len(train_set),
        cfg.batch_size,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        start_step=step,
    )
    loader = DataLoader(
        SeededSamples(train_set, cfg.seed),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=cuda,
        persistent_workers=cfg.num_workers > 0,
    )
    batches = iter(loader)
    actions = ActionQueue() if ctx.is_main else None
    monitor = start_monitor(cfg, ctx, snapshot, runtime, actions, progress)
    view = None
    if actions is not None and cfg.terminal_view and progress.live:
        from vsrkit.monitor import TerminalView

        view = TerminalView(snapshot, actions, runtime, stream=progress.stream).start()
        progress.attach(view)

    saved_at = -1  # the step of the last regular or emergency checkpoint
    lr_now = 0.0  # the main LR in force (set by _set_lr)

    def checkpoint(tag: str | None = None, metrics: dict[str, float] | None = None) -> None:
        nonlocal saved_at
        if tag != "best":
            saved_at = step
        snap_name = runtime.snapshot(step).name if ctx.is_main else None
        state = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": capture_rng_state(),
            "interval": sums.state_dict(),
            "components": {
                "tracker": tracker.state_dict(),
                "lr_policy": lr_policy.state_dict(),
                "weights": weights.state_dict(),
                "clip": clip.state_dict(),
            },
            "loop": {
                "lr_scale": lr_scale,
                "best_quality": best_quality,
                "config_version": config_version,
                "pending_quality": pending_quality,
                "runtime_snapshot": snap_name,
                "config": cfg.to_dict(),
                "schedule": schedule.state_dict(),
                "clip_reported": clip_reported,
            },
        }
        if ckpts is not None:  # the manager logs the saved file
            ckpts.save(step, state, metrics=metrics, tag=tag, runtime_config=snap_name)

    def run_validation() -> None:
        nonlocal best_quality, last_val, pending_quality
        snapshot.update(step, validation_running=True)
        results = validate(net, val_set, criterion, weights, dev, amp_dtype)
        snapshot.update(step, validation_running=False)
        improved = best_quality is None or results["quality_ki_value"] > best_quality
        if improved:
            best_quality = results["quality_ki_value"]
        results["best_quality_ever"] = best_quality  # type: ignore[assignment]
        last_val = pending_quality = results
        stats.request(step, {k: v for k, v in results.items() if k in VALIDATION_FIELDS})
        tb.log_quality(results, step)
        tb.log_validation(results, step)
        if ctx.is_main:
            progress.message(
                f"validation at step {step}: SSIM {results['quality_ki_value']:.4f} "
                f"(bicubic {results['quality_lr_value']:.4f}, "
                f"improvement {results['quality_improvement_value']:+.4f})"
            )
        if improved and step > 0:
            checkpoint(
                "best",
                {"quality": results["quality_ki_value"], "loss": results["validation_loss_value"]},
            )

    def apply_changes(changes: list[Any]) -> None:
        nonlocal config_version, lr_now, live
        if changes:
            live = runtime.current  # the settings in effect change only here
        for change in changes:
            if not change.accepted:
                continue
            try:
                _apply_change(change.key, live, tracker, lr_policy, weights, clip, cadence, step)
            except VsrkitError as exc:  # valid for the schema, refused by a component
                logger.warning("Config Update %s not applied: %s", change.key, exc)
                continue
            config_version += 1  # the manager has logged "Config Update: key old -> new"
            tb.log_config_change(change.key, change.old, change.new, step)
        if changes:
            lr_now = _set_lr(optimizer, schedule, step, lr_scale, live, cfg.flow_lr_mult)

    reason, exit_code, paused = "finished", 0, False
    started, start_step = time.perf_counter(), step
    snapshot.update(
        step,
        training_active=True,
        training_paused=False,
        validation_running=False,
        step_max=cfg.steps,
        epoch_step_total=sampler.steps_per_epoch,
    )
    lr_now = _set_lr(optimizer, schedule, step, lr_scale, live, cfg.flow_lr_mult)
    if resume is not None:  # edits of runtime_config.json made while the run was stopped
        apply_changes(runtime.poll(step))

    failure: VsrkitError | None = None
    with StopSignal() as stop:
        try:
            while step < cfg.steps:
                # ---- one training step (no host sync) -------------------------------------
                try:
                    batch = next(batches)
                except DatasetLayoutError as exc:
                    raise DatasetLayoutError(_worker_message(exc)) from exc
                lrs, gts = (t.to(dev, non_blocking=True) for t in batch)
                model.train()
                # layer activity is sampled on the last step of each log interval (hooks cost ~2%)
                activity.enabled = (step + 1) % cadence["log_every"] == 0 or step + 1 == cfg.steps
                with torch.autocast(
                    dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    sr = forward(lrs)
                losses = criterion(sr.float(), gts)
                total = weights.combine(losses)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.unscale_(optimizer)
                norm = torch.nn.utils.clip_grad_norm_(
                    net.parameters(), clip.clip_value, foreach=True
                )
                bad = sums.add(losses, total, grad_norm=norm)
                if not scaler.is_enabled():
                    # the fused kernel skips the update
                    optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
                scaler.step(optimizer)
                scaler.update()
                step += 1
                lr_now = _set_lr(optimizer, schedule, step, lr_scale, live, cfg.flow_lr_mult)

                # ---- every log interval: one sync, then the components decide -----------------
                if step % cadence["log_every"] == 0 or step == cfg.steps:
                    n_steps, seconds = sums.steps, time.perf_counter() - interval_started
                    m = sums.read(ctx.mean)
                    assert m is not None  # a step was just added
                    interval_started = time.perf_counter()
                    if m["max_streak"] >= MAX_NONFINITE_STREAK:
                        reason, exit_code = "nonfinite", 1
                        logger.error(
                            "%d non-finite losses in a row before step %d: stopping with an "
                            "emergency checkpoint",
                            int(m["max_streak"]),
                            step,
                        )
                        checkpoint("emergency")
                        break
                    if m["skipped"]:
                        logger.warning(
                            "skipped %d step(s) with a non-finite loss before step %d",
                            int(m["skipped"]),
                            step,
                        )
                    if m["finite_steps"]:
                        quality = pending_quality["quality_ki_value"] if pending_quality else None
                        pending_quality = None
                        event = tracker.update(step, m["total"], quality=quality)
                        if event.triggered and cfg.lr_policy != "off":
                            new = lr_policy.on_event(event, step=step, lrs=[lr_now])
                            if new is not None:
                                lr_scale *= new[0] / lr_now
                                old, lr_now = (
                                    lr_now,
                                    _set_lr(
                                        optimizer,
                                        schedule,
                                        step,
                                        lr_scale,
                                        live,
                                        cfg.flow_lr_mult,
                                    ),
                                )
                                logger.info(
                                    "Plateau at step %d (%s): LR %.2e -> %.2e",
                                    step,
                                    event.message,
                                    old,
                                    lr_now,
                                )
                                tb.log_event(f"LR {lr_policy.mode} {old:.2e} -> {lr_now:.2e}", step)
                        weights.update(step, {t: m[t] for t in TERMS}, plateau=event)
                        clip.observe(step, m["grad_norm"])
                        if not clip_reported and clip.clip_value != live["grad_clip"]:
                            clip_reported = True
                            logger.info(
                                "grad clip: the adaptive value %.3g is in force from step %d "
                                "(the runtime grad_clip %.3g was its start; set grad_clip live "
                                "to pin a value)",
                                clip.clip_value,
                                step,
                                live["grad_clip"],
                            )
                        tb.log_losses({**{t: m[t] for t in TERMS}, "total": m["total"]}, step)
                        tb.log_lr(lr_now, step)
                        tb.log_plateau_state(event, step)
                        tb.log_weights(weights.weights, step)
                        elapsed = time.perf_counter() - started
                        rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
                        epoch, in_epoch = sampler.position(step)
                        eta = format_eta((cfg.steps - step) / rate if rate else None)
                        metrics = {
                            "step_current": step,
                            "step_max": cfg.steps,
                            "epoch_step_total": sampler.steps_per_epoch,
                            "epoch_num": epoch + 1,
                            "epoch_step_current": in_epoch,
                            "learning_rate_value": lr_now,
                            "lr_phase_name": schedule.phase(step),
                            "total_loss_value": m["total"],
                            **{LOSS_FIELDS[t]: m[t] for t in TERMS},
                            **weights.status(),
                            "gradient_clip_val": clip.clip_value,
                            "iteration_duration": seconds / n_steps,
                            "vram_usage_gb": vram_gib(dev),
                            "process_rss_gb": process_rss_gib(),
                            "eta_total_formatted": eta,
                            "eta_epoch_formatted": format_eta(
                                (sampler.steps_per_epoch - in_epoch) / rate if rate else None
                            ),
                            "adam_momentum_avg": adam_momentum_avg(optimizer),
                            **activity_fields(activity.read(reset=True)),
                            "training_active": True,
                            "training_paused": paused,
                            "last_update_time": time.strftime("%Y-%m-%d %H:%M:%S"),
                        }
                        stats.observe(step, {k: v for k, v in metrics.items() if v is not None})
                        if ctx.is_main:
                            progress.update(
                                step=step, loss=m["total"], lr=lr_now, its=rate, eta=eta
                            )
                    change = threads.recheck()
                    if change is not None:
                        logger.info("CPU threads -> %d: %s", change.threads, change.reason)
                        torch.set_num_threads(change.threads)

                # ---- runtime config: rank 0 reads, every rank applies at this step -------------
                apply_changes(runtime.poll(step))

                # ---- monitor actions and stop signals (the same on every rank) ----------------
                commands = ctx.agreed_commands(actions, step, cadence["log_every"])
                wants_stop = ctx.agreed_stop(stop.requested, step, cadence["log_every"])
                if pause_state(commands, False) and not wants_stop:  # last pause/resume wins
                    paused = True
                    snapshot.update(step, training_paused=True)
                    logger.info("paused at step %d", step)
                    while paused and not wants_stop:
                        time.sleep(0.2)
                        more = ctx.agreed_commands(actions, step, 1)
                        commands += more
                        paused = pause_state(more, True) and "stop" not in more
                        wants_stop = ctx.agreed_stop(stop.requested, step, 1)
                    snapshot.update(step, training_paused=False)
                    logger.info("resumed at step %d", step)
                last = step == cfg.steps  # the last step always gets a validation and a save
                if "validate" in commands or step % cadence["val_every"] == 0 or last:
                    run_validation()
                if "save" in commands or step % cadence["ckpt_every"] == 0 or last:
                    checkpoint()
                if wants_stop or "stop" in commands:
                    reason = "stopped"
                    why = stop.signal_name or "a stop request"
                    if saved_at == step:  # e.g. `q`: save + stop; one checkpoint is enough
                        logger.warning("stopping at step %d after %s", step, why)
                    else:
                        logger.warning(
                            "stopping at step %d after %s: writing an emergency checkpoint",
                            step,
                            why,
                        )
                        checkpoint("emergency")
                    break
        except VsrkitError as exc:  # a user mistake found mid-run: save, close, then report
            failure, reason, exit_code = exc, "error", 1
            logger.error("stopping at step %d: %s", step, exc)
            if isinstance(exc, DatasetLayoutError) and step > 0 and saved_at != step:
                try:
                    checkpoint("emergency")
                except VsrkitError as save_error:
                    logger.error("emergency checkpoint not written: %s", save_error)

    if ctx.distributed:  # DDP keeps replicas equal; check it once, cheaply, at the end
        if ctx.same_everywhere(list(net.parameters())):
            logger.info("weights identical on %d ranks", ctx.world_size)
        else:
            logger.error("weights differ between ranks at step %d", step)
            reason, exit_code = "diverged", 1

    # ---- the end: flush everything --------------------------------------------------------------
    activity.close()
    progress.close()
    if ckpts is not None:
        ckpts.close()
    snapshot.update(step, training_active=False)
    stats.close()
    if best_quality is not None:
        tb.log_hyperparameters(cfg.to_dict(), {"hparam/best_quality": best_quality})
    tb.close()
    if monitor is not None:
        monitor.stop()
    if view is not None:
        view.draw()  # the final state stays on screen
        view.stop()
        progress.view = None
    if failure is not None:
        raise failure
    if ctx.is_main:
        progress.message(summary(run_dir, step, reason, best_quality, cfg.tensorboard))
    return TrainResult(run_dir, step, reason, best_quality, last_val, exit_code)


def _set_lr(
    optimizer: torch.optim.Optimizer,
    schedule: WarmupCosine,
    step: int,
    scale: float,
    live: dict[str, Any],
    flow_mult: float,
) -> float:
    """Scheduled LR times the plateau scale, clamped to the live bounds; returns the main LR."""
    lr = min(live["max_lr"], max(live["min_lr"], schedule.lr(step) * scale))
    apply_lr(optimizer, [lr, lr * flow_mult])
    return lr


def _apply_change(
    key: str,
    live: dict[str, Any],
    tracker: PlateauTracker,
    lr_policy: LRBoostPolicy,
    weights: AdaptiveLossWeights,
    clip: GradClipAdapter,
    cadence: dict[str, int],
    step: int,
) -> None:
    """Hand one accepted runtime setting to the component that owns it."""
    value = live[key]
    if key in ("plateau_patience", "plateau_safety_threshold"):
        tracker.configure(**{key: value})
    elif key == "cooldown_duration":
        tracker.configure(cooldown_duration=value)
        lr_policy.configure(cooldown=value)
    elif key in ("max_lr", "min_lr"):
        lr_policy.configure(max_lr=live["max_lr"], min_lr=live["min_lr"])
    elif key == "grad_clip":
        clip.configure(grad_clip=value)
    elif key.endswith("_weight"):  # the runtime config checked the sum of all four
        weights.configure(weights={t: live[f"{t}_weight"] for t in TERMS}, step=step)
    elif key in cadence:
        cadence[key] = int(value)


def _init_weights(net: torch.nn.Module, path: str) -> str:
    """Load ``path`` (a published BasicVSR or a vsrkit checkpoint) into ``net``; one line says
    what was loaded. Raises a :class:`VsrkitError` when it is another network or size."""
    from vsrkit.infer.loading import build_model_from, read_weights

    weights = read_weights(path)
    loaded = build_model_from(weights.architecture, weights.state_dict, where=path, device="cpu")

    def sizes(m: Any) -> dict[str, Any]:
        return {
            "num_feat": m.num_feat,
            "num_blocks": m.num_blocks,
            "skip": m.skip,
            "spynet_levels": m.spynet.num_levels,
        }

    want, got = sizes(net), sizes(loaded)
    if want != got:
        shown = ", ".join(f"{k} {v}" for k, v in got.items())
        built = ", ".join(f"{k} {v}" for k, v in want.items())
        raise InitWeightsError(
            f"--init-weights {path}: a {weights.preset or 'vsrkit'} model with {shown}; this run "
            f"builds {built} (choose --model, --skip, n_feats/n_blocks to match)"
        )
    try:
        net.load_state_dict(loaded.state_dict())
    except RuntimeError as exc:  # same sizes, another SpyNet width
        raise InitWeightsError(
            f"--init-weights {path} does not fit this run's model: {str(exc).splitlines()[0]}"
        ) from None
    kind = (
        f"a {weights.preset}"
        if weights.config is None
        else f"the {weights.preset} model of step {weights.step}"
    )
    return (
        f"initialised the model from {path} ({kind}); the optimizer, the LR schedule and the "
        "adaptive components start fresh"
    )


def _retention(cfg: TrainConfig) -> AnyOf:
    """Each kind by its own rule: N regular, the best by SSIM, the newest emergency."""
    return AnyOf(LatestN(cfg.keep_last), BestN(1), LatestN(1, kind="emergency"))


def _saved_schedule(loop_state: dict[str, Any], fallback: WarmupCosine) -> WarmupCosine:
    """The LR schedule a checkpoint ran on (older checkpoints: rebuilt from their settings)."""
    if "schedule" in loop_state:
        try:
            return WarmupCosine.from_state(loop_state["schedule"])
        except (TypeError, ValueError):
            logger.warning("the checkpoint's LR schedule is unreadable; rebuilt from its settings")
    saved = loop_state.get("config") or {}
    try:
        return WarmupCosine(
            float(saved["lr"]),
            int(saved["warmup_steps"]),
            int(saved["steps"]),
            final_lr=float(saved["min_lr"]),
        )
    except (KeyError, TypeError, ValueError):
        return fallback


def _schedule_note(old: WarmupCosine, new: WarmupCosine, step: int) -> str:
    """One line on how a resume with other schedule settings continues the LR (no jump)."""
    changed = [
        f"{name} {getattr(old, attr):g} -> {getattr(new, attr):g}"
        for name, attr in (
            ("steps", "total_steps"),
            ("lr", "base_lr"),
            ("warmup_steps", "warmup_steps"),
        )
        if getattr(old, attr) != getattr(new, attr)
    ]
    lr0 = old.lr(step)
    if step < new.warmup_steps:
        shape = f"warms up from {lr0:.2e} to {new.base_lr:.2e} at step {new.warmup_steps}, then"
    else:
        shape = f"continues from {lr0:.2e} at step {step} and"
        if new.base_lr != old.base_lr:
            shape = f"(lr only shapes the warm-up, which is over) {shape}"
    note = (
        f"LR schedule ({', '.join(changed)}): the LR {shape} decays by a cosine to "
        f"{new.final_lr:.2e} at step {new.total_steps}, without a jump"
    )
    if old.lr(step) <= old.final_lr * (1 + 1e-9) and new.total_steps > old.total_steps:
        note += (
            "; the old schedule had ended, so the added steps run at its final LR "
            "(raise min_lr live with `vsrkit config set` to train on faster)"
        )
    return note


def _worker_message(exc: BaseException) -> str:
    """The original message of a data error, also when a DataLoader worker re-raised it with
    the worker's traceback folded into the text."""
    text = str(exc)
    if "Traceback (most recent call last)" not in text:
        return text
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last
