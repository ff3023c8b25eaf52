"""The ``vsrkit`` command line: parses arguments and calls the library, nothing more.

Command groups live in their own modules (``vsrkit/cli/<group>.py``) and are imported only
when used, so ``vsrkit --help`` starts fast and never imports torch. A
:class:`~vsrkit.errors.VsrkitError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from vsrkit._version import __version__
from vsrkit.errors import VsrkitError

# command name -> (module, attribute, one-line help shown by `vsrkit --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("vsrkit.cli.train", "train", "Train the reference VSR model."),
    "checkpoints": (
        "vsrkit.cli.checkpoints",
        "checkpoints",
        "List, show, verify, prune.",
    ),
    "config": ("vsrkit.cli.config", "config", "Validate, show and change runtime settings."),
    "stats": ("vsrkit.cli.stats", "stats", "Read, export, compare and plot Statistik files."),
    "data": ("vsrkit.cli.data", "data", "Look at the training data."),
    "monitor": ("vsrkit.cli.monitor", "monitor", "Serve the monitor page for a run folder."),
    "eval": ("vsrkit.cli.infer", "eval_cmd", "Score a trained model: PSNR/SSIM vs bicubic."),
    "upscale": ("vsrkit.cli.infer", "upscale", "Upscale frames or a video with a trained model."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [n for n, (mod, _, _) in COMMANDS.items() if importlib.util.find_spec(mod)]
        return sorted(set(names) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attr, _ = COMMANDS[cmd_name]
        if importlib.util.find_spec(module_name) is None:
            return None
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but a command-line mistake is one line (``Error: ... (see 'vsrkit X
        --help')``, exit code 2) instead of the usage text and a hint."""
        run = functools.partial(
            super().main, args, prog_name, complete_var, standalone_mode=False, **extra
        )
        if not standalone_mode:
            return run()
        try:
            result: Any = run()
        except click.UsageError as exc:
            if exc.ctx is not None:
                where = exc.ctx.command_path
            else:  # the parser's own errors (an option short of its values) carry no context
                given = sys.argv[1:] if args is None else list(args)
                sub = next((a for a in given if a in COMMANDS), None)
                where = f"{prog_name or 'vsrkit'} {sub}" if sub else prog_name or "vsrkit"
            click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except (EOFError, KeyboardInterrupt):
            click.echo(err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, so `--help` imports no command module.
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx) if n in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsrkit")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """vsrkit: training-loop components for PyTorch, and a reference VSR trainer."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``vsrkit`` console script."""
    try:
        return cli.main(args=argv, prog_name="vsrkit", standalone_mode=True)
    except VsrkitError as exc:  # raised outside click's own handling (e.g. at import)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
