"""Helpers shared by the runtime-config tests (a unique module name, not conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vsrkit.config import CHANGES_FILE, CONFIG_FILE


def read_jsonl(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CHANGES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def live_doc(run_dir: Path) -> Any:
    return json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))


def edit(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Rewrite runtime_config.json in place (like an editor) with some keys changed."""
    doc = {**live_doc(run_dir), **changes}
    (run_dir / CONFIG_FILE).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc
