"""The package's public names resolve, and it imports without torch (its docstring examples
run in tests/test_docstrings.py with every other module's)."""

from __future__ import annotations

import subprocess
import sys


def test_every_public_name_resolves_and_the_package_imports_without_torch() -> None:
    import vsrkit.infer

    for name in vsrkit.infer.__all__:
        assert getattr(vsrkit.infer, name) is not None, name
    code = "import sys, vsrkit.infer, vsrkit.cli.infer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
