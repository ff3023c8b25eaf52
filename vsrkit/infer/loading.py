"""A trained model, ready for inference, from what ``vsrkit train`` leaves behind.

:func:`load_model` takes a checkpoint file, a run folder (its newest valid checkpoint, the best
one, or a given step, chosen with :mod:`vsrkit.checkpoint`'s listing), a checkpoint state
already in memory, or a bare ``state_dict`` plus a preset name. The architecture comes from the
training config the checkpoint carries (read by :func:`checkpoint_config`), never from a guess:
a bare state dict needs ``preset=``. Files are read with ``torch.load(weights_only=True)``.

:func:`read_checkpoint` does the reading alone and returns a :class:`LoadedCheckpoint` (weights,
architecture, config, step, path): ``vsrkit eval`` uses its config to rebuild the run's own
validation clips. Other weight formats (published BasicSR/mmagic files) produce the same two
things, an architecture and a state dict, and build through :func:`build_model_from`.

Example:
    >>> import torch
    >>> from vsrkit.vsr import build_model
    >>> net = load_model(build_model("tiny").state_dict(), preset="tiny", device="cpu")
    >>> net.num_feat, net.training
    (16, False)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vsrkit.infer.errors import InferenceOptionError, ModelLoadError

__all__ = [
    "LoadedCheckpoint",
    "architecture_from_config",
    "build_model_from",
    "checkpoint_config",
    "load_model",
    "read_checkpoint",
    "read_weights",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: Where a checkpoint state keeps the training config (``TrainConfig.to_dict()``), first match
#: wins. The recipe writes ``state["train"]["config"]`` (checkpoint layout 2, see
#: :mod:`vsrkit.train.state`); checkpoints before the loop core wrote ``state["loop"]["config"]``.
CONFIG_LOCATIONS: tuple[tuple[str, ...], ...] = (
    ("train", "config"),  # vsrkit train's layout
    ("loop", "config"),  # the layout before the loop core
)
WHICH = ("latest", "best")


def checkpoint_config(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training config a vsrkit checkpoint state carries, or ``None`` when it has none.

    Looks in every place of :data:`CONFIG_LOCATIONS`; a value that is not a mapping counts as
    absent.

    Example:
        >>> checkpoint_config({"train": {"config": {"model": "tiny"}}})
        {'model': 'tiny'}
        >>> checkpoint_config({"loop": {"config": {"model": "small"}}})  # before the loop core
        {'model': 'small'}
        >>> checkpoint_config({"model": {}}) is None
        True
    """
    for path in CONFIG_LOCATIONS:
        node: Any = state
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            return dict(node)
    return None


