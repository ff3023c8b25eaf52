"""``vsrkit stats``: list, export, compare and plot a run's Statistik files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from vsrkit.cli._util import user_errors

_RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _load(run_dir: Path) -> list[dict[str, Any]]:
    from vsrkit.stats import StatisticsError, load_statistics

    records = load_statistics(run_dir)
    if not records:
        raise StatisticsError(f"{run_dir}: no Statistik_<step>.json files")
    return records


@click.group()
def stats() -> None:
    """Read, export, compare and plot Statistik_<step>.json files."""


@stats.command("list")
@click.argument("run_dir", type=_RUN_DIR)
@user_errors
def list_cmd(run_dir: Path) -> None:
    """One line per validation: step, improvement, quality, plateau counter, complete."""
    records = _load(run_dir)
    header = (
        f"{'step':>8}  {'improvement':>11}  {'quality_ki':>10}  {'quality_lr':>10}  "
        f"{'plateau':>7}  complete"
    )
    click.echo(header)
    for r in records:
        click.echo(
            f"{r['step_current']:>8}  {_fmt(r.get('quality_improvement_value')):>11}  "
            f"{_fmt(r.get('quality_ki_value')):>10}  {_fmt(r.get('quality_lr_value')):>10}  "
            f"{_fmt(r.get('adaptive_plateau_counter')):>7}  {_fmt(r.get('complete'))}"
        )


@stats.command("export")
@click.argument("run_dir", type=_RUN_DIR)
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file to write (one row per validation).",
)
@user_errors
def export_cmd(run_dir: Path, csv_path: Path) -> None:
    """Write every Statistik file of RUN_DIR as one CSV row (null is an empty cell)."""
    from vsrkit.stats import write_csv

    records = _load(run_dir)
    write_csv(records, csv_path)
    click.echo(f"Wrote {len(records)} rows to {csv_path}")


@stats.command("compare")
@click.argument("run_a", type=_RUN_DIR)
@click.argument("run_b", type=_RUN_DIR)
@click.option(
    "--step",
    type=click.IntRange(min=0),
    default=None,
    help="Validation step to compare (default: the latest both runs have).",
)
@user_errors
def compare_cmd(run_a: Path, run_b: Path, step: int | None) -> None:
    """Compare two runs field by field at one validation step (B - A)."""
    from vsrkit.stats import compare_statistics

    step, rows = compare_statistics(_load(run_a), _load(run_b), step)
    click.echo(f"step {step}: A={run_a}  B={run_b}")
    width = max(len(name) for name, *_ in rows)
    click.echo(f"{'field':<{width}}  {'A':>12}  {'B':>12}  {'B - A':>12}")
    for name, a, b, diff in rows:
        d = "-" if diff is None else format(diff, "+.4g")
        click.echo(f"{name:<{width}}  {_fmt(a, '.4g'):>12}  {_fmt(b, '.4g'):>12}  {d:>12}")


@stats.command("plot")
@click.argument("run_dir", type=_RUN_DIR)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG file to write.",
)
@user_errors
def plot_cmd(run_dir: Path, out: Path) -> None:
    """Plot quality, improvement, losses and plateau counter (needs vsrkit[plot])."""
    from vsrkit.stats import plot_statistics

    plot_statistics(_load(run_dir), out, title=str(run_dir))
    click.echo(f"Wrote {out}")
