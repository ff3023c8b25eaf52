"""Deprecated: the checkpoint table and the resume prompt moved to :mod:`vsrkit.cli.prompt`
(they are the command line's); this path works for one more release, with a
``DeprecationWarning``."""

from __future__ import annotations

from vsrkit._deprecated import moved

__getattr__ = moved(
    __name__,
    {"format_checkpoint_table": "vsrkit.cli.prompt", "prompt_for_checkpoint": "vsrkit.cli.prompt"},
)
