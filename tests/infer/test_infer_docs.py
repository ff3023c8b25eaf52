"""Every docstring example of vsrkit.infer runs, and the package imports without torch."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = [
    "vsrkit.infer",
    "vsrkit.infer.allocator",
    "vsrkit.infer.frames",
    "vsrkit.infer.loading",
    "vsrkit.infer.scoring",
    "vsrkit.infer.store",
    "vsrkit.infer.stream",
    "vsrkit.infer.tiles",
    "vsrkit.infer.video",
    "vsrkit.vsr.folders",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_name_resolves_and_the_package_imports_without_torch() -> None:
    import vsrkit.infer

    for name in vsrkit.infer.__all__:
        assert getattr(vsrkit.infer, name) is not None, name
    code = "import sys, vsrkit.infer, vsrkit.cli.infer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
