"""Read a run folder's files for ``vsrkit monitor RUN_DIR`` (read-only monitor).

The latest ``Statistik_<step>.json`` gives the values, all of them give the loss and
validation history, ``runtime_config.json`` the settings and ``config_changes.jsonl`` the
change log. Files are re-read only when the folder's listing or a file's mtime changes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsrkit.errors import VsrkitError

__all__ = ["RunFolderError", "RunFolderSource"]

logger = logging.getLogger(__name__)

_CONFIG_FILE = "runtime_config.json"
_CHANGES_FILE = "config_changes.jsonl"


class RunFolderError(VsrkitError):
    """The run folder does not exist or is not a folder."""


class _FolderConfig:
    """Read-only view of a run's settings (``current``, ``latest``, ``changes``)."""

    def __init__(self, source: RunFolderSource) -> None:
        self._source = source

    @property
    def current(self) -> dict[str, Any]:
        return dict(self._source.settings)

    latest = current

    @property
    def changes(self) -> list[dict[str, Any]]:
        return list(self._source.changes)

    def submit(self, patch: Mapping[str, Any], *, source: str) -> Any:
        raise RunFolderError("this monitor is read-only: settings cannot be changed")


class RunFolderSource:
    """The monitor's snapshot, history and settings, read from a run folder.

    Args:
        run_dir: The run folder (``runs/<name>``).
        filename_template: Name of the statistics files, with ``{step}``.

    Raises:
        RunFolderError: ``run_dir`` is not a folder.

    Example:
        >>> import tempfile
        >>> src = RunFolderSource(tempfile.mkdtemp())
        >>> src.snapshot()
        {}
        >>> src.extra()["run_folder"]["statistics_files"]
        0
    """

    def __init__(
        self, run_dir: str | os.PathLike[str], *, filename_template: str = "Statistik_{step}.json"
    ) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise RunFolderError(f"{self.run_dir}: not a folder (expected a run folder)")
        self.filename_template = filename_template
        self._lock = threading.Lock()
        self._signature: Any = None
        self.records: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.changes: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.config = _FolderConfig(self)

    def _listing(self) -> Any:
        prefix, _, suffix = self.filename_template.partition("{step}")
        sig = []
        for entry in os.scandir(self.run_dir):
            name = entry.name
            wanted = name.startswith(prefix) and name.endswith(suffix)
            if wanted or name in (_CONFIG_FILE, _CHANGES_FILE):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                sig.append((name, st.st_mtime_ns, st.st_size))
        return tuple(sorted(sig))

    def refresh(self) -> None:
        """Re-read the files if anything changed since the last call."""
        with self._lock:
            signature = self._listing()
            if signature == self._signature:
                return
            self._signature = signature
            from vsrkit.stats import load_statistics

            errors: list[str] = []
            self.records = load_statistics(self.run_dir, filename_template=self.filename_template)
            self.settings = self._read_settings(errors)
            self.changes = self._read_changes(errors)
            self.errors = errors

    def _read_settings(self, errors: list[str]) -> dict[str, Any]:
        path = self.run_dir / _CONFIG_FILE
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            errors.append(f"{path.name}: cannot be read as JSON ({exc})")
            return {}
        if not isinstance(doc, dict):
            errors.append(f"{path.name}: expected a JSON object, got {type(doc).__name__}")
            return {}
        return doc

    def _read_changes(self, errors: list[str]) -> list[dict[str, Any]]:
        path = self.run_dir / _CHANGES_FILE
        if not path.exists():
            return []
        out = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            errors.append(f"{path.name}: cannot be read ({exc})")
            return []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                errors.append(f"{path.name}:{n}: not JSON ({exc})")
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The latest file's fields (flat), with its ``measured_at_step``; ``{}`` if none."""
        self.refresh()
        if not self.records:
            return {}
        latest = dict(self.records[-1])
        measured = latest.get("measured_at_step")
        latest["measured_at_step"] = dict(measured) if isinstance(measured, Mapping) else {}
        return latest

    def extra(self) -> dict[str, Any]:
        """History from every file, the change log and notes, merged into ``/api/status``."""
        self.refresh()
        loss = [
            [r["step_current"], r["total_loss_value"]]
            for r in self.records
            if isinstance(r.get("step_current"), int)
            and isinstance(r.get("total_loss_value"), (int, float))
        ]
        validations = [
            {
                "step": r.get("step_current"),
                "quality_ki": r.get("quality_ki_value"),
                "quality_lr": r.get("quality_lr_value"),
                "improvement": r.get("quality_improvement_value"),
                "validation_loss": r.get("validation_loss_value"),
                "best": r.get("best_quality_ever"),
            }
            for r in self.records
        ]
        return {
            "loss_history": loss,
            "validation_history": validations,
            "config_changes": self.changes[-20:],
            "run_folder": {
                "path": str(self.run_dir),
                "statistics_files": len(self.records),
                "errors": list(self.errors),
            },
        }

    def stats(self) -> dict[str, Any]:
        """The latest statistics file as written (``{}`` when there is none yet)."""
        self.refresh()
        return dict(self.records[-1]) if self.records else {}
