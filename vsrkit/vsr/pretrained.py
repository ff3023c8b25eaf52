"""Published BasicVSR weights: read BasicSR and mmagic files into the reference model.

BasicSR saves ``{"params": ..., "params_ema": ...}`` with its own key names
(``backward_trunk.main.2.0.conv1.weight``); mmagic (and the older mmediting) saves
``{"state_dict": {"generator.backward_resblocks.main.2.0.conv1.weight": ...}, "meta": ...}``.
Both describe the same network as vsrkit's ``BidirectionalRecurrentVSR`` with the skip
connection BasicSR uses (a bilinear upsample of the input, ``skip="bilinear"``). This module
recognises the layout, renames the keys, reads the sizes from the tensors' shapes and builds
the model; a file of any other layout is refused with one line that says what it holds.
Files are always read with ``torch.load(weights_only=True)``; nothing is ever downloaded.

Example:
    >>> import torch, tempfile, os
    >>> from vsrkit.vsr import BidirectionalRecurrentVSR
    >>> net = BidirectionalRecurrentVSR(num_feat=8, num_blocks=1, spynet_levels=2,
    ...                                 spynet_widths=(4, 4, 4, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.pth")
    >>> torch.save({"params": to_basicsr_keys(net.state_dict())}, path)
    >>> weights = read_pretrained(path)
    >>> weights.format, weights.architecture["num_blocks"]
    ('basicsr', 1)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vsrkit.vsr.errors import PretrainedWeightsError

__all__ = [
    "PRETRAINED_FORMATS",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "load_pretrained",
    "read_pretrained",
    "spynet_state_dict",
    "to_basicsr_keys",
    "weights_from_object",
]

logger = logging.getLogger(__name__)

#: ``format=`` values of :func:`read_pretrained`.
PRETRAINED_FORMATS = ("auto", "basicsr", "mmagic", "vsrkit")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedWeights:
    """A published model's weights under vsrkit's key names.

    Attributes:
        state_dict: tensors keyed like ``BidirectionalRecurrentVSR.state_dict()``.
        format: the layout the file had: ``basicsr``, ``mmagic`` or ``vsrkit``.
        architecture: keyword arguments of ``BidirectionalRecurrentVSR`` read from the shapes.
        source: where in the file the weights were (``params_ema``, ``state_dict``, ...).
    """

    state_dict: dict[str, Tensor]
    format: str
    architecture: dict[str, Any] = field(default_factory=dict)
    source: str = ""


# ---- reading ------------------------------------------------------------------------------


def _torch_load(path: str | os.PathLike[str], what: str) -> Any:
    from vsrkit._safe_load import UnreadableFileError, load_torch_file

    try:
        return load_torch_file(path)
    except UnreadableFileError as exc:
        if exc.kind == "missing":
            raise PretrainedWeightsError(f"{what} file not found: {exc.path}") from None
        raise PretrainedWeightsError(f"cannot read {what} {exc.path}: {exc.reason}") from None


def _tensor_items(obj: Mapping[Any, Any]) -> dict[str, Tensor]:
    return {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}


def _unwrap(obj: Any) -> tuple[dict[str, Tensor], str]:
    """The tensors of a file and where they were: BasicSR's ``params_ema``/``params``,
    mmagic's ``state_dict``, a vsrkit checkpoint's ``model``, or a bare state dict."""
    if not isinstance(obj, Mapping):
        return {}, type(obj).__name__
    for key in ("params_ema", "params", "state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _tensor_items(inner):
            return _tensor_items(inner), key
    return _tensor_items(obj), "(top level)"


def _strip_prefix(sd: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _describe(sd: Mapping[str, Any], source: str) -> str:
    if not sd:
        return f"no tensors ({source})"
    keys = sorted(sd)
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return f"{len(keys)} tensors under {source!r} ({shown})"


# ---- key maps ---------------------------------------------------------------------------------

_MM_SPYNET = re.compile(
    r"^((?:spynet\.)?basic_module\.\d+\.basic_module\.)(\d+)\.conv\.(weight|bias)$"
)
_TRUNK = re.compile(r"^(backward|forward)_trunk\.main\.(.+)$")
_BLOCK = re.compile(r"^2\.(\d+)\.(conv[12]\.(?:weight|bias))$")
_RENAMES_MMAGIC = {
    "backward_resblocks.": "backward_trunk.",
    "forward_resblocks.": "forward_trunk.",
    "upsample1.upsample_conv.": "upconv1.",
    "upsample2.upsample_conv.": "upconv2.",
}


def _mmagic_to_basicsr(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        m = _MM_SPYNET.match(key)
        if m:  # mmcv's ConvModule wraps each conv: index k of 5 is index 2k of conv/ReLU pairs
            key = f"{m[1]}{2 * int(m[2])}.{m[3]}"
        for old, new in _RENAMES_MMAGIC.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def _basicsr_to_vsrkit(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        m = _TRUNK.match(key)
        if m:
            branch, rest = m[1], m[2]
            block = _BLOCK.match(rest)
            if rest.startswith("0."):
                key = f"{branch}_trunk.conv_in.{rest[2:]}"
            elif block:
                name = f"{branch.capitalize()}_Block_{int(block[1]) + 1:02d}"
                key = f"{branch}_trunk.blocks.{name}.{block[2]}"
        elif key.startswith("fusion."):
            key = "Final_Fusion." + key[len("fusion.") :]
        out[key] = value
    return out


def to_basicsr_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """vsrkit key names -> BasicSR's (the inverse of what :func:`read_pretrained` does).

    Useful to hand a vsrkit-trained model to BasicSR's own test scripts.
    """
    out: dict[str, Tensor] = {}
    block = re.compile(r"^(backward|forward)_trunk\.blocks\.\w+_Block_(\d+)\.(.+)$")
    for key, value in state_dict.items():
        m = block.match(key)
        if m:
            key = f"{m[1]}_trunk.main.2.{int(m[2]) - 1}.{m[3]}"
        elif re.match(r"^(backward|forward)_trunk\.conv_in\.", key):
            key = key.replace(".conv_in.", ".main.0.", 1)
        elif key.startswith("Final_Fusion."):
            key = "fusion." + key[len("Final_Fusion.") :]
        out[key] = value
    return out


def _check_normalisation(sd: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Drop SpyNet's ``mean``/``std`` buffers after checking they are ImageNet's constants."""
    for name, expected in (("mean", _IMAGENET_MEAN), ("std", _IMAGENET_STD)):
        for key in [k for k in sd if k == name or k.endswith(f"spynet.{name}")]:
            got = sd.pop(key).flatten().tolist()
            if len(got) != 3 or any(abs(a - b) > 1e-6 for a, b in zip(got, expected, strict=True)):
                raise PretrainedWeightsError(
                    f"{where}: {key} is {got}, but vsrkit's SpyNet normalises with the "
                    f"ImageNet {name} {list(expected)}"
                )
    return sd


