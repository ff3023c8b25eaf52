"""The README's quick start stays true: CI runs its test command, its train command parses."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quick_start_is_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "vsrkit train" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quick_start_commands()[1] in ci


def test_readme_train_flags_are_accepted() -> None:
    from vsrkit.cli.train import train

    args = quick_start_commands()[0].split("vsrkit train", 1)[1].split()
    ctx = train.make_context("train", args)  # parses only; raises on an unknown flag
    assert ctx.params["preset"] == "quick"
    assert CliRunner().invoke(train, ["--help"]).exit_code == 0
