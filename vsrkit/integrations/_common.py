"""Framework-free glue shared by the Lightning and Accelerate adapters.

:class:`VsrkitHooks` is what a training loop does with the vsrkit components at each step,
log interval, runtime-config poll step, validation and checkpoint, written once. The
adapters only say how their framework reads the rank, broadcasts an object, averages a
tensor over ranks and waits (:class:`DistOps`), and which optimizer and schedulers to act on.
Components decide, the hooks act: the plateau tracker returns an event, the LR policy new
rates, the runtime config validated changes; the hooks apply them to the optimizer.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vsrkit.adaptive.lr import apply_lr, current_lrs
from vsrkit.adaptive.plateau import RUNTIME_KEYS
from vsrkit.errors import VsrkitError
from vsrkit.stats.accumulator import LossAccumulator

__all__ = [
    "DistOps",
    "IntervalOutcome",
    "IntegrationError",
    "LocalOps",
    "LossAccumulator",
    "VsrkitHooks",
    "scale_lrs",
]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
#: loss term -> statistics-file field (the seed names); other terms go to the snapshot only
SEED_LOSS_FIELDS = {
    "l1": "l1_loss_value",
    "ms": "ms_loss_value",
    "grad": "gradient_loss_value",
    "gradient": "gradient_loss_value",
    "perceptual": "perceptual_loss_value",
}


class IntegrationError(VsrkitError):
    """A framework adapter was set up or called wrongly; the message says what to change."""


def require(module: str, extra: str, user: str) -> Any:
    """Import an optional dependency or raise one clear ``ImportError`` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{user} needs {extra}: pip install 'vsrkit[{extra}]'") from exc


class DistOps(Protocol):
    """What the hooks need from a framework's process group (all ranks call each method).

    Example:
        >>> ops: DistOps = LocalOps()
        >>> ops.is_main, ops.broadcast({"k": 1}), ops.any(False)
        (True, {'k': 1}, False)
    """

    @property
    def is_main(self) -> bool: ...

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""

    def mean(self, tensor: Any) -> Any:
        """The element-wise mean of ``tensor`` over ranks."""

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""

    def barrier(self) -> None:
        """Wait for every rank."""


class LocalOps:
    """:class:`DistOps` of a single process.

    Example:
        >>> LocalOps().mean(3.0)
        3.0
    """

    is_main = True

    def broadcast(self, obj: Any) -> Any:
        return obj

    def mean(self, tensor: Any) -> Any:
        return tensor

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def barrier(self) -> None:
        return None


def scale_lrs(optimizer: Any, new: Sequence[float], schedulers: Iterable[Any] = ()) -> list[float]:
    """Set the optimizer's LRs to ``new`` and scale each scheduler's ``base_lrs`` alike.

    A scheduler that recomputes the LR from ``base_lrs`` (LambdaLR, OneCycle, ...) then keeps
    the change instead of undoing it at its next step. Returns the previous LRs.
    """
    old = apply_lr(optimizer, list(new))
    for sched in schedulers:
        base = getattr(sched, "base_lrs", None)
        if isinstance(base, list) and len(base) == len(old):
            sched.base_lrs = [
                b * (n / o if o else 1.0) for b, n, o in zip(base, new, old, strict=True)
            ]
    return old


@dataclass
class IntervalOutcome:
    """What the hooks decided at one log interval (all ranks agree on it).

    ``losses`` holds the interval means per term and ``total``; ``event`` the
    ``PlateauEvent`` (``None`` without a tracker or without a finite step); ``new_lrs`` the
    LRs set on the optimizer (``None``: unchanged); ``weights`` the loss weights after the
    update; ``gradients`` the ``GradientReport``; ``stats_files`` the statistics files written.

    Example:
        >>> IntervalOutcome(step=10, losses={"total": 0.2}).new_lrs is None
        True
    """

    step: int
    losses: dict[str, float]
    event: Any = None  # PlateauEvent or None
    new_lrs: list[float] | None = None
    weights: dict[str, float] | None = None
    gradients: Any = None  # GradientReport or None
    stats_files: list[Path] = field(default_factory=list)


