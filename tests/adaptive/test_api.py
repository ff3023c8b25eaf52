"""Public names, import cost, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import vsrkit

MODULES = ["plateau", "lr", "loss_weights", "clip"]


def test_public_names_resolve_from_vsrkit():
    for name in (
        "PlateauTracker", "PlateauEvent", "PlateauReason", "LRBoostPolicy", "apply_lr",
        "AdaptiveLossWeights", "GradClipAdapter", "DynamicThreshold",
    ):  # fmt: skip
        assert getattr(vsrkit, name) is getattr(importlib.import_module("vsrkit.adaptive"), name)


def test_import_does_not_import_torch():
    code = "import sys, vsrkit.adaptive; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_are_vsrkit_errors():
    from vsrkit.adaptive import AdaptiveError

    assert issubclass(AdaptiveError, vsrkit.VsrkitError)
    assert issubclass(AdaptiveError, ValueError)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"vsrkit.adaptive.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
