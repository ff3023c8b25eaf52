"""``vsrkit config``: validate, show and change the runtime settings of a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vsrkit.cli._util import user_errors


def _load(path: Path) -> Any:
    from vsrkit.config import RuntimeConfigError, parse_json_strict

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RuntimeConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise RuntimeConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return parse_json_strict(data)
    except RuntimeConfigError as exc:
        raise RuntimeConfigError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise RuntimeConfigError(f"{path}: not valid JSON ({exc})") from None


def _fail(path: Path, errors: dict[str, str]) -> None:
    for key, message in errors.items():
        click.echo(f"{path}: {key}: {message}", err=True)
    raise SystemExit(1)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value)


@click.group()
def config() -> None:
    """Validate, show and change runtime settings (runtime_config.json)."""


@config.command()
@click.argument("file", type=click.Path(path_type=Path))
@user_errors
def validate(file: Path) -> None:
    """Check FILE (a runtime_config.json or a snapshot); exit 1 with the messages."""
    from vsrkit.config import validate_config

    errors = validate_config(_load(file))
    if errors:
        _fail(file, errors)
    click.echo(f"{file}: valid")


@config.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--history", "limit", default=20, show_default=True, help="Changes to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def show(run_dir: Path, limit: int, as_json: bool) -> None:
    """Print the settings of RUN_DIR by category and the latest changes."""
    from vsrkit.config import CATEGORIES, CONFIG_FILE, describe_keys, read_changes

    settings = _load(run_dir / CONFIG_FILE)
    changes = read_changes(run_dir)[-limit:] if limit > 0 else []
    if as_json:
        doc = {"config": settings, "changes": [c.to_dict() for c in changes]}
        click.echo(json.dumps(doc, indent=2))
        return
    specs = describe_keys()
    values = settings if isinstance(settings, dict) else {}
    for category in CATEGORIES:
        click.echo(f"[{category}]")
        for spec in specs:
            if spec.category == category:
                value = _fmt(values[spec.name]) if spec.name in values else "(missing)"
                click.echo(f"  {spec.name:<26} {value:<12} {spec.expected()}")
    click.echo(f"changes ({len(changes)} latest):" if changes else "changes: none")
    for c in changes:
        verdict = "accepted" if c.accepted else f"rejected: {c.reason}"
        what = f"{c.key} {_fmt(c.old)} -> {_fmt(c.new)}" if c.key is not None else "(document)"
        click.echo(f"  step {c.step if c.step is not None else '-'} [{c.source}] {what} {verdict}")


@config.command(name="set")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@user_errors
def set_(run_dir: Path, assignments: tuple[str, ...]) -> None:
    """Change settings of RUN_DIR: validate, then write runtime_config.json atomically.

    A running trainer picks the change up at its next poll step.
    """
    from vsrkit._atomic import atomic_write_json
    from vsrkit.config import CONFIG_FILE, normalize_config, parse_assignment, validate_config

    path = run_dir / CONFIG_FILE
    current = _load(path)
    errors = validate_config(current)
    if errors:
        click.echo(f"{path} is invalid now; fix it or run 'vsrkit config validate'", err=True)
        _fail(path, errors)
    patch = dict(parse_assignment(a) for a in assignments)
    proposal = {**current, **patch}
    errors = validate_config(proposal, current=current)
    if errors:
        _fail(path, errors)
    atomic_write_json(path, normalize_config(proposal))
    for key, value in patch.items():
        click.echo(f"{key}: {_fmt(current[key])} -> {_fmt(value)}")


@config.command()
@click.option("--all", "show_all", is_flag=True, help="Include the startup-only keys.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def keys(show_all: bool, as_json: bool) -> None:
    """List the settings with type, range, category and description."""
    from vsrkit.config import describe_keys

    specs = describe_keys(live_only=not show_all)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    for s in specs:
        click.echo(f"{s.name:<26} {s.category:<13} {s.expected():<34} {s.description}")