class VsrkitHooks:
    """The vsrkit side of a training loop, shared by the framework adapters.

    Build it with the components you want (all optional) and plain settings; call
    :meth:`bind` once the rank is known (the rank-dependent pieces, runtime config, statistics
    writer and TensorBoard, are created there, files only on the main rank). Then per step
    :meth:`accumulate`, per step :meth:`end_of_step` (it acts every ``log_every`` steps and
    at the runtime-config poll steps), after each validation :meth:`validation_end`.
    Not thread-safe: call it from the training loop.

    Example:
        >>> import tempfile, torch
        >>> from vsrkit.adaptive import PlateauTracker
        >>> hooks = VsrkitHooks(run_dir=tempfile.mkdtemp(), terms=("mse",), log_every=2,
        ...                     plateau=PlateauTracker(), statistics=False)
        >>> hooks.bind(LocalOps())
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> for step in (1, 2):
        ...     hooks.accumulate({"mse": torch.tensor(1.0 * step)}, torch.tensor(1.0 * step))
        ...     out = hooks.end_of_step(step, opt)
        >>> out.step, out.losses, out.event.reason.value
        (2, {'mse': 1.5, 'total': 1.5}, 'warmup')
    """

    def __init__(
        self,
        *,
        run_dir: str | os.PathLike[str],
        terms: Sequence[str] = (),
        log_every: int = 10,
        plateau: Any = None,
        lr_policy: Any = None,
        loss_weights: Any = None,
        grad_monitor: Any = None,
        runtime_config: Mapping[str, Any] | None = None,
        runtime_schema: Mapping[str, Any] | None = None,
        poll_every: int = 10,
        statistics: bool = True,
        stats_max_delay_steps: int | None = 500,
        tensorboard: bool = False,
        quality_field: str = "quality_ki_value",
    ) -> None:
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise IntegrationError(f"log_every must be an int >= 1, got {log_every!r}")
        if loss_weights is not None:
            if terms and tuple(terms) != tuple(loss_weights.terms):
                raise IntegrationError(
                    f"terms {tuple(terms)} differ from the loss weights' terms "
                    f"{tuple(loss_weights.terms)}"
                )
            terms = loss_weights.terms
        if lr_policy is not None and plateau is None:
            raise IntegrationError("lr_policy needs plateau=PlateauTracker(...) to decide when")
        self.run_dir = Path(run_dir)
        self.terms = tuple(terms)
        self.log_every = log_every
        self.plateau, self.lr_policy, self.loss_weights = plateau, lr_policy, loss_weights
        self.grad_monitor = grad_monitor
        self.quality_field = quality_field
        self._runtime_initial = None if runtime_config is None else dict(runtime_config)
        self._runtime_schema = runtime_schema
        self._poll_every = poll_every
        self._statistics = statistics
        self._stats_delay = stats_max_delay_steps
        self._tensorboard = tensorboard
        self.losses = LossAccumulator(self.terms)
        self.dist: DistOps = LocalOps()
        self.runtime: Any = None
        self.snapshot: Any = None
        self.stats: Any = None
        self.tb: Any = None
        self._bound = False
        self._closed = False
        self._pending_state: Mapping[str, Any] | None = None
        self._pending_quality: float | None = None
        self._config_version = 0
        self._applied: dict[str, Any] = {}  # runtime settings applied to the components
        self._interval_started = time.perf_counter()
        self._last_step: int | None = None

    # ------------------------------------------------------------------ set-up
    def bind(self, dist: DistOps) -> None:
        """Create the rank-dependent pieces (once); files are written on the main rank only."""
        if self._bound:
            return
        from vsrkit.stats import DeferredStatsWriter, MetricsSnapshot, TensorBoardLogger
        from vsrkit.stats.fields import FIELDS

        self.dist = dist
        main = dist.is_main
        if self._runtime_initial is not None:
            from vsrkit.config import RuntimeConfigManager

            self.runtime = RuntimeConfigManager(
                self.run_dir,
                initial=self._runtime_initial,
                poll_every=self._poll_every,
                broadcast=dist.broadcast,
                is_main=main,
                schema=self._runtime_schema,
            )
        self.snapshot = MetricsSnapshot()
        if self._statistics:
            fields = ["learning_rate_value", "total_loss_value"]
            fields += [SEED_LOSS_FIELDS[t] for t in self.terms if t in SEED_LOSS_FIELDS]
            if self.loss_weights is not None:
                fields += [k for k in self.loss_weights.status() if k.endswith("_weight_current")]
            self.stats = DeferredStatsWriter(
                self.run_dir,
                snapshot=self.snapshot,
                training_fields=[f for f in dict.fromkeys(fields) if f in FIELDS],
                max_delay_steps=self._stats_delay,
                is_main=main,
                runtime_config_version=lambda: self._config_version,
            )
        self.tb = TensorBoardLogger(
            self.run_dir / "tensorboard" if self._tensorboard else None, is_main=main
        )
        self._bound = True
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    @property
    def live(self) -> dict[str, Any]:
        """The runtime settings in effect (empty without a runtime config)."""
        return {} if self.runtime is None else self.runtime.current

    def combine(self, losses: Mapping[str, Any], *, step: int) -> Any:
        """Weighted total of the loss tensors with the weights in force at ``step``."""
        w = self.loss_weights
        if w is None:
            raise IntegrationError("combine() needs loss_weights=AdaptiveLossWeights(...)")
        if hasattr(w, "weights_at"):  # LossWarmup: the schedule needs the progress
            return w.combine(losses, progress=step)
        return w.combine(losses)

    # -------------------------------------------------------------- every step
    def accumulate(self, losses: Mapping[str, Any], total: Any) -> None:
        """Add one step's loss tensors (after backward; no host sync)."""
        self.losses.add(losses, total)

    def observe_gradients(self) -> None:
        """Add this step's gradient norms (after backward, before ``zero_grad``)."""
        if self.grad_monitor is not None:
            self.grad_monitor.accumulate()

    def end_of_step(
        self,
        step: int,
        optimizer: Any,
        *,
        schedulers: Iterable[Any] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> IntervalOutcome | None:
        """At a log-interval step: one sync, then the components decide and the hooks act.

        Also polls the runtime config (every rank, same step) and applies accepted changes.
        Call it on every rank after the optimizer step with the step count that includes it.
        """
        if not self._bound:
            raise IntegrationError("VsrkitHooks.bind(...) must be called before end_of_step")
        schedulers = list(schedulers)
        outcome = None
        if step % self.log_every == 0:
            outcome = self._log_interval(step, optimizer, schedulers, extra or {})
        if self.runtime is not None:
            self.apply_changes(self.runtime.poll(step), step, optimizer, schedulers)
        self._last_step = step
        return outcome

    def _log_interval(
        self, step: int, optimizer: Any, schedulers: list[Any], extra: Mapping[str, Any]
    ) -> IntervalOutcome | None:
        seconds = time.perf_counter() - self._interval_started
        steps = self.losses.steps
        m = self.losses.read(self.dist.mean)
        self._interval_started = time.perf_counter()
        if m is None:
            return None
        if m["skipped"]:
            logger.warning(
                "skipped %g step(s) with a non-finite loss before step %d", m["skipped"], step
            )
        out = IntervalOutcome(step, {k: v for k, v in m.items() if k in self.terms or k == "total"})
        lrs = current_lrs(optimizer)
        if m["finite_steps"] and self.plateau is not None:
            quality, self._pending_quality = self._pending_quality, None
            event = self.plateau.update(step, m["total"], quality=quality)
            out.event = event
            if self.lr_policy is not None:
                new = self.lr_policy.on_event(event, step=step, lrs=lrs)
                if new is not None:
                    scale_lrs(optimizer, new, schedulers)
                    logger.info(
                        "plateau at step %d (%s): LRs %s -> %s", step, event.message, lrs, new
                    )
                    self.tb.log_event(
                        f"LR {self.lr_policy.mode} {lrs[0]:.2e} -> {new[0]:.2e}", step
                    )
                    out.new_lrs, lrs = new, new
            self.tb.log_plateau_state(event, step)
        if m["finite_steps"] and self.loss_weights is not None:
            values = {t: m[t] for t in self.terms}
            if hasattr(self.loss_weights, "weights_at"):
                out.weights = self.loss_weights.update(step, values, out.event)
            else:
                out.weights = self.loss_weights.update(step, values, plateau=out.event)
            self.tb.log_weights(out.weights, step)
        metrics: dict[str, Any] = {"step_current": step, "learning_rate_value": lrs[0]}
        if m["finite_steps"]:
            metrics["total_loss_value"] = m["total"]
            for t in self.terms:
                metrics[SEED_LOSS_FIELDS.get(t, f"{t}_loss_value")] = m[t]
            self.tb.log_losses({**{t: m[t] for t in self.terms}, "total": m["total"]}, step)
        if self.loss_weights is not None:
            metrics.update({k: v for k, v in self.loss_weights.status().items() if v is not None})
        if "grad_clip" in self.live and self.live["grad_clip"] is not None:
            metrics["gradient_clip_val"] = self.live["grad_clip"]
        if steps:
            metrics["iteration_duration"] = seconds / steps
        metrics["training_active"] = True
        if self.grad_monitor is not None:
            from vsrkit.adaptive.gradients import log_gradient_norms

            out.gradients = self.grad_monitor.read(step)
            metrics.update(self.grad_monitor.status())
            log_gradient_norms(self.tb, out.gradients)
        metrics.update(extra)
        self.tb.log_lr(lrs[0], step)
        if self.stats is not None:
            out.stats_files = self.stats.observe(step, metrics)
        else:
            self.snapshot.update(step, metrics)
        return out

    # -------------------------------------------------------------- runtime config
    def apply_changes(
        self,
        changes: Sequence[Any],
        step: int,
        optimizer: Any = None,
        schedulers: Iterable[Any] = (),
    ) -> list[str]:
        """Hand each accepted runtime change to the component that owns it; returns the keys
        applied. A change a component refuses is logged and skipped (the rest still apply)."""
        live = self.live
        applied = []
        for change in changes:
            if not change.accepted or change.key is None:
                continue
            key = change.key
            try:
                self._apply_one(key, live, step)
            except VsrkitError as exc:
                logger.warning("runtime change %s not applied at step %d: %s", key, step, exc)
                continue
            applied.append(key)
            if not key.endswith("_weight"):  # settings to re-apply on resume (not weights:
                self._applied[key] = live[key]  # the adapted weights come from their state)
            self._config_version += 1
            self.tb.log_config_change(key, change.old, change.new, step)
        return applied

    def _apply_one(self, key: str, live: Mapping[str, Any], step: int) -> None:
        value = live[key]
        if key in RUNTIME_KEYS and self.plateau is not None:
            self.plateau.configure(**{key: value})
        if key == "cooldown_duration" and self.lr_policy is not None:
            self.lr_policy.configure(cooldown=value)
        elif key in ("max_lr", "min_lr") and self.lr_policy is not None:
            self.lr_policy.configure(max_lr=live.get("max_lr"), min_lr=live.get("min_lr", 0.0))
        elif key == "log_every":
            self.log_every = int(value)
        elif key.endswith("_weight") and self.loss_weights is not None:
            terms = [t for t in self.terms if f"{t}_weight" in live]
            if key[: -len("_weight")] in terms:
                self.loss_weights.configure(
                    weights={t: live[f"{t}_weight"] for t in terms}, step=step
                )

    # -------------------------------------------------------------- validation
    def validation_end(self, step: int, metrics: Mapping[str, float]) -> None:
        """After a validation: freeze its fields for ``Statistik_<step>.json``; the quality
        field (``quality_ki_value``) goes to the plateau tracker at the next interval."""
        from vsrkit.stats.fields import VALIDATION_FIELDS

        values = {k: float(v) for k, v in metrics.items() if k in VALIDATION_FIELDS}
        unknown = sorted(set(metrics) - set(values))
        if unknown:
            raise IntegrationError(
                f"validation fields {unknown} are not statistics validation fields "
                f"(expected some of {', '.join(VALIDATION_FIELDS)})"
            )
        if self.quality_field in values and math.isfinite(values[self.quality_field]):
            self._pending_quality = values[self.quality_field]
        if self.stats is not None:
            self.stats.request(step, values)
        elif values:
            self.snapshot.update(step, values)
        if values:
            self.tb.log_validation(values, step)

    def runtime_snapshot(self, step: int) -> str | None:
        """Write ``runtime_config_step_<step>.json`` (main rank); its name for the manifest."""
        if self.runtime is None:
            return None
        return self.runtime.snapshot(step).name

    def restore_runtime(self, step: int, optimizer: Any = None) -> list[str]:
        """On resume: settings of the checkpoint's snapshot (then newer live edits), applied."""
        if self.runtime is None:
            return []
        return self.apply_changes(self.runtime.restore_snapshot(step, step=step), step, optimizer)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state of every component present (``None`` for the absent ones)."""

        def state(obj: Any) -> Any:
            return None if obj is None else obj.state_dict()

        return {
            "version": _STATE_VERSION,
            "plateau": state(self.plateau),
            "lr_policy": state(self.lr_policy),
            "loss_weights": state(self.loss_weights),
            "grad_monitor": state(self.grad_monitor),
            "runtime_config": state(self.runtime),
            "statistics": state(self.stats),
            "pending_quality": self._pending_quality,
            "config_version": self._config_version,
            "applied_settings": dict(self._applied),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the components' state (before :meth:`bind` it is kept until then) and
        apply again the runtime settings that were in effect (``applied_settings``)."""
        if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION:
            got = state.get("version") if isinstance(state, Mapping) else type(state).__name__
            raise IntegrationError(
                f"vsrkit hooks state: expected a mapping with version {_STATE_VERSION}, got {got!r}"
            )
        missing = [k for k in self.state_dict() if k not in state]
        if missing:
            raise IntegrationError(f"vsrkit hooks state lacks key(s) {', '.join(missing)}")
        applied = state["applied_settings"]
        if not isinstance(applied, Mapping):
            raise IntegrationError("vsrkit hooks state: applied_settings must be a mapping")
        if not self._bound:
            self._pending_state = state
            return
        pairs = [
            ("plateau", self.plateau),
            ("lr_policy", self.lr_policy),
            ("loss_weights", self.loss_weights),
            ("grad_monitor", self.grad_monitor),
            ("runtime_config", self.runtime),
            ("statistics", self.stats),
        ]
        for key, obj in pairs:
            if obj is not None and state[key] is None:
                raise IntegrationError(
                    f"vsrkit hooks state has no {key!r} state, but this run has one"
                )
        for key, obj in pairs:
            if obj is not None:
                obj.load_state_dict(state[key])
        self._pending_quality = state["pending_quality"]
        self._config_version = int(state["config_version"])
        # settings are not part of the components' state: the runtime settings that were in
        # effect at the checkpoint are applied again (constructor values stay for the rest)
        self._applied = dict(applied)
        merged = {**self.live, **self._applied}
        for key in self._applied:
            try:
                self._apply_one(key, merged, self._last_step or 0)
            except VsrkitError as exc:
                logger.warning("runtime setting %s not applied on resume: %s", key, exc)

    def close(self) -> None:
        """Flush pending statistics files and TensorBoard (idempotent)."""
        if self.snapshot is not None and self._last_step is not None:
            self.snapshot.update(self._last_step, training_active=False)
        if self._closed:
            return
        self._closed = True
        if self.stats is not None:
            self.stats.close()
        if self.tb is not None:
            self.tb.close()
