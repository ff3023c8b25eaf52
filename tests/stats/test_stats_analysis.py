"""Schema, load_statistics and the `vsrkit stats` commands on real files."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.cli import cli
from vsrkit.stats import (
    FIELDS,
    STAT_FIELDS,
    DeferredStatsWriter,
    MetricsSnapshot,
    StatisticsError,
    StatisticsValidationError,
    compare_statistics,
    load_schema,
    load_statistics,
    validate_statistics,
)
from vsrkit.stats.analysis import EXTRA_FIELDS

# A file as the seed trainer wrote it (no vsrkit extras): read with a warning.
SEED_FILE = {
    "step_current": 7500,
    "epoch_num": 8,
    "step_max": 100000,
    "learning_rate_value": 3.456e-05,
    "adaptive_mode": "Stable",
    "quality_improvement_value": 0.189,
    "quality_ki_value": 0.621,
    "total_loss_value": 0.0234,
}


def write_run(run: Path, steps: list[int], *, ki: float = 0.6) -> None:
    snap = MetricsSnapshot()
    w = DeferredStatsWriter(run, snapshot=snap, training_fields=["l1_loss_value"], fsync=False)
    for i, step in enumerate(steps):
        w.request(
            step, {"quality_ki_value": ki + i / 100, "quality_improvement_value": 0.1 + i / 100}
        )
        snap.update(step, adaptive_plateau_counter=i * 10)
        w.observe(step + 1, {"l1_loss_value": 0.02 - i / 1000})
    assert w.pending == ()


def test_schema_lists_every_field() -> None:
    schema = load_schema()
    assert list(schema["properties"]) == list(STAT_FIELDS) + [
        "schema_version", "complete", "stale_fields", "missing_reasons", "measured_at_step",
        "written_at_step", "runtime_config_version",
    ]  # fmt: skip
    assert set(schema["required"]) == set(STAT_FIELDS) | set(EXTRA_FIELDS)
    for name, spec in FIELDS.items():
        types = schema["properties"][name]["type"]
        assert spec.type in (types if isinstance(types, list) else [types])


WRONG = {"integer": "7", "number": "0.1", "string": 3, "boolean": 1, "object": [1]}


@given(st.sampled_from([n for n in STAT_FIELDS if n != "step_current"]))
def test_validator_names_the_field_with_a_wrong_type(name: str) -> None:
    doc = {n: None for n in STAT_FIELDS} | {
        "step_current": 5, "measured_at_step": {}, "complete": True, "stale_fields": [],
        "missing_reasons": {}, "schema_version": 1, "written_at_step": 6,
        "runtime_config_version": None,
    }  # fmt: skip
    validate_statistics(doc)
    doc[name] = WRONG[FIELDS[name].type]
    with pytest.raises(StatisticsValidationError) as info:
        validate_statistics(doc, source="Statistik_5.json")
    assert info.value.problems == [f"field {name!r}: {doc[name]!r} is not of type "
                                   f"'{FIELDS[name].type}', 'null'"]  # fmt: skip
    assert str(info.value).startswith("Statistik_5.json does not match")


def test_load_sorts_by_int_step_and_reads_old_files_with_a_warning(tmp_path: Path, caplog) -> None:
    write_run(tmp_path, [500, 1000, 99])
    (tmp_path / "Statistik_7500.json").write_text(json.dumps(SEED_FILE), encoding="utf-8")
    (tmp_path / "Statistik_8000.json").write_text('{"step_current": 80', encoding="utf-8")
    (tmp_path / ".tmp-Statistik_9000.json.abc").write_text("{", encoding="utf-8")
    (tmp_path / "Statistik_latest.json").write_text("{}", encoding="utf-8")
    caplog.set_level(logging.WARNING)
    records = load_statistics(tmp_path)
    assert [r["step_current"] for r in records] == [99, 500, 1000, 7500]
    assert records[-1] == SEED_FILE
    assert any("Statistik_7500.json: old or partial file" in m for m in caplog.messages)
    assert any("Skipping Statistik_8000.json" in m for m in caplog.messages)
    assert not any("9000" in m or "latest" in m for m in caplog.messages)


def test_load_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StatisticsError, match="not a folder"):
        load_statistics(tmp_path / "nope")


def test_compare_picks_the_latest_common_step(tmp_path: Path) -> None:
    write_run(tmp_path / "a", [100, 200, 300])
    write_run(tmp_path / "b", [100, 200], ki=0.7)
    step, rows = compare_statistics(
        load_statistics(tmp_path / "a"), load_statistics(tmp_path / "b")
    )
    assert step == 200
    row = {name: (a, b, d) for name, a, b, d in rows}
    assert row["quality_ki_value"][:2] == (0.61, 0.71)
    assert row["quality_ki_value"][2] == pytest.approx(0.1)
    assert row["step_max"] == (None, None, None)
    with pytest.raises(StatisticsError, match="run B has no statistics file for step 300"):
        compare_statistics(load_statistics(tmp_path / "a"), load_statistics(tmp_path / "b"), 300)


def invoke(*args: str):
    return CliRunner().invoke(cli, ["stats", *args])


def test_cli_list(tmp_path: Path) -> None:
    write_run(tmp_path, [1000, 500])
    result = invoke("list", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["step", "improvement", "quality_ki", "quality_lr", "plateau",
                                "complete"]  # fmt: skip
    # written in the order 1000, 500: listed by step
    assert lines[1].split() == ["500", "0.1100", "0.6100", "-", "10", "yes"]
    assert lines[2].split() == ["1000", "0.1000", "0.6000", "-", "0", "yes"]


def test_cli_export_csv(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [500, 1000])
    out = tmp_path / "history.csv"
    result = invoke("export", str(tmp_path / "run"), "--csv", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["step_current"] for r in rows] == ["500", "1000"]
    assert rows[0]["l1_loss_value"] == "0.02" and rows[0]["ms_loss_value"] == ""  # null, not 0
    assert rows[0]["complete"] == "true"
    assert json.loads(rows[1]["measured_at_step"])["l1_loss_value"] == 1001
    assert list(rows[0])[: len(STAT_FIELDS)] == list(STAT_FIELDS)


def _can_write(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("where", ["missing", "read-only", "a file"])
def test_cli_export_to_a_folder_that_cannot_take_the_file_is_one_line(
    tmp_path: Path, where: str
) -> None:
    write_run(tmp_path / "run", [500])
    folder = tmp_path / "out"
    if where == "read-only":
        folder.mkdir()
        folder.chmod(0o500)
        if _can_write(folder):  # root writes anyway: /sys refuses new files to root too
            folder = Path("/sys")
            if not folder.is_dir() or _can_write(folder):
                pytest.skip("no folder this user cannot write into")
    elif where == "a file":
        folder.write_text("x")
    target = folder / "hist.csv"
    for command, extra in (("export", ["--csv", str(target)]), ("plot", ["--out", str(target)])):
        if command == "plot":
            pytest.importorskip("matplotlib")
        proc = subprocess.run(
            [sys.executable, "-m", "vsrkit", "stats", command, str(tmp_path / "run"), *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"Error: cannot write {target}")
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert ".tmp-" not in proc.stderr  # the temp name never leaks
    assert not target.exists()
    if where == "read-only" and folder != Path("/sys"):
        assert list(folder.iterdir()) == []
        folder.chmod(0o700)


def test_cli_compare(tmp_path: Path) -> None:
    write_run(tmp_path / "a", [100, 200])
    write_run(tmp_path / "b", [100, 200], ki=0.7)
    result = invoke("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--step", "100")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("quality_ki_value"))
    assert line.split() == ["quality_ki_value", "0.6", "0.7", "+0.1"]
    result = invoke("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--step", "150")
    assert result.exit_code == 1
    assert "run A has no statistics file for step 150" in result.output


def test_cli_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    write_run(tmp_path / "run", [100, 200, 300])
    out = tmp_path / "plot.png"
    result = invoke("plot", str(tmp_path / "run"), "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1200, 800)


def test_cli_plot_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [100])
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"  # as if it were not installed
        "from vsrkit.cli import main\n"
        f"main(['stats', 'plot', {str(tmp_path / 'run')!r}, '--out', 'x.png'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1
    assert "pip install 'vsrkit[plot]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["list", "export", "plot"])
def test_cli_empty_folder_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    extra = {"export": ["--csv", str(tmp_path / "x.csv")], "plot": ["--out", "x.png"]}
    result = invoke(command, str(tmp_path), *extra.get(command, []))
    assert result.exit_code == 1
    assert "no Statistik_<step>.json files" in result.output


def test_cli_stats_imports_no_torch(tmp_path: Path) -> None:
    write_run(tmp_path, [100])
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from vsrkit.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['stats', 'list', {str(tmp_path)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@given(
    steps=st.sets(st.integers(0, 10**9), max_size=8),
    template=st.sampled_from(["Statistik_{step}.json", "stats-{step}.json", "{step}.json"]),
)
def test_load_parses_steps_from_any_template(steps: set[int], template: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for s in steps:
            Path(d, template.format(step=s)).write_text(json.dumps({"step_current": s}))
            Path(d, template.format(step=f"{s}x")).write_text("{}")  # not a step: ignored
        records = load_statistics(d, filename_template=template)
    assert [r["step_current"] for r in records] == sorted(steps)
