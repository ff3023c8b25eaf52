"""docs/statistics.md documents every field with the type, unit and group the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from vsrkit.stats import FIELDS
from vsrkit.stats.analysis import EXTRA_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", re.M)
EXTRA_ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", re.M)


def test_every_field_is_documented_with_type_unit_group_and_meaning() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = {m[0]: tuple(x.strip() for x in m[1:]) for m in ROW.findall(text)}
    assert list(rows) == list(FIELDS)  # every field, in file order, nothing else
    for name, (type_, unit, group, meaning) in rows.items():
        spec = FIELDS[name]
        assert (type_, unit, group) == (spec.type, spec.unit, spec.group), name
        assert len(meaning.split()) >= 4, name


def test_every_extra_field_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = [m[0] for m in EXTRA_ROW.findall(text) if m[0] not in FIELDS]
    assert sorted(documented) == sorted(EXTRA_FIELDS)
