"""Lazy public names for a package: ``import vsrkit.x`` stays light, a name loads its module
on first use (PEP 562).

Example:
    >>> __getattr__, __dir__ = lazy_names("json", {"dumps": "json"}, ["dumps"])
    >>> __getattr__("dumps")({"a": 1})
    '{"a": 1}'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's ``__name__``.
        names: Public name -> module that defines it (absolute, or relative to ``package``
            when it starts with a dot).
        public: Everything ``dir(package)`` lists.
    """
    listed = sorted(public)

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return listed

    return __getattr__, __dir__
