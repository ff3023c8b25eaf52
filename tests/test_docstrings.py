"""Every ``Example:`` in a vsrkit docstring runs, in every module, as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import vsrkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(vsrkit.__path__, "vsrkit."))
OPTIONAL = {"lightning", "accelerate", "av"}  # extras: a module that needs one may skip
#: every module that has examples today: a change that loses a module's examples fails
WITH_EXAMPLES = frozenset(
    {
        "vsrkit._atomic",
        "vsrkit._deprecated",
        "vsrkit._lazy",
        "vsrkit._safe_load",
        "vsrkit._state",
        "vsrkit._system",
        "vsrkit._terms",
        "vsrkit._text",
        "vsrkit.adaptive.clip",
        "vsrkit.adaptive.gradients",
        "vsrkit.adaptive.loss_weights",
        "vsrkit.adaptive.lr",
        "vsrkit.adaptive.plateau",
        "vsrkit.adaptive.warmup",
        "vsrkit.checkpoint",
        "vsrkit.checkpoint.manager",
        "vsrkit.checkpoint.mirror",
        "vsrkit.checkpoint.names",
        "vsrkit.checkpoint.records",
        "vsrkit.checkpoint.restore",
        "vsrkit.checkpoint.retention",
        "vsrkit.checkpoint.rng",
        "vsrkit.checkpoint.writer",
        "vsrkit.cli.prompt",
        "vsrkit.config",
        "vsrkit.config.changes",
        "vsrkit.config.manager",
        "vsrkit.config.schema",
        "vsrkit.config.watch",
        "vsrkit.errors",
        "vsrkit.infer",
        "vsrkit.infer.allocator",
        "vsrkit.infer.frames",
        "vsrkit.infer.loading",
        "vsrkit.infer.scoring",
        "vsrkit.infer.store",
        "vsrkit.infer.stream",
        "vsrkit.infer.tiles",
        "vsrkit.integrations._hooks",
        "vsrkit.integrations._optional",
        "vsrkit.integrations.accelerate",
        "vsrkit.integrations.lightning",
        "vsrkit.loop",
        "vsrkit.loop.core",
        "vsrkit.loop.dist",
        "vsrkit.loop.lr",
        "vsrkit.loop.routes",
        "vsrkit.loop.signals",
        "vsrkit.loop.state",
        "vsrkit.monitor",
        "vsrkit.monitor.actions",
        "vsrkit.monitor.runfolder",
        "vsrkit.monitor.server",
        "vsrkit.monitor.status",
        "vsrkit.monitor.terminal",
        "vsrkit.stats.accumulator",
        "vsrkit.stats.analysis",
        "vsrkit.stats.fields",
        "vsrkit.stats.schema",
        "vsrkit.stats.snapshot",
        "vsrkit.stats.tensorboard",
        "vsrkit.stats.writer",
        "vsrkit.train",
        "vsrkit.train.config",
        "vsrkit.train.output",
        "vsrkit.train.resume",
        "vsrkit.train.schedule",
        "vsrkit.train.setup",
        "vsrkit.train.state",
        "vsrkit.train.telemetry",
        "vsrkit.train.threads",
        "vsrkit.vsr",
        "vsrkit.vsr.activity",
        "vsrkit.vsr.flow",
        "vsrkit.vsr.folders",
        "vsrkit.vsr.losses",
        "vsrkit.vsr.metrics",
        "vsrkit.vsr.model",
        "vsrkit.vsr.pretrained",
        "vsrkit.vsr.synthetic",
        "vsrkit.vsr.textures",
    }
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name or getattr(exc.__cause__, "name", None) or ""
        if missing.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {missing}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    assert result.attempted > 0 or name not in WITH_EXAMPLES, f"{name} lost its examples"


def test_every_module_is_found() -> None:
    assert {"vsrkit.vsr.pretrained", "vsrkit.infer.stream"} | WITH_EXAMPLES <= set(MODULES)
