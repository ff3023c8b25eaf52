"""Make untrusted text safe to log or show: control characters escaped, length bounded.

A key name or a value typed into the web page may hold a newline (a forged log line), an
escape sequence (a terminal that redraws itself) or a bidirectional override (text that
reads differently than it is). :func:`printable` turns each of them into a visible escape.
"""

from __future__ import annotations

import math
import unicodedata

__all__ = ["format_hms", "printable"]

# Cc: C0/C1 controls and DEL; Cf: format characters (bidi overrides, zero-width joiners);
# Zl/Zp: the Unicode line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object, limit: int | None = 200) -> str:
    """``str(text)`` with every control or format character escaped, cut to ``limit``.

    Args:
        text: Anything; it is converted with ``str``.
        limit: Most characters kept before escaping (the rest is replaced by a note saying
            how many were cut); ``None`` keeps everything.

    Example:
        >>> printable("max_lr\\nINFO forged line")
        'max_lr\\\\nINFO forged line'
        >>> printable("x" * 10, limit=4)
        'xxxx...(6 more characters)'
    """
    s = str(text)
    cut = ""
    if limit is not None and len(s) > limit:
        cut = f"...({len(s) - limit} more characters)"
        s = s[:limit]
    if s.isprintable():  # fast path: nothing to escape
        return s + cut
    out = []
    for ch in s:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + cut


def format_hms(seconds: float | None) -> str | None:
    """``HH:MM:SS`` (hours may exceed 24), or ``None`` when unknown (``None``, NaN, infinite
    or negative).

    Example:
        >>> format_hms(17553.6), format_hms(float("inf"))
        ('04:52:34', None)
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
