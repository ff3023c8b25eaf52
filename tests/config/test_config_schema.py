"""The shipped schema, validate_config, strict parsing and key=value parsing."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.config import (
    RuntimeConfigError,
    describe_keys,
    example_settings,
    load_schema,
    normalize_config,
    parse_assignment,
    parse_json_strict,
    validate_config,
)

# The ranges and categories the issue fixes (the docs and the web page render these).
ISSUE_RANGES = {
    "plateau_patience": (50, 1000, "safe"),
    "plateau_safety_threshold": (100, 5000, "safe"),
    "cooldown_duration": (20, 200, "safe"),
    "max_lr": (1e-5, 1e-3, "safe"),
    "min_lr": (1e-8, 1e-4, "safe"),
    "grad_clip": (0.1, 10, "safe"),
    "l1_weight": (0, 1, "careful"),
    "ms_weight": (0, 1, "careful"),
    "grad_weight": (0, 1, "careful"),
    "perceptual_weight": (0, 1, "careful"),
}
STARTUP = {"n_feats", "n_blocks", "batch_size", "preset", "scale", "num_frames", "crop_size"}
STARTUP |= {"data", "seed"}
WEIGHTS = ("l1_weight", "ms_weight", "grad_weight", "perceptual_weight")
SPECS = {s.name: s for s in describe_keys()}
NUMERIC = sorted(k for k, s in SPECS.items() if s.type in ("integer", "number"))


def test_schema_is_draft_2020_12_and_describes_every_key() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) == set(schema["properties"])
    for name, prop in schema["properties"].items():
        assert prop["x-category"] in ("safe", "careful", "startup-only"), name
        assert prop["description"], name


@pytest.mark.parametrize("key", sorted(ISSUE_RANGES))
def test_issue_ranges_and_categories(key: str) -> None:
    lo, hi, category = ISSUE_RANGES[key]
    spec = SPECS[key]
    assert (spec.minimum, spec.maximum, spec.category) == (lo, hi, category)
    assert validate_config(example_settings(**{key: lo}) | _rebalance(key, lo)) == {}
    assert validate_config(example_settings(**{key: hi}) | _rebalance(key, hi)) == {}
    over = hi * 1.5
    errors = validate_config(example_settings(**{key: over}))
    assert errors[key] == f"got {over:g}, expected {spec.expected()}"


def _rebalance(key: str, value: float) -> dict[str, Any]:
    """Keep the other settings consistent so only ``key``'s range is tested."""
    if key in WEIGHTS:
        others = [w for w in WEIGHTS if w != key]
        return {key: value} | {w: (1.0 - value) / 3 for w in others}
    if key == "max_lr":
        return {"max_lr": value, "min_lr": min(1e-6, value)}
    if key == "min_lr":
        return {"min_lr": value, "max_lr": max(1.5e-4, value)}
    return {key: value}


def test_startup_only_keys() -> None:
    assert {s.name for s in describe_keys() if not s.live} == STARTUP
    assert all(s.live for s in describe_keys(live_only=True))
    current = example_settings()
    for key in sorted(STARTUP):
        value = "other" if SPECS[key].type == "string" else current[key] or 1
        value = value + 1 if isinstance(value, int) and value == current[key] else value
        errors = validate_config({**current, key: value}, current=current)
        assert errors[key].endswith("needs a restart"), (key, errors)
        assert validate_config({**current, key: value}) == {}  # no running settings: type only


def test_key_specs_are_json_safe_for_a_web_page() -> None:
    rows = json.loads(json.dumps([s.to_dict() for s in describe_keys()]))
    row = next(r for r in rows if r["name"] == "max_lr")
    assert row["expected"] == "a number in [1e-05, 0.001]"
    assert row["live"] is True and row["category"] == "safe"


def test_unknown_and_missing_keys_are_named() -> None:
    doc = example_settings()
    doc["plateau_patiense"] = doc.pop("plateau_patience")
    errors = validate_config(doc)
    assert errors["plateau_patiense"] == "unknown key; did you mean 'plateau_patience'?"
    assert errors["plateau_patience"] == "missing key (expected an integer in [50, 1000])"
    assert validate_config([1, 2]) == {"(document)": "expected a JSON object of settings, got list"}


def test_cross_field_rules_blame_the_moved_key() -> None:
    current = example_settings()
    errors = validate_config({**current, "min_lr": 1e-4, "max_lr": 5e-5}, current=current)
    assert set(errors) == {"min_lr", "max_lr"} and "must be <= max_lr" in errors["min_lr"]
    errors = validate_config({**current, "l1_weight": 0.7}, current=current)
    assert set(errors) == {"l1_weight"} and "= 1.1" in errors["l1_weight"]
    assert validate_config({**current, "l1_weight": 0.55}, current=current) == {}  # sum 0.95
    assert validate_config({**current, "l1_weight": 0.65}, current=current) == {}  # sum 1.05


@pytest.mark.parametrize("bad", [True, "250", None, [250], {"v": 250}, 250.5])
def test_wrong_types_are_rejected(bad: Any) -> None:
    errors = validate_config(example_settings(plateau_patience=bad))
    assert errors["plateau_patience"].endswith("expected an integer in [50, 1000]")


