"""Import a framework the adapters need, or say in one line which extra installs it."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["require"]


def require(module: str, extra: str, user: str) -> Any:
    """Import an optional dependency or raise one clear ``ImportError`` naming the extra.

    Example:
        >>> require("json", "none", "this doctest").dumps(1)
        '1'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{user} needs {extra}: pip install 'vsrkit[{extra}]'") from exc
