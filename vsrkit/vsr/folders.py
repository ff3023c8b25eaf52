"""Folder datasets (REDS-style and Vimeo-90K septuplets) and :func:`build_dataset`.

REDS-style layout (``LR`` optional: without it frames are degraded on the fly)::

    ROOT/GT/<clip>/<frame>.png      e.g. GT/000/00000000.png
    ROOT/LR/<clip>/<frame>.png      same names, 1/scale the size

Vid4 as BasicSR lays it out is the same with ``BIx4`` (or ``BDx4``) in place of ``LR``: the
folder named after the degradation and scale is used when there is no ``LR``. Frames are
ordered by the numbers in their names (:func:`natural_key`: ``2.png`` before ``10.png``).

Vimeo-90K layout (``sequences_lr`` optional)::

    ROOT/sequences/<group>/<seq>/im1.png ... im7.png
    ROOT/sep_trainlist.txt          lines "00001/0001"
    ROOT/sep_testlist.txt

Training items are random crops (aligned LR/GT) of ``num_frames`` consecutive frames with
random horizontal/vertical flips, 90-degree rotation and temporal reversal; validation items
are whole frames (cropped to a multiple of ``scale``), without augmentation. Randomness is a
pure function of ``(seed, epoch, index)``; call :meth:`set_epoch` each epoch for new crops.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vsrkit.vsr.degradations import DEGRADATIONS, degrade
from vsrkit.vsr.errors import DatasetLayoutError
from vsrkit.vsr.synthetic import SPLITS, SyntheticVideoDataset, as_size

__all__ = [
    "REDS4_CLIPS",
    "natural_key",
    "DatasetLayoutError",
    "REDSDataset",
    "Vimeo90KDataset",
    "build_dataset",
    "load_frame",
]

logger = logging.getLogger(__name__)

#: REDS4, the usual validation clips of REDS.
REDS4_CLIPS: tuple[str, ...] = ("000", "011", "015", "020")
_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
REDS_LAYOUT = "ROOT/GT/<clip>/<frame>.png (optional ROOT/LR/<clip>/<frame>.png)"
VIMEO_LAYOUT = "ROOT/sequences/<group>/<seq>/im1.png..im7.png with ROOT/sep_trainlist.txt"


def load_frame(path: Path) -> Tensor:
    """A PNG/JPEG frame as float32 ``(3, H, W)`` in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetLayoutError(f"cannot read frame {path}: {exc}") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the numbers inside a name by value (``f2`` before ``f10``).

    Example:
        >>> sorted(["f10.png", "f2.png", "f1.png"], key=natural_key)
        ['f1.png', 'f2.png', 'f10.png']
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdecimal() else (1, p.lower()) for p in parts if p)


def _frames_in(folder: Path) -> list[Path]:
    frames = (p for p in folder.iterdir() if p.suffix.lower() in _EXTS)
    return sorted(frames, key=lambda p: natural_key(p.name))


