"""Read a PyTorch file safely, with one line that says why it could not be read.

Every file vsrkit reads with torch (checkpoints, published weights, SpyNet and VGG weights)
goes through :func:`load_torch_file`: ``torch.load(weights_only=True)``, so no file can run
code, and a failure becomes :class:`UnreadableFileError` whose message is one line without
torch's advice to turn ``weights_only`` off.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "junk.pth")
    >>> _ = open(path, "wb").write(b"not a checkpoint")
    >>> try:
    ...     load_torch_file(path)
    ... except UnreadableFileError as exc:
    ...     print(exc.kind)
    damaged
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

from vsrkit.errors import VsrkitError

__all__ = ["UnreadableFileError", "load_torch_file"]


class UnreadableFileError(VsrkitError, ValueError):
    """A file torch cannot read safely.

    Attributes:
        path: the file.
        kind: ``missing`` (no such file), ``os`` (the system refused to read it), ``refused``
            (it holds Python objects beyond tensors and plain values, never loaded) or
            ``damaged`` (truncated, overwritten, or not a PyTorch file at all).
        reason: the message without the path.
    """

    def __init__(self, path: Path, kind: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.kind, self.reason = path, kind, reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""
    if "weights_only" in line:
        line = ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def load_torch_file(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; any failure is one :class:`UnreadableFileError`.

    Raises:
        UnreadableFileError: see its ``kind``; the original exception is its ``__cause__``.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(p, "missing", "no such file")
    try:
        with warnings.catch_warnings():  # torch warns about some files before it refuses them
            warnings.simplefilter("ignore")
            return torch.load(p, map_location=map_location, weights_only=True)
    except (PermissionError, IsADirectoryError) as exc:
        raise UnreadableFileError(p, "os", f"cannot be read ({exc.strerror or exc})") from exc
    except OSError as exc:  # EINVAL, EIO ... from a truncated or overwritten file
        raise UnreadableFileError(
            p,
            "damaged",
            f"not a readable PyTorch file (truncated or damaged: {exc.strerror or exc})",
        ) from exc
    except pickle.UnpicklingError as exc:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if match or "Unsupported global" in str(exc):
            what = match.group(1) if match else "an unsupported object"
            raise UnreadableFileError(
                p,
                "refused",
                f"holds Python objects ({what}) that vsrkit never loads: only tensors and "
                "plain values are read",
            ) from exc
        raise UnreadableFileError(
            p, "damaged", "not a readable PyTorch file (damaged pickled data)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad CRC, garbage bytes
        raise UnreadableFileError(
            p, "damaged", f"not a readable PyTorch file ({_first_line(exc)})"
        ) from exc
