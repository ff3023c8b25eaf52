"""Fixtures for the runtime-config tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsrkit.config import RuntimeConfigManager, example_settings


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def mgr(run_dir: Path) -> RuntimeConfigManager:
    return RuntimeConfigManager(run_dir, initial=example_settings())
