"""Bounded work per proposal: key cap, one suggestion, bounded queue, append-only log, escapes."""

from __future__ import annotations

import difflib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rc_helpers import edit, read_jsonl

from vsrkit._text import printable
from vsrkit.config import (
    CHANGES_FILE,
    CONFIG_FILE,
    ConfigChange,
    RuntimeConfigManager,
    append_changes,
    example_settings,
    read_changes,
)


def junk_patch(n: int, width: int = 8) -> dict[str, Any]:
    return {f"k{i:0{width}d}": i for i in range(n)}


def test_a_patch_beyond_the_key_cap_is_refused_whole_with_one_record(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(), max_patch_keys=16)
    result = mgr.submit({**junk_patch(1300), "grad_clip": 2.0})
    assert not result.accepted
    assert result.errors == {"(document)": "a change may name at most 16 keys, got 1301"}
    assert mgr.latest == mgr.current  # nothing of it applies
    assert mgr.poll(mgr.poll_every) == []
    rows = read_jsonl(run_dir)
    assert len(rows) == 1 and rows[0]["key"] is None and rows[0]["step"] == mgr.poll_every
    assert mgr.submit({f"k{i}": i for i in range(16)}).errors.keys() >= {"k0", "k15"}


def test_one_spelling_suggestion_per_request(run_dir: Path, monkeypatch) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    calls = []
    real = difflib.get_close_matches

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counting)
    result = mgr.submit({"plateau_patince": 300, "grad_clp": 2.0, **junk_patch(40)})
    assert len(calls) == 1
    assert result.errors["plateau_patince"] == "unknown key; did you mean 'plateau_patience'?"
    assert result.errors["grad_clp"] == "unknown key"  # no second suggestion
    calls.clear()
    edit(run_dir, **{"plateau_patince": 1, "grad_clp": 2})  # a file edit: the same bound
    mgr.poll(mgr.poll_every)
    assert len(calls) <= 1


