"""Every ``Example:`` in a vsrkit docstring runs, in every module, as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import vsrkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(vsrkit.__path__, "vsrkit."))
OPTIONAL = {"lightning", "accelerate", "av"}  # extras: a module that needs one may skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name or getattr(exc.__cause__, "name", None) or ""
        if missing.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {missing}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_module_is_found() -> None:
    assert {"vsrkit.vsr.pretrained", "vsrkit.infer.stream", "vsrkit.checkpoint.manager"} <= set(
        MODULES
    )
