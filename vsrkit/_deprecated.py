"""Old import paths that keep working for a release, with a ``DeprecationWarning``.

Example:
    >>> import warnings
    >>> getattr_ = moved("old.place", {"dumps": "json"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("dumps")({"a": 1}), str(caught[0].message)
    ('{"a": 1}', 'old.place.dumps moved to json.dumps; import it from there')
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved"]


def moved(old: str, names: Mapping[str, str], *, stacklevel: int = 2) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved: ``{name: "new.module"}``, or
    ``{name: "new.module:NewName"}`` for one that was renamed too. ``stacklevel`` points the
    warning at the importing line (3 when another ``__getattr__`` calls this one)."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        module, _, new_name = target.partition(":")
        new_name = new_name or name
        warnings.warn(
            f"{old}.{name} moved to {module}.{new_name}; import it from there",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(module), new_name)

    return __getattr__