def published_layout(obj: Any) -> str | None:
    """``"basicsr"`` or ``"mmagic"`` when a loaded file is a BasicVSR of that layout, else
    ``None`` (a vsrkit checkpoint, another network, anything else)."""
    if not isinstance(obj, Mapping):
        return None
    raw, _ = _unwrap(obj)
    found = _layout(_strip_prefix(raw, ("generator.", "module.", "net.", "_orig_mod.")))
    return found if found in ("basicsr", "mmagic") else None


def _layout(sd: Mapping[str, Tensor]) -> str | None:
    if "backward_resblocks.main.0.weight" in sd:
        return "mmagic"
    if "backward_trunk.main.0.weight" in sd:
        return "basicsr"
    if "backward_trunk.conv_in.weight" in sd:
        return "vsrkit"
    return None


def _architecture(sd: Mapping[str, Tensor], where: str) -> dict[str, Any]:
    """Sizes of the network from the shapes of its tensors (no guessing: every size is read)."""
    try:
        num_feat = int(sd["backward_trunk.conv_in.weight"].shape[0])
        num_blocks = sum(
            1
            for k in sd
            if re.fullmatch(r"backward_trunk\.blocks\.Backward_Block_\d+\.conv1\.weight", k)
        )
        levels = sum(
            1 for k in sd if re.fullmatch(r"spynet\.basic_module\.\d+\.basic_module\.0\.weight", k)
        )
        widths = tuple(
            int(sd[f"spynet.basic_module.0.basic_module.{i}.weight"].shape[0]) for i in (0, 2, 4, 6)
        )
    except KeyError as exc:
        raise PretrainedWeightsError(f"{where}: no tensor {exc.args[0]!r}") from None
    if num_blocks < 1 or levels < 1:
        raise PretrainedWeightsError(f"{where}: no residual blocks or no SpyNet levels")
    return {
        "num_feat": num_feat,
        "num_blocks": num_blocks,
        "spynet_levels": levels,
        "spynet_widths": widths,
    }


