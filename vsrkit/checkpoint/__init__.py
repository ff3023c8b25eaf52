"""Checkpoints you can trust: atomic commits, a strict name grammar, retention, exact resume.

Importing this package does not import torch; saving and loading import it when called.

Example:
    >>> from vsrkit.checkpoint import parse_checkpoint_name
    >>> parse_checkpoint_name("checkpoint_step_0002000_best.pth").type
    'best'
"""

from __future__ import annotations

from vsrkit._deprecated import moved
from vsrkit.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointMirrorError,
    CheckpointNotFoundError,
    CheckpointValueError,
    CheckpointWriteError,
)
from vsrkit.checkpoint.maintenance import prune_checkpoints, verify_checkpoint
from vsrkit.checkpoint.manager import CheckpointManager
from vsrkit.checkpoint.mirror import CheckpointMirror
from vsrkit.checkpoint.names import (
    CheckpointName,
    format_checkpoint_name,
    manifest_name,
    parse_checkpoint_name,
)
from vsrkit.checkpoint.records import CheckpointRecord, read_manifest, scan_directory
from vsrkit.checkpoint.retention import (
    AnyOf,
    BestN,
    EveryNSteps,
    KeepAll,
    KeepTagged,
    LatestN,
    ResumeCandidate,
    RetentionPolicy,
    standard_retention,
)
from vsrkit.checkpoint.rng import capture_rng_state, restore_rng_state

__all__ = [
    "AnyOf",
    "BestN",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointMirror",
    "CheckpointMirrorError",
    "CheckpointName",
    "CheckpointNotFoundError",
    "CheckpointRecord",
    "CheckpointValueError",
    "CheckpointWriteError",
    "EveryNSteps",
    "KeepAll",
    "KeepTagged",
    "LatestN",
    "ResumeCandidate",
    "RetentionPolicy",
    "capture_rng_state",
    "format_checkpoint_name",
    "manifest_name",
    "parse_checkpoint_name",
    "prune_checkpoints",
    "read_manifest",
    "restore_rng_state",
    "scan_directory",
    "standard_retention",
    "verify_checkpoint",
]

# moved elsewhere; the old names work for one more release, with a DeprecationWarning
__getattr__ = moved(
    __name__,
    {
        "StopSignal": "vsrkit.loop",
        "format_checkpoint_table": "vsrkit.cli.prompt",
        "prompt_for_checkpoint": "vsrkit.cli.prompt",
    },
)
