"""The docstring examples of the recipe's, the checkpoint's and the statistics' modules run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = [
    "vsrkit.train",
    "vsrkit.train.config",
    "vsrkit.train.schedule",
    "vsrkit.train.threads",
    "vsrkit.train.resume",
    "vsrkit.train.output",
    "vsrkit.checkpoint",
    "vsrkit.checkpoint.manager",
    "vsrkit.checkpoint.retention",
    "vsrkit.checkpoint.records",
    "vsrkit.cli.prompt",
    "vsrkit.checkpoint.writer",
    "vsrkit.checkpoint.restore",
    "vsrkit.checkpoint.names",
    "vsrkit.checkpoint.mirror",
    "vsrkit.checkpoint.rng",
    "vsrkit.loop.signals",
    "vsrkit.train.state",
    "vsrkit.train.setup",
    "vsrkit.train.telemetry",
    "vsrkit.stats.writer",
    "vsrkit.stats.analysis",
    "vsrkit.stats.snapshot",
    "vsrkit.stats.accumulator",
    "vsrkit.stats.tensorboard",
    "vsrkit.stats.fields",
    "vsrkit.stats.schema",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