def read_pretrained(path: str | os.PathLike[str], *, format: str = "auto") -> PretrainedWeights:
    """Read a BasicSR, mmagic or vsrkit file into vsrkit key names.

    Args:
        path: a local ``.pth`` file.
        format: ``auto`` (recognise the layout), or ``basicsr``, ``mmagic``, ``vsrkit`` to
            insist on one.

    Returns:
        The renamed weights, their layout and the sizes read from their shapes. BasicSR and
        mmagic models get ``skip="bilinear"`` (BasicSR's skip connection); for a vsrkit
        checkpoint, ``architecture`` holds what its tensors show, and
        :func:`vsrkit.infer.load_model` reads the full config the checkpoint carries.

    Raises:
        PretrainedWeightsError: a missing or unreadable file, or one of no known layout (the
            message says what it holds).
    """
    _check_format(format)
    return weights_from_object(_torch_load(path, "weights"), where=os.fspath(path), format=format)


def _check_format(format: str) -> None:
    if format not in PRETRAINED_FORMATS:
        raise PretrainedWeightsError(
            f"unknown weights format {format!r}; expected one of {', '.join(PRETRAINED_FORMATS)}"
        )


def weights_from_object(obj: Any, *, where: str, format: str = "auto") -> PretrainedWeights:
    """:func:`read_pretrained` of a file already loaded (``where`` names it in messages).

    Raises:
        PretrainedWeightsError: an object of no known layout, or not of ``format``.
    """
    _check_format(format)
    raw, source = _unwrap(obj)
    sd = _strip_prefix(raw, ("generator.", "module.", "net.", "_orig_mod."))
    found = _layout(sd)
    if found is None or (format != "auto" and found != format):
        expected = "a BasicVSR model" if format == "auto" else f"a {format} BasicVSR file"
        raise PretrainedWeightsError(
            f"{where} is not {expected}: found {_describe(raw, source)}; vsrkit reads BasicSR "
            "(params/params_ema), mmagic (state_dict, generator.*) and vsrkit checkpoints"
        )
    if found == "mmagic":
        sd = _mmagic_to_basicsr(sd)
    if found in ("mmagic", "basicsr"):
        sd = _basicsr_to_vsrkit(sd)
    sd = _check_normalisation(dict(sd), where)
    arch = _architecture(sd, where)
    if found != "vsrkit":
        arch["skip"] = "bilinear"
    logger.debug("read %s weights from %s (%s): %s", found, where, source, arch)
    return PretrainedWeights(state_dict=sd, format=found, architecture=arch, source=source)


def load_pretrained(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    device: str | torch.device | None = None,
) -> torch.nn.Module:
    """A model in eval mode with a published BasicVSR's weights (or a vsrkit checkpoint's).

    Args:
        path: a BasicSR (``params``/``params_ema``), mmagic (``state_dict`` with the
            ``generator.`` prefix) or vsrkit file.
        format: ``auto``, ``basicsr``, ``mmagic`` or ``vsrkit``.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.

    Raises:
        PretrainedWeightsError: as :func:`read_pretrained`.
        vsrkit.infer.ModelLoadError: the tensors do not fit the network (one line naming the
            first keys that differ).
    """
    from vsrkit.infer.loading import load_model, read_weights

    return load_model(read_weights(path, format=format), device=device)


def spynet_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A SpyNet weights file as ``SpyNet.state_dict()`` keys (``basic_module.L.basic_module.K``).

    Reads BasicSR's files (``{"params": ...}``, with or without the ``mean``/``std`` buffers),
    mmagic's (``state_dict``, mmcv's ``.conv.`` layers), a whole BasicVSR file's ``spynet.*``
    part, and bare state dicts. The ``mean``/``std`` buffers must be ImageNet's constants.

    Raises:
        PretrainedWeightsError: a missing, unreadable or foreign file.
    """
    where = os.fspath(path)
    raw, source = _unwrap(_torch_load(path, "SpyNet weights"))
    sd = _strip_prefix(_strip_prefix(raw, ("generator.", "module.")), ("spynet.",))
    sd = _check_normalisation(_mmagic_to_basicsr(sd), where)
    if not any(re.fullmatch(r"basic_module\.\d+\.basic_module\.\d+\.weight", k) for k in sd):
        raise PretrainedWeightsError(
            f"{where} is not a SpyNet file: found {_describe(raw, source)}"
        )
    return sd
