"""Per-module gradient norms, read once per log interval: :class:`GradientMonitor`.

The monitor sums each module's gradient norm on the device after every backward pass (no
host sync) and turns the sums into floats in one ``tolist()`` when the loop reads it. Each
read is one *check*: a module that should train and got no gradient (``None`` or all zeros)
for ``zero_checks`` checks in a row is reported as frozen by mistake, and a module with a
non-finite norm in the interval is reported at once. Importing this module does not import
torch; :meth:`GradientMonitor.accumulate` does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from vsrkit._state import check_state, state_values
from vsrkit.adaptive._common import AdaptiveError, check_int

__all__ = ["GradientMonitor", "GradientReport", "log_gradient_norms"]

log = logging.getLogger(__name__)
STATE_VERSION = 1


class GradientReport(NamedTuple):
    """What one :meth:`GradientMonitor.read` found.

    ``norms`` is each module's mean L2 gradient norm over the finite steps of the interval
    (``None`` when no step of the interval had a finite norm); ``nonfinite`` counts the steps
    with a NaN/inf norm; ``zero_streak`` counts consecutive checks without any gradient;
    ``alerts`` are the warnings of this check (also logged).

    Example:
        >>> r = GradientReport(10, 5, {"head": 0.3}, {"head": 0}, {"head": 0}, [])
        >>> r.to_dict()["norms"]
        {'head': 0.3}
    """

    step: int
    steps: int
    norms: dict[str, float | None]
    nonfinite: dict[str, int]
    zero_streak: dict[str, int]
    alerts: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return self._asdict()


class GradientMonitor:
    """Watches the gradient norm of named modules; warns on frozen or non-finite ones.

    Call :meth:`accumulate` after each ``backward()`` (after unscaling with AMP, before
    ``zero_grad``), and :meth:`read` once per log interval with the caller's step. Under DDP
    the gradients are already averaged over ranks, so every rank reads the same figures.
    Not thread-safe: call it from the loop; :meth:`status` returns a copy for a monitor.

    Args:
        modules: ``{name: module}`` to watch (e.g. ``{"encoder": net.encoder}``).
        frozen: Names of modules that are frozen on purpose (no zero-gradient warning).
        zero_checks: Warn when a module got no gradient for this many checks in a row.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> net[0].weight.requires_grad_(False)
        Parameter containing:...
        >>> net[0].bias.requires_grad_(False)
        Parameter containing:...
        >>> mon = GradientMonitor({"first": net[0], "last": net[1]}, zero_checks=2)
        >>> for step in range(1, 5):
        ...     net(torch.ones(3, 2)).sum().backward()
        ...     mon.accumulate()
        ...     net.zero_grad()
        ...     report = mon.read(step)
        >>> report.zero_streak["first"], report.norms["last"] > 0
        (4, True)
    """

    def __init__(
        self,
        modules: Mapping[str, Any],
        *,
        frozen: Iterable[str] = (),
        zero_checks: int = 3,
    ) -> None:
        owner = "GradientMonitor"
        if not isinstance(modules, Mapping) or not modules:
            raise AdaptiveError(f"{owner}: modules must be a non-empty mapping name -> module")
        self._names = tuple(str(n) for n in modules)
        self._params: list[list[Any]] = []
        for name, module in modules.items():
            params = getattr(module, "parameters", None)
            if not callable(params):
                raise AdaptiveError(
                    f"{owner}: modules[{name!r}] must be a torch module, got {type(module)!r}"
                )
            found = list(params())
            if not found:
                raise AdaptiveError(f"{owner}: modules[{name!r}] has no parameters")
            self._params.append(found)
        self._frozen = frozenset(frozen)
        unknown = sorted(self._frozen - set(self._names))
        if unknown:
            raise AdaptiveError(f"{owner}: frozen names unknown module(s) {', '.join(unknown)}")
        self.zero_checks = check_int(owner, "zero_checks", zero_checks, low=1)
        self._sums: Any = None  # device vector: [norm sums..., non-finite counts...]
        self._index: Any = None  # (key, device tensor: module of each gradient)
        self._steps = 0
        self._streak = {n: 0 for n in self._names}
        self._checks = 0
        self._last: GradientReport | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The watched module names, in order."""
        return self._names

    def accumulate(self) -> None:
        """Add this step's per-module gradient norms to the device sums (no host sync).

        One fused norm over every gradient, then a per-module sum of squares: a handful of
        kernels whatever the number of modules.
        """
        import torch

        grads: list[Any] = []
        owners: list[int] = []
        for i, params in enumerate(self._params):
            for p in params:
                if p.grad is not None:
                    grads.append(p.grad)
                    owners.append(i)
        m = len(self._names)
        if not grads:
            norms = torch.zeros(m, dtype=torch.float64, device=self._params[0][0].device)
        else:
            norms = self._module_norms(torch, grads, owners, m)
        finite = torch.isfinite(norms)
        if self._sums is None or self._sums.device != norms.device:
            self._sums = torch.zeros(2 * m, dtype=torch.float64, device=norms.device)
        self._sums[:m].add_(torch.where(finite, norms, 0.0))
        self._sums[m:].add_(~finite)
        self._steps += 1

    def _module_norms(self, torch: Any, grads: list[Any], owners: list[int], m: int) -> Any:
        device = grads[0].device
        same = all(g.device == device for g in grads)
        if same:
            sq = torch.stack(torch._foreach_norm(grads)).double().square()
            key = (tuple(owners), device)
            if self._index is None or self._index[0] != key:
                self._index = (key, torch.tensor(owners, device=device))
            total = torch.zeros(m, dtype=torch.float64, device=device)
            return total.index_add_(0, self._index[1], sq).sqrt_()
        # gradients on several devices (model parallel): one norm per module, on the first device
        out = torch.zeros(m, dtype=torch.float64, device=device)
        for i in range(m):
            mine = [g for g, o in zip(grads, owners, strict=True) if o == i]
            if mine:
                out[i] = torch.nn.utils.get_total_norm(mine).to(device, torch.float64)
        return out

    def read(self, step: int) -> GradientReport:
        """One check: mean norms of the interval (one host sync), warnings, then reset.

        A check with no accumulated step counts as "no gradient" for every module.
        """
        n = len(self._names)
        values = [0.0] * (2 * n) if self._sums is None else self._sums.tolist()
        steps = self._steps
        if self._sums is not None:
            self._sums.zero_()
        self._steps = 0
        self._checks += 1
        norms: dict[str, float | None] = {}
        nonfinite: dict[str, int] = {}
        alerts: list[str] = []
        for i, name in enumerate(self._names):
            bad = int(round(values[n + i]))
            good = steps - bad
            total = values[i]
            norms[name] = total / good if good > 0 else None
            nonfinite[name] = bad
            if bad:
                alerts.append(
                    f"module {name!r}: non-finite gradient norm in {bad} of {steps} step(s) "
                    f"before step {step}"
                )
            if total > 0.0 and math.isfinite(total):
                self._streak[name] = 0
            elif not bad:
                self._streak[name] += 1
                if name not in self._frozen and self._streak[name] == self.zero_checks:
                    alerts.append(
                        f"module {name!r} got no gradient for {self.zero_checks} checks "
                        f"(up to step {step}): frozen by mistake? (requires_grad, detach, "
                        "unused output); pass frozen=[...] if it is meant to be frozen"
                    )
        for text in alerts:
            log.warning("GradientMonitor: %s", text)
        self._last = GradientReport(step, steps, norms, nonfinite, dict(self._streak), alerts)
        return self._last

    def status(self) -> dict[str, Any]:
        """The last check as fields for a :class:`~vsrkit.stats.MetricsSnapshot`/monitor.

        ``gradient_norms`` maps module -> mean norm (``None`` before the first check or
        without a finite step), ``gradient_zero_streak`` module -> checks without gradient,
        ``gradient_alerts`` the last check's warnings.
        """
        last = self._last
        return {
            "gradient_norms": dict(last.norms) if last else {n: None for n in self._names},
            "gradient_zero_streak": dict(self._streak),
            "gradient_alerts": list(last.alerts) if last else [],
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (streaks and check count; the open interval is not kept)."""
        return {"version": STATE_VERSION, "zero_streak": dict(self._streak), "checks": self._checks}

    def load_state_dict(self, state: Any) -> None:
        """Restore the streaks; settings (modules, ``frozen``, ``zero_checks``) stay."""
        owner = "GradientMonitor state"
        st = check_state("GradientMonitor", state, STATE_VERSION, ("zero_streak", "checks"))
        streak = st["zero_streak"]
        with state_values("GradientMonitor"):
            if not isinstance(streak, Mapping) or set(streak) != set(self._names):
                got = sorted(streak) if isinstance(streak, Mapping) else streak
                raise AdaptiveError(
                    f"{owner}: zero_streak must map exactly the modules {list(self._names)}, "
                    f"got {got!r}"
                )
            new = {n: check_int(owner, f"zero_streak[{n!r}]", streak[n]) for n in self._names}
            checks = check_int(owner, "checks", st["checks"])
        self._streak, self._checks = new, checks


def log_gradient_norms(
    tensorboard: Any, report: GradientReport, *, prefix: str = "Gradients"
) -> None:
    """Write ``<prefix>/<module>`` scalars of a report to a ``TensorBoardLogger``.

    Modules without a finite norm are left out (never a 0 in their place). A logger of
    another rank (``is_main=False``) writes nothing.
    """
    norms = {name: value for name, value in report.norms.items() if value is not None}
    tensorboard.log_scalars(norms, report.step, prefix=prefix)
