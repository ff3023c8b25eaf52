"""Loss terms summed on the device between two log intervals: no host sync per step.

A training step adds its loss tensors (and, if it has one, the gradient norm); a step whose
total or norm is not finite is left out of the sums and counted as skipped. Once per log
interval :meth:`LossAccumulator.read` turns the sums into floats with one ``tolist()``
(after an optional mean over ranks). Importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vsrkit._state import check_state
from vsrkit.errors import StateError, VsrkitError

__all__ = ["LossAccumulator"]

STATE_VERSION = 1


class LossAccumulator:
    """Means of named loss terms over the finite steps of one log interval.

    The sums live in one small tensor on the losses' device: ``[terms..., total, grad_norm,
    finite steps, skipped steps, current non-finite streak, longest streak]``. The streak of
    non-finite steps in a row runs on across reads, so a loop can stop after N in a row even
    when they straddle a log interval.

    Args:
        terms: Names of the loss terms every :meth:`add` must provide.

    Example:
        >>> import torch
        >>> acc = LossAccumulator(("l1",))
        >>> _ = acc.add({"l1": torch.tensor(0.5)}, torch.tensor(0.5))
        >>> _ = acc.add({"l1": torch.tensor(1.0)}, torch.tensor(float("nan")))
        >>> acc.read()
        {'l1': 0.5, 'total': 0.5, 'finite_steps': 1.0, 'skipped': 1.0, 'max_streak': 1.0}
    """

    def __init__(self, terms: Sequence[str]) -> None:
        self.terms = tuple(terms)
        self._sums: Any = None
        self._streak: Any = None  # carried across reads
        self._with_norm = False
        self.steps = 0  # steps added since the last read (host-side count)

    def add(self, losses: Mapping[str, Any], total: Any, *, grad_norm: Any = None) -> Any:
        """Add one step's 0-dim loss tensors, the weighted ``total`` and the ``grad_norm``.

        Returns:
            A 0-dim bool tensor, True when the step was not finite (for the optimizer's skip).

        Raises:
            VsrkitError: ``losses`` lacks one of the terms.
        """
        import torch

        missing = [t for t in self.terms if t not in losses]
        if missing:
            raise VsrkitError(
                f"the training step returned no loss for term(s) {', '.join(missing)} "
                f"(got {', '.join(map(str, losses)) or 'none'})"
            )
        n = len(self.terms)
        ref = torch.as_tensor(total)
        norm = ref.new_zeros(()) if grad_norm is None else grad_norm
        try:  # the usual case: 0-d tensors on one device
            vec = torch.stack([*(losses[t] for t in self.terms), total, norm]).detach()
        except (RuntimeError, TypeError, ValueError):
            vec = torch.stack(
                [
                    torch.as_tensor(v).detach().reshape(()).to(ref.device, torch.float32)
                    for v in (*(losses[t] for t in self.terms), total, norm)
                ]
            )
        vec = vec.reshape(n + 2).float()
        bad = ~(torch.isfinite(vec[n]) & torch.isfinite(vec[n + 1]))
        if self._sums is None:
            self._sums = torch.zeros(n + 6, dtype=torch.float32, device=vec.device)
            if self._streak is not None:
                self._sums[n + 4 :] = self._streak.to(vec.device)
        elif self._sums.device != vec.device:  # e.g. restored on the CPU, the losses on a GPU
            self._sums = self._sums.to(vec.device)
        s, badf = self._sums, bad.float()
        s[: n + 2] += torch.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0) * (1.0 - badf)
        s[n + 2] += 1.0 - badf
        s[n + 3] += badf
        s[n + 4] = (s[n + 4] + badf) * badf
        s[n + 5] = torch.maximum(s[n + 5], s[n + 4])
        self._with_norm = self._with_norm or grad_norm is not None
        self.steps += 1
        return bad

    def read(self, mean: Callable[[Any], Any] | None = None) -> dict[str, float] | None:
        """Means per term, ``total`` (and ``grad_norm`` when norms were added) over the finite
        steps, plus ``finite_steps``, ``skipped`` and ``max_streak``; averaged over ranks by
        ``mean``. A term with no finite step is NaN, never 0. ``None`` when nothing was added.
        """
        if self._sums is None or self.steps == 0:
            return None
        n = len(self.terms)
        vec = (mean(self._sums) if mean is not None else self._sums).tolist()
        self._streak = self._sums[n + 4 :].clone()
        self._streak[1] = self._streak[0]  # the longest streak restarts from the current one
        self._sums, self.steps = None, 0
        finite = vec[n + 2]
        out = {t: (vec[i] / finite if finite else math.nan) for i, t in enumerate(self.terms)}
        out["total"] = vec[n] / finite if finite else math.nan
        if self._with_norm:
            out["grad_norm"] = vec[n + 1] / finite if finite else math.nan
        out.update(finite_steps=finite, skipped=vec[n + 3], max_streak=vec[n + 5])
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (one host sync: call it when saving a checkpoint)."""
        return {
            "version": STATE_VERSION,
            "terms": list(self.terms),
            "sums": None if self._sums is None else self._sums.tolist(),
            "streak": None if self._streak is None else self._streak.tolist(),
            "with_norm": self._with_norm,
            "steps": self.steps,
        }

    def load_state_dict(self, state: Mapping[str, Any], *, device: Any = "cpu") -> None:
        """Restore :meth:`state_dict` output onto ``device``.

        Raises:
            StateError: A state of another version, for other terms, or with bad sums.
        """
        import torch

        keys = ("terms", "sums", "streak", "with_norm", "steps")
        check_state("LossAccumulator", state, STATE_VERSION, keys)
        if list(state["terms"]) != list(self.terms):
            raise StateError(
                f"LossAccumulator state: it is for the terms {list(state['terms'])}, "
                f"this accumulator sums {list(self.terms)}"
            )
        n = len(self.terms)
        for key, size in (("sums", n + 6), ("streak", 2)):
            value = state[key]
            if value is not None and (
                not isinstance(value, list)
                or len(value) != size
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            ):
                raise StateError(f"LossAccumulator state: {key} must be null or {size} numbers")
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise StateError(f"LossAccumulator state: steps must be an int >= 0, got {steps!r}")

        def tensor(values: Any) -> Any:
            return None if values is None else torch.tensor(values, device=device)

        self._sums, self._streak = tensor(state["sums"]), tensor(state["streak"])
        self._with_norm, self.steps = bool(state["with_norm"]), int(state["steps"])
