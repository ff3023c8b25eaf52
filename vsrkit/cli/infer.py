"""``vsrkit eval`` and ``vsrkit upscale``: parse flags, call :mod:`vsrkit.infer`, report.

Exit codes: 0 done; 1 bad input content (a damaged checkpoint or one without a model config,
an empty folder, frames of mixed sizes or of one name, an unreadable or truncated video, LR/GT
sizes that are not the model's scale apart, a full disk or spill folder, PyAV missing); 2 a bad
command line (an unknown flag or missing path, an option the library refuses: a tile not larger
than its overlap, ``--half`` or ``--device cuda`` without CUDA; an output inside the input or
of an unknown extension, an output that exists without ``--overwrite``/``--skip-existing``,
frames of another model with ``--skip-existing``); 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM), with what was written kept. Each error is one line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from vsrkit.errors import VsrkitError

__all__ = ["eval_cmd", "upscale"]

F = TypeVar("F", bound=Callable[..., Any])
SMALL_TILE = 32  # LR pixels: smaller tiles get a warning
_SOURCE = click.Path(exists=True, path_type=Path)


def _finite(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", param=param)
    return value


def _which(value: str | None) -> str | None:
    from vsrkit.checkpoint.names import parse_step

    if value is None or value in ("latest", "best") or parse_step(value) is not None:
        return value
    raise click.BadParameter(f"expected latest, best or a step, got {value!r}")


def inference_options(func: F) -> F:
    """The options ``eval`` and ``upscale`` share: which model, where and how it runs."""
    options = [
        click.option(
            "--which",
            callback=lambda _ctx, _p, v: _which(v),
            metavar="latest|best|STEP",
            help="Checkpoint of a run folder: the newest valid (default), the best, or a step.",
        ),
        click.option(
            "--weights",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A published BasicVSR file (BasicSR or mmagic) instead of CHECKPOINT_OR_RUN.",
        ),
        click.option(
            "--weights-format",
            type=click.Choice(("auto", "basicsr", "mmagic")),
            default="auto",
            show_default=True,
            help="Layout of the --weights file.",
        ),
        click.option(
            "--preset",
            type=click.Choice(("tiny", "small", "paper")),
            help="Model preset of a bare state dict (vsrkit checkpoints carry their own).",
        ),
        click.option(
            "--device",
            type=click.Choice(("auto", "cpu", "cuda")),
            default="auto",
            show_default=True,
            help="auto: CUDA when present.",
        ),
        click.option("--half", is_flag=True, help="bf16/fp16 autocast (CUDA only)."),
        click.option(
            "--channels-last/--no-channels-last",
            default=None,
            help="Memory format (default: channels_last, faster on CUDA and the CPU).",
        ),
        click.option(
            "--host-budget-gb",
            type=click.FloatRange(min=0),
            callback=_finite,
            help="Host memory for per-frame features before they spill to disk "
            "(default: a quarter of RAM, at most 4).",
        ),
        click.option(
            "--spill-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Folder of the spill file (default: the system temp folder).",
        ),
        click.option(
            "--store-fp16", is_flag=True, help="Keep the features off the device in fp16."
        ),
        click.option(
            "--tile",
            type=(click.IntRange(min=1), click.IntRange(min=1)),
            metavar="H W",
            help="Process LR tiles of H x W pixels, blended without seams.",
        ),
        click.option(
            "--tile-overlap",
            type=click.IntRange(min=0),
            default=16,
            show_default=True,
            help="LR pixels each tile shares with its neighbours.",
        ),
        click.option(
            "--segment",
            type=click.IntRange(min=1),
            help="Cut clips into independent pieces of N frames (approximate; costs quality).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress line."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _OptionError(click.ClickException):
    """An option the library cannot honour: one ``Error:`` line, exit code 2."""

    exit_code = 2


def _upscale_options(o: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Upscaler keyword arguments from the shared flags, checked by the library before any
    model is loaded (a mistake is exit code 2)."""
    import torch

    from vsrkit.infer import InferenceOptionError, check_upscale_options

    options = {
        "device": None if o["device"] == "auto" else o["device"],
        "half": o["half"],
        "tile": o["tile"],
        "tile_overlap": o["tile_overlap"],
        "segment": o["segment"],
        "host_budget": None if o["host_budget_gb"] is None else int(o["host_budget_gb"] * 2**30),
    }
    try:
        check_upscale_options(**options)
    except InferenceOptionError as exc:
        raise _OptionError(str(exc)) from None
    if o["tile"] is not None and min(o["tile"]) < SMALL_TILE:
        click.echo(
            f"warning: tiles of {o['tile'][0]}x{o['tile'][1]} are small: every tile propagates "
            f"on its own, so tiles under {SMALL_TILE} px are slow and lose quality",
            err=True,
        )
    return {
        **options,
        "channels_last": o["channels_last"],
        "spill_dir": o["spill_dir"],
        "feature_dtype": torch.float16 if o["store_fp16"] else None,
        "progress": progress,
    }


