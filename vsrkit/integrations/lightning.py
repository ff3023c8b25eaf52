"""Lightning callbacks that wrap the vsrkit components: :class:`VsrkitCallback`,
:class:`VsrkitCheckpoint` and its :class:`VsrkitCheckpointIO` plugin.

Needs ``lightning`` (``pip install 'vsrkit[lightning]'``). The callbacks read losses from
what ``training_step`` returns and hand them to the loop core (:class:`vsrkit.loop.LoopCore`),
which decides with the components; this module keeps only what is Lightning's: the hooks,
the trainer's optimizer, schedulers, gradient clipping and checkpoint plugin.
Under DDP every rank runs the same decisions at the same step: rank 0 reads the runtime
config and ``trainer.strategy.broadcast`` hands it to the others; losses are averaged over
ranks with ``trainer.strategy.reduce`` once per log interval; only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vsrkit.integrations._hooks import hooks_property
from vsrkit.integrations._optional import require
from vsrkit.integrations.errors import IntegrationError
from vsrkit.loop import IntervalOutcome, LoopCore, OptimizerLR, StopSignal

require("lightning.pytorch", "lightning", "vsrkit.integrations.lightning")

from lightning.pytorch.callbacks import Callback, Checkpoint  # noqa: E402
from lightning.pytorch.plugins.io import CheckpointIO  # noqa: E402

__all__ = [
    "LightningOps",
    "VsrkitCallback",
    "VsrkitCheckpoint",
    "VsrkitCheckpointIO",
    "losses_from_outputs",
]

logger = logging.getLogger(__name__)

#: keys of the Lightning checkpoint dict that carry vsrkit's manifest data
RUNTIME_KEY = "vsrkit_runtime_config"
METRICS_KEY = "vsrkit_metrics"


class LightningOps:
    """:class:`~vsrkit.loop.DistOps` over ``trainer.strategy``.

    Example:
        >>> import lightning.pytorch as pl
        >>> ops = LightningOps(pl.Trainer(accelerator="cpu", devices=1, logger=False))
        >>> ops.is_main, ops.broadcast([1, 2]), ops.any(True)
        (True, [1, 2], True)
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    @property
    def is_main(self) -> bool:
        return bool(self._trainer.is_global_zero)

    def broadcast(self, obj: Any) -> Any:
        return self._trainer.strategy.broadcast(obj, src=0)

    def mean(self, tensor: Any) -> Any:
        return self._trainer.strategy.reduce(tensor, reduce_op="mean")

    def any(self, flag: bool) -> bool:
        return bool(self._trainer.strategy.reduce_boolean_decision(bool(flag), all=False))

    def barrier(self) -> None:
        self._trainer.strategy.barrier()


def losses_from_outputs(outputs: Any, terms: Sequence[str]) -> tuple[dict[str, Any], Any]:
    """``(losses per term, total)`` from what ``training_step`` returned.

    ``training_step`` returns the total loss (a tensor or ``{"loss": total}``) and, when the
    callback has loss terms, ``{"loss": total, "losses": {term: tensor}}``; a skipped
    batch (``training_step`` returned ``None``) gives ``({}, None)``.
    """
    if isinstance(outputs, Mapping):
        total = outputs.get("loss")
        losses = outputs.get("losses", {})
    else:
        total, losses = outputs, {}
    if total is None:  # training_step returned None: Lightning skipped the batch
        return {}, None
    if terms and not isinstance(losses, Mapping):
        raise IntegrationError(
            "training_step must return {'loss': total, 'losses': {term: tensor}} "
            f"for the terms {', '.join(terms)}"
        )
    return dict(losses), total


