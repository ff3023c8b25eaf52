"""The one routing table: an accepted runtime change to the component that owns it.

Example:
    >>> from vsrkit.adaptive import PlateauTracker
    >>> tracker, cadence = PlateauTracker(), {"log_every": 10}
    >>> live = {"plateau_patience": 400, "log_every": 20}
    >>> for key in live:
    ...     route(key, live, 100, owners={"plateau": tracker}, cadence=cadence)
    >>> tracker.patience, cadence
    (400, {'log_every': 20})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vsrkit.adaptive.plateau import RUNTIME_KEYS

__all__ = ["ROUTES", "route"]

_LR_BOUNDS = {"max_lr": "max_lr", "min_lr": "min_lr"}

#: runtime key -> the components that own it: ``(core attribute, {runtime key: setting})``.
#: The core calls ``component.configure(setting=value, ...)`` with every key of the group taken
#: from the settings in force, so a pair that is checked together (``min_lr <= max_lr``) goes
#: in one call. ``<term>_weight`` keys go to the loss weights (all terms at once, the sum is
#: checked); ``log_every`` and the core's other cadences (``val_every``, ``ckpt_every``, ...)
#: to :attr:`LoopCore.cadence`.
ROUTES: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    # the plateau tracker's keys are its own map (RUNTIME_KEYS: key -> its setting)
    **{key: (("plateau", {key: setting}),) for key, setting in RUNTIME_KEYS.items()},
    "cooldown_duration": (
        ("plateau", {"cooldown_duration": RUNTIME_KEYS["cooldown_duration"]}),
        ("lr_policy", {"cooldown_duration": "cooldown"}),
    ),
    "max_lr": (("lr_policy", _LR_BOUNDS),),
    "min_lr": (("lr_policy", _LR_BOUNDS),),
    "grad_clip": (("clip", {"grad_clip": "grad_clip"}),),
}


def route(
    key: str,
    live: Mapping[str, Any],
    step: int,
    *,
    owners: Mapping[str, Any],
    weights: Any = None,
    cadence: dict[str, int] | None = None,
    terms: Sequence[str] = (),
) -> None:
    """Hand the runtime setting ``key`` (its value in ``live``, the settings in force) to its
    owner(s): ``owners[attr].configure(...)`` by :data:`ROUTES`, the cadence, or (for
    ``<term>_weight``) ``weights.configure(weights={every term in live}, step=step)``.

    Raises:
        VsrkitError: A component refuses the value (nothing of that component changes).
    """
    for attr, settings in ROUTES.get(key, ()):
        owner = owners.get(attr)
        if owner is not None:
            owner.configure(**{name: live[k] for k, name in settings.items() if k in live})
    if cadence is not None and key in cadence:
        cadence[key] = int(live[key])
    elif key.endswith("_weight") and weights is not None:
        present = [t for t in terms if f"{t}_weight" in live]
        if key[: -len("_weight")] in present:
            weights.configure(weights={t: live[f"{t}_weight"] for t in present}, step=step)
