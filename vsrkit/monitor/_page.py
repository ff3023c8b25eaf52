"""The packaged page (``static/index.html``) and the Content-Security-Policy that fits it.

The page's only script and style are inline; the CSP allows exactly those two by their
SHA-256 hashes (no ``'unsafe-inline'``, nothing from another origin). The per-run token goes
into a ``<meta>`` tag, so the hashes do not depend on it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from importlib import resources

__all__ = ["Page"]

_TOKEN_SLOT = "__VSRKIT_TOKEN__"


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


class Page:
    """The dashboard HTML and its CSP header."""

    def __init__(self) -> None:
        text = resources.files("vsrkit.monitor").joinpath("static/index.html").read_text("utf-8")
        if _TOKEN_SLOT not in text:
            raise RuntimeError("static/index.html lacks the token slot")
        self.template = text
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

    def render(self, token: str) -> bytes:
        """The page with ``token`` in its ``<meta name="vsrkit-token">``."""
        return self.template.replace(_TOKEN_SLOT, html.escape(token, quote=True)).encode("utf-8")
