"""The layout of a ``vsrkit train`` checkpoint, and the reading of older layouts.

A checkpoint of the reference recipe holds (version 2)::

    {"format": "vsrkit-train", "version": 2,
     "model": ..., "optimizer": ..., "scaler": ..., "rng": ...,  # torch state dicts
     "train": {"config": {...}, "runtime_snapshot": "runtime_config_step_N.json"},
     "vsrkit": LoopCore.state_dict()}                              # components + LoopState

Checkpoints written before the loop core (no ``"format"``: ``"components"`` with the tracker,
LR policy, weights and clip, and ``"loop"`` with the loop's variables) are migrated when read;
they carry no pending statistics file. One that cannot be migrated is one clear error that
says how to go on.

Example:
    >>> old = {"model": {}, "optimizer": {}, "scaler": {}, "rng": {}, "interval": None,
    ...        "components": {"tracker": {}, "lr_policy": {}, "weights": {}, "clip": {}},
    ...        "loop": {"lr_scale": 1.0, "best_quality": 0.5, "config_version": 0,
    ...                 "pending_quality": None, "config": {"model": "tiny"}}}
    >>> state = read_train_state(old, step=10, where="ckpt.pth")
    >>> state["train"]["config"], state["vsrkit"]["loop"]["best_quality"]
    ({'model': 'tiny'}, 0.5)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vsrkit.loop import LoopState
from vsrkit.train.errors import ResumeError

__all__ = ["TRAIN_FORMAT", "STATE_VERSION", "read_train_state", "train_state"]

logger = logging.getLogger(__name__)

TRAIN_FORMAT = "vsrkit-train"
#: version of the recipe's checkpoint layout; version 1 (before the loop core) is migrated
STATE_VERSION = 2
_TORCH_KEYS = ("model", "optimizer", "scaler", "rng")


def train_state(
    torch_states: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    runtime_snapshot: str | None,
    loop_state: Mapping[str, Any],
) -> dict[str, Any]:
    """The checkpoint state of the recipe: ``torch_states`` (model, optimizer, scaler, rng),
    the startup settings, the runtime snapshot's name and the loop core's state."""
    return {
        "format": TRAIN_FORMAT,
        "version": STATE_VERSION,
        **{k: torch_states[k] for k in _TORCH_KEYS},
        "train": {"config": dict(config), "runtime_snapshot": runtime_snapshot},
        "vsrkit": dict(loop_state),
    }


def _cannot(where: str, step: int, why: str) -> ResumeError:
    return ResumeError(
        f"{where}: the checkpoint of step {step} cannot be continued by this vsrkit ({why}); "
        f"start a new run, or keep its weights with `vsrkit train --init-weights {where}`"
    )


def read_train_state(state: Mapping[str, Any], *, step: int, where: str) -> dict[str, Any]:
    """``state`` in the current layout (an older one migrated).

    Args:
        state: What the checkpoint file holds.
        step: The checkpoint's step (older layouts do not carry it).
        where: The file, for the message.

    Raises:
        ResumeError: A layout this version cannot continue (one line that says how to go on).
    """
    if state.get("format") == TRAIN_FORMAT:
        version = state.get("version")
        if version != STATE_VERSION:
            raise _cannot(where, step, f"its layout version is {version!r}")
        missing = [k for k in (*_TORCH_KEYS, "train", "vsrkit") if k not in state]
        if missing:
            raise _cannot(where, step, f"it lacks {', '.join(missing)}")
        return dict(state)
    return _migrate_v1(state, step=step, where=where)


def _migrate_v1(state: Mapping[str, Any], *, step: int, where: str) -> dict[str, Any]:
    """The layout before the loop core: ``components`` and ``loop`` beside the torch states."""
    comp, loop = state.get("components"), state.get("loop")
    if not isinstance(comp, Mapping) or not isinstance(loop, Mapping):
        raise _cannot(where, step, "it is not a vsrkit train checkpoint of a known layout")
    missing = [k for k in _TORCH_KEYS if k not in state]
    missing += [f"components.{k}" for k in ("tracker", "lr_policy", "weights", "clip")
                if k not in comp]  # fmt: skip
    missing += [f"loop.{k}" for k in ("lr_scale", "best_quality", "config_version")
                if k not in loop]  # fmt: skip
    if missing:
        raise _cannot(where, step, f"it lacks {', '.join(missing)}")
    pending = loop.get("pending_quality")
    if isinstance(pending, Mapping):  # the whole validation result was kept
        pending = pending.get("quality_ki_value")
    loop_state = LoopState(
        step=step,
        lr_scale=loop["lr_scale"],
        best_quality=loop["best_quality"],
        pending_quality=pending,
        config_version=loop["config_version"],
        clip_reported=bool(loop.get("clip_reported", False)),
        schedule=loop.get("schedule"),
        interval=state.get("interval"),
    )
    logger.info("%s: a checkpoint of an earlier vsrkit (layout 1), read as layout 2", where)
    return train_state(
        state,
        config=loop.get("config") or {},
        runtime_snapshot=loop.get("runtime_snapshot"),
        loop_state={
            "version": 2,
            "loop": loop_state.state_dict(),
            "components": {
                "plateau": comp["tracker"],
                "lr_policy": comp["lr_policy"],
                "loss_weights": comp["weights"],
                "clip": comp["clip"],
                "grad_monitor": None,
                "runtime_config": None,
                "statistics": None,  # not saved before: a pending file cannot come back
            },
        },
    )
