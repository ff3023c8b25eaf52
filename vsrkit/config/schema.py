"""The runtime-config schema: key descriptions, strict JSON parsing and validation.

Everything here is pure (no files written, no torch): :func:`validate_config` checks a whole
settings document against the JSON Schema shipped with the package
(``runtime_config.schema.json``, Draft 2020-12), the cross-field rules (``min_lr <= max_lr``,
loss weights summing to 0.95-1.05) and, when the running settings are given, the
"startup-only keys need a restart" rule.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from vsrkit._text import printable
from vsrkit.config.errors import RuntimeConfigError

__all__ = [
    "CATEGORIES",
    "DOCUMENT",
    "KeySpec",
    "RuntimeConfigError",
    "describe_keys",
    "example_settings",
    "load_schema",
    "normalize_config",
    "parse_assignment",
    "parse_json_strict",
    "validate_config",
]

#: Categories in the order the docs and menus show them.
CATEGORIES = ("safe", "careful", "startup-only")
#: Error-dict key for problems with the document as a whole (not one key).
DOCUMENT = "(document)"
LOSS_WEIGHTS = ("l1_weight", "ms_weight", "grad_weight", "perceptual_weight")
WEIGHT_SUM_RANGE = (0.95, 1.05)
SCHEMA_FILE = "runtime_config.schema.json"


@functools.lru_cache(maxsize=1)
def _builtin_schema_text() -> str:
    return resources.files("vsrkit.config").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """Return (a fresh copy of) the JSON Schema shipped with vsrkit."""
    schema: dict[str, Any] = json.loads(_builtin_schema_text())
    return schema


@dataclass(frozen=True)
class KeySpec:
    """One setting as the schema describes it (what a menu or config page renders).

    Example:
        >>> spec = {s.name: s for s in describe_keys()}["plateau_patience"]
        >>> (spec.type, spec.minimum, spec.maximum, spec.category, spec.live)
        ('integer', 50, 1000, 'safe', True)
    """

    name: str
    type: str
    category: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    @property
    def live(self) -> bool:
        """True when the key may change while training runs (safe or careful)."""
        return self.category != "startup-only"

    def expected(self) -> str:
        """A short phrase such as ``an integer in [50, 1000]``."""
        noun = {"integer": "an integer", "number": "a number", "string": "a string"}.get(
            self.type, f"a {self.type}"
        )
        if self.minimum is not None and self.maximum is not None:
            noun += f" in [{_fmt(self.minimum)}, {_fmt(self.maximum)}]"
        elif self.minimum is not None:
            noun += f" >= {_fmt(self.minimum)}"
        if self.type == "string" and self.minimum is None:
            noun = "a non-empty string" if not self.nullable else noun
        return noun + (" or null" if self.nullable else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for a web page."""
        return {
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "description": self.description,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "nullable": self.nullable,
            "live": self.live,
            "expected": self.expected(),
        }


def describe_keys(
    schema: Mapping[str, Any] | None = None, *, live_only: bool = False
) -> list[KeySpec]:
    """List the settings of ``schema`` (default: the shipped one) in schema order.

    Args:
        schema: A runtime-config JSON Schema; each property needs ``type`` and ``x-category``.
        live_only: Only the keys that may change while training (``safe`` and ``careful``).
    """
    schema = load_schema() if schema is None else schema
    specs = []
    for name, prop in schema.get("properties", {}).items():
        types = prop.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        nullable = "null" in types
        main = next((t for t in types if t != "null"), "null")
        category = prop.get("x-category")
        if category not in CATEGORIES:
            raise RuntimeConfigError(
                f"schema property {name!r}: x-category must be one of {CATEGORIES}, "
                f"got {category!r}"
            )
        spec = KeySpec(
            name=name,
            type=main,
            category=category,
            description=prop.get("description", ""),
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
            nullable=nullable,
        )
        if not live_only or spec.live:
            specs.append(spec)
    return specs


