"""What a training loop does with the vsrkit components, written once: :class:`LoopCore`.

The reference recipe (``vsrkit train``), the Lightning callbacks and the Accelerate helpers
all call it; each keeps only what is its own (the forward/backward, the optimizer step, the
framework's hooks). Components decide, the core acts:

- every step it sums the losses on the device (no host sync) and sets the LR the loop
  controls (:mod:`vsrkit.loop.lr`);
- every log interval it reads the sums once (averaged over ranks), then the plateau tracker
  decides, the LR policy answers, the loss weights, the grad-clip adapter and the gradient
  monitor update, and the measurements go to the statistics writer and TensorBoard;
- at the runtime-config poll steps it hands each accepted change to the component that owns
  it (one routing table, :data:`vsrkit.loop.routes.ROUTES`);
- after a validation it keeps the best quality, hands the quality to the tracker at the next
  interval and asks for the deferred ``Statistik_<step>.json``;
- it produces and restores one versioned state: the components, the :class:`LoopState` and
  the statistics writer's pending files (so a run killed between a validation and its
  deferred file still writes that file after the resume).

Not thread-safe: call it from the training loop.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsrkit._state import check_state
from vsrkit._terms import loss_field
from vsrkit.errors import StateError, VsrkitError
from vsrkit.loop.dist import DistOps, LocalOps
from vsrkit.loop.errors import LoopError
from vsrkit.loop.lr import LRControl
from vsrkit.loop.routes import route
from vsrkit.loop.state import LoopState
from vsrkit.stats.accumulator import LossAccumulator

__all__ = ["COMPONENTS", "STATE_VERSION", "IntervalOutcome", "LoopCore"]

logger = logging.getLogger("vsrkit.loop")

#: version of :meth:`LoopCore.state_dict`; version 1 (the ``VsrkitHooks`` layout) still loads
STATE_VERSION = 2

#: the components of the core's state, by the name of the core's attribute
COMPONENTS = (
    "plateau",
    "lr_policy",
    "loss_weights",
    "clip",
    "grad_monitor",
    "runtime_config",
    "statistics",
)


@dataclass
class IntervalOutcome:
    """What the core decided at one log interval (every rank agrees on it).

    ``losses`` holds the interval means per term and ``total``; ``event`` the
    ``PlateauEvent`` (``None`` without a tracker or a finite step); ``new_lrs`` the LRs the
    policy set (``None``: no change); ``lrs`` the LR of every group after the interval;
    ``weights`` the loss weights after the update; ``clip_value`` the clip value in force;
    ``gradients`` the ``GradientReport``; ``stats_files`` the statistics files written;
    ``stop`` a reason to stop (``"nonfinite"``: too many non-finite steps in a row).

    Example:
        >>> IntervalOutcome(step=10, losses={"total": 0.2}).new_lrs is None
        True
    """

    step: int
    losses: dict[str, float]
    event: Any = None  # PlateauEvent or None
    new_lrs: list[float] | None = None
    lrs: list[float] | None = None
    weights: dict[str, float] | None = None
    clip_value: float | None = None
    gradients: Any = None  # GradientReport or None
    stats_files: list[Path] = field(default_factory=list)
    stop: str | None = None
    skipped: int = 0


Extra = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


class LoopCore:
    """The vsrkit side of a training loop: accumulate, decide, route, validate, save.

    Build it with the components you want (all optional) and plain settings, then call
    :meth:`bind` once the rank is known (the runtime config, statistics writer and TensorBoard
    are created there; files only where ``dist.is_main``). Per step: :meth:`combine` for the
    weighted loss, :meth:`accumulate` after the backward, :meth:`end_of_step` after the
    optimizer step (it acts every ``log_every`` steps and at the runtime-config poll steps).
    After each validation: :meth:`validation_end`. For a checkpoint: :meth:`state_dict` /
    :meth:`load_state_dict`. At the end: :meth:`close`.

    Args:
        run_dir: The run folder (``runtime_config.json``, statistics, ``tensorboard/``).
        terms: Loss-term names (taken from ``loss_weights`` when given).
        log_every: Steps per log interval (runtime key ``log_every``).
        cadence: More step periods the runtime config may change (e.g. ``{"val_every": 500,
            "ckpt_every": 1000}`` for a loop that asks :attr:`cadence` when to validate).
        plateau: A ``PlateauTracker``; ``lr_policy``: an ``LRBoostPolicy`` acting on it.
        loss_weights: ``AdaptiveLossWeights`` or ``LossWarmup``.
        clip: A ``GradClipAdapter``: fed the interval's mean grad norm (pass ``grad_norm`` to
            :meth:`accumulate`); clip with :attr:`clip_value`.
        grad_monitor: A ``GradientMonitor`` (read once per log interval).
        lr: The LR the loop controls (:class:`~vsrkit.loop.lr.ScheduledLR` or
            :class:`~vsrkit.loop.lr.OptimizerLR`); ``None``: the LR policy has nothing to act
            on (set :attr:`lr` later, e.g. once the optimizer exists).
        runtime_config: The startup value of every runtime key (enables the live file).
        runtime_schema: A runtime-config schema (default: vsrkit's).
        poll_every: Steps between runtime-config polls.
        statistics: Write ``Statistik_<step>.json`` after each validation.
        stats_max_delay_steps: Write an incomplete file this many steps after a validation.
        tensorboard: Write TensorBoard events to ``run_dir/tensorboard``.
        quality_field: The validation field that is "quality" (higher is better).
        max_nonfinite_streak: Stop (``IntervalOutcome.stop``) after this many non-finite
            steps in a row; ``None``: never.

    Example:
        >>> import tempfile, torch
        >>> from vsrkit.adaptive import PlateauTracker
        >>> from vsrkit.loop import LocalOps, LoopCore
        >>> loop = LoopCore(run_dir=tempfile.mkdtemp(), terms=("mse",), log_every=2,
        ...                 plateau=PlateauTracker(), statistics=False)
        >>> loop.bind(LocalOps())
        >>> for step in (1, 2):
        ...     _ = loop.accumulate({"mse": torch.tensor(1.0 * step)}, torch.tensor(1.0 * step))
        ...     out = loop.end_of_step(step)
        >>> out.step, out.losses, out.event.reason.value
        (2, {'mse': 1.5, 'total': 1.5}, 'warmup')
    """

    def __init__(
        self,
        *,
        run_dir: str | os.PathLike[str],
        terms: Sequence[str] = (),
        log_every: int = 10,
        cadence: Mapping[str, int] | None = None,
        plateau: Any = None,
        lr_policy: Any = None,
        loss_weights: Any = None,
        clip: Any = None,
        grad_monitor: Any = None,
        lr: LRControl | None = None,
        runtime_config: Mapping[str, Any] | None = None,
        runtime_schema: Mapping[str, Any] | None = None,
        poll_every: int = 10,
        statistics: bool = True,
        stats_max_delay_steps: int | None = 500,
        tensorboard: bool = False,
        quality_field: str = "quality_ki_value",
        max_nonfinite_streak: int | None = None,
    ) -> None:
        every = {"log_every": log_every, **dict(cadence or {})}
        limits = {**every, "max_nonfinite_streak": max_nonfinite_streak}
        for name, value in limits.items():
            if value is None and name == "max_nonfinite_streak":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LoopError(f"{name} must be an int >= 1, got {value!r}")
        if loss_weights is not None:
            if terms and tuple(terms) != tuple(loss_weights.terms):
                raise LoopError(
                    f"terms {tuple(terms)} differ from the loss weights' terms "
                    f"{tuple(loss_weights.terms)}"
                )
            terms = loss_weights.terms
        if lr_policy is not None and plateau is None:
            raise LoopError("lr_policy needs plateau=PlateauTracker(...) to decide when")
        self.run_dir = Path(run_dir)
        self.terms = tuple(terms)
        #: Step periods in force (``log_every`` and the ``cadence`` given); runtime changes
        #: of these keys land here.
        self.cadence: dict[str, int] = every
        self.plateau, self.lr_policy, self.loss_weights = plateau, lr_policy, loss_weights
        self.clip, self.grad_monitor = clip, grad_monitor
        self.lr: LRControl | None = lr
        self.quality_field = quality_field
        self.max_nonfinite_streak = max_nonfinite_streak
        #: The loop's own variables (step, LR scale, best quality, ...).
        self.state = LoopState()
        self.losses = LossAccumulator(self.terms)
        self.dist: DistOps = LocalOps()
        self.runtime: Any = None
        self.snapshot: Any = None
        self.stats: Any = None
        self.tb: Any = None
        self._runtime_initial = None if runtime_config is None else dict(runtime_config)
        self._runtime_schema = runtime_schema
        self._poll_every = poll_every
        self._statistics = statistics
        self._stats_delay = stats_max_delay_steps
        self._tensorboard = tensorboard
        self._bound = False
        self._closed = False
        self._pending_state: tuple[Mapping[str, Any], bool] | None = None
        # the runtime settings in effect: refreshed only where they change (bind, a change
        # applied, a state loaded), never copied from the manager per step
        self._live: dict[str, Any] = {}
        self._interval_started = time.perf_counter()

    # ------------------------------------------------------------------ set-up
    def bind(self, dist: DistOps, *, purge_step: int | None = None) -> None:
        """Create the rank-dependent pieces (once); files are written on the main rank only.

        Args:
            dist: The process group (``is_main``, ``broadcast``, ``mean``).
            purge_step: On resume, the first step after the checkpoint: TensorBoard hides the
                crashed run's events from there on.
        """
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
            self._live = self.runtime.current
        self.snapshot = MetricsSnapshot()
        if self._statistics:
            # the LR is a required field when the LR control is known now; an adapter that
            # sets it later measures the LR at the same intervals as the losses anyway
            fields = ["learning_rate_value"] if self.lr is not None else []
            fields += ["total_loss_value", *(loss_field(t) for t in self.terms)]
            if self.loss_weights is not None:
                fields += [k for k in self.loss_weights.status() if k.endswith("_weight_current")]
            self.stats = DeferredStatsWriter(
                self.run_dir,
                snapshot=self.snapshot,
                training_fields=[f for f in dict.fromkeys(fields) if f in FIELDS],
                max_delay_steps=self._stats_delay,
                is_main=main,
                runtime_config_version=lambda: self.state.config_version,
            )
        self.tb = TensorBoardLogger(
            self.run_dir / "tensorboard" if self._tensorboard else None,
            is_main=main,
            purge_step=purge_step,
        )
        self._bound = True
        if self._pending_state is not None:
            (state, settings), self._pending_state = self._pending_state, None
            self.load_state_dict(state, settings=settings)

    def _need_bind(self, what: str) -> None:
        if not self._bound:
            raise LoopError(f"LoopCore.bind(...) must be called before {what}")

    @property
    def live(self) -> dict[str, Any]:
        """A copy of the runtime settings in effect (empty without a runtime config)."""
        return dict(self._live)

    @property
    def log_every(self) -> int:
        """Steps per log interval (the runtime key ``log_every`` changes it)."""
        return self.cadence["log_every"]

    @property
    def clip_value(self) -> float | None:
        """The grad-norm clip value in force: the clip adapter's, else the live
        ``grad_clip`` (``None`` without either)."""
        if self.clip is not None:
            return float(self.clip.clip_value)
        value = self._live.get("grad_clip")
        return None if value is None else float(value)

    def combine(self, losses: Mapping[str, Any], *, step: int) -> Any:
        """Weighted total of the loss tensors with the weights in force at ``step``."""
        w = self.loss_weights
        if w is None:
            raise LoopError("combine() needs loss_weights=AdaptiveLossWeights(...)")
        if hasattr(w, "weights_at"):  # LossWarmup: the schedule needs the progress
            return w.combine(losses, progress=step)
        return w.combine(losses)

    # -------------------------------------------------------------- every step
    def accumulate(self, losses: Mapping[str, Any], total: Any, *, grad_norm: Any = None) -> Any:
        """Add one step's loss tensors (and the total grad norm), on the device, no host
        sync. Returns a 0-dim bool tensor: the step was not finite (for the optimizer)."""
        return self.losses.add(losses, total, grad_norm=grad_norm)

    def observe_gradients(self) -> None:
        """Add this step's gradient norms (after backward, before ``zero_grad``)."""
        if self.grad_monitor is not None:
            self.grad_monitor.accumulate()

    def begin(self, step: int) -> None:
        """Start (or resume) at ``step``: the interval clock starts, the LR is set."""
        self._need_bind("begin")
        self.state.step = int(step)
        self._interval_started = time.perf_counter()
        if self.lr is not None:
            self.lr.refresh(step, self.state, self._live)

    def at_interval(self, step: int, *, last: bool = False) -> bool:
        """Whether :meth:`end_of_step` at ``step`` ends a log interval."""
        return step % self.log_every == 0 or last

    def end_of_step(
        self, step: int, *, extra: Extra = None, last: bool = False
    ) -> IntervalOutcome | None:
        """After the optimizer step ``step`` (counting it): the LR of the step, then at a
        log-interval step one sync and the decisions, then at a poll step the runtime changes.

        Call it on every rank. ``extra`` adds fields to the interval's measurements (a
        mapping, or a function called only at an interval); ``last`` makes the step end an
        interval whatever ``log_every`` says (the last step of a run).

        Returns:
            The interval's outcome, ``None`` on the other steps. With ``outcome.stop`` set
            the core decided nothing else: stop the loop.
        """
        self._need_bind("end_of_step")
        self.state.step = int(step)
        if self.lr is not None:
            self.lr.refresh(step, self.state, self._live)
        outcome = None
        if self.at_interval(step, last=last):
            outcome = self._interval(step, extra)
            if outcome is not None and outcome.stop:
                return outcome
        if self.runtime is not None:
            self.apply_changes(self.runtime.poll(step), step)
        return outcome

    def _interval(self, step: int, extra: Extra) -> IntervalOutcome | None:
        seconds = time.perf_counter() - self._interval_started
        steps = self.losses.steps
        m = self.losses.read(self.dist.mean)
        self._interval_started = time.perf_counter()
        if m is None:
            return None
        out = IntervalOutcome(
            step,
            {k: v for k, v in m.items() if k in self.terms or k == "total"},
            skipped=int(m["skipped"]),
        )
        limit = self.max_nonfinite_streak
        if limit is not None and m["max_streak"] >= limit:
            logger.error(
                "%d non-finite losses in a row before step %d: stopping",
                int(m["max_streak"]),
                step,
            )
            out.stop = "nonfinite"
            return out
        if m["skipped"]:
            logger.warning(
                "skipped %d step(s) with a non-finite loss before step %d", int(m["skipped"]), step
            )
        live = self._live
        lrs = self.lr.lrs() if self.lr is not None else None
        finite = bool(m["finite_steps"])
        if finite:
            self._decide(step, m, out, lrs, live)
        if self.lr is not None:
            out.lrs = self.lr.refresh(step, self.state, live) if out.new_lrs else lrs
        out.clip_value = self.clip_value
        metrics: dict[str, Any] = {"step_current": step}
        if out.lrs:
            metrics["learning_rate_value"] = out.lrs[0]
            self.tb.log_lr(out.lrs[0], step)
        if finite:
            metrics["total_loss_value"] = m["total"]
            metrics.update({loss_field(t): m[t] for t in self.terms})
            self.tb.log_losses({**{t: m[t] for t in self.terms}, "total": m["total"]}, step)
        if self.loss_weights is not None:
            metrics.update(self.loss_weights.status())
        metrics["gradient_clip_val"] = out.clip_value
        if steps:
            metrics["iteration_duration"] = seconds / steps
        metrics["training_active"] = True
        if self.grad_monitor is not None:
            from vsrkit.adaptive.gradients import log_gradient_norms

            out.gradients = self.grad_monitor.read(step)
            metrics.update(self.grad_monitor.status())
            log_gradient_norms(self.tb, out.gradients)
        if extra is not None:
            metrics.update(extra() if callable(extra) else extra)
        metrics = {k: v for k, v in metrics.items() if v is not None}
        if self.stats is not None:
            out.stats_files = self.stats.observe(step, metrics)
        else:
            self.snapshot.update(step, metrics)
        return out

    def _decide(
        self,
        step: int,
        m: Mapping[str, float],
        out: IntervalOutcome,
        lrs: list[float] | None,
        live: Mapping[str, Any],
    ) -> None:
        """The components decide on the interval's means; the core acts."""
        if self.plateau is not None:
            quality, self.state.pending_quality = self.state.pending_quality, None
            event = self.plateau.update(step, m["total"], quality=quality)
            out.event = event
            if self.lr_policy is not None and self.lr is not None and lrs and event.triggered:
                new = self.lr_policy.on_event(event, step=step, lrs=lrs)
                if new is not None:
                    now = self.lr.set(new, step, self.state, live)
                    logger.info(
                        "Plateau at step %d (%s): LR %.2e -> %.2e",
                        step,
                        event.message,
                        lrs[0],
                        now[0],
                    )
                    self.tb.log_event(
                        f"LR {self.lr_policy.mode} {lrs[0]:.2e} -> {now[0]:.2e}", step
                    )
                    out.new_lrs = now
            self.tb.log_plateau_state(event, step)
        if self.loss_weights is not None:
            values = {t: m[t] for t in self.terms}
            out.weights = self.loss_weights.update(step, values, plateau=out.event)
            self.tb.log_weights(out.weights, step)
        if self.clip is not None and "grad_norm" in m:
            self.clip.observe(step, m["grad_norm"])
            start = live.get("grad_clip")
            if not self.state.clip_reported and start is not None and self.clip.clip_value != start:
                self.state.clip_reported = True
                logger.info(
                    "grad clip: the adaptive value %.3g is in force from step %d (the runtime "
                    "grad_clip %.3g was its start; set grad_clip live to pin a value)",
                    self.clip.clip_value,
                    step,
                    start,
                )

    # -------------------------------------------------------------- runtime config
    def apply_changes(self, changes: Sequence[Any], step: int) -> list[str]:
        """Hand each accepted runtime change to the component that owns it (the routing table);
        returns the keys applied. A change a component refuses is logged and skipped (the
        rest still apply); then the LR follows the settings in force."""
        accepted = [c for c in changes if c.accepted and c.key is not None]
        if not accepted:
            return []  # nothing changed: the settings in force stay as they are
        if self.runtime is not None:
            self._live = self.runtime.current  # the settings in effect change only here
        live = self._live
        applied = []
        for change in accepted:
            key = change.key
            try:
                self._route(key, live, step)
            except VsrkitError as exc:
                logger.warning("runtime change %s not applied at step %d: %s", key, step, exc)
                continue
            applied.append(key)
            if not key.endswith("_weight"):  # settings to apply again on resume (not the
                self.state.applied_settings[key] = live[key]  # weights: they have a state)
            self.state.config_version += 1
            self.tb.log_config_change(key, change.old, change.new, step)
        if applied and self.lr is not None:
            self.lr.refresh(step, self.state, live)
        return applied

    def _route(self, key: str, live: Mapping[str, Any], step: int) -> None:
        owners = {"plateau": self.plateau, "lr_policy": self.lr_policy, "clip": self.clip}
        route(key, live, step, owners=owners, weights=self.loss_weights, cadence=self.cadence,
              terms=self.terms)  # fmt: skip

    def restore_runtime(self, step: int) -> list[str]:
        """On resume (adapters): the settings of the checkpoint's runtime snapshot, then any
        newer edit of the live file, applied."""
        if self.runtime is None:
            return []
        return self.apply_changes(self.runtime.restore_snapshot(step, step=step), step)

    def runtime_snapshot(self, step: int) -> str | None:
        """Write ``runtime_config_step_<step>.json`` (main rank); its name for the manifest."""
        if self.runtime is None:
            return None
        return str(self.runtime.snapshot(step).name)

    # -------------------------------------------------------------- validation
    def validation_end(
        self, step: int, metrics: Mapping[str, float], *, extra: Mapping[str, float] | None = None
    ) -> bool:
        """After a validation at ``step``: keep the best quality, hand the quality to the
        plateau tracker at the next interval, and freeze the fields for the deferred
        ``Statistik_<step>.json`` (``best_quality_ever`` added). ``extra`` numbers (e.g. a
        PSNR) go to TensorBoard (``Quality/<name>``) only. Returns whether the quality is a
        new best.

        Raises:
            LoopError: A field that is not a statistics validation field.
        """
        self._need_bind("validation_end")
        from vsrkit.stats.fields import VALIDATION_FIELDS

        unknown = sorted(set(metrics) - set(VALIDATION_FIELDS))
        if unknown:
            raise LoopError(
                f"validation fields {unknown} are not statistics validation fields "
                f"(expected some of {', '.join(VALIDATION_FIELDS)})"
            )
        values = {k: float(v) for k, v in metrics.items()}
        quality = values.get(self.quality_field)
        improved = False
        if quality is not None and math.isfinite(quality):
            self.state.pending_quality = quality
            best = self.state.best_quality
            improved = best is None or quality > best
            if improved:
                self.state.best_quality = quality
        if self.state.best_quality is not None and values:
            values["best_quality_ever"] = self.state.best_quality
        if self.stats is not None:
            self.stats.request(step, values)
        elif values:
            self.snapshot.update(step, values)
        shown = {**values, **{k: float(v) for k, v in (extra or {}).items()}}
        if shown:
            self.tb.log_quality(shown, step)
            self.tb.log_validation(shown, step)
        return improved

    # ------------------------------------------------------------------ state
    def _components(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau,
            "lr_policy": self.lr_policy,
            "loss_weights": self.loss_weights,
            "clip": self.clip,
            "grad_monitor": self.grad_monitor,
            "runtime_config": self.runtime,
            "statistics": self.stats,
        }

    def state_dict(self) -> dict[str, Any]:
        """One versioned, JSON-safe state: ``{"version", "loop": LoopState, "components":
        {name: state or None}}`` (one host sync for the open interval's sums)."""
        self.state.interval = self.losses.state_dict()  # also the non-finite streak
        if self.lr is not None:
            self.state.schedule = self.lr.schedule_state()
        components = {
            name: None if obj is None else obj.state_dict()
            for name, obj in self._components().items()
        }
        return {"version": STATE_VERSION, "loop": self.state.state_dict(), "components": components}

    def load_state_dict(self, state: Mapping[str, Any], *, settings: bool = True) -> None:
        """Restore the loop state and every component present (before :meth:`bind` it is
        kept until then).

        A component of this core that the state lacks starts fresh (a warning says which).
        With ``settings`` (the adapters' resume) the runtime config's state is loaded and the
        runtime settings that were in effect (``applied_settings``) are applied again; the
        reference recipe passes ``False``: it merges the settings itself (the command line
        wins) and builds the components from them.

        All or nothing: the loop state and the open interval's sums are checked before any
        component is touched, and when a component refuses its part, the components loaded
        before it get their previous state back.

        Raises:
            StateError: A state of another version, a missing key or a bad value (nothing
                is loaded then).
        """
        state = upgrade_state(state)
        loop = LoopState.from_state_dict(state["loop"])  # checked before anything is loaded
        if not self._bound:
            self._pending_state = (state, settings)
            return
        if loop.interval is not None:  # checked on a scratch accumulator first
            LossAccumulator(self.terms).load_state_dict(loop.interval)
        comps = state["components"]
        todo, missing = [], []
        for name, obj in self._components().items():
            if obj is None or (name == "runtime_config" and not settings):
                continue
            if comps.get(name) is None:
                missing.append(name)
            else:
                todo.append((obj, comps[name]))
        previous = [copy.deepcopy(obj.state_dict()) for obj, _ in todo]
        for i, (obj, saved) in enumerate(todo):
            try:
                obj.load_state_dict(saved)
            except BaseException:
                self._roll_back(todo[: i + 1], previous)  # the refusing one too: it may be
                raise  # half-loaded if it is not one of vsrkit's (they check first)
        for name in missing:
            logger.warning("the checkpoint has no %s state: it starts fresh", name)
        if self.runtime is not None:
            self._live = self.runtime.current
        self.state = loop
        if loop.interval is not None:
            self.losses.load_state_dict(loop.interval)
        if not settings:
            return
        # settings are not part of the components' state: those in effect at the checkpoint
        # are applied again (constructor values stay for the rest)
        merged = {**self._live, **loop.applied_settings}
        for key in loop.applied_settings:
            try:
                self._route(key, merged, loop.step)
            except VsrkitError as exc:
                logger.warning("runtime setting %s not applied on resume: %s", key, exc)

    @staticmethod
    def _roll_back(loaded: Sequence[tuple[Any, Any]], previous: Sequence[Any]) -> None:
        """Give the components of ``loaded`` their ``previous`` states again (last first)."""
        for (obj, _), old in reversed(list(zip(loaded, previous, strict=False))):
            try:
                obj.load_state_dict(old)
            except Exception:  # keep the original error; say that this one stays changed
                logger.exception("%s: its previous state could not be put back", type(obj).__name__)

    def close(self) -> None:
        """Flush pending statistics files and TensorBoard (idempotent)."""
        if self.snapshot is not None:
            self.snapshot.update(self.state.step, training_active=False)
        if self._closed:
            return
        self._closed = True
        if self.stats is not None:
            self.stats.close()
        if self.tb is not None:
            self.tb.close()


def upgrade_state(state: Any) -> dict[str, Any]:
    """A :meth:`LoopCore.state_dict` of this version from one of any known version.

    Version 1 is the flat layout of ``VsrkitHooks`` (the adapters before the loop core).

    Raises:
        StateError: Another version, a missing key or a wrong shape.
    """
    st = check_state("LoopCore", state, STATE_VERSION, older=(1,))
    if st["version"] == STATE_VERSION:
        st = check_state("LoopCore", st, STATE_VERSION, ("loop", "components"))
        if not isinstance(st["components"], Mapping):
            raise StateError("LoopCore state: components must be a mapping")
        return dict(st)
    old = ("plateau", "lr_policy", "loss_weights", "grad_monitor", "runtime_config")
    keys = (*old, "statistics", "pending_quality", "config_version", "applied_settings")
    check_state("LoopCore", st, 1, keys)
    loop = LoopState(
        pending_quality=st["pending_quality"],
        config_version=st["config_version"],
        applied_settings=st["applied_settings"],
    ).state_dict()
    components = {name: st.get(name) for name in COMPONENTS}
    return {"version": STATE_VERSION, "loop": loop, "components": components}