def test_a_file_with_too_many_keys_is_one_rejection(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    edit(run_dir, **junk_patch(1300))
    assert mgr.poll(mgr.poll_every) == []
    rows = read_jsonl(run_dir)
    assert len(rows) == 1 and rows[0]["key"] is None
    assert rows[0]["reason"] == f"{CONFIG_FILE} has 1322 keys, at most 64 are read"


def test_the_pending_queue_is_bounded_and_the_overflow_is_recorded(run_dir: Path, caplog) -> None:
    mgr = RuntimeConfigManager(
        run_dir, initial=example_settings(), max_patch_keys=8, max_pending=20
    )
    for i in range(50):  # 50 refused proposals of 8 keys: 400 records without a bound
        assert not mgr.submit(junk_patch(8, width=3 + i % 3)).accepted
    assert mgr.submit({"grad_clip": 2.5}).accepted  # room is made for an accepted change
    caplog.set_level(logging.WARNING, logger="vsrkit.config")
    accepted = mgr.poll(mgr.poll_every)
    assert [(c.key, c.new) for c in accepted] == [("grad_clip", 2.5)]
    rows = read_jsonl(run_dir)
    assert len(rows) <= 20 + 1
    note = [r for r in rows if r["source"] == "queue"]
    assert len(note) == 1 and note[0]["reason"].startswith("381 rejected change records")
    assert note[0]["step"] == mgr.poll_every
    assert len(caplog.records) <= 20  # one line per refused proposal of many keys, not per key
    assert any("381 rejected change records" in m for m in caplog.messages)


def test_a_queue_full_of_accepted_changes_refuses_until_the_poll(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(), max_pending=3)
    for value in (300, 301, 302):
        assert mgr.submit({"plateau_patience": value}).accepted
    refused = mgr.submit({"plateau_patience": 303})
    assert not refused.accepted and "try again after it" in refused.errors["(document)"]
    assert mgr.latest["plateau_patience"] == 302
    assert [c.new for c in mgr.poll(mgr.poll_every)] == [300, 301, 302]  # none lost
    assert mgr.submit({"plateau_patience": 303}).accepted


def test_accepted_file_edits_are_never_dropped(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(), max_pending=2)
    assert mgr.submit({"plateau_patience": 300}).accepted
    assert mgr.submit({"plateau_patience": 301}).accepted
    time.sleep(0.01)
    edit(run_dir, grad_clip=3.0, cooldown_duration=60)  # seen by the next submit
    mgr.submit({"nope": 1})
    keys = [(c.key, c.new) for c in mgr.poll(mgr.poll_every)]
    assert ("grad_clip", 3.0) in keys and ("cooldown_duration", 60) in keys
    assert ("plateau_patience", 301) in keys


def test_the_change_log_is_appended_never_rewritten(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    mgr.submit({"grad_clip": 2.0})
    mgr.poll(mgr.poll_every)
    path = run_dir / CHANGES_FILE
    before, inode = path.read_bytes(), path.stat().st_ino
    for step in range(2, 6):
        mgr.submit({"grad_clip": 2.0 + step / 10})
        mgr.poll(step * mgr.poll_every)
    after = path.read_bytes()
    assert path.stat().st_ino == inode  # the same file, not a replacement
    assert after.startswith(before) and after.count(b"\n") == 5


def test_a_symlinked_change_log_is_not_followed(run_dir: Path, tmp_path: Path, caplog) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    (run_dir / CHANGES_FILE).symlink_to(target)
    mgr.submit({"grad_clip": 2.0})
    assert [c.key for c in mgr.poll(mgr.poll_every)] == ["grad_clip"]  # training goes on
    assert target.read_text() == "precious\n"
    assert any("cannot append 1 change records" in m for m in caplog.messages)


def test_an_append_cut_short_by_a_crash_costs_only_that_line(run_dir: Path) -> None:
    """A child process appends records until it is killed; the log stays readable."""
    run_dir.mkdir(parents=True)
    code = (
        "import sys, time\n"
        "from vsrkit.config import ConfigChange, append_changes\n"
        "big = 'x' * 200000\n"
        "i = 0\n"
        "while True:\n"
        "    rec = ConfigChange(i, 0.0, 'file', 'k', None, big, False, '')\n"
        "    append_changes(sys.argv[1], [rec])\n"
        "    i += 1\n"
        "    if i == 3: print('ready', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    path = run_dir / CHANGES_FILE
    with open(path, "ab") as fh:  # a crash in the middle of a line, for certain
        fh.write(b'{"step": 99, "time": 0.0, "so')
    survivors = read_changes(run_dir)
    assert len(survivors) >= 3 and [c.step for c in survivors] == list(range(len(survivors)))
    append_changes(run_dir, [ConfigChange(1000, 0.0, "web", "grad_clip", 1.0, 2.0, True, "")])
    after = read_changes(run_dir)  # the cut line stays on its own line, skipped
    assert after[-1].step == 1000 and len(after) == len(survivors) + 1


def test_control_characters_never_reach_the_log(run_dir: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="vsrkit.config")
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    forged = "max_lr\n2024-01-01 INFO vsrkit: Config Update: grad_clip 1 -> 9"
    mgr.submit({forged: 1, "grad_clip": "\x1b[2J\u202eevil"})
    mgr.poll(mgr.poll_every)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "\x1b" not in text and "\u202e" not in text
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert "max_lr\\n2024-01-01" in text and "\\u202eevil" in text
    rows = read_jsonl(run_dir)  # the log keeps the exact text, JSON-escaped
    assert forged in {r["key"] for r in rows}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.none() | st.integers(0, 80))
def test_printable_has_no_control_characters_and_respects_the_limit(text: str, limit) -> None:
    out = printable(text, limit)
    assert not any(ch in out for ch in "\n\r\x1b\x00\x7f\u2028\u202e")
    assert all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") for ch in out)
    if limit is not None and len(text) > limit:
        assert out.endswith(f"...({len(text) - limit} more characters)")
    if text.isprintable() and (limit is None or len(text) <= limit):
        assert out == text


def test_deep_or_huge_json_in_the_live_file_is_a_logged_rejection(run_dir: Path) -> None:
    mgr = RuntimeConfigManager(run_dir, initial=example_settings())
    doc = {**example_settings(), "data": None}
    text = json.dumps(doc)[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    (run_dir / CONFIG_FILE).write_text(text)
    os.utime(run_dir / CONFIG_FILE)
    assert mgr.poll(mgr.poll_every) == []
    (run_dir / CONFIG_FILE).write_text(
        json.dumps(doc).replace('"seed": 0', '"seed": ' + "9" * 5000)
    )
    assert mgr.poll(2 * mgr.poll_every) == []
    mgr.poll(3 * mgr.poll_every)
    reasons = [r["reason"] for r in read_jsonl(run_dir)]
    assert any("nested" in r for r in reasons)
    assert mgr.current == example_settings()


def test_a_refused_document_sent_again_and_again_is_one_log_line(run_dir: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="vsrkit.config")
    mgr = RuntimeConfigManager(run_dir, initial=example_settings(), max_patch_keys=4)
    for _ in range(100):
        mgr.submit(junk_patch(10))
    mgr.poll(mgr.poll_every)
    assert caplog.messages == [
        "Config Rejected: a change may name at most 4 keys, got 10 (99 more times from web)"
    ]
    assert len(read_jsonl(run_dir)) == 100  # every refusal is still recorded
