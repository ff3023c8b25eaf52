"""``vsrkit checkpoints``: list, show, verify and prune a checkpoint folder (no torch import).

Every command takes the checkpoint folder or the run folder that holds it (``runs/a`` means
``runs/a/checkpoints`` when ``runs/a`` itself holds no checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from vsrkit.checkpoint.errors import CheckpointNotFoundError
from vsrkit.checkpoint.maintenance import prune_checkpoints, verify_checkpoint
from vsrkit.checkpoint.records import (
    CheckpointRecord,
    checkpoint_folder,
    read_manifest,
    scan_directory,
)
from vsrkit.cli._util import user_errors
from vsrkit.cli.prompt import format_checkpoint_table

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.group("checkpoints")
def checkpoints() -> None:
    """List, show, verify and prune the checkpoints of a folder."""


@checkpoints.command("list")
@click.argument("directory", type=_DIR)
@click.option("--all", "show_all", is_flag=True, help="Show every checkpoint, not the last 10.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@user_errors
def list_cmd(directory: Path, show_all: bool, as_json: bool) -> None:
    """Table of the last 10 checkpoints in DIRECTORY (reads names and manifests only)."""
    directory = checkpoint_folder(directory)
    records = scan_directory(directory, last=None if show_all else 10)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no checkpoints in {directory}")
        return
    click.echo(format_checkpoint_table(records))
    if not show_all and len(records) == 10:
        click.echo("(the last 10 by step; --all shows every checkpoint)")


@checkpoints.command("show")
@click.argument("directory", type=_DIR)
@click.argument("step", type=click.IntRange(min=0))
@user_errors
def show_cmd(directory: Path, step: int) -> None:
    """Print the manifest(s) of the checkpoint(s) at STEP as JSON."""
    directory = checkpoint_folder(directory)
    found = [r for r in scan_directory(directory) if r.step == step]
    if not found:
        raise CheckpointNotFoundError(f"no checkpoint at step {step} in {directory}")
    for rec in found:
        info: dict[str, object] = {"record": rec.to_dict()}
        if rec.manifest_path is not None:
            try:
                info["manifest"] = read_manifest(rec.manifest_path)
            except (OSError, ValueError) as exc:
                info["manifest_error"] = str(exc)
        click.echo(json.dumps(info, indent=2))


@checkpoints.command("verify")
@click.argument("directory", type=_DIR)
@click.option(
    "--mirror",
    "mirror",
    type=_DIR,
    default=None,
    help="Also verify this mirror folder and say which checkpoints it lacks.",
)
@user_errors
def verify_cmd(directory: Path, mirror: Path | None) -> None:
    """Check every committed checkpoint's size and sha256 against its manifest.

    Exits with 1 when one is corrupt. Legacy files (no manifest) are only listed; files
    without a manifest from an interrupted save are reported as uncommitted. With
    ``--mirror``, the mirror folder is checked the same way, then each committed primary
    checkpoint without an identical committed copy in the mirror is listed as NOT MIRRORED
    (a lagging or failed copy: a note, not an error) and each mirror-only one as MIRROR ONLY.
    """
    directory = checkpoint_folder(directory)
    records = scan_directory(directory)
    bad = _verify_folder(records)
    click.echo(f"{len(records)} checkpoint(s), {bad} corrupt")
    if mirror is not None:
        mirror = checkpoint_folder(mirror)
        click.echo(f"mirror {mirror}:")
        copies = scan_directory(mirror)
        mirror_bad = _verify_folder(copies)
        ok = {r.filename: r for r in copies if r.status == "committed"}
        for rec in records:
            if rec.status != "committed":
                continue
            copy = ok.get(rec.filename)
            if copy is None or (copy.run_id, copy.commit_time) != (rec.run_id, rec.commit_time):
                click.echo(f"NOT MIRRORED {rec.filename}")
        primary = {r.filename for r in records if r.valid}
        for name in sorted(set(ok) - primary):
            click.echo(f"MIRROR ONLY  {name} (restore can use it)")
        click.echo(f"mirror: {len(copies)} checkpoint(s), {mirror_bad} corrupt")
        bad += mirror_bad
    if bad:
        raise SystemExit(1)


def _verify_folder(records: list[CheckpointRecord]) -> int:
    """Print one line per record; returns how many are corrupt."""
    bad = 0
    for rec in records:
        if rec.status == "legacy":
            click.echo(f"LEGACY       {rec.filename} (no manifest, not checked)")
        elif rec.status == "uncommitted":
            click.echo(
                f"UNCOMMITTED  {rec.filename} (no manifest: interrupted save, restore ignores it)"
            )
        else:
            problem = verify_checkpoint(rec)
            if problem is None and rec.status == "committed":
                hashed = rec.manifest_path is not None and _has_sha256(rec.manifest_path)
                click.echo(
                    f"OK           {rec.filename}" + ("" if hashed else " (size only: no sha256)")
                )
            else:
                bad += 1
                click.echo(
                    f"CORRUPT      {rec.filename}: {problem or 'manifest does not match the file'}"
                )
    return bad


def _has_sha256(manifest_path: Path) -> bool:
    try:
        return read_manifest(manifest_path)["sha256"] is not None
    except (OSError, ValueError):
        return False


@checkpoints.command("prune")
@click.argument("directory", type=_DIR)
@click.option(
    "--keep-last",
    type=click.IntRange(min=1),
    required=True,
    help="How many regular checkpoints to keep.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@user_errors
def prune_cmd(directory: Path, keep_last: int, dry_run: bool) -> None:
    """Delete all but the last N regular checkpoints.

    Kept besides: the best one, the newest emergency one and the one a resume would pick
    (the same rules as ``vsrkit train --keep-last N``).
    """
    directory = checkpoint_folder(directory)
    doomed = prune_checkpoints(directory, keep_last=keep_last, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for rec in doomed:
        click.echo(f"{verb} {rec.filename}")
    click.echo(f"{verb} {len(doomed)} checkpoint(s)")