def architecture_from_config(config: Mapping[str, Any], *, where: str = "config") -> dict[str, Any]:
    """``BidirectionalRecurrentVSR`` keyword arguments from a training config.

    Reads ``model`` (the preset), ``n_feats`` and ``n_blocks`` (overrides), ``scale`` and, when
    present, ``skip``.

    Raises:
        ModelLoadError: no ``model`` key, an unknown preset, or a scale the model lacks.
    """
    from vsrkit.vsr.model import PRESETS

    preset = config.get("model")
    if not isinstance(preset, str):
        raise ModelLoadError(f"{where}: the training config has no model preset ('model')")
    if preset not in PRESETS:
        raise ModelLoadError(
            f"{where}: unknown model preset {preset!r}; this vsrkit knows {sorted(PRESETS)}"
        )
    scale = config.get("scale", 4)
    if scale != 4:
        raise ModelLoadError(f"{where}: trained for scale {scale!r}, but the model upsamples x4")
    p = PRESETS[preset]
    arch: dict[str, Any] = {
        "num_feat": p.num_feat,
        "num_blocks": p.num_blocks,
        "spynet_levels": p.spynet_levels,
        "spynet_widths": p.spynet_widths,
    }
    for key, arg in (("n_feats", "num_feat"), ("n_blocks", "num_blocks")):
        value = config.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelLoadError(f"{where}: {key} must be an int >= 1, got {value!r}")
            arch[arg] = value
    if config.get("skip") is not None:
        arch["skip"] = config["skip"]
    return arch


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model's weights and what they need, as read from a checkpoint.

    Attributes:
        state_dict: the model's tensors (``BidirectionalRecurrentVSR`` key names).
        architecture: the model's constructor arguments.
        config: the training config the checkpoint carries, ``None`` for a bare state dict.
        path: the file read, ``None`` when given in memory.
        step: the training step, when known.
        preset: the model preset name.
    """

    state_dict: dict[str, Tensor]
    architecture: dict[str, Any]
    config: dict[str, Any] | None = None
    path: Path | None = None
    step: int | None = None
    preset: str | None = None

    def describe(self) -> str:
        """``path (step N, preset)`` for logs and summaries."""
        where = str(self.path) if self.path is not None else "state dict in memory"
        bits = [f"step {self.step}"] if self.step is not None else []
        if self.preset:
            bits.append(f"{self.preset} model")
        return f"{where} ({', '.join(bits)})" if bits else where


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA when available, else the CPU; ``"cuda"`` without CUDA is an error.

    Raises:
        InferenceOptionError: an unknown device, or CUDA on a machine without it.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InferenceOptionError(f"unknown device {device!r}; expected cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InferenceOptionError("device cuda: CUDA is not available on this machine; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InferenceOptionError(f"device {device!r} is not supported; use cpu or cuda")
    return dev


def _load_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with one line for any failure (torch's advice to turn
    ``weights_only`` off never reaches a user)."""
    from vsrkit._safe_load import UnreadableFileError, load_torch_file

    try:
        return load_torch_file(path)
    except UnreadableFileError as exc:
        raise ModelLoadError(str(exc)) from None


#: the top-level parts of ``BidirectionalRecurrentVSR`` (every preset): a state dict with none
#: of them holds some other model's weights
_MODEL_PARTS = frozenset(
    {"Final_Fusion", "backward_trunk", "conv_hr", "conv_last", "forward_trunk", "spynet"}
    | {"upconv1", "upconv2"}
)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _from_state(
    obj: Any, *, where: str, preset: str | None, path: Path | None, step: int | None
) -> LoadedCheckpoint:
    """Interpret a loaded object: a vsrkit checkpoint state or a bare state dict."""
    from vsrkit.vsr.pretrained import published_layout

    layout = published_layout(obj)
    if layout is not None:
        raise ModelLoadError(
            f"{where}: a {layout} BasicVSR weights file, not a vsrkit checkpoint; pass it "
            "with --weights (vsrkit.vsr.load_pretrained in Python)"
        )
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        weights: dict[str, Tensor] = dict(obj["model"])
        config = checkpoint_config(obj)
    elif _is_state_dict(obj):
        weights, config = dict(obj), None
    else:
        keys = sorted(map(str, obj))[:6] if isinstance(obj, Mapping) else []
        found = f"keys {', '.join(keys)}" if keys else f"a {type(obj).__name__}"
        raise ModelLoadError(
            f"{where}: not a vsrkit checkpoint or model state dict (found {found})"
        )
    ours = {k.split(".")[0] for k in weights} & _MODEL_PARTS
    if not ours:
        keys = sorted(weights)[:6]
        raise ModelLoadError(
            f"{where}: no weights of vsrkit's model in it (found keys {', '.join(keys)}"
            f"{', ...' if len(weights) > 6 else ''})"
        )
    if config is None:
        if preset is None:
            raise ModelLoadError(
                f"{where}: no model config in the checkpoint; say which model it is with "
                "--preset tiny|small|paper (preset= in Python)"
            )
        config = {"model": preset}
        stored_config = None
    else:
        stored_config = config
        if preset is not None and config.get("model") != preset:
            raise ModelLoadError(
                f"{where}: the checkpoint is a {config.get('model')!r} model, not {preset!r}; "
                "leave out the preset"
            )
    arch = architecture_from_config(config, where=where)
    return LoadedCheckpoint(
        state_dict=weights,
        architecture=arch,
        config=stored_config,
        path=path,
        step=step,
        preset=str(config["model"]),
    )


