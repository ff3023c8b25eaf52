"""Turning measured values into JSON values, with errors that name the field."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from vsrkit.stats.errors import NonFiniteError

__all__ = ["NonFiniteError", "to_json_value"]


def to_json_value(value: Any, name: str) -> Any:
    """Return ``value`` as plain JSON data (bool, int, float, str, list, dict).

    numpy scalars become Python numbers. Tensors are refused: turning one into a float could
    wait for the GPU, so the caller passes floats.

    Raises:
        NonFiniteError: If a float is NaN or infinite.
        TypeError: If a value has no JSON form; the message names the field and the type.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NonFiniteError(f"field {name!r}: value is {value!r}, which JSON cannot hold")
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{name}[{i}]") for i, v in enumerate(value)]
    type_name = type(value).__module__ + "." + type(value).__qualname__
    if type_name.startswith("torch."):
        raise TypeError(
            f"field {name!r}: got a {type_name}; pass a Python float (call .item() once per "
            "log interval in the loop)"
        )
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return to_json_value(float(value), name)
    if type_name in ("numpy.bool", "numpy.bool_"):  # numpy's bool is not a numbers.Integral
        return bool(value)
    raise TypeError(f"field {name!r}: {type_name} value {value!r} has no JSON form")
