"""``vsrkit data``: look at the training data (parses and calls :mod:`vsrkit.vsr`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vsrkit._atomic import atomic_write_bytes
from vsrkit.cli._util import user_errors

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["data"]


@click.group()
def data() -> None:
    """Look at the training data."""


def _png_bytes(frame: Tensor) -> bytes:
    """PNG encoding of a (3, H, W) float frame in [0, 1]."""
    import torch
    from PIL import Image

    arr = (frame.clamp(0, 1) * 255).round().to(dtype=torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG")
    return buf.getvalue()


@data.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the PNG files into (created if missing).",
)
@click.option(
    "--data",
    "source",
    default="synthetic",
    show_default=True,
    help="'synthetic' or a REDS-style / Vimeo-90K folder.",
)
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--clips", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--lr-size", type=click.IntRange(min=4), default=64, show_default=True)
@click.option("--degradation", type=click.Choice(["BI", "BD"]), default="BI", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--val-clip-names",
    metavar="NAME,NAME",
    default=None,
    help="REDS-style folders: the validation clips (default: REDS4 000,011,015,020).",
)
@user_errors
def preview(
    out: Path,
    source: str,
    split: str,
    clips: int,
    frames: int,
    lr_size: int,
    degradation: str,
    seed: int,
    val_clip_names: str | None,
) -> None:
    """Write a few LR, bicubic and GT frames as PNG files into OUT.

    A frame that cannot be read or differs in size from the rest of its clip is named in one
    line (exit code 1); so is an OUT that cannot be created or written.
    """
    from vsrkit.vsr import bicubic_upsample, build_dataset

    names = None
    if val_clip_names is not None:
        names = tuple(n.strip() for n in val_clip_names.split(",") if n.strip())
        if not names:
            raise click.BadParameter("name at least one clip folder", param_hint="--val-clip-names")
    dataset = build_dataset(
        source,
        split=split,
        num_frames=frames,
        lr_size=lr_size,
        degradation=degradation,
        seed=seed,
        num_clips=clips,
        val_clips=names,
    )
    written = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for c in range(min(clips, len(dataset))):  # type: ignore[arg-type]
            lrs, gts = dataset[c]
            ups = bicubic_upsample(lrs)
            for t in range(lrs.shape[0]):
                for kind, frame in (("lr", lrs[t]), ("bicubic", ups[t]), ("gt", gts[t])):
                    name = out / f"clip{c:02d}_frame{t:02d}_{kind}.png"
                    atomic_write_bytes(name, _png_bytes(frame))
                    written += 1
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {written} PNG files to {out}")