def read_weights(
    path: str | os.PathLike[str], *, format: str = "auto", preset: str | None = None
) -> LoadedCheckpoint:
    """A published BasicVSR file (BasicSR, mmagic) or a vsrkit checkpoint, as weights and an
    architecture (see :func:`vsrkit.vsr.read_pretrained`), read once; build it with
    :func:`load_model`.

    Args:
        path: the file.
        format: ``auto``, ``basicsr``, ``mmagic`` or ``vsrkit``.
        preset: the model preset of a bare vsrkit state dict (published files carry their
            sizes: a preset with one is an error).

    Raises:
        ModelLoadError: a missing or unreadable file, a vsrkit file without a config and
            preset, a preset given for a published file.
        vsrkit.vsr.PretrainedWeightsError: a file of no known layout, or not of ``format``.
    """
    from vsrkit.checkpoint.names import parse_checkpoint_name
    from vsrkit.vsr.pretrained import published_layout, weights_from_object

    p = Path(path)
    obj = _load_file(p)
    if format in ("auto", "vsrkit") and published_layout(obj) is None:
        if format == "auto" and not _is_vsrkit(obj):
            weights_from_object(obj, where=str(p))  # raises: says what the file holds
        parsed = parse_checkpoint_name(p.name)
        step = parsed.step if parsed is not None else None
        return _from_state(obj, where=str(p), preset=preset, path=p, step=step)
    weights = weights_from_object(obj, where=str(p), format=format)
    if preset is not None:
        raise ModelLoadError(
            f"{path}: a {weights.format} file carries its own sizes; leave out the preset"
        )
    return LoadedCheckpoint(
        state_dict=weights.state_dict,
        architecture=weights.architecture,
        path=p,
        preset=f"{weights.format} BasicVSR",
    )


def _is_vsrkit(obj: Any) -> bool:
    """A vsrkit checkpoint state or a bare state dict."""
    return _is_state_dict(obj) or (isinstance(obj, Mapping) and _is_state_dict(obj.get("model")))


def _read_folder(folder: Path, which: str | int, preset: str | None) -> LoadedCheckpoint:
    """The checkpoint ``which`` names in a run or checkpoint folder, chosen from the folder's
    listing the way a resume chooses (:mod:`vsrkit.checkpoint`); read-only: a damaged file is
    skipped (``latest``) or reported, never renamed."""
    from vsrkit.checkpoint import scan_directory
    from vsrkit.checkpoint.records import checkpoint_folder, resume_order
    from vsrkit.checkpoint.retention import best_record

    directory = checkpoint_folder(folder)
    records = scan_directory(directory)
    if not records:
        raise ModelLoadError(
            f"{folder}: no vsrkit checkpoint in it (a run folder holds checkpoints/, a "
            "checkpoint folder checkpoint_step_<N>.pth files)"
        )
    order = resume_order(records, None)  # valid ones, the one a resume takes first
    if not order:
        raise ModelLoadError(f"{directory}: no valid checkpoint (all uncommitted or damaged)")
    if which == "latest":
        candidates = order
        for rec in records:  # newer files a resume would not take: say why they are passed over
            if not rec.valid and rec.step > order[0].step:
                why = (
                    "no manifest: a save that did not finish"
                    if rec.status == "uncommitted"
                    else "its manifest disagrees with the file: damaged or changed after saving"
                )
                logger.warning("skipping %s (%s)", rec.path.name, why)
    else:
        if which == "best":
            best = best_record(order, "quality", "max")
            step = best.step if best is not None else None
        else:
            step = int(which)
        if step is None:
            raise ModelLoadError(f"{directory}: no checkpoint with a validation quality (best)")
        candidates = [r for r in order if r.step == step]
        if not candidates:
            steps = ", ".join(str(s) for s in sorted({r.step for r in order})[-10:])
            raise ModelLoadError(f"{directory}: no valid checkpoint at step {step} (have {steps})")
    errors = []
    for rec in candidates:
        try:
            state = _load_file(rec.path)
        except ModelLoadError as exc:
            errors.append(str(exc))
            if which == "latest":
                logger.warning("skipping checkpoint at step %d: %s", rec.step, exc)
            continue
        return _from_state(state, where=str(rec.path), preset=preset, path=rec.path, step=rec.step)
    if which != "latest":
        raise ModelLoadError(errors[-1])
    raise ModelLoadError(f"{directory}: no checkpoint could be loaded ({errors[0]})")


def read_checkpoint(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    which: str | int = "latest",
    preset: str | None = None,
) -> LoadedCheckpoint:
    """Read a model's weights and architecture (see the module docstring for ``source``).

    Args:
        source: a checkpoint file, a run folder or checkpoint folder, a checkpoint state or a
            bare ``state_dict`` in memory.
        which: for a folder: ``"latest"`` (the newest valid checkpoint; a damaged one is
            skipped with a warning), ``"best"`` (best validation quality), or a step.
        preset: the model preset of a bare state dict (``tiny``, ``small``, ``paper``); with a
            checkpoint that has a config it must agree with it.

    Raises:
        ModelLoadError: a missing or unreadable file, no checkpoint in a folder, no model
            config and no preset, or a config the model cannot be built from.
    """
    from vsrkit.checkpoint.names import parse_step

    if isinstance(which, str) and which not in WHICH and parse_step(which) is None:
        raise ModelLoadError(f"which must be latest, best or a step, got {which!r}")
    if isinstance(source, Mapping):
        return _from_state(source, where="state dict", preset=preset, path=None, step=None)
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_folder(path, which, preset)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such checkpoint file or run folder")
    from vsrkit.checkpoint import parse_checkpoint_name

    parsed = parse_checkpoint_name(path.name)
    step = parsed.step if parsed is not None else None
    return _from_state(_load_file(path), where=str(path), preset=preset, path=path, step=step)


def build_model_from(
    architecture: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    *,
    where: str = "weights",
    device: str | torch.device | None = None,
) -> Any:
    """Build ``BidirectionalRecurrentVSR(**architecture)``, load ``state_dict`` strictly, and
    return it in eval mode, without gradients, on ``device``.

    Raises:
        ModelLoadError: the tensors do not fit (one line with the first keys that differ).
    """
    from vsrkit.vsr.model import BidirectionalRecurrentVSR

    dev = resolve_device(device)
    try:
        model = BidirectionalRecurrentVSR(**architecture)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{where}: cannot build the model: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
            if keys
        ]
        raise ModelLoadError(f"{where}: weights do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)
    model.requires_grad_(False)
    return model.to(dev).eval()


def load_model(
    source: str | os.PathLike[str] | Mapping[str, Any] | LoadedCheckpoint,
    *,
    which: str | int = "latest",
    preset: str | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """A trained ``BidirectionalRecurrentVSR`` in eval mode on ``device``, ready for inference.

    Args:
        source: a checkpoint file, a run folder or checkpoint folder, a checkpoint state or
            bare state dict in memory, or a :class:`LoadedCheckpoint`.
        which: for a folder: ``"latest"``, ``"best"`` or a step.
        preset: the model preset of a bare state dict.
        device: ``"cpu"``, ``"cuda"``; default CUDA when available.

    Raises:
        ModelLoadError: see :func:`read_checkpoint`; weights that do not fit the model.
    """
    ckpt = (
        source
        if isinstance(source, LoadedCheckpoint)
        else read_checkpoint(source, which=which, preset=preset)
    )
    model = build_model_from(
        ckpt.architecture, ckpt.state_dict, where=ckpt.describe(), device=device
    )
    logger.info("loaded %s", ckpt.describe())
    return model