class _ClipDataset(Dataset):
    """Shared crop / augmentation / degradation logic over lists of frame paths."""

    def __init__(
        self,
        *,
        clips: list[tuple[list[Path], list[Path] | None]],
        split: str,
        num_frames: int | None,
        lr_size: int | tuple[int, int],
        scale: int,
        degradation: str,
        seed: int,
        augment: bool,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {degradation!r}; expected one of {DEGRADATIONS}")
        self.clips = clips
        self.split = split
        self.num_frames = num_frames
        self.lr_size = as_size(lr_size)
        self.scale = scale
        self.degradation = degradation
        self.seed = seed
        self.augment = augment and split == "train"
        self.epoch = 0
        if split == "train" and num_frames is None:
            raise ValueError("num_frames is required for the train split")
        if num_frames is not None:
            short = [c[0][0].parent for c in clips if len(c[0]) < num_frames]
            if short:
                raise DatasetLayoutError(
                    f"{len(short)} clip(s) have fewer than num_frames={num_frames} frames, "
                    f"e.g. {short[0]}"
                )

    def set_epoch(self, epoch: int) -> None:
        """Use the random crops/augmentations of ``epoch`` (deterministic per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        gt_paths, lr_paths = self.clips[index]
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), self.epoch, index])
        t = len(gt_paths) if self.num_frames is None else self.num_frames
        start = int(rng.integers(0, len(gt_paths) - t + 1)) if self.split == "train" else 0
        gts = _stack_frames(gt_paths[start : start + t])
        s = self.scale
        if lr_paths is not None:
            lrs = _stack_frames(lr_paths[start : start + t])
            if (lrs.shape[-2] * s, lrs.shape[-1] * s) != tuple(gts.shape[-2:]):
                raise DatasetLayoutError(
                    f"LR frame {lr_paths[start]} is {tuple(lrs.shape[-2:])}, expected 1/{s} of "
                    f"GT frame {gt_paths[start]} {tuple(gts.shape[-2:])}"
                )
        else:
            hh, ww = gts.shape[-2] // s * s, gts.shape[-1] // s * s
            gts = gts[..., :hh, :ww]
            lrs = degrade(gts, scale=s, degradation=self.degradation)
        if self.split == "val":
            return lrs.contiguous(), gts[..., : lrs.shape[-2] * s, : lrs.shape[-1] * s].contiguous()
        h, w = self.lr_size
        if lrs.shape[-2] < h or lrs.shape[-1] < w:
            raise DatasetLayoutError(
                f"frames of {gt_paths[0].parent} are {tuple(lrs.shape[-2:])} at low resolution, "
                f"smaller than lr_size {(h, w)}"
            )
        y = int(rng.integers(0, lrs.shape[-2] - h + 1))
        x = int(rng.integers(0, lrs.shape[-1] - w + 1))
        lrs = lrs[..., y : y + h, x : x + w]
        gts = gts[..., y * s : (y + h) * s, x * s : (x + w) * s]
        if self.augment:
            lrs, gts = _augment(rng, lrs, gts)
        return lrs.contiguous(), gts.contiguous()


def _stack_frames(paths: Sequence[Path]) -> Tensor:
    """The frames of one clip as ``(T, 3, H, W)``; a frame of another size is named."""
    frames = [load_frame(p) for p in paths]
    first = frames[0].shape[-2:]
    for path, frame in zip(paths, frames, strict=True):
        if frame.shape[-2:] != first:
            raise DatasetLayoutError(
                f"frame {path} is {frame.shape[-1]}x{frame.shape[-2]} pixels, but "
                f"{paths[0].name} of the same clip is {first[1]}x{first[0]}; every frame of "
                "a clip must have one size"
            )
    return torch.stack(frames)


def _augment(rng: np.random.Generator, lrs: Tensor, gts: Tensor) -> tuple[Tensor, Tensor]:
    flip_h, flip_v, rot, rev = (bool(b) for b in rng.integers(0, 2, 4))
    if flip_h:
        lrs, gts = lrs.flip(-1), gts.flip(-1)
    if flip_v:
        lrs, gts = lrs.flip(-2), gts.flip(-2)
    if rot and lrs.shape[-1] == lrs.shape[-2]:
        lrs, gts = lrs.transpose(-1, -2), gts.transpose(-1, -2)
    if rev:
        lrs, gts = lrs.flip(0), gts.flip(0)
    return lrs, gts


def _require_dir(path: Path, layout: str) -> None:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path} is not a folder; expected layout {layout}")


def _lr_frames(
    lr_root: Path, gt_root: Path, clip: str, gt_frames: list[Path], layout: str
) -> list[Path] | None:
    """The LR frames of ``clip`` when ``lr_root`` exists (it must mirror ``gt_root``), else
    ``None`` (the LR frames are made from GT)."""
    if not lr_root.is_dir():
        return None
    frames = [lr_root / clip / p.name for p in gt_frames]
    missing = next((p for p in frames if not p.is_file()), None)
    if missing is not None:
        raise DatasetLayoutError(
            f"{missing} is missing: {lr_root.name}/ must mirror {gt_root.name}/ ({layout})"
        )
    return frames


class REDSDataset(_ClipDataset):
    """REDS-style clips under ``root`` (see the module docstring for the layout).

    Args:
        root: the folder holding ``GT/`` (and optionally ``LR/``).
        split: ``"train"`` (every clip not in ``val_clips``) or ``"val"`` (``val_clips``).
        num_frames: frames per item (``None`` for val: the whole clip).
        lr_size: low-resolution crop size for training.
        scale: upsampling factor.
        degradation: used when there is no ``LR/`` folder.
        seed: randomness of crops and augmentation.
        val_clips: clip folder names kept for validation (REDS4 by default); each must
            exist under ``GT/``.
        augment: flips, rotation and temporal reversal (train split only).

    Example:
        >>> REDSDataset("/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        vsrkit.vsr.errors.DatasetLayoutError: /no/such/folder/GT is not a folder; ...
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        num_frames: int | None = 7,
        lr_size: int | tuple[int, int] = 64,
        scale: int = 4,
        degradation: str = "BI",
        seed: int = 0,
        val_clips: Sequence[str] = REDS4_CLIPS,
        augment: bool = True,
    ) -> None:
        root = Path(root)
        gt_root, lr_root = root / "GT", root / "LR"
        if not lr_root.is_dir() and (root / f"{degradation}x{scale}").is_dir():
            lr_root = root / f"{degradation}x{scale}"  # Vid4 as BasicSR lays it out
        _require_dir(gt_root, REDS_LAYOUT)
        names = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
        if not names:
            raise DatasetLayoutError(f"{gt_root} has no clip folders; expected {REDS_LAYOUT}")
        val_clips = tuple(val_clips)
        if val_clips != REDS4_CLIPS:  # chosen by the user: every name must be there
            absent = [n for n in val_clips if n not in names]
            if absent:
                raise DatasetLayoutError(
                    f"validation clip {absent[0]!r} is not a folder in {gt_root} "
                    f"(found: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
                )
        wanted = [n for n in names if (n in val_clips) == (split == "val")]
        if not wanted:
            raise DatasetLayoutError(
                f"{gt_root} has no clips for split {split!r} (val clips: {list(val_clips)}, "
                f"found: {names[:8]}; choose the validation clips with --val-clip-names)"
            )
        clips = []
        for name in wanted:
            gt_frames = _frames_in(gt_root / name)
            if not gt_frames:
                raise DatasetLayoutError(f"{gt_root / name} has no image frames (.png/.jpg)")
            clips.append((gt_frames, _lr_frames(lr_root, gt_root, name, gt_frames, REDS_LAYOUT)))
        super().__init__(
            clips=clips,
            split=split,
            num_frames=num_frames,
            lr_size=lr_size,
            scale=scale,
            degradation=degradation,
            seed=seed,
            augment=augment,
        )
        self.root = root


class Vimeo90KDataset(_ClipDataset):
    """Vimeo-90K septuplets under ``root`` (see the module docstring for the layout).

    Args:
        root: the folder holding ``sequences/`` and the split lists.
        split: ``"train"`` reads ``sep_trainlist.txt``, ``"val"`` ``sep_testlist.txt``.
        num_frames: frames per item, at most 7 (``None`` for all 7).
        lr_size, scale, degradation, seed, augment: as :class:`REDSDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        num_frames: int | None = 7,
        lr_size: int | tuple[int, int] = 64,
        scale: int = 4,
        degradation: str = "BI",
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        root = Path(root)
        seq_root, lr_root = root / "sequences", root / "sequences_lr"
        _require_dir(seq_root, VIMEO_LAYOUT)
        list_file = root / ("sep_trainlist.txt" if split == "train" else "sep_testlist.txt")
        if not list_file.is_file():
            raise DatasetLayoutError(f"{list_file} is missing; expected layout {VIMEO_LAYOUT}")
        entries = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
        if not entries:
            raise DatasetLayoutError(f"{list_file} lists no sequences (lines like 00001/0001)")
        clips = []
        for entry in entries:
            gt_frames = [seq_root / entry / f"im{i}.png" for i in range(1, 8)]
            missing = [p for p in gt_frames if not p.is_file()]
            if missing:
                raise DatasetLayoutError(
                    f"{missing[0]} is missing ({list_file.name} lists {entry!r}); "
                    f"expected {VIMEO_LAYOUT}"
                )
            clips.append((gt_frames, _lr_frames(lr_root, seq_root, entry, gt_frames, VIMEO_LAYOUT)))
        super().__init__(
            clips=clips,
            split=split,
            num_frames=num_frames,
            lr_size=lr_size,
            scale=scale,
            degradation=degradation,
            seed=seed,
            augment=augment,
        )
        self.root = root


def build_dataset(
    data: str | Path | None,
    *,
    split: str,
    num_frames: int | None = 7,
    lr_size: int | tuple[int, int] = 64,
    scale: int = 4,
    degradation: str = "BI",
    seed: int = 0,
    num_clips: int = 64,
    val_clips: Sequence[str] | None = None,
) -> Dataset:
    """The dataset for ``data``: synthetic for ``None``/``"synthetic"``, else a detected folder.

    Args:
        data: ``None``, ``"synthetic"``, or a folder in REDS-style or Vimeo-90K layout.
        split: ``"train"`` or ``"val"``.
        num_frames: frames per item (synthetic: required; folders, val: ``None`` = whole clip).
        lr_size: low-resolution crop (train) or synthetic frame size.
        scale, degradation, seed: as the dataset classes.
        num_clips: number of synthetic clips (ignored for folders).
        val_clips: REDS-style folders: the clip folders kept for validation (``None``:
            REDS4). Vimeo-90K takes its validation clips from ``sep_testlist.txt``.

    Raises:
        DatasetLayoutError: ``data`` is not a folder or has neither layout, or ``val_clips``
            names a clip that is not there (or is given for a Vimeo-90K folder).
    """
    if data is None or str(data) == "synthetic":
        if num_frames is None:
            raise ValueError("num_frames is required for the synthetic dataset")
        return SyntheticVideoDataset(
            num_clips=num_clips,
            num_frames=num_frames,
            lr_size=lr_size,
            scale=scale,
            degradation=degradation,
            seed=seed,
            split=split,
        )
    root = Path(data)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"data folder {root} does not exist; expected 'synthetic' or a folder with "
            f"{REDS_LAYOUT} or {VIMEO_LAYOUT}"
        )
    kw: dict[str, object] = {
        "split": split,
        "num_frames": num_frames,
        "lr_size": lr_size,
        "scale": scale,
        "degradation": degradation,
        "seed": seed,
    }
    if (root / "GT").is_dir():
        logger.info("%s: REDS-style layout", root)
        if val_clips is not None:
            kw["val_clips"] = tuple(val_clips)
        return REDSDataset(root, **kw)  # type: ignore[arg-type]
    if (root / "sequences").is_dir():
        if val_clips is not None:
            raise DatasetLayoutError(
                f"{root} is a Vimeo-90K folder: its validation clips are the lines of "
                "sep_testlist.txt, not val_clips"
            )
        logger.info("%s: Vimeo-90K layout", root)
        return Vimeo90KDataset(root, **kw)  # type: ignore[arg-type]
    raise DatasetLayoutError(f"{root} has neither layout; expected {REDS_LAYOUT} or {VIMEO_LAYOUT}")
