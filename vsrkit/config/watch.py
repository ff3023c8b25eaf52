"""Notice edits of one small JSON file by (mtime, size, inode), then content hash.

Internal helper of :class:`~vsrkit.config.RuntimeConfigManager`; not thread-safe on its own
(the manager holds its lock around every call).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsrkit.config.schema import RuntimeConfigError, parse_json_strict

logger = logging.getLogger(__name__)

#: A file modified less than this long ago is hashed again at every look ("racily clean", as
#: in git): within the timestamp granularity it could change again without a new signature.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class FileEvent:
    """What a look at the file found: ``doc`` (parsed) or ``problem`` (why it is unusable)."""

    doc: Any = None
    problem: str | None = None


class WatchedFile:
    """Report each new content of ``path`` once; half-written JSON gets one more look.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.json"
        >>> _ = p.write_text('{"a": 1}')
        >>> w = WatchedFile(p)
        >>> w.look().doc, w.look()
        ({'a': 1}, None)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sig: tuple[int, int, int] | None = None
        self._hash: str | None = None  # content last reported (or written by us)
        self._pending: str | None = None  # hash of unparsable content seen once
        self._missing = False

    def forget(self) -> None:
        """Look at the content again next time, even if it was reported before."""
        self._sig = self._hash = self._pending = None

    def wrote(self, data: bytes) -> None:
        """We wrote ``data`` ourselves: it is not an edit to report."""
        self._sig, self._pending = None, None
        self._hash = hashlib.sha256(data).hexdigest()

    def look(self, *, patient: bool = True) -> FileEvent | None:
        """``None`` when there is nothing new (or, if ``patient``, the file is not ready yet).

        Args:
            patient: Give unparsable content one more look before reporting it (an editor
                may be half-way through writing). ``False`` reports it at once (at resume).
        """
        try:
            st = self.path.stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            if sig == self._sig and self._pending is None:
                return None
            data = self.path.read_bytes()
        except FileNotFoundError:
            if not self._missing:
                logger.warning("%s is missing; keeping the running settings", self.path)
                self._missing = True
            self._sig = None
            return None
        except OSError as exc:
            logger.warning("cannot read %s (%s); keeping the running settings", self.path, exc)
            return None
        self._missing = False
        self._sig = sig if time.time_ns() - st.st_mtime_ns > RACY_NS else None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._hash:
            self._pending = None
            return None
        try:
            doc = parse_json_strict(data)
        except RuntimeConfigError as exc:  # NaN, Infinity, duplicate key: no need to wait
            self._hash, self._pending = digest, None
            return FileEvent(problem=f"{self.path.name}: {exc}")
        except ValueError as exc:
            if patient and self._pending != digest:  # maybe half-written: look again later
                self._pending = digest
                logger.debug("%s not ready yet (%s)", self.path, exc)
                return None
            self._hash, self._pending = digest, None
            return FileEvent(problem=f"{self.path.name} is not valid JSON: {exc}")
        self._hash, self._pending = digest, None
        return FileEvent(doc=doc)
