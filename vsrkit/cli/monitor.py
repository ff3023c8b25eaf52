"""``vsrkit monitor RUN_DIR``: serve the monitor page read-only from a run folder's files."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from vsrkit.cli._util import user_errors


@click.command("monitor")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--port",
    default=5050,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback needs --allow-remote.",
)
@click.option("--allow-remote", is_flag=True, help="Serve beyond this machine (prints a warning).")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Extra name accepted in the Host header (repeatable).",
)
@click.option(
    "--stale-after",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Seconds without a change to any file of the run after which it counts as stopped.",
)
@user_errors
def monitor(
    run_dir: Path,
    port: int,
    host: str,
    allow_remote: bool,
    allowed_hosts: tuple[str, ...],
    stale_after: float,
) -> None:
    """Serve the live page for RUN_DIR (a run that has ended or runs elsewhere).

    Reads the latest Statistik_*.json, config_changes.jsonl and runtime_config.json; the
    action buttons and the settings editor are disabled. Open the URL it prints (it carries
    the access token once); the token is also in RUN_DIR/monitor_view_token, readable by
    you only. Stop with Ctrl-C.
    """
    from vsrkit.monitor.runfolder import VIEW_TOKEN_FILE, RunFolderSource
    from vsrkit.monitor.server import MonitorServer

    source = RunFolderSource(run_dir)
    server = MonitorServer(
        snapshot=source.snapshot,
        actions=None,
        config=source.config,
        host=host,
        port=port,
        token_file=run_dir / VIEW_TOKEN_FILE,
        allow_remote=allow_remote,
        allowed_hosts=allowed_hosts,
        stats=source.stats,
        extra=source.extra,
        heartbeat=source.heartbeat_age,
        stale_after=stale_after,
        read_only_note=(
            f"Read-only view of {run_dir}: actions and settings are disabled "
            "(they work in the page served by `vsrkit train`)."
        ),
    )
    if allow_remote and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"Warning: serving {run_dir} on {host}, reachable beyond this machine.", err=True
        )
    server.start()
    where = (
        f"token also in {server.token_file}"
        if server.token_file_written
        else "the token file could not be written: keep this URL"
    )
    click.echo(
        f"Monitor (read-only) for {run_dir}: {server.login_url}  ({where}; Ctrl-C to stop)",
        err=False,
    )
    done = threading.Event()
    # SIGTERM (kill, systemd, a job scheduler) ends it as cleanly as Ctrl-C: the token file goes
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
