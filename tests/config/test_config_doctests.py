"""The docstring examples of the runtime-config modules run (and there are some in each)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "vsrkit.config",
    "vsrkit.config.changes",
    "vsrkit.config.manager",
    "vsrkit.config.schema",
    "vsrkit.config.watch",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
