"""The checkpoint table and the interactive "which checkpoint to resume?" prompt (the command
line's: ``vsrkit checkpoints list`` and ``vsrkit train --resume ask``).

(Formerly ``vsrkit.checkpoint.prompt``; that import path still works, with a
``DeprecationWarning``.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from vsrkit.checkpoint.records import CheckpointRecord

__all__ = ["format_checkpoint_table", "prompt_for_checkpoint"]

logger = logging.getLogger(__name__)

_HEADER = f"{'#':<4} {'Step':>12}  {'Type':<12} {'Quality':>8} {'Loss':>10}  {'Date':<16}"


def _fmt_quality(q: float | None) -> str:
    return "-" if q is None else f"{q:.4f}"


def _fmt_loss(loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.4f}"


def format_checkpoint_table(records: Sequence[CheckpointRecord]) -> str:
    """A fixed-width table ``#  Step  Type  Quality  Loss  Date``, one row per record.

    Quality is the manifest's ``quality`` metric as a number (SSIM in ``vsrkit train``, never
    a percentage); missing values show as ``-``; a record that
    restore would not use gets ``(uncommitted)`` / ``(mismatch)`` after its type.

    Example:
        >>> print(format_checkpoint_table([]).splitlines()[0].split())
        ['#', 'Step', 'Type', 'Quality', 'Loss', 'Date']
    """
    lines = [_HEADER, "-" * len(_HEADER)]
    for i, r in enumerate(records, 1):
        kind = r.type if r.valid else f"{r.type} ({r.status})"
        lines.append(
            f"{i:<4} {r.step:>12,}  {kind:<12} {_fmt_quality(r.quality):>8} "
            f"{_fmt_loss(r.loss):>10}  {r.date_str:<16}"
        )
    return "\n".join(line.rstrip() for line in lines)


def prompt_for_checkpoint(
    records: Sequence[CheckpointRecord],
    *,
    default: CheckpointRecord | None = None,
    limit: int = 10,
    input_fn: Callable[[str], str] = input,
    echo: Callable[[str], object] = print,
) -> CheckpointRecord | None:
    """Show the last ``limit`` checkpoints and ask which one to resume from.

    Enter (or end of input) picks ``default``, which is the newest shown record when not
    given; a number picks that row; anything else falls back to the default with a warning.

    Args:
        records: Candidates in display order (e.g. ``manager.list()``, sorted by step).
        default: The record Enter picks (e.g. the one for ``manager.latest_step()``).
        limit: How many of the last records to show.
        input_fn: Reads the answer (``input`` by default).
        echo: Prints a line (``print`` by default).

    Returns:
        The chosen record, or ``None`` when ``records`` is empty.

    Example:
        >>> prompt_for_checkpoint([], input_fn=lambda _: "", echo=lambda _: None) is None
        True
    """
    shown = list(records)[-limit:] if limit > 0 else []
    if not shown:
        return None
    fallback = default if default is not None else shown[-1]
    echo("=" * 80)
    echo(f"AVAILABLE CHECKPOINTS (last {len(shown)}):")
    echo("=" * 80)
    echo(format_checkpoint_table(shown))
    echo("=" * 80)
    try:
        answer = input_fn(
            f"Checkpoint to load? (number 1-{len(shown)}, Enter for step {fallback.step:,}): "
        )
    except EOFError:
        answer = ""
    answer = answer.strip()
    if not answer:
        return fallback
    if answer.isascii() and answer.isdigit() and 1 <= int(answer) <= len(shown):
        return shown[int(answer) - 1]
    msg = f"invalid choice {answer!r} (expected 1-{len(shown)}): using step {fallback.step:,}"
    logger.warning(msg)
    echo(f"Warning: {msg}")
    return fallback
