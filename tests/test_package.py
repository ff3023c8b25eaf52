"""The package imports light, exposes its public names, and its CLI starts without torch."""

from __future__ import annotations

import subprocess
import sys

import vsrkit


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_import_torch() -> None:
    assert _run("import sys, vsrkit; print('torch' in sys.modules)") == "False"


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from vsrkit.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)"
    )
    assert _run(code) == "False"


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vsrkit", "--version"], capture_output=True, text=True, check=True
    )
    assert vsrkit.__version__ in out.stdout


def test_every_public_name_resolves() -> None:
    for name in vsrkit.__all__:
        assert getattr(vsrkit, name) is not None, name


def test_unknown_attribute_raises() -> None:
    import pytest

    with pytest.raises(AttributeError):
        vsrkit.NoSuchThing  # noqa: B018