def example_settings(**overrides: Any) -> dict[str, Any]:
    """A complete, valid settings document for examples and tests (not a hidden default).

    A trainer passes its own startup values as ``initial``; this only spares examples from
    spelling out 22 keys.

    Example:
        >>> validate_config(example_settings(max_lr=2e-4))
        {}
    """
    settings: dict[str, Any] = {
        "plateau_patience": 250,
        "plateau_safety_threshold": 1000,
        "cooldown_duration": 50,
        "max_lr": 1.5e-4,
        "min_lr": 1e-6,
        "grad_clip": 1.0,
        "log_every": 10,
        "val_every": 500,
        "ckpt_every": 1000,
        "l1_weight": 0.6,
        "ms_weight": 0.2,
        "grad_weight": 0.2,
        "perceptual_weight": 0.0,
        "n_feats": 64,
        "n_blocks": 15,
        "batch_size": 4,
        "preset": "base",
        "scale": 4,
        "num_frames": 7,
        "crop_size": 64,
        "data": None,
        "seed": 0,
    }
    unknown = set(overrides) - set(settings)
    if unknown:
        raise RuntimeConfigError(f"example_settings: unknown key(s) {sorted(unknown)}")
    settings.update(overrides)
    return settings


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, str) or value is None else str(value)


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadConstant(f"{name} is not allowed (only finite numbers)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # C speed; the loop below runs only when a key repeats
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadConstant(f"duplicate key {printable(key, 60)!r}")
            seen.add(key)
    return out


#: Deepest nesting :func:`parse_json_strict` accepts (settings are flat).
MAX_JSON_DEPTH = 32
#: Most digits of an integer :func:`parse_json_strict` accepts.
MAX_INT_DIGITS = 40


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadConstant(f"an integer of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadConstant(f"{text[:40]} is too large for a number")
    return value


def json_depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest, todo = 0, [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            todo.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_strict(data: bytes | str) -> Any:
    """Parse JSON strictly: UTF-8, no ``NaN``/``Infinity``, no duplicate keys.

    Raises:
        RuntimeConfigError: For a value JSON allows but settings do not (``NaN``,
            ``Infinity``, a number too large for a float, an integer of more than
            :data:`MAX_INT_DIGITS` digits, nesting deeper than :data:`MAX_JSON_DEPTH`,
            a duplicate key).
        ValueError: For text that is not JSON at all (e.g. a half-written file);
            ``json.JSONDecodeError`` and ``UnicodeDecodeError`` are both ``ValueError``.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except _BadConstant as exc:
        raise RuntimeConfigError(str(exc)) from None
    except RecursionError:
        raise RuntimeConfigError("JSON nested too deeply") from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise RuntimeConfigError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _suggest(key: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for a misspelt key, else ``""`` (long keys get none)."""
    if len(key) > 64:
        return ""
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_number(value: Any) -> bool:
    """A real number, including numpy scalars (``np.float32(1e-4)``), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _builtin(value: Any) -> Any:
    """numpy (or other) scalars as plain int/float, so the schema sees JSON types."""
    if type(value) in (int, float) or not _is_number(value):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def validate_config(
    doc: Any,
    *,
    current: Mapping[str, Any] | None = None,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Check a complete settings document; return ``{key: message}`` (empty when valid).

    Args:
        doc: The proposed settings (every key of the schema, nothing else).
        current: The running settings; when given, a changed startup-only key is an error
            ("needs a restart").
        schema: A runtime-config JSON Schema (default: the shipped one).

    Returns:
        One message per offending key; problems with the whole document use the key
        ``"(document)"``. Each message names the key, the value and what was expected.

    Example:
        >>> validate_config({"max_lr": 1e-4})["min_lr"]
        'missing key (expected a number in [1e-08, 0.0001])'
    """
    import jsonschema

    schema = load_schema() if schema is None else schema
    specs = {s.name: s for s in describe_keys(schema)}
    if not isinstance(doc, Mapping):
        return {DOCUMENT: f"expected a JSON object of settings, got {type(doc).__name__}"}
    doc = {key: _builtin(value) for key, value in doc.items()}
    errors: dict[str, str] = {}
    suggested = False  # one spelling suggestion per document: its cost must not grow with it
    for key in doc:
        if key not in specs:
            errors[str(key)] = "unknown key" + ("" if suggested else _suggest(str(key), specs))
            suggested = True
    for name, spec in specs.items():
        if name not in doc:
            errors[name] = f"missing key (expected {spec.expected()})"
    validator = jsonschema.Draft202012Validator(schema)
    for err in validator.iter_errors(dict(doc)):
        if not err.absolute_path:
            continue  # required / additionalProperties / type: reported above
        key = str(err.absolute_path[0])
        if key in specs and key not in errors:
            errors[key] = f"got {_fmt(doc[key])}, expected {specs[key].expected()}"
    for key, value in doc.items():
        if key in specs and key not in errors and _is_number(value) and not math.isfinite(value):
            errors[key] = f"got {value}, expected a finite number"
    if current is not None:
        for key, spec in specs.items():
            if (
                not spec.live
                and key in doc
                and key in current
                and key not in errors
                and _normal(spec, doc[key]) != _normal(spec, current[key])
            ):
                errors[key] = (
                    f"{key} is startup-only: changing it from {_fmt(current[key])} to "
                    f"{_fmt(doc[key])} needs a restart"
                )
    if not errors:
        errors.update(_cross_field_errors(doc, current))
    return errors


def _changed(keys: tuple[str, ...], doc: Mapping[str, Any], current: Any) -> list[str]:
    if current is None:
        return list(keys)
    moved = [k for k in keys if doc.get(k) != current.get(k)]
    return moved or list(keys)


def _cross_field_errors(doc: Mapping[str, Any], current: Any) -> dict[str, str]:
    errors: dict[str, str] = {}
    if _is_number(doc.get("min_lr")) and _is_number(doc.get("max_lr")):
        lo, hi = doc["min_lr"], doc["max_lr"]
        if lo > hi:
            msg = f"min_lr {_fmt(float(lo))} must be <= max_lr {_fmt(float(hi))}"
            for key in _changed(("min_lr", "max_lr"), doc, current):
                errors[key] = msg
    if all(_is_number(doc.get(k)) for k in LOSS_WEIGHTS):
        total = math.fsum(float(doc[k]) for k in LOSS_WEIGHTS)
        lo, hi = WEIGHT_SUM_RANGE
        if not lo <= total <= hi:
            parts = " + ".join(f"{k} {_fmt(float(doc[k]))}" for k in LOSS_WEIGHTS)
            msg = f"loss weights must sum to {lo}-{hi}, got {parts} = {total:.4g}"
            for key in _changed(LOSS_WEIGHTS, doc, current):
                errors[key] = msg
    return errors


def _normal(spec: KeySpec, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if spec.type == "integer" and _is_number(value):
        return int(value)
    if spec.type == "number" and _is_number(value):
        return float(value)
    if spec.type == "string" and isinstance(value, str):
        return str(value)  # a str subclass (e.g. numpy.str_) becomes plain str
    return value


def normalize_config(
    doc: Mapping[str, Any], schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return a valid ``doc`` with integers as ``int`` and numbers as ``float``, in schema order."""
    specs = describe_keys(schema)
    return {s.name: _normal(s, doc[s.name]) for s in specs if s.name in doc}


def parse_assignment(text: str, schema: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """Parse ``key=value`` as typed at the command line or in a terminal menu.

    The value is read as JSON (``350``, ``2e-4``, ``null``, ``"x"``); for a string-typed key
    a bare word is taken as the string itself.

    Raises:
        RuntimeConfigError: When there is no ``=``, the key is unknown, or the value is not JSON.

    Example:
        >>> parse_assignment("max_lr=2e-4")
        ('max_lr', 0.0002)
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RuntimeConfigError(f"expected key=value, got {text!r}")
    specs = {s.name: s for s in describe_keys(schema)}
    if key not in specs:
        raise RuntimeConfigError(f"{printable(key)}: unknown key" + _suggest(key, specs))
    try:
        return key, parse_json_strict(raw.strip())
    except ValueError:
        if specs[key].type == "string":
            return key, raw.strip()
        raise RuntimeConfigError(
            f"{key}: cannot read {raw!r}, expected {specs[key].expected()}"
        ) from None