def _model_source(source: Path | None, o: dict[str, Any]) -> None:
    """Exactly one of CHECKPOINT_OR_RUN and --weights; no run-folder flag with --weights."""
    if o["weights"] is None and source is None:
        raise click.UsageError("give CHECKPOINT_OR_RUN, or a published model with --weights FILE")
    if o["weights"] is not None:
        if source is not None:
            raise click.UsageError(
                f"give CHECKPOINT_OR_RUN ({source}) or --weights ({o['weights']}), not both"
            )
        if o["which"] is not None:
            raise click.UsageError("--which is for a run folder; --weights reads one file")


def _load(source: Path | None, o: dict[str, Any]) -> tuple[Any, Any]:
    """The checkpoint (or published weights) and its model, on the device the flags ask for."""
    from vsrkit.infer import load_model, read_checkpoint
    from vsrkit.infer.loading import read_weights

    if o["weights"] is not None:
        ckpt = read_weights(o["weights"], format=o["weights_format"], preset=o["preset"])
    else:
        assert source is not None
        ckpt = read_checkpoint(source, which=o["which"] or "latest", preset=o["preset"])
    device = None if o["device"] == "auto" else o["device"]
    return ckpt, load_model(ckpt, device=device)


class _Progress:
    """Frames done, frames/s and ETA on stderr: one live line on a terminal, a line every
    10 seconds otherwise, nothing with ``--quiet``. Each frame passes twice (backward and
    forward); frames/s counts both passes as one frame."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.label = ""
        self.total: int | None = None
        self.passes = 0
        self.phase_done: dict[str, int] = {}
        self.started = time.perf_counter()
        self.last = self.started  # nothing is shown for inputs done within the first interval
        self.shown = False

    def clip(self, label: str, total: int | None) -> None:
        self.label, self.total, self.phase_done = label, total, {}

    def __call__(self, phase: str, index: int) -> None:
        self.phase_done[phase] = self.phase_done.get(phase, 0) + 1
        if phase == "read":
            return
        self.passes += 1
        now = time.perf_counter()
        if self.quiet or now - self.last < (0.25 if self.live else 10.0):
            return
        self.last = now
        rate = self.passes / 2 / max(now - self.started, 1e-9)
        done = self.phase_done.get(phase, 0)
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            left = 2 * self.total - self.phase_done.get("backward", 0)
            left -= self.phase_done.get("forward", 0)
            from vsrkit._text import format_hms

            eta = f"  ETA {format_hms(left / 2 / rate)}"
        line = f"{self.label}{phase} {done}{of} frames  {rate:.2f} frames/s{eta}"
        if self.live:
            click.echo("\r\033[K" + line, nl=False, err=True)
            self.shown = True
        else:
            click.echo(line, err=True)

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)
            self.shown = False


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _peak_rss() -> str:
    from vsrkit._system import peak_rss_gib

    peak = peak_rss_gib()
    return "unknown" if peak is None else _gib(peak * 2**30)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: what was written is kept, temporary files removed."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`_Terminated` (main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(what: str, exc: BaseException | None = None) -> None:
    terminated = isinstance(exc, _Terminated)
    click.echo(f"\n{'terminated' if terminated else 'interrupted'}: {what}", err=True)
    sys.exit(143 if terminated else 130)


# ---- vsrkit eval ----------------------------------------------------------------------------


def _table(result: Any) -> str:
    def num(v: float, spec: str) -> str:
        return "inf" if math.isinf(v) else format(v, spec)

    width = max([4, *(len(c.name) for c in result.clips)])
    head = (
        f"{'clip':<{width}}  {'frames':>6}  {'PSNR':>7}  {'SSIM':>6}  "
        f"{'bicubic PSNR':>12}  {'bicubic SSIM':>12}"
    )
    rows = [head, "-" * len(head)]
    for c in [*result.clips, None]:
        if c is None:
            m = result.mean
            rows.append("-" * len(head))
            name, frames = "mean", result.frames
            vals = (m["psnr"], m["ssim"], m["bicubic_psnr"], m["bicubic_ssim"])
        else:
            name, frames = c.name, c.frames
            vals = (c.psnr, c.ssim, c.bicubic_psnr, c.bicubic_ssim)
        rows.append(
            f"{name:<{width}}  {frames:>6}  {num(vals[0], '.3f'):>7}  {num(vals[1], '.4f'):>6}  "
            f"{num(vals[2], '.3f'):>12}  {num(vals[3], '.4f'):>12}"
        )
    return "\n".join(rows)


def _csv_text(result: Any) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip", "frames", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"])
    for c in result.clips:
        writer.writerow([c.name, c.frames, c.psnr, c.ssim, c.bicubic_psnr, c.bicubic_ssim])
    m = result.mean
    writer.writerow(
        ["mean", result.frames, m["psnr"], m["ssim"], m["bicubic_psnr"], m["bicubic_ssim"]]
    )
    return buf.getvalue()


def _writable_file(path: Path, flag: str) -> None:
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder; give a file name", param_hint=flag)
    if not path.parent.is_dir():
        raise click.BadParameter(f"folder {path.parent} does not exist", param_hint=flag)


EXIT_CODES = (
    "Exit codes: 0 done; 1 bad input (a damaged checkpoint, unreadable frames or video, a "
    "full disk); 2 a bad command line (flags, paths, an output that exists); 130 interrupted, "
    "143 terminated (what was written is kept). Each error is one line."
)


@click.command("eval", epilog=EXIT_CODES)
@click.argument("checkpoint_or_run", type=_SOURCE, required=False)
@click.option(
    "--data",
    metavar="DIR|synthetic",
    help="REDS-style, Vid4 or Vimeo-90K test folder; default: the run's synthetic "
    "validation clips.",
)
@click.option(
    "--channel",
    type=click.Choice(("y", "rgb")),
    default="y",
    show_default=True,
    help="Compare BT.601 luma or RGB.",
)
@click.option(
    "--crop-border",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pixels cut from each side before comparing.",
)
@click.option(
    "--out", "out", type=click.Path(path_type=Path), help="Write the results as JSON here."
)
@click.option(
    "--csv", "csv_path", type=click.Path(path_type=Path), help="Write one row per clip here."
)
@click.option(
    "--save-frames",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the model's output frames as PNG into <DIR>/<clip>/.",
)
@inference_options
@_sigterm_as_interrupt()
def eval_cmd(
    checkpoint_or_run: Path | None,
    data: str | None,
    channel: str,
    crop_border: int,
    out: Path | None,
    csv_path: Path | None,
    save_frames: Path | None,
    **o: Any,
) -> None:
    """Score a trained model: PSNR/SSIM per clip and their mean, beside bicubic.

    CHECKPOINT_OR_RUN is a checkpoint file or a run folder (its newest valid checkpoint, or
    --which best|STEP); --weights FILE scores a published BasicVSR (BasicSR or mmagic file)
    instead. The figures follow BasicSR: 8-bit rounding, mean over the frames of a clip, then
    over clips.

    \b
    Examples:
      vsrkit eval runs/quick
      vsrkit eval runs/paper --which best --data datasets/REDS4 --channel rgb --out r.json
      vsrkit eval --weights BasicVSR_REDS4.pth --data datasets/REDS4 --channel rgb
    """
    from vsrkit._atomic import atomic_write_json, atomic_write_text
    from vsrkit.infer import eval_clips, evaluate, tune_cpu_allocator

    _model_source(checkpoint_or_run, o)
    if data is not None and data != "synthetic" and not Path(data).is_dir():
        raise click.BadParameter(f"{data} is not a folder", param_hint="--data")
    for path, flag in ((out, "--out"), (csv_path, "--csv")):
        if path is not None:
            _writable_file(path, flag)
    if out is not None and csv_path is not None and out.resolve() == csv_path.resolve():
        raise click.BadParameter(f"--out and --csv are the same file {out}", param_hint="--csv")
    if save_frames is not None:
        if data not in (None, "synthetic") and _inside(save_frames, Path(str(data))):
            raise click.BadParameter(
                f"{save_frames} is inside the test data {data}; write somewhere else",
                param_hint="--save-frames",
            )
        if save_frames.is_dir() and any(save_frames.iterdir()):
            raise click.BadParameter(
                f"{save_frames} is not empty; give a new or empty folder",
                param_hint="--save-frames",
            )
    progress = _Progress(o["quiet"])
    tune_cpu_allocator()  # this process streams frames: keep their freed memory for reuse
    try:
        options = _upscale_options(o, progress)
        ckpt, model = _load(checkpoint_or_run, o)
        clips = eval_clips(data, config=ckpt.config)

        def on_clip(i: int, clip: Any) -> None:
            progress.clip(f"clip {i + 1}/{len(clips)} {clip.name}: ", len(clip.frame_names))

        result = evaluate(
            model,
            clips,
            channel=channel,
            crop_border=crop_border,
            save_frames=save_frames,
            on_clip=on_clip,
            **options,
        )
    except VsrkitError as exc:
        progress.done()
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # --save-frames into a folder that cannot be written
        progress.done()
        where = exc.filename or save_frames
        raise click.ClickException(f"cannot write {where}: {exc.strerror or exc}") from exc
    except KeyboardInterrupt as exc:
        progress.done()
        _interrupted("nothing scored", exc)
    progress.done()
    result.info.update(
        checkpoint=str(ckpt.path) if ckpt.path else None,
        step=ckpt.step,
        model=ckpt.preset,
        data=data or "synthetic",
    )
    click.echo(f"{ckpt.describe()} on {data or 'the synthetic validation clips'}:")
    click.echo(_table(result))
    m = result.mean
    click.echo(
        f"scored {len(result.clips)} clip(s), {result.frames} frames in {result.seconds:.1f} s "
        f"({result.frames / max(result.seconds, 1e-9):.2f} frames/s), {channel.upper()} channel, "
        f"crop border {crop_border}: PSNR {m['psnr']:.3f} dB "
        f"({m['psnr'] - m['bicubic_psnr']:+.3f} vs bicubic), SSIM {m['ssim']:.4f}"
    )
    try:
        if out is not None:
            atomic_write_json(out, result.to_dict())
            click.echo(f"wrote {out}")
        if csv_path is not None:
            atomic_write_text(csv_path, _csv_text(result))
            click.echo(f"wrote {csv_path}")
    except OSError as exc:
        raise click.ClickException(f"cannot write the results: {exc}") from exc


# ---- vsrkit upscale -------------------------------------------------------------------------


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _existing_frames(folder: Path) -> int:
    from vsrkit.infer.frames import list_frames

    return len(list_frames(folder)) if folder.is_dir() else 0


def _provenance(ckpt: Any, o: dict[str, Any]) -> str:
    """What decides the output frames' values (the model's weights, by a digest of their
    bytes, and the options that change them), as the text every output carries (a PNG's
    ``vsrkit`` chunk, a video's comment), so ``--skip-existing`` never mixes the frames of
    two models. No path goes into it: outputs are shared."""
    import hashlib
    import json

    import torch

    digest = hashlib.sha256()
    for key in sorted(ckpt.state_dict):
        t = ckpt.state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return json.dumps(
        {
            "weights": digest.hexdigest()[:16],
            "step": ckpt.step,
            **{k: o[k] for k in ("tile_overlap", "segment", "half", "store_fp16")},
            "tile": list(o["tile"]) if o["tile"] else None,
        },
        sort_keys=True,
    )


def _made_differently(path: Path, theirs: str, mine: str, flag: str) -> click.BadParameter:
    import json

    try:
        old, new = json.loads(theirs), json.loads(mine)
        diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)
    except (ValueError, AttributeError):
        diff = "unknown model"
    return click.BadParameter(
        f"{path} was made differently ({diff}); use --overwrite to replace it, or the same "
        "model and options to continue",
        param_hint=flag,
    )


def _claim_frames(folder: Path, mine: str, *, overwrite: bool) -> list[Path]:
    """Check the frames already in an output ``folder`` before frames are added to it.

    ``--skip-existing``: every frame must carry ``mine`` (this model and these options); a
    file that is no readable image is remade. ``--overwrite``: frames vsrkit wrote (any model)
    are replaced; returns them, so those the new clip does not rewrite can be removed after
    it. Either way a readable image vsrkit did not write is the user's: refused, never
    replaced.
    """
    from vsrkit.infer.frames import is_complete_png, list_frames, png_text

    flag = "--overwrite" if overwrite else "--skip-existing"
    ours = []
    for path in list_frames(folder) if folder.is_dir() else []:
        theirs = png_text(path).get("vsrkit")
        if theirs is None:
            if is_complete_png(path) or _is_image(path):
                raise click.BadParameter(
                    f"{path} was not written by vsrkit upscale; move it away or give another "
                    "output folder (vsrkit never replaces an image of yours)",
                    param_hint=flag,
                )
            continue  # damaged: it is remade (skip) or left (overwrite)
        if not overwrite and theirs != mine:
            raise _made_differently(path, theirs, mine, flag)
        ours.append(path)
    return ours


def _is_image(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Image.DecompressionBombError:  # its header says: a very large image
        return True
    except Exception:  # noqa: BLE001 - any other failure: not a readable image
        return False
    return True


def _make_folder(folder: Path, created: list[Path]) -> None:
    """``mkdir -p folder``, noting in ``created`` the folders it made (outermost first)."""
    missing, p = [], folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    created.extend(reversed(missing))


def _open_input(folder: Path) -> Any:
    from vsrkit.infer import FrameFolder

    return FrameFolder(folder)


@click.command("upscale", epilog=EXIT_CODES)
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    metavar="[CHECKPOINT_OR_RUN] INPUT OUTPUT",
    type=click.Path(path_type=str),  # str first: an empty one is refused, never read as "."
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Continue an interrupted run: keep the complete output frames already there.",
)
@click.option("--overwrite", is_flag=True, help="Replace output that already exists.")
@click.option(
    "--fps",
    type=click.FloatRange(min=0, max=1000, min_open=True),  # vsrkit.infer.video.MAX_FPS
    callback=_finite,
    help="Frame rate of a video made from frames (default: the input video's, else 25).",
)
@inference_options
@_sigterm_as_interrupt()
def upscale(
    paths: tuple[str, ...],
    skip_existing: bool,
    overwrite: bool,
    fps: float | None,
    **o: Any,
) -> None:
    """Upscale x4 with a trained model: INPUT to OUTPUT.

    INPUT is a folder of frames (ordered by the number in their names), a folder of clips
    (REDS LR/, Vid4 BIx4/, Vimeo sequences_lr/, or subfolders of frames), or a video file
    (.mp4 .mkv .mov .avi). OUTPUT is a folder of PNG frames (one subfolder per clip) or a video
    file with the input's frame rate. Inference is exact (the model's whole-clip output) and
    streams: memory does not grow with the clip. Videos need: pip install "vsrkit[video]".
    With --weights FILE (a published BasicVSR), leave out CHECKPOINT_OR_RUN.

    \b
    Examples:
      vsrkit upscale runs/quick frames/ out/
      vsrkit upscale runs/quick input.mp4 output.mp4 --device cuda --half
      vsrkit upscale runs/quick frames/ out/ --skip-existing     # continue
      vsrkit upscale --weights BasicVSR_REDS4.pth input.mp4 output.mp4
    """
    from vsrkit._atomic import fsync_dir, remove_empty_folders
    from vsrkit.infer import tune_cpu_allocator
    from vsrkit.infer.frames import find_clips
    from vsrkit.infer.video import VIDEO_EXTENSIONS, VideoReader, is_video_path

    want = 2 if o["weights"] is not None else 3
    if len(paths) != want:
        raise click.UsageError(
            "expected INPUT OUTPUT after --weights FILE"
            if want == 2
            else "expected CHECKPOINT_OR_RUN INPUT OUTPUT (or --weights FILE INPUT OUTPUT)"
        )
    names = ("CHECKPOINT_OR_RUN", "INPUT", "OUTPUT")[3 - want :]
    for text, hint in zip(paths, names, strict=True):
        if not text:
            raise click.BadParameter("an empty path (an unset variable?)", param_hint=hint)
    input_path, output = Path(paths[-2]), Path(paths[-1])
    checkpoint_or_run = Path(paths[0]) if want == 3 else None
    for path, hint in ((checkpoint_or_run, "CHECKPOINT_OR_RUN"), (input_path, "INPUT")):
        if path is not None and not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint=hint)
    _model_source(checkpoint_or_run, o)
    if skip_existing and overwrite:
        raise click.UsageError("--skip-existing and --overwrite exclude each other")
    to_video = is_video_path(output)
    if input_path.is_dir() and _inside(output, input_path):
        raise click.BadParameter(
            f"{output} is inside the input folder {input_path}; write somewhere else",
            param_hint="OUTPUT",
        )
    if input_path.is_file() and output.exists() and output.resolve() == input_path.resolve():
        raise click.BadParameter("OUTPUT is the input file", param_hint="OUTPUT")
    if input_path.is_file() and not is_video_path(input_path):
        raise click.BadParameter(
            f"{input_path} is not a folder or a video ({', '.join(VIDEO_EXTENSIONS)})",
            param_hint="INPUT",
        )
    if to_video and output.exists() and output.is_dir():
        raise click.BadParameter(f"{output} is a folder, not a video file", param_hint="OUTPUT")
    if not to_video and output.exists() and not output.is_dir():
        raise click.BadParameter(
            f"{output} is a file; give a folder or a {'/'.join(VIDEO_EXTENSIONS)} name",
            param_hint="OUTPUT",
        )
    if to_video and not output.parent.is_dir():
        raise click.BadParameter(f"folder {output.parent} does not exist", param_hint="OUTPUT")
    if not to_video and not output.exists() and output.suffix:
        raise click.BadParameter(
            f"{output}: {output.suffix} is not a video format vsrkit writes "
            f"({' '.join(VIDEO_EXTENSIONS)}); for PNG frames give a folder name without an "
            "extension, or an existing folder",
            param_hint="OUTPUT",
        )

    progress = _Progress(o["quiet"])
    tune_cpu_allocator()  # this process streams frames: keep their freed memory for reuse
    written = skipped = 0
    started = time.perf_counter()
    spilled = 0
    created: list[Path] = []  # output folders this run made: removed again while empty
    try:
        options = _upscale_options(o, progress)
        # ---- what to read, where to write
        if input_path.is_dir():
            clips = [(name, _open_input(folder)) for name, folder in find_clips(input_path)]
        else:
            clips = [("", VideoReader(input_path))]
            if clips[0][1].has_audio:
                click.echo(
                    f"note: {input_path} has audio, which is not copied (vsrkit writes video "
                    "only; ffmpeg -i UPSCALED -i INPUT -map 0:v -map 1:a -c copy OUT adds it)",
                    err=True,
                )
        if to_video and len(clips) > 1:
            raise click.BadParameter(
                f"{input_path} holds {len(clips)} clips; give an output folder", param_hint="OUTPUT"
            )
        if to_video and output.exists() and not overwrite and not skip_existing:
            raise click.BadParameter(
                f"{output} exists; pass --overwrite to replace it", param_hint="OUTPUT"
            )
        if not to_video and not (skip_existing or overwrite):
            for name, _ in clips:
                found = _existing_frames(output / name)
                if found:
                    raise click.BadParameter(
                        f"{output / name} already holds {found} frame(s); pass --skip-existing "
                        "to continue, or --overwrite to replace them",
                        param_hint="OUTPUT",
                    )
        ckpt, model = _load(checkpoint_or_run, o)
        from vsrkit.infer import Upscaler
        from vsrkit.infer.frames import is_complete_png, remove_partial_frames, write_png
        from vsrkit.infer.video import VideoWriter

        made_by = _provenance(ckpt, o)
        if to_video and output.exists() and skip_existing:
            theirs = VideoReader(output).comment
            if theirs != made_by:
                if theirs is None or not theirs.startswith("{"):
                    raise click.BadParameter(
                        f"{output} was not written by vsrkit upscale; use --overwrite to "
                        "replace it",
                        param_hint="--skip-existing",
                    )
                raise _made_differently(output, theirs, made_by, "--skip-existing")
            click.echo(f"{output} exists, made by this model and options; skipped")
            return

        # every clip's output checked before any is made: a refusal never comes hours in
        earlier = (
            {}
            if to_video
            else {
                name: _claim_frames(output / name, made_by, overwrite=overwrite)
                for name, _ in clips
            }
        )
        upscaler = Upscaler(model, **options)
        scale = upscaler.scale
        sizes_in: list[tuple[int, int]] = []  # (h, w) of each clip, in order
        for c, (name, reader) in enumerate(clips):
            h, w = reader.size
            sizes_in.append((h, w))
            total = len(reader.names) or None
            progress.clip(f"clip {c + 1}/{len(clips)} {name}: " if name else "", total)
            if to_video:
                rate = fps or (getattr(reader, "fps", None) or 25)
                with VideoWriter(output, fps=rate, comment=made_by) as video:
                    for _, frame in upscaler.stream(reader):
                        video.write(frame)
                        written += 1
                spilled = max(spilled, upscaler.stats.spill_bytes)
                continue
            folder = output / name
            _make_folder(folder, created)
            remove_partial_frames(folder)
            names = reader.names

            def target(i: int, folder: Path = folder, names: list[str] = names) -> Path:
                return folder / f"{names[i] if i < len(names) else f'{i:08d}'}.png"

            done: set[int] = set()
            if skip_existing:  # a video that declares no frame count: what is there
                hr = (h * scale, w * scale)
                known = len(names) or _existing_frames(folder)
                done = {i for i in range(known) if is_complete_png(target(i), hr)}
                if names and len(done) == len(names):
                    skipped += len(done)
                    continue
            made = set()  # (device, inode) of the frames written: a name may differ in case
            for i, frame in upscaler.stream(reader, skip=done.__contains__):
                write_png(target(i), frame, text={"vsrkit": made_by})
                st = target(i).stat()
                made.add((st.st_dev, st.st_ino))
                written += 1
            for stale in earlier[name] if overwrite else ():  # an earlier, longer run's frames
                with contextlib.suppress(FileNotFoundError):
                    st = stale.stat()
                    if (st.st_dev, st.st_ino) not in made:
                        stale.unlink()
            skipped += len(done)
            spilled = max(spilled, upscaler.stats.spill_bytes)
            fsync_dir(folder)
    except click.ClickException:
        progress.done()
        remove_empty_folders(reversed(created))
        raise
    except VsrkitError as exc:
        progress.done()
        remove_empty_folders(reversed(created))
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a folder that cannot be made, a full disk
        progress.done()
        remove_empty_folders(reversed(created))
        where = exc.filename or output
        raise click.ClickException(f"cannot write {where}: {exc.strerror or exc}") from exc
    except KeyboardInterrupt as exc:
        progress.done()
        remove_empty_folders(reversed(created))
        if to_video:
            _interrupted(
                f"{written} frames encoded; no video written (nothing is left half-done)", exc
            )
        if overwrite:  # the folder may hold frames of the run it replaces: start again
            _interrupted(
                f"{written} frames written to {output}; run the same command again "
                "(--overwrite starts over)",
                exc,
            )
        _interrupted(
            f"{written} frames written to {output}; continue with the same command and "
            "--skip-existing",
            exc,
        )
    progress.done()
    seconds = time.perf_counter() - started
    rate = written / seconds if seconds > 0 else 0.0
    sizes = ""
    if len(set(sizes_in)) == 1:
        h, w = sizes_in[0]
        sizes = f" ({w}x{h} -> {w * scale}x{h * scale})"
    elif sizes_in:
        sizes = f" ({len(set(sizes_in))} sizes, each x{scale})"
    extra = f", {skipped} already there" if skipped else ""
    spill = f"; spilled {_gib(spilled)} to disk" if spilled else ""
    click.echo(
        f"upscaled {written} frame(s){sizes} of {len(clips)} clip(s){extra} in {seconds:.1f} s "
        f"({rate:.2f} frames/s) with {ckpt.describe()}; peak RSS {_peak_rss()}{spill}; "
        f"wrote {output}"
    )
