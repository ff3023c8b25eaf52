"""Frame folders: lazy readers in natural order and an atomic PNG writer.

Frames are ordered by the numbers in their names (``frame2.png`` before ``frame10.png``), not
by string order. A reader checks every frame's size from its header before any pixel is
decoded, so a folder of mixed sizes fails at once, naming the first odd frame. Output frames
are written through :mod:`vsrkit._atomic` (temporary file, rename): an interrupted run never
leaves a half-written PNG under a final name, and :func:`is_complete_png` tells the frames a
run can skip when it continues.

Example:
    >>> sorted(["f10.png", "f2.png", "f1.png"], key=natural_key)
    ['f1.png', 'f2.png', 'f10.png']
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsrkit._atomic import TEMP_PREFIX, atomic_write_bytes, remove_temp_files
from vsrkit.infer.errors import InferenceError
from vsrkit.vsr.folders import natural_key

__all__ = [
    "FRAME_EXTENSIONS",
    "FrameFolder",
    "find_clips",
    "is_complete_png",
    "list_frames",
    "natural_key",
    "png_bytes",
    "png_text",
    "read_frame",
    "remove_partial_frames",
    "write_png",
]

#: Image files read as frames.
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` in natural order (hidden and temporary files skipped)."""
    root = Path(folder)
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        raise InferenceError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None
    frames = [
        p
        for p in entries
        if p.suffix.lower() in FRAME_EXTENSIONS
        and not p.name.startswith((".", TEMP_PREFIX))
        and p.is_file()
    ]
    return sorted(frames, key=lambda p: natural_key(p.name))


