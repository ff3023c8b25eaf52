"""Helpers shared by the runtime-config tests (a unique module name, not conftest)."""

from __future__ import annotations

import json
import threading
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


class FakeGroup:
    """A two-rank broadcast made of two threads and a barrier (stands in for DDP)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=10)
        self.slot: Any = None
        self.calls = [0, 0]

    def broadcast_for(self, rank: int) -> Any:
        def broadcast(obj: Any) -> Any:
            self.calls[rank] += 1
            if rank == 0:
                self.slot = json.loads(json.dumps(obj))  # the wire: only JSON-safe data
            self.barrier.wait()
            out = self.slot
            self.barrier.wait()
            return out

        return broadcast
