"""Helpers an Accelerate training loop calls: :class:`VsrkitAccelerate`.

Needs ``accelerate`` (``pip install 'vsrkit[accelerate]'``). The loop stays yours; a few
calls hand the loop core (:class:`vsrkit.loop.LoopCore`) what it needs, and this module keeps
only what is Accelerate's (the process group, saving through the main process). Every rank
calls every method at the same step: losses are averaged over ranks with
``accelerator.gather`` once per log interval, the runtime config is read on the main process
(``accelerator.is_main_process``) and broadcast, and saves wait for every rank
(``accelerator.wait_for_everyone``); only the main process writes files.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vsrkit.integrations._hooks import hooks_property
from vsrkit.integrations._optional import require
from vsrkit.integrations.errors import IntegrationError
from vsrkit.loop import IntervalOutcome, LoopCore, OptimizerLR, StopSignal

require("accelerate", "accelerate", "vsrkit.integrations.accelerate")

__all__ = ["AccelerateOps", "VsrkitAccelerate"]

logger = logging.getLogger(__name__)


class AccelerateOps:
    """:class:`~vsrkit.loop.DistOps` over an ``Accelerator``.

    Example:
        >>> from accelerate import Accelerator
        >>> ops = AccelerateOps(Accelerator(cpu=True))
        >>> ops.is_main, ops.broadcast("x"), ops.any(False)
        (True, 'x', False)
    """

    def __init__(self, accelerator: Any) -> None:
        self._acc = accelerator

    @property
    def is_main(self) -> bool:
        return bool(self._acc.is_main_process)

    def broadcast(self, obj: Any) -> Any:
        if self._acc.num_processes == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def mean(self, tensor: Any) -> Any:
        if self._acc.num_processes == 1:
            return tensor
        return self._acc.gather(tensor.reshape(1, -1)).float().mean(dim=0)

    def any(self, flag: bool) -> bool:
        if self._acc.num_processes == 1:
            return bool(flag)
        import torch

        mine = torch.tensor([1.0 if flag else 0.0], device=self._acc.device)
        return bool(self._acc.gather(mine).sum().item() > 0)

    def barrier(self) -> None:
        self._acc.wait_for_everyone()


class VsrkitAccelerate:
    """The vsrkit components in an Accelerate loop, in a few calls.

    Per step, after ``accelerator.backward(total)`` and before ``optimizer.zero_grad()``:
    :meth:`after_backward` (with a ``clip`` adapter, pass the norm that
    ``accelerator.clip_grad_norm_(params, vsr.clip_value)`` returns); after
    ``optimizer.step()``: :meth:`end_of_step` (the loop core acts every ``log_every`` steps:
    one sync, plateau tracker, LR policy, loss weights, clip, statistics, and polls the
    runtime config). After a validation: :meth:`validation_end`. To save:
    :meth:`save` (every rank calls it; the main process writes through a
    ``CheckpointManager``); to resume: :meth:`restore`. Inside ``with vsr.catch_signals():``
    a SIGTERM/SIGINT makes :meth:`stop_requested` true at the next check step on every rank.

    Args:
        accelerator: The ``accelerate.Accelerator`` of the loop.
        run_dir: Run folder (runtime config, statistics, ``tensorboard/``).
        checkpoint_dir: Checkpoint folder (default ``run_dir/checkpoints``).
        keep: Retention policy for the checkpoints; ``None`` keeps all.
        async_save: Write checkpoints in a background thread.
        check_every: With several processes, steps between stop-signal checks (one gather
            each); a single process checks every step (free).
        **loop: The components and settings of :class:`~vsrkit.loop.LoopCore` (``terms``,
            ``log_every``, ``plateau``, ``lr_policy``, ``loss_weights``, ``clip``,
            ``grad_monitor``, ``runtime_config``, ``runtime_schema``, ``poll_every``,
            ``statistics``, ``stats_max_delay_steps``, ``tensorboard``).

    Example:
        >>> import tempfile
        >>> from accelerate import Accelerator
        >>> from vsrkit.adaptive import PlateauTracker
        >>> vsr = VsrkitAccelerate(Accelerator(cpu=True), run_dir=tempfile.mkdtemp(),
        ...                        terms=("mse",), plateau=PlateauTracker())
        >>> vsr.restore() is None  # nothing saved yet: start fresh
        True
    """

    def __init__(
        self,
        accelerator: Any,
        *,
        run_dir: str | os.PathLike[str],
        checkpoint_dir: str | os.PathLike[str] | None = None,
        keep: Any = None,
        async_save: bool = False,
        check_every: int = 10,
        best_metric: str = "quality",
        best_mode: str = "max",
        terms: Sequence[str] = (),
        **loop: Any,
    ) -> None:
        from vsrkit.checkpoint import CheckpointManager

        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise IntegrationError(f"check_every must be an int >= 1, got {check_every!r}")
        self.accelerator = accelerator
        self.ops = AccelerateOps(accelerator)
        #: The loop core that decides (:class:`~vsrkit.loop.LoopCore`).
        self.loop = LoopCore(run_dir=run_dir, terms=terms, **loop)
        self.loop.bind(self.ops)
        directory = (
            Path(checkpoint_dir) if checkpoint_dir is not None else Path(run_dir) / "checkpoints"
        )
        self.checkpoints = CheckpointManager(
            directory,
            keep=keep,
            async_save=async_save,
            best_metric=best_metric,
            best_mode=best_mode,
        )
        self.check_every = check_every
        self._stop: Any = None

    hooks = hooks_property("VsrkitAccelerate")

    # ------------------------------------------------------------------ per step
    def combine(self, losses: Mapping[str, Any], *, step: int) -> Any:
        """Weighted total of the loss tensors with the weights in force at ``step``."""
        return self.loop.combine(losses, step=step)

    def after_backward(
        self, losses: Mapping[str, Any], total: Any, *, grad_norm: Any = None
    ) -> None:
        """Sum this step's losses, the total ``grad_norm`` (for a ``clip`` adapter: what
        ``accelerator.clip_grad_norm_`` returned) and the gradient monitor's norms on the
        device (no host sync)."""
        self.loop.accumulate(losses, total, grad_norm=grad_norm)
        self.loop.observe_gradients()

    def end_of_step(
        self,
        step: int,
        optimizer: Any,
        *,
        schedulers: Iterable[Any] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> IntervalOutcome | None:
        """After the optimizer step ``step`` (counting it): decide and act at log intervals,
        apply runtime-config changes at poll steps. Returns the interval's outcome or None."""
        lr = self.loop.lr
        schedulers = list(schedulers)
        if not isinstance(lr, OptimizerLR) or (lr.optimizer, lr.schedulers) != (
            optimizer,
            schedulers,
        ):
            self.loop.lr = OptimizerLR(optimizer, schedulers)
        return self.loop.end_of_step(step, extra=extra)

    def validation_end(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Validation fields of step ``step`` (e.g. ``{"quality_ki_value": 0.61}``); returns
        whether the quality is the best so far."""
        return self.loop.validation_end(step, metrics)

    @property
    def live(self) -> dict[str, Any]:
        """Runtime settings in effect."""
        return self.loop.live

    @property
    def clip_value(self) -> float | None:
        """The clip value for your ``accelerator.clip_grad_norm_`` call: the ``clip``
        adapter's, else the live ``grad_clip`` (``None`` without either)."""
        return self.loop.clip_value

    # ------------------------------------------------------------------ stopping
    def catch_signals(self) -> Any:
        """A context manager turning SIGTERM/SIGINT into :meth:`stop_requested` (main thread)."""
        if threading.current_thread() is not threading.main_thread():
            raise IntegrationError("catch_signals() must be used in the main thread")
        self._stop = StopSignal()
        return self._stop

    def stop_requested(self, step: int) -> bool:
        """True on every rank at a check step when any rank got a stop signal (a single
        process checks every step; several agree every ``check_every`` steps)."""
        if self.accelerator.num_processes > 1 and step % self.check_every:
            return False
        local = self._stop is not None and self._stop.requested
        return self.ops.any(local)

    # ------------------------------------------------------------------ checkpoints
    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        *,
        tag: str | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> Path | None:
        """Save ``state`` plus the components' state (key ``"vsrkit"``) as step ``step``.

        Call it on every rank (it waits for all); the main process writes the checkpoint,
        its manifest and ``runtime_config_step_<step>.json``. Pass plain state dicts, e.g.
        ``{"model": accelerator.unwrap_model(model).state_dict(), "optimizer": ...}``.

        Returns:
            The checkpoint path on the main process, ``None`` on the others.
        """
        if "vsrkit" in state:
            raise IntegrationError("save(state): the key 'vsrkit' is reserved for the components")
        self.accelerator.wait_for_everyone()
        snap = self.loop.runtime_snapshot(step)
        path = None
        if self.ops.is_main:
            full = {**state, "vsrkit": self.loop.state_dict()}
            path = self.checkpoints.save(step, full, metrics=metrics, tag=tag, runtime_config=snap)
            self.checkpoints.wait()
        self.accelerator.wait_for_everyone()
        return path

    def restore(self, *, map_location: Any = "cpu") -> tuple[int, dict[str, Any]] | None:
        """Resume: the newest valid checkpoint (the main process picks it, every rank loads
        it), the components' state and runtime settings restored; ``None`` without one.

        Returns:
            ``(step, state)``: load your model and optimizer from ``state`` and continue
            with step ``step + 1``.
        """
        from vsrkit.checkpoint import CheckpointNotFoundError

        step, state = None, None
        if self.ops.is_main:
            try:
                step, state = self.checkpoints.restore(map_location=map_location)
            except CheckpointNotFoundError:
                step = None
        step = self.ops.broadcast(step)
        if step is None:
            return None
        if state is None:  # the other ranks load the checkpoint the main process picked
            step, state = self.checkpoints.restore(step, map_location=map_location)
        self.loop.load_state_dict(state["vsrkit"])
        self.loop.begin(step)
        self.loop.restore_runtime(step)
        logger.info("resumed from step %d", step)
        return step, state

    def close(self) -> None:
        """Flush statistics and TensorBoard and wait for a background save."""
        self.loop.close()
        self.checkpoints.close()
