"""``vsrkit train``: parse flags into a :class:`~vsrkit.train.config.TrainConfig` and run it.

Exit codes: 0 finished or stopped by a signal; 1 a run that could not go on (non-finite losses,
data that cannot be read, too few clips for a batch, a disk error); 2 a bad flag, setting or
path, and a ``--resume`` that cannot be honoured (nothing to resume from, a damaged checkpoint,
every checkpoint of the folder damaged). Each error is one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from vsrkit.errors import VsrkitError

PRESET_NAMES = ("quick", "paper")


class _SettingError(click.ClickException):
    """One ``Error: ...`` line and exit code 2 (no usage text: the flag is named in it)."""

    exit_code = 2


class _Threads(click.ParamType):
    """``auto`` or a count >= 1."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isascii() and text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not 'auto' or a whole number >= 1", param, ctx)


@click.command()
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default=None,
    help="quick (default): under a minute on 2 CPU cores; paper: the full model, for a GPU.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON or TOML file of startup settings (flags override it).",
)
@click.option(
    "--data",
    type=str,
    metavar="PATH|synthetic",
    help="REDS-style or Vimeo-90K folder; default: the built-in synthetic clips.",
)
@click.option("--steps", type=click.IntRange(min=1), help="Total training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Clips per step and process.")
@click.option("--model", type=click.Choice(("tiny", "small", "paper")), help="Model size preset.")
@click.option(
    "--skip",
    type=click.Choice(("bicubic", "bilinear")),
    help="Skip connection: bicubic (default) or bilinear (BasicSR's BasicVSR exactly).",
)
@click.option(
    "--init-weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Start from these weights (a BasicSR/mmagic BasicVSR file or a vsrkit checkpoint); "
    "the optimizer and schedule start fresh.",
)
@click.option(
    "--spynet-weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Pretrained SpyNet file (BasicSR or mmagic, as published).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--seed", type=int, help="Seed of model, data order and augmentation.")
@click.option(
    "--log-every", type=click.IntRange(min=1), help="Steps between log lines (and the one sync)."
)
@click.option("--val-every", type=click.IntRange(min=1), help="Steps between validations.")
@click.option("--ckpt-every", type=click.IntRange(min=1), help="Steps between checkpoints.")
@click.option(
    "--keep-last",
    type=click.IntRange(min=1),
    help="Regular checkpoints to keep (the best and the newest emergency one are kept besides).",
)
@click.option("--num-workers", type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option(
    "--threads",
    type=_Threads(),
    help="CPU threads for tensor operations; auto (default): the cores other processes leave free.",
)
@click.option(
    "--val-clip-names",
    metavar="NAME,NAME",
    help="REDS-style --data: the clip folders to validate on (default: REDS4 000,011,015,020).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder (default: a new folder in the user data dir).",
)
@click.option(
    "--mirror-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Second folder that gets a copy of every checkpoint (restore falls back to it).",
)
@click.option(
    "--resume",
    metavar="latest|best|STEP|PATH|ask",
    help="Continue from a checkpoint of --run-dir (PATH: a checkpoint file).",
)
@click.option(
    "--device", type=click.Choice(("auto", "cpu", "cuda")), help="Default: CUDA if present."
)
@click.option("--amp", type=click.Choice(("bf16", "fp16", "off")), help="Mixed precision on CUDA.")
@click.option("--compile/--no-compile", default=None, help="torch.compile the model.")
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="channels_last memory format (default: on; faster on the CPU too).",
)
@click.option("--tensorboard/--no-tensorboard", default=None, help="Write TensorBoard events.")
@click.option("--monitor/--no-monitor", default=None, help="Serve the live web monitor.")
@click.option(
    "--terminal-view/--no-terminal-view",
    default=None,
    help="Live panel with keys v/p/c/q when stdout is a terminal.",
)
@click.option("--monitor-port", type=click.IntRange(1, 65535), help="Monitor port (default 5050).")
@click.option("--monitor-host", help="Monitor address (default 127.0.0.1).")
@click.option(
    "--allow-remote-monitor",
    is_flag=True,
    default=None,
    help="Allow a monitor address other than loopback (prints a warning).",
)
def train(preset: str | None, config_file: Path | None, **flags: Any) -> None:
    """Train the reference bidirectional recurrent VSR model.

    \b
    Examples:
      vsrkit train --preset quick
      vsrkit train --run-dir runs/a --resume latest
      vsrkit train --preset paper --skip bilinear --init-weights BasicVSR_REDS4.pth
      torchrun --nproc-per-node 2 -m vsrkit train --steps 200
    """
    from vsrkit.train.config import TrainConfig
    from vsrkit.train.errors import DeviceUnavailableError, InitWeightsError, ResumeError

    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    overrides["preset"] = preset
    try:
        cfg = TrainConfig.from_sources(
            preset=preset or "quick", file=config_file, overrides=overrides
        )
    except VsrkitError as exc:
        raise _SettingError(str(exc)) from exc
    if cfg.data not in (None, "synthetic") and not Path(cfg.data).expanduser().is_dir():
        raise click.BadParameter(f"{cfg.data} is not a folder", param_hint="--data")

    from vsrkit.cli.prompt import prompt_for_checkpoint
    from vsrkit.train import train as run_training

    try:
        result = run_training(cfg, choose_checkpoint=prompt_for_checkpoint)
    except (ResumeError, InitWeightsError, DeviceUnavailableError) as exc:  # found at the start
        raise _SettingError(str(exc)) from exc
    except VsrkitError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(result.exit_code)
