"""The JSON Schema of ``Statistik_<step>.json`` (shipped as ``statistik.schema.json``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from vsrkit.stats.errors import StatisticsError, StatisticsValidationError

__all__ = [
    "SCHEMA_VERSION",
    "StatisticsError",
    "StatisticsValidationError",
    "load_schema",
    "validate_statistics",
]

#: Value of the ``schema_version`` field of every file this version writes.
SCHEMA_VERSION = 1


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("vsrkit.stats").joinpath("statistik.schema.json").read_text("utf-8")


def load_schema() -> dict[str, Any]:
    """Return a fresh copy of the shipped JSON Schema (draft 2020-12)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema  # imported on first use: keeps `import vsrkit.stats` light

    return jsonschema.Draft202012Validator(load_schema())


def _where(path: Any) -> str:
    parts = list(path)
    if not parts:
        return "the document"
    return "field " + repr(".".join(str(p) for p in parts))


def validate_statistics(doc: Mapping[str, Any], *, source: str = "statistics") -> None:
    """Check ``doc`` against the shipped schema.

    Args:
        doc: A parsed statistics document.
        source: Name used in the message (a file name).

    Raises:
        StatisticsValidationError: Listing every problem, each with the field it concerns.

    Example:
        >>> try:
        ...     validate_statistics({"step_current": 5}, source="Statistik_5.json")
        ... except StatisticsValidationError as exc:
        ...     print(exc.problems[0][:30])
        missing fields: epoch_num, ste
    """
    errors = sorted(_validator().iter_errors(dict(doc)), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    problems = []
    for err in errors:
        if err.validator == "required":
            missing = [k for k in err.validator_value if k not in err.instance]
            problems.append(f"missing fields: {', '.join(missing)}")
        elif err.validator == "additionalProperties" and not err.path:
            problems.append(f"unknown fields: {err.message}")
        else:
            problems.append(f"{_where(err.path)}: {err.message}")
    shown = "\n  ".join(problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise StatisticsValidationError(
        f"{source} does not match the Statistik schema v{SCHEMA_VERSION}:\n  {shown}{more}",
        problems,
    )
