"""The docstring examples of the monitor modules run (and there are some in each)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "vsrkit.monitor",
    "vsrkit.monitor.actions",
    "vsrkit.monitor.runfolder",
    "vsrkit.monitor.server",
    "vsrkit.monitor.status",
    "vsrkit.monitor.terminal",
    "vsrkit._text",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
