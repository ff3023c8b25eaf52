"""The checkpoint name grammar: round trips, int ordering, legacy names, garbage rejected."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.checkpoint import format_checkpoint_name, manifest_name, parse_checkpoint_name

steps = st.integers(min_value=0, max_value=10**12)
tags = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z").filter(lambda t: t != "regular")


@given(steps, st.none() | tags)
def test_format_then_parse_round_trips(step: int, tag: str | None) -> None:
    name = format_checkpoint_name(step, tag)
    parsed = parse_checkpoint_name(name)
    assert parsed is not None
    assert (parsed.step, parsed.tag, parsed.legacy, parsed.kind) == (step, tag, False, "checkpoint")
    assert parsed.type == (tag or "regular")
    m = parse_checkpoint_name(manifest_name(name))
    assert m is not None and (m.step, m.tag, m.kind) == (step, tag, "manifest")


@given(st.lists(steps, min_size=2, max_size=30, unique=True))
def test_order_by_parsed_step_is_numeric_not_lexical(values: list[int]) -> None:
    # Old unpadded names mixed in: string order would put "checkpoint_step_99" after 100000.
    names = [
        f"checkpoint_step_{v}.pth" if i % 2 else format_checkpoint_name(v)
        for i, v in enumerate(values)
    ]
    parsed_steps = [parse_checkpoint_name(n).step for n in names]  # type: ignore[union-attr]
    assert parsed_steps == values
    assert sorted(names, key=lambda n: parse_checkpoint_name(n).step) == [  # type: ignore[union-attr]
        names[values.index(v)] for v in sorted(values)
    ]


@given(steps)
def test_padding_is_seven_digits_and_grows_past_it(step: int) -> None:
    digits = format_checkpoint_name(step)[len("checkpoint_step_") : -len(".pth")]
    assert len(digits) == max(7, len(str(step)))
    assert int(digits) == step


@pytest.mark.parametrize(
    ("name", "step", "tag", "legacy"),
    [
        ("checkpoint_step_0001234.pth", 1234, None, False),
        ("checkpoint_step_0004144_emergency.pth", 4144, "emergency", False),
        ("checkpoint_step_0002000_best.pth", 2000, "best", False),
        ("checkpoint_step_123.pth", 123, None, True),
        ("checkpoint_step_123_best.pth", 123, "best", True),
        ("checkpoint_emergency.pth", 0, "emergency", True),
        ("checkpoint_step_12345678.pth", 12345678, None, False),
    ],
)
def test_known_names(name: str, step: int, tag: str | None, legacy: bool) -> None:
    parsed = parse_checkpoint_name(name)
    assert parsed is not None
    assert (parsed.step, parsed.tag, parsed.legacy) == (step, tag, legacy)


@pytest.mark.parametrize(
    "name",
    [
        "checkpoint_step_abc.pth",
        "checkpoint_step_.pth",
        "checkpoint_step_0001234.pth.corrupt",
        ".tmp-checkpoint_step_0001234.pth.x1y2",
        ".checkpoint_step_0001234.pth",
        "checkpoint_step_0001234.pt",
        "checkpoint_step_0001234_.pth",
        "checkpoint_step_0001234_regular.pth",
        "checkpoint_step_-5.pth",
        "checkpoint_step_١٢٣.pth",  # non-ASCII digits
        "xcheckpoint_step_0001234.pth",
        "checkpoint_step_0001234.pth\n",
        "notes.txt",
        "runtime_config_step_4000.json",
    ],
)
def test_garbage_names_are_rejected(name: str) -> None:
    assert parse_checkpoint_name(name) is None


@given(st.text(max_size=40))
def test_random_text_never_crashes_and_accepted_names_round_trip(name: str) -> None:
    parsed = parse_checkpoint_name(name)
    if parsed is not None and not parsed.legacy and parsed.kind == "checkpoint":
        assert format_checkpoint_name(parsed.step, parsed.tag) == name


@given(
    st.text(min_size=1, max_size=10).filter(
        lambda t: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", t)  # the tag grammar
    )
)
def test_format_rejects_bad_tags(tag: str) -> None:
    with pytest.raises(ValueError, match="tag"):
        format_checkpoint_name(1, tag)


@pytest.mark.parametrize("step", [-1, 1.5, "3", True, None])
def test_format_rejects_bad_steps(step: object) -> None:
    with pytest.raises(ValueError, match="step"):
        format_checkpoint_name(step)  # type: ignore[arg-type]