class VsrkitCallback(Callback):
    """Plateau tracking with LR boost/reduce, adaptive loss weights, runtime config,
    statistics files, TensorBoard and gradient monitoring in a Lightning run.

    The decisions are the loop core's (:class:`~vsrkit.loop.LoopCore`, :attr:`loop`): every
    ``log_every`` optimizer steps the losses summed on the device are read once (averaged
    over ranks), the plateau tracker and the loss weights decide, a new LR is set on the
    first optimizer (and its schedulers' ``base_lrs`` scaled alike), the clip adapter
    updates ``trainer.gradient_clip_val``, and the metrics go to ``Statistik_<step>.json``
    and TensorBoard. The runtime config is polled every ``poll_every`` steps on every rank.
    The loss weights are exposed to the LightningModule as ``pl_module.vsrkit_weights`` and
    the loop core as ``pl_module.vsrkit`` (use ``self.vsrkit.combine(losses,
    step=self.global_step)`` for the weighted total). After a validation,
    ``trainer.callback_metrics`` named in ``validation_fields`` freeze the statistics file
    of that step.

    Args:
        run_dir: Run folder for ``runtime_config.json``, statistics and ``tensorboard/``.
        terms: Loss-term names when there are no ``loss_weights``.
        log_every: Optimizer steps per log interval (runtime key ``log_every``).
        plateau: A ``PlateauTracker``; ``lr_policy``: an ``LRBoostPolicy`` acting on it.
        loss_weights: ``AdaptiveLossWeights`` or ``LossWarmup``.
        clip: A ``GradClipAdapter``: it sees the total grad norm of every step (computed
            before Lightning clips) and sets ``trainer.gradient_clip_val`` (give the trainer
            a ``gradient_clip_val`` to clip at all).
        grad_monitor: A ``GradientMonitor`` (read once per log interval).
        runtime_config: The startup value of every runtime key (enables the live file).
        runtime_schema: A runtime-config schema (default: vsrkit's).
        poll_every: Steps between runtime-config polls.
        statistics: Write ``Statistik_<step>.json`` after each validation.
        stats_max_delay_steps: Write an incomplete file this many steps after a validation.
        tensorboard: Write TensorBoard events to ``run_dir/tensorboard``.
        validation_fields: ``{logged metric: statistics field}``, e.g.
            ``{"val_ssim": "quality_ki_value", "val_loss": "validation_loss_value"}``.

    Example:
        >>> from vsrkit.adaptive import PlateauTracker
        >>> cb = VsrkitCallback("runs/demo", terms=("mse",), plateau=PlateauTracker())
        >>> cb.loop.log_every
        10
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        terms: Sequence[str] = (),
        log_every: int = 10,
        plateau: Any = None,
        lr_policy: Any = None,
        loss_weights: Any = None,
        clip: Any = None,
        grad_monitor: Any = None,
        runtime_config: Mapping[str, Any] | None = None,
        runtime_schema: Mapping[str, Any] | None = None,
        poll_every: int = 10,
        statistics: bool = True,
        stats_max_delay_steps: int | None = 500,
        tensorboard: bool = False,
        validation_fields: Mapping[str, str] | None = None,
    ) -> None:
        #: The loop core that decides (:class:`~vsrkit.loop.LoopCore`).
        self.loop = LoopCore(
            run_dir=run_dir,
            terms=terms,
            log_every=log_every,
            plateau=plateau,
            lr_policy=lr_policy,
            loss_weights=loss_weights,
            clip=clip,
            grad_monitor=grad_monitor,
            runtime_config=runtime_config,
            runtime_schema=runtime_schema,
            poll_every=poll_every,
            statistics=statistics,
            stats_max_delay_steps=stats_max_delay_steps,
            tensorboard=tensorboard,
        )
        self.validation_fields = dict(validation_fields or {})
        self.outcomes: list[IntervalOutcome] = []  # the log intervals of this fit, for the user
        self._last_step: int | None = None
        self._grad_norm: Any = None
        self._restored = False

    hooks = hooks_property("VsrkitCallback")

    # ------------------------------------------------------------------ lifecycle
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self.loop.bind(LightningOps(trainer))
        pl_module.vsrkit_weights = self.loop.loss_weights
        pl_module.vsrkit = self.loop

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = trainer.global_step
        self.loop.lr = OptimizerLR(
            trainer.optimizers[0], [c.scheduler for c in trainer.lr_scheduler_configs]
        )
        self.loop.begin(trainer.global_step)
        if self._restored:  # settings of the checkpoint's snapshot, then newer live edits
            self.loop.restore_runtime(trainer.global_step)
        self._sync_clip(trainer)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.loop.observe_gradients()
        if self.loop.clip is not None:  # the norm before Lightning clips, no host sync
            import torch

            grads = [p for p in pl_module.parameters() if p.grad is not None]
            if grads:
                self._grad_norm = torch.nn.utils.clip_grad_norm_(grads, math.inf, foreach=True)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        losses, total = losses_from_outputs(outputs, self.loop.terms)
        if total is not None:  # None: training_step skipped this batch
            self.loop.accumulate(losses, total, grad_norm=self._grad_norm)
        self._grad_norm = None
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: no optimizer step yet
            return
        self._last_step = step
        outcome = self.loop.end_of_step(step, extra={"epoch_num": trainer.current_epoch + 1})
        if outcome is not None:
            self.outcomes.append(outcome)
        self._sync_clip(trainer)

    def _sync_clip(self, trainer: Any) -> None:
        clip = self.loop.clip_value
        if clip is not None and trainer.gradient_clip_val not in (None, clip):
            trainer.gradient_clip_val = float(clip)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.validation_fields:
            return
        metrics = trainer.callback_metrics
        missing = [name for name in self.validation_fields if name not in metrics]
        if missing:
            raise IntegrationError(
                f"validation_fields: {', '.join(missing)} not logged by validation_step "
                f"(logged: {', '.join(sorted(metrics)) or 'nothing'})"
            )
        values = {field: float(metrics[name]) for name, field in self.validation_fields.items()}
        self.loop.validation_end(trainer.global_step, values)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUNTIME_KEY] = self.loop.runtime_snapshot(trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return self.loop.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loop.load_state_dict(state_dict)
        self._restored = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.loop.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.loop.close()


class VsrkitCheckpointIO(CheckpointIO):
    """Lightning checkpoint plugin that saves and loads through a ``CheckpointManager``.

    Paths must carry vsrkit checkpoint names (``checkpoint_step_0000100.pth``, with a tag
    for ``_best``/``_emergency``): the step and tag come from the name, the manifest gets
    the metrics and runtime-config snapshot that the callbacks put into the checkpoint.
    Deleting is the manager's retention policy's job, so :meth:`remove_checkpoint` does
    nothing. Usually made by :class:`VsrkitCheckpoint` (its ``io``).

    Example:
        >>> import tempfile, torch
        >>> from vsrkit.checkpoint import CheckpointManager
        >>> io = VsrkitCheckpointIO(CheckpointManager(tempfile.mkdtemp()))
        >>> path = io.manager.directory / "checkpoint_step_0000005.pth"
        >>> io.save_checkpoint({"global_step": 5, "w": torch.ones(1)}, path)
        >>> io.load_checkpoint(path)["global_step"]
        5
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def _name(self, path: str | os.PathLike[str]) -> Any:
        from vsrkit.checkpoint import parse_checkpoint_name

        p = Path(path)
        name = parse_checkpoint_name(p.name)
        if name is None or name.kind != "checkpoint":
            raise IntegrationError(
                f"{p.name}: not a vsrkit checkpoint name (checkpoint_step_<7 digits>[_tag].pth); "
                "save with VsrkitCheckpoint and turn other checkpoint callbacks off"
            )
        if p.parent.resolve() != self.manager.directory.resolve():
            raise IntegrationError(f"{p}: outside the checkpoint folder {self.manager.directory}")
        return name

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        name = self._name(path)
        metrics = checkpoint.get(METRICS_KEY) or None
        self.manager.save(
            name.step,
            checkpoint,
            metrics=metrics,
            tag=name.tag,
            runtime_config=checkpoint.get(RUNTIME_KEY),
        )

    def load_checkpoint(
        self,
        path: str | os.PathLike[str],
        map_location: Any = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        name = self._name(path)
        step, state = self.manager.restore(name.step, map_location=map_location or "cpu")
        logger.info("restored the Lightning checkpoint of step %d from %s", step, path)
        return state

    def remove_checkpoint(self, path: str | os.PathLike[str]) -> None:
        logger.debug("remove_checkpoint(%s) ignored: retention belongs to CheckpointManager", path)


class VsrkitCheckpoint(Checkpoint):
    """Saves Lightning checkpoints through a ``CheckpointManager``: vsrkit names, manifests,
    retention, emergency saves on SIGTERM/SIGINT, and resume.

    Add the callback and its plugin: ``Trainer(callbacks=[ckpt], plugins=[ckpt.io])``, and
    resume with ``trainer.fit(model, ckpt_path=ckpt.resume_path())`` (``None`` starts fresh).
    A checkpoint is written every ``every_n_steps`` optimizer steps. During training a
    SIGTERM/SIGINT only sets a flag; at the next check step (every step in one process,
    every ``check_every`` steps agreed by all ranks under DDP) the callback writes
    ``checkpoint_step_<step>_emergency.pth`` and stops the trainer. It replaces Lightning's
    ``ModelCheckpoint`` (which must not be used with the plugin).

    Args:
        directory: The checkpoint folder.
        every_n_steps: Save period in optimizer steps (``None``: only emergency saves).
        keep: A retention policy (``LatestN(3)``, ``AnyOf(...)``); ``None`` keeps all.
        async_save: Write in a background thread.
        metrics: ``{manifest metric: logged metric}``, e.g. ``{"quality": "val_ssim"}``.
        check_every: Under DDP, steps between stop-signal checks (one all-reduce each).
        best_metric, best_mode: What "best" means for retention.

    Example:
        >>> import tempfile
        >>> ckpt = VsrkitCheckpoint(tempfile.mkdtemp(), every_n_steps=100)
        >>> ckpt.resume_path() is None
        True
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every_n_steps: int | None = None,
        keep: Any = None,
        async_save: bool = False,
        metrics: Mapping[str, str] | None = None,
        check_every: int = 10,
        best_metric: str = "quality",
        best_mode: str = "max",
    ) -> None:
        from vsrkit.checkpoint import CheckpointManager

        for name, value in (("every_n_steps", every_n_steps), ("check_every", check_every)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise IntegrationError(f"{name} must be an int >= 1, got {value!r}")
        self.manager = CheckpointManager(
            directory,
            keep=keep,
            async_save=async_save,
            best_metric=best_metric,
            best_mode=best_mode,
        )
        self.io = VsrkitCheckpointIO(self.manager)
        self.every_n_steps = every_n_steps
        self.check_every = check_every
        self.metrics = dict(metrics or {})
        self.saved: list[Path] = []
        self._stop: Any = None
        self._last_step: int | None = None

    def resume_path(self) -> str | None:
        """Path of the checkpoint ``CheckpointManager.restore()`` would pick, or ``None``."""
        from vsrkit.checkpoint.records import resume_order

        order = resume_order(self.manager.list(), self.manager.run_id)
        return str(order[0].path) if order else None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.strategy.checkpoint_io is not self.io:
            raise IntegrationError(
                "VsrkitCheckpoint needs its plugin: Trainer(..., plugins=[ckpt.io])"
            )
        others = [cb for cb in trainer.checkpoint_callbacks if cb is not self]
        if others:
            raise IntegrationError(
                f"VsrkitCheckpoint replaces {type(others[0]).__name__}: remove it "
                "(its file names are not vsrkit checkpoint names)"
            )

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = trainer.global_step
        if threading.current_thread() is threading.main_thread():
            self._stop = StopSignal().__enter__()
        else:
            logger.warning("not in the main thread: no emergency checkpoint on SIGTERM/SIGINT")

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if self.every_n_steps and step % self.every_n_steps == 0:
            self.save(trainer, step)
        if trainer.world_size == 1 or step % self.check_every == 0:
            local = self._stop is not None and self._stop.requested
            if LightningOps(trainer).any(local):
                name = self._stop.signal_name if self._stop is not None else None
                logger.warning(
                    "stopping at step %d after %s: writing an emergency checkpoint",
                    step,
                    name or "a stop signal on another rank",
                )
                self.save(trainer, step, tag="emergency")
                trainer.should_stop = True

    def save(self, trainer: Any, step: int, tag: str | None = None) -> Path:
        """Write the checkpoint of ``step`` now (call it on every rank)."""
        from vsrkit.checkpoint import format_checkpoint_name

        path = self.manager.directory / format_checkpoint_name(step, tag)
        trainer.save_checkpoint(path, weights_only=False)
        self.saved.append(path)
        return path

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        logged = trainer.callback_metrics
        checkpoint[METRICS_KEY] = {
            name: float(logged[key]) for name, key in self.metrics.items() if key in logged
        }

    def _leave_signals(self) -> None:
        if self._stop is not None:
            self._stop.__exit__(None, None, None)
            self._stop = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._leave_signals()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._leave_signals()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._leave_signals()
        self.manager.wait()
