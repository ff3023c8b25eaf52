"""The checkpoint file-name grammar.

Names are parsed with one anchored regular expression into an ``int`` step, never by string
order or modification time:

- ``checkpoint_step_0001234.pth``: step 1234, a regular checkpoint (7-digit zero padding;
  steps past 9,999,999 simply get more digits);
- ``checkpoint_step_0004144_emergency.pth``: step 4144 with the tag ``emergency`` (any tag of
  ``[A-Za-z0-9]`` followed by up to 63 of ``[A-Za-z0-9_-]``; ``best`` and ``emergency`` are the
  usual ones);
- ``checkpoint_step_123.pth``: the old unpadded format, still read;
- ``checkpoint_emergency.pth``: the legacy emergency file, step 0, tag ``emergency``.

The manifest of a checkpoint has the same stem and the suffix ``.json``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from vsrkit.checkpoint.errors import CheckpointValueError

__all__ = [
    "CheckpointName",
    "format_checkpoint_name",
    "manifest_name",
    "parse_checkpoint_name",
    "parse_step",
]

STEP_DIGITS = 7
_TAG = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_NAME = re.compile(
    r"\Acheckpoint_step_(?P<step>[0-9]+)(?:_(?P<tag>" + _TAG + r"))?\.(?P<ext>pth|json)\Z"
)
_LEGACY_EMERGENCY = re.compile(r"\Acheckpoint_emergency\.(?P<ext>pth|json)\Z")
_TAG_ONLY = re.compile(r"\A" + _TAG + r"\Z")
_STEP = re.compile(r"\A[0-9]+\Z")


def parse_step(text: str) -> int | None:
    """The step a user typed (``"1200"``), or ``None`` for anything that is not ASCII digits
    (``str.isdigit`` would take ``"²"``, which ``int`` then refuses).

    Example:
        >>> parse_step("0042"), parse_step("²"), parse_step("-3"), parse_step(" 7")
        (42, None, None, None)
    """
    return int(text) if _STEP.match(text) else None


#: Tags with a reserved meaning: ``regular`` is the type of an untagged checkpoint.
RESERVED_TAGS = frozenset({"regular"})


class CheckpointName(NamedTuple):
    """A parsed checkpoint file name."""

    step: int
    tag: str | None
    legacy: bool  # old unpadded or checkpoint_emergency.pth name (written before manifests)
    kind: str  # "checkpoint" (.pth) or "manifest" (.json)

    @property
    def type(self) -> str:
        """``"regular"`` for an untagged checkpoint, otherwise the tag (``"best"``, ...)."""
        return self.tag or "regular"


def parse_checkpoint_name(name: str) -> CheckpointName | None:
    """Parse a file name (not a path) of a checkpoint or its manifest.

    Args:
        name: A bare file name such as ``"checkpoint_step_0001234_best.pth"``.

    Returns:
        The step, tag, legacy flag and kind, or ``None`` when ``name`` is not a checkpoint
        name (temp files, dotfiles, ``checkpoint_step_abc.pth``, notes ...).

    Example:
        >>> parse_checkpoint_name("checkpoint_step_0004144_emergency.pth").step
        4144
        >>> parse_checkpoint_name("checkpoint_step_abc.pth") is None
        True
    """
    m = _NAME.match(name)
    if m is not None:
        digits = m.group("step")
        legacy = len(digits) < STEP_DIGITS or (len(digits) > STEP_DIGITS and digits[0] == "0")
        tag = m.group("tag")
        if tag in RESERVED_TAGS:
            return None
        kind = "checkpoint" if m.group("ext") == "pth" else "manifest"
        return CheckpointName(int(digits), tag, legacy, kind)
    m = _LEGACY_EMERGENCY.match(name)
    if m is not None:
        kind = "checkpoint" if m.group("ext") == "pth" else "manifest"
        return CheckpointName(0, "emergency", True, kind)
    return None


def format_checkpoint_name(step: int, tag: str | None = None) -> str:
    """The file name of the checkpoint for ``step`` (and ``tag``).

    Raises:
        ValueError: If ``step`` is not a non-negative int or ``tag`` breaks the grammar.

    Example:
        >>> format_checkpoint_name(1234)
        'checkpoint_step_0001234.pth'
        >>> format_checkpoint_name(4144, "emergency")
        'checkpoint_step_0004144_emergency.pth'
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointValueError(f"checkpoint step must be a non-negative int, got {step!r}")
    if tag is None:
        return f"checkpoint_step_{step:0{STEP_DIGITS}d}.pth"
    if not isinstance(tag, str) or not _TAG_ONLY.match(tag) or tag in RESERVED_TAGS:
        raise CheckpointValueError(
            f"checkpoint tag must match {_TAG!r} and not be one of {sorted(RESERVED_TAGS)}, "
            f"got {tag!r}"
        )
    return f"checkpoint_step_{step:0{STEP_DIGITS}d}_{tag}.pth"


def manifest_name(checkpoint_name: str) -> str:
    """The manifest file name that belongs to a ``.pth`` checkpoint name."""
    if not checkpoint_name.endswith(".pth"):
        raise CheckpointValueError(f"not a .pth checkpoint name: {checkpoint_name!r}")
    return checkpoint_name[: -len(".pth")] + ".json"
