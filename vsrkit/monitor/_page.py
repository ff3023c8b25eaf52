"""The packaged page (``static/index.html``) and the Content-Security-Policy that fits it.

The page's only script and style are inline; the CSP allows exactly those two by their
SHA-256 hashes (no ``'unsafe-inline'``, nothing from another origin). The page holds no
secret: the per-run token travels in an HttpOnly cookie that its script cannot read.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

__all__ = ["Page"]


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


class Page:
    """The dashboard HTML and its CSP header."""

    def __init__(self) -> None:
        text = resources.files("vsrkit.monitor").joinpath("static/index.html").read_text("utf-8")
        self.html = text.encode("utf-8")
        scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
        styles = re.findall(r"<style>(.*?)</style>", text, re.S)
        self.csp = "; ".join(
            [
                "default-src 'none'",
                "script-src " + " ".join(_hash(s) for s in scripts),
                "style-src " + " ".join(_hash(s) for s in styles),
                "img-src 'self' data:",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )
