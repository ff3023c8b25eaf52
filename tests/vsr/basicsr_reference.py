"""BasicSR's own BasicVSR, imported at test time from the package registry's source archive.

Nothing of BasicSR is copied into vsrkit: `.ci/run` downloads ``basicsr-1.4.2.tar.gz``
(``pip download --no-deps --no-binary :all: --no-build-isolation basicsr==1.4.2``) into
``test-artifacts/``; this module extracts the four architecture files it needs and imports them
with small stand-ins for what they import but BasicVSR never calls (the deformable-convolution
ops, torchvision, BasicSR's logger and registry). Without the archive the tests that need it
skip with the command to run, except where ``VSRKIT_REQUIRE_REFERENCE=1`` (CI): there they fail.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tarfile
import types
from pathlib import Path
from typing import Any

import pytest
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
VERSION = "1.4.2"
SDIST = f"basicsr-{VERSION}.tar.gz"
FETCH = (
    "pip download --no-deps --no-binary :all: --no-build-isolation "
    f"basicsr=={VERSION} -d test-artifacts"
)
ARCH_FILES = ("arch_util.py", "edvr_arch.py", "spynet_arch.py", "basicvsr_arch.py")


def find_sdist() -> Path | None:
    """The source archive: ``$VSRKIT_BASICSR_SDIST`` or ``test-artifacts/basicsr-1.4.2.tar.gz``."""
    env = os.environ.get("VSRKIT_BASICSR_SDIST")
    path = Path(env) if env else ROOT / "test-artifacts" / SDIST
    return path if path.is_file() else None


def need_reference() -> Path:
    """The archive, or a skip (a failure where ``VSRKIT_REQUIRE_REFERENCE=1``)."""
    sdist = find_sdist()
    if sdist is None:
        reason = f"BasicSR {VERSION} source archive not found; fetch it with: {FETCH}"
        if os.environ.get("VSRKIT_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return sdist


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


class _Registry:
    def register(self, obj: Any = None) -> Any:
        return obj if obj is not None else (lambda o: o)


class _DeformConvStandIn(nn.Module):
    """BasicVSR never builds a deformable convolution; EDVR's module only subclasses it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


def load_basicsr_archs(sdist: Path, workdir: Path) -> types.SimpleNamespace:
    """BasicSR's ``BasicVSR``, ``SpyNet`` and ``flow_warp`` from ``sdist`` (unpacked in
    ``workdir``)."""
    archs = workdir / "basicsr" / "archs"
    archs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for name in ARCH_FILES:
            member = tar.getmember(f"basicsr-{VERSION}/basicsr/archs/{name}")
            data = tar.extractfile(member)
            assert data is not None
            (archs / name).write_bytes(data.read())
    stubs = {
        "basicsr": _stub("basicsr", __path__=[]),
        "basicsr.archs": _stub("basicsr.archs", __path__=[str(archs)]),
        "basicsr.utils": _stub("basicsr.utils", get_root_logger=lambda: logging.getLogger("b")),
        "basicsr.utils.registry": _stub("basicsr.utils.registry", ARCH_REGISTRY=_Registry()),
        "basicsr.ops": _stub("basicsr.ops", __path__=[]),
        "basicsr.ops.dcn": _stub(
            "basicsr.ops.dcn",
            ModulatedDeformConvPack=_DeformConvStandIn,
            modulated_deform_conv=None,
        ),
        "torchvision": _stub("torchvision", __version__="0.0.0", ops=None),
    }
    try:
        import distutils.version  # noqa: F401  (removed in Python 3.12)
    except ImportError:
        from packaging.version import Version

        stubs["distutils"] = _stub("distutils", __path__=[])
        stubs["distutils.version"] = _stub("distutils.version", LooseVersion=Version)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        basicvsr = importlib.import_module("basicsr.archs.basicvsr_arch")
        spynet = importlib.import_module("basicsr.archs.spynet_arch")
        util = importlib.import_module("basicsr.archs.arch_util")
    finally:
        for name in [*stubs, *(f"basicsr.archs.{f[:-3]}" for f in ARCH_FILES)]:
            sys.modules.pop(name, None)
        sys.modules.update({k: v for k, v in saved.items() if v is not None})
    return types.SimpleNamespace(
        BasicVSR=basicvsr.BasicVSR, SpyNet=spynet.SpyNet, flow_warp=util.flow_warp
    )
