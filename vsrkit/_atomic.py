"""Atomic, durable file writes shared by every component that writes into a run folder.

A reader never sees half a file and a crash never destroys the previous good copy: the data
goes to a temporary file in the same folder, is flushed and fsynced, then ``os.replace``-d over
the target, and the folder itself is fsynced so the rename survives a power cut.

Example:
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_json(d / "a.json", {"x": 1})
    >>> json.loads((d / "a.json").read_text())
    {'x': 1}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_PREFIX",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "remove_empty_folders",
    "remove_temp_files",
]

logger = logging.getLogger(__name__)

#: Prefix of the temporary files; listings skip names that start with it.
TEMP_PREFIX = ".tmp-"


def remove_temp_files(
    directory: str | os.PathLike[str], names: str = "*", *, left_by: str | None = None
) -> list[Path]:
    """Delete the temporary files that atomic writes of files named like ``names`` (a glob;
    escape a literal name with ``glob.escape``) left in ``directory`` when they were killed
    mid-way; returns the paths removed (``left_by`` names the writer for an info log line).

    Only for the one process that writes there: a live writer's temporary file would go too.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / ".tmp-out.mp4.x1y2").write_bytes(b"half a video")
        >>> [p.name for p in remove_temp_files(d, "out.mp4")]
        ['.tmp-out.mp4.x1y2']
    """
    removed = []
    for p in Path(directory).glob(f"{TEMP_PREFIX}{names}.*"):
        try:
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
                if left_by:
                    logger.info("removed %s, left by an interrupted %s", p, left_by)
        except OSError as exc:
            logger.warning("could not remove %s: %s", p, exc)
    return removed


def remove_empty_folders(folders: Iterable[str | os.PathLike[str]]) -> None:
    """Remove each of ``folders`` (give the deepest first) that is an empty folder: those a
    run made and then failed before writing into them. Anything else stays.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "a" / "b").mkdir(parents=True)
        >>> _ = (d / "kept").mkdir(), (d / "kept" / "f").write_text("x")
        >>> remove_empty_folders([d / "a" / "b", d / "a", d / "kept"])
        >>> sorted(p.name for p in d.iterdir())
        ['kept']
    """
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty, gone, or not a folder
            Path(folder).rmdir()


def _create_temp(target: Path, mode: int) -> tuple[int, Path]:
    """A new file beside ``target`` under a fresh temporary name (``O_EXCL``, never through a
    planted link); the kernel applies the umask to ``mode``, as for any new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{secrets.token_hex(4)}")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Fsync a directory so a rename inside it is durable (a no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    fsync: bool = True,
    permissions: int = 0o666,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left untouched.

    Args:
        path: Final location of the file.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
        fsync: Flush to stable storage before the rename (and fsync the folder after it).
        permissions: Of the new file, less the umask (``0o600``: its owner only, whatever
            the umask: for secrets).

    Yields:
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    fd, tmp = _create_temp(target, permissions)
    try:
        kwargs: dict[str, Any] = {} if mode == "wb" else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, fsync: bool = True, permissions: int = 0o666
) -> None:
    """Write ``data`` to ``path`` atomically (``permissions`` as in :func:`atomic_open`)."""
    with atomic_open(path, "wb", fsync=fsync, permissions=permissions) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", fsync=fsync) as fh:
        fh.write(text)


def atomic_write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int = 2,
    fsync: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Serialize ``obj`` as JSON (UTF-8, strict: no NaN/Infinity) and write it atomically.

    Raises:
        ValueError: If ``obj`` holds NaN or infinity (they are not JSON).
        TypeError: If ``obj`` holds a value JSON cannot encode.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False, default=default)
    atomic_write_text(path, text + "\n", fsync=fsync)