def _image_size(path: Path) -> tuple[int, int]:
    """``(h, w)`` from the image header (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InferenceError(f"{path}: not a readable image ({exc})") from None
    return h, w


def _to_rgb8(img: Any) -> np.ndarray:
    """8-bit RGB ``(h, w, 3)`` of a Pillow image of any mode.

    16- and 32-bit grey (``I;16``, ``I``) are scaled to 8 bits (Pillow's own RGB conversion
    would clip them to white); alpha is dropped (the frame is taken as if opaque).
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        grey8 = np.clip(np.round(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if img.mode == "F":
        grey = np.asarray(img, dtype=np.float64)
        grey8 = np.clip(np.round(grey * 255.0), 0, 255).astype(np.uint8)  # floats in [0, 1]
        return np.repeat(grey8[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_frame(path: str | os.PathLike[str]) -> Tensor:
    """An image as a ``(3, h, w)`` uint8 tensor (RGB; grey, 16-bit grey and alpha are
    converted)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as img:
            arr = _to_rgb8(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InferenceError(f"{p}: not a readable image ({exc})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass
class FrameFolder:
    """A folder of frames, read lazily in natural order (re-iterable).

    Args:
        folder: the folder.
        check_sizes: read every header now and refuse a folder of mixed sizes.

    Attributes:
        paths: the frame files in order.
        size: ``(h, w)`` of the frames.

    Raises:
        InferenceError: an empty folder, an unreadable image, frames of mixed sizes.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for i in (1, 2, 10):
        ...     write_png(d / f"f{i}.png", torch.zeros(3, 4, 6))
        >>> folder = FrameFolder(d)
        >>> [p.name for p in folder.paths], folder.size
        (['f1.png', 'f2.png', 'f10.png'], (4, 6))
    """

    folder: Path
    check_sizes: bool = True

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.folder.is_dir():
            raise InferenceError(f"{self.folder}: not a folder of frames")
        self.paths = list_frames(self.folder)
        if not self.paths:
            raise InferenceError(
                f"{self.folder}: no frames in it (expected {' '.join(FRAME_EXTENSIONS)} files)"
            )
        seen: dict[str, Path] = {}
        for p in self.paths:  # output frames are named by the stem: two inputs, one output
            other = seen.setdefault(p.stem, p)
            if other is not p:
                raise InferenceError(
                    f"{other} and {p.name} share the name {p.stem!r}: their outputs would "
                    "overwrite each other; rename or move one"
                )
        self.size = _image_size(self.paths[0])
        if self.check_sizes:
            for p in self.paths[1:]:
                size = _image_size(p)
                if size != self.size:
                    raise InferenceError(
                        f"{p} is {size[0]}x{size[1]} (h x w), but {self.paths[0].name} is "
                        f"{self.size[0]}x{self.size[1]}: all frames of a clip must have one size"
                    )

    @property
    def names(self) -> list[str]:
        """The frames' names without extension (outputs reuse them)."""
        return [p.stem for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Tensor]:
        for p in self.paths:
            yield read_frame(p)


def _has_frames(folder: Path) -> bool:
    try:
        return any(
            p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith((".", TEMP_PREFIX))
            for p in folder.iterdir()
        )
    except OSError:
        return False


def _subfolders(folder: Path) -> list[Path]:
    try:
        dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError as exc:
        raise InferenceError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
    return sorted(dirs, key=lambda p: natural_key(p.name))


def find_clips(folder: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """The low-resolution clips in ``folder`` as ``(name, frame folder)`` pairs.

    ``folder`` may be a folder of frames (one clip, named ``""``), a REDS-style or Vid4 root
    (the clips of its ``LR/``, ``BIx4/`` or ``BDx4/``), a Vimeo-90K root (``sequences_lr/
    <group>/<seq>``, named ``group/seq``), or a folder whose subfolders hold frames.

    Raises:
        InferenceError: no frames anywhere, or ground truth only (``GT/``, ``sequences/``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InferenceError(f"{root}: not a folder")
    if _has_frames(root):
        return [("", root)]
    for lr_name in ("LR", "BIx4", "BDx4"):
        if (root / lr_name).is_dir():
            clips = [(p.name, p) for p in _subfolders(root / lr_name) if _has_frames(p)]
            if clips:
                return clips
            raise InferenceError(f"{root / lr_name}: no clip folders with frames in it")
    if (root / "sequences_lr").is_dir():
        clips = [
            (f"{group.name}/{seq.name}", seq)
            for group in _subfolders(root / "sequences_lr")
            for seq in _subfolders(group)
            if _has_frames(seq)
        ]
        if clips:
            return clips
    if (root / "GT").is_dir() or (root / "sequences").is_dir():
        raise InferenceError(
            f"{root} holds ground truth only (GT/ or sequences/): upscale takes low-resolution "
            "frames (LR/, BIx4/ or sequences_lr/); to score a model on it use vsrkit eval --data"
        )
    clips = [(p.name, p) for p in _subfolders(root) if _has_frames(p)]
    if not clips:
        raise InferenceError(
            f"{root}: no frames ({' '.join(FRAME_EXTENSIONS)}) and no clip folders in it"
        )
    return clips


def png_bytes(frame: Tensor, text: dict[str, str] | None = None) -> bytes:
    """PNG encoding of a ``(3, h, w)`` frame (float in [0, 1], clamped, or uint8), with
    ``text`` as ``tEXt`` chunks."""
    from PIL import Image, PngImagePlugin

    if frame.dtype != torch.uint8:
        frame = (frame.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    arr = frame.cpu().permute(1, 2, 0).contiguous().numpy()
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1, pnginfo=info)
    return buf.getvalue()


def png_text(path: str | os.PathLike[str]) -> dict[str, str]:
    """The text chunks before a PNG's image data, where :func:`write_png` puts them (``{}``
    for an unreadable file or none); read without decoding the image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                return {}
            return {str(k): v for k, v in img.info.items() if isinstance(v, str)}
    except Exception:  # noqa: BLE001 - unreadable, too large (DecompressionBombError), ...
        return {}


def write_png(
    path: str | os.PathLike[str], frame: Tensor, *, text: dict[str, str] | None = None
) -> None:
    """Write a frame as PNG atomically (a reader never sees half a file)."""
    p = Path(path)
    try:
        atomic_write_bytes(p, png_bytes(frame, text), fsync=False)
    except OSError as exc:
        raise InferenceError(f"cannot write {p}: {exc.strerror or exc}") from None


def remove_partial_frames(folder: str | os.PathLike[str]) -> int:
    """Delete the temporary files that :func:`write_png` calls killed mid-way left in
    ``folder``; returns how many. Only for the one process that writes there."""
    return len(remove_temp_files(folder, "*.png"))


def is_complete_png(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> bool:
    """Whether ``path`` is a whole, valid PNG (of ``size = (h, w)`` when given)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format != "PNG" or (size is not None and (img.size[1], img.size[0]) != size):
                return False
            img.verify()  # reads every chunk and checks its CRC
    except Exception:  # noqa: BLE001 - any failure means "redo this frame"
        return False
    return True
