"""Runtime configuration: settings edited while training runs, validated, logged, snapshotted.

Importing this package does not import torch.

Example:
    >>> import tempfile
    >>> from vsrkit.config import RuntimeConfigManager, example_settings
    >>> mgr = RuntimeConfigManager(tempfile.mkdtemp(), initial=example_settings())
    >>> mgr.submit({"batch_size": 8}).errors["batch_size"]
    'batch_size is startup-only: changing it from 4 to 8 needs a restart'
"""

from __future__ import annotations

from vsrkit.config.changes import (
    CHANGES_FILE,
    CONFIG_FILE,
    ConfigChange,
    SubmitResult,
    append_changes,
    read_changes,
    snapshot_name,
)
from vsrkit.config.manager import RuntimeConfigManager
from vsrkit.config.schema import (
    CATEGORIES,
    KeySpec,
    RuntimeConfigError,
    describe_keys,
    example_settings,
    load_schema,
    normalize_config,
    parse_assignment,
    parse_json_strict,
    validate_config,
)

__all__ = [
    "CATEGORIES",
    "CHANGES_FILE",
    "CONFIG_FILE",
    "ConfigChange",
    "KeySpec",
    "RuntimeConfigError",
    "RuntimeConfigManager",
    "SubmitResult",
    "append_changes",
    "describe_keys",
    "example_settings",
    "load_schema",
    "normalize_config",
    "parse_assignment",
    "parse_json_strict",
    "read_changes",
    "snapshot_name",
    "validate_config",
]