def test_integral_floats_are_normalized() -> None:
    doc = example_settings(plateau_patience=350.0, l1_weight=1 - 0.4, perceptual_weight=0)
    assert validate_config(doc) == {}
    out = normalize_config(doc)
    assert type(out["plateau_patience"]) is int and type(out["perceptual_weight"]) is float


finite = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6)


@given(key=st.sampled_from(NUMERIC), value=finite)
def test_numeric_values_accepted_exactly_when_in_range(key: str, value: float) -> None:
    doc = example_settings(**{key: value})
    spec = SPECS[key]
    ok = math.isfinite(value) and spec.minimum <= value <= (spec.maximum or math.inf)
    ok = ok and (spec.type == "number" or float(value).is_integer())
    ok = ok and doc["min_lr"] <= doc["max_lr"]
    ok = ok and 0.95 <= math.fsum(doc[w] for w in WEIGHTS) <= 1.05
    errors = validate_config(doc)
    assert (errors == {}) == ok, (key, value, errors)
    if not ok:
        assert list(errors) == [key] or key in WEIGHTS + ("min_lr", "max_lr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"max_lr": NaN}', "NaN is not allowed"),
        ('{"max_lr": Infinity}', "Infinity is not allowed"),
        ('{"max_lr": -Infinity}', "-Infinity is not allowed"),
        ('{"max_lr": 1e-4, "max_lr": 2e-4}', "duplicate key 'max_lr'"),
    ],
)
def test_strict_parsing_rejects_what_settings_cannot_hold(text: str, message: str) -> None:
    with pytest.raises(RuntimeConfigError, match=message):
        parse_json_strict(text)


def test_strict_parsing_half_document_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_json_strict(b'{"max_lr": 0.0')
    with pytest.raises(ValueError):
        parse_json_strict(b"\xff\xfe{}")
    with pytest.raises(RuntimeConfigError, match="too large for a number"):
        parse_json_strict('{"max_lr": 1e999}')  # JSON allows it; a float cannot hold it
    errors = validate_config(example_settings(max_lr=float("inf")))  # from Python, not JSON
    assert errors == {"max_lr": "got inf, expected a number in [1e-05, 0.001]"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 33 + "]" * 33, "nested deeper than 32"),
        ("[" * 5000 + "]" * 5000, "nested"),
        ('{"seed": ' + "9" * 41 + "}", "41 digits is too large"),
        ('{"seed": -' + "9" * 5000 + "}", "5000 digits"),
        ('{"max_lr": -1e400}', "too large"),
    ],
)
def test_strict_parsing_bounds_depth_and_size_of_numbers(text: str, message: str) -> None:
    with pytest.raises(RuntimeConfigError, match=message):
        parse_json_strict(text)
    assert parse_json_strict("[" * 32 + "]" * 32) is not None  # 32 levels are fine
    assert parse_json_strict('{"seed": ' + "9" * 40 + "}")["seed"] == int("9" * 40)


json_values = st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False)


@given(key=st.sampled_from(sorted(SPECS)), value=json_values | st.none() | st.text())
def test_parse_assignment_round_trip(key: str, value: Any) -> None:
    assert parse_assignment(f"{key}={json.dumps(value)}") == (key, value)


def test_parse_assignment_errors() -> None:
    assert parse_assignment("preset=large") == ("preset", "large")
    with pytest.raises(RuntimeConfigError, match="expected key=value"):
        parse_assignment("max_lr")
    with pytest.raises(RuntimeConfigError, match="did you mean 'max_lr'"):
        parse_assignment("max_Lr=1")
    with pytest.raises(RuntimeConfigError, match="max_lr: cannot read 'fast'"):
        parse_assignment("max_lr=fast")
    with pytest.raises(RuntimeConfigError, match="NaN is not allowed"):
        parse_assignment("max_lr=NaN")


def test_example_settings_rejects_unknown_override() -> None:
    with pytest.raises(RuntimeConfigError, match="unknown key"):
        example_settings(max_LR=1)


def test_docs_table_matches_the_schema() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "runtime-config.md"
    rows = re.findall(r"^\| `(\w+)` \| ([\w-]+) \| ([^|]+) \| ([^|]+) \|$", page.read_text(), re.M)
    table = [(k, c, e.strip(), d.strip()) for k, c, e, d in rows]
    assert table == [(s.name, s.category, s.expected(), s.description) for s in describe_keys()]


def test_numpy_scalars_are_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    doc = example_settings(n_feats=np.int64(32), max_lr=np.float32(2e-4), grad_clip=np.float64(2))
    assert validate_config(doc) == {}
    out = normalize_config(doc)
    assert type(out["n_feats"]) is int and type(out["max_lr"]) is float
    json.dumps(out)  # JSON-safe
    errors = validate_config(example_settings(max_lr=np.float64("nan")))
    assert errors == {"max_lr": "got nan, expected a finite number"}
    assert "expected an integer" in validate_config(example_settings(seed=np.bool_(True)))["seed"]
