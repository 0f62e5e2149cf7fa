"""The ``routerd`` command's click group: ``daemon``, ``serve``, ``validate``, ``schema``, ``unit``.

The console script is :func:`routerd.cli.main`, which runs an ordinary
``routerd daemon ...`` without importing click (a daemon's cold start,
docs/decisions.md "Process model"); everything else comes here.
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
import sys
from typing import TYPE_CHECKING
from typing import Any
from typing import NoReturn
from typing import TypeVar

import click

from routerd.cli import DaemonRefused
from routerd.cli import absolute_config
from routerd.cli import print_problems
from routerd.cli import run_daemon
from routerd.cli import setup_logging
from routerd.client import default_runtime_dir
from routerd.client import default_state_dir

if TYPE_CHECKING:
    from routerd.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def paths_options(func: F) -> F:
    """``--config``, ``--runtime-dir`` and ``--state-dir`` of ``daemon`` and ``serve``."""
    func = click.option(
        "--state-dir",
        default=None,
        help="State root (default $ROUTERD_STATE_DIR or /var/lib/routerd).",
    )(func)
    func = click.option(
        "--runtime-dir",
        default=None,
        help="Socket root (default $ROUTERD_RUNTIME_DIR or /run/routerd).",
    )(func)
    return click.option(
        "--config",
        "config_path",
        required=True,
        type=click.Path(),  # the config reader refuses what is not a regular file
        help="Router config file.",
    )(func)


def _refuse(config_path: str, exc: ConfigError) -> NoReturn:
    """Print every config problem, one line each, and exit 1 without starting."""
    print_problems(exc)
    raise click.ClickException(f"{config_path}: {len(exc.problems)} problem(s); not starting")


log_level_option = click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)


@click.group()
@click.version_option(package_name="routerd-core", prog_name="routerd")
def main() -> None:
    """routerd: a router control plane for Linux hosts."""


@main.command()
@click.argument("daemon_kind")
@paths_options
@click.option("--resource", required=True, help="Name of the resource this daemon serves.")
@click.option(
    "--socket",
    "socket_path",
    default=None,
    help="Socket path (default <runtime>/<kind>/<resource>.sock).",
)
@log_level_option
def daemon(
    daemon_kind: str,
    config_path: str,
    resource: str,
    runtime_dir: str | None,
    state_dir: str | None,
    socket_path: str | None,
    log_level: str,
) -> None:
    """Run the daemon of DAEMON_KIND for one resource of the config."""
    from routerd.permissions import set_umask

    set_umask()  # before any file exists: state and logs are not world-readable (§9)
    setup_logging(log_level)
    try:
        code = run_daemon(daemon_kind, config_path, resource, runtime_dir, state_dir, socket_path)
    except DaemonRefused as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command("fork-server", hidden=True)
@click.option("--control-fd", type=int, required=True)
@click.option("--exclude", multiple=True, help="Plugins not to load (they start threads).")
@log_level_option
def fork_server(control_fd: int, exclude: tuple[str, ...], log_level: str) -> None:
    """The pre-loaded process routerd serve forks its daemons from (serve/forkserver.py)."""
    from routerd.permissions import set_umask
    from routerd.serve.forkserver import server_main

    set_umask()  # inherited by every daemon it forks
    setup_logging(log_level)
    sys.exit(server_main(control_fd, log_level, set(exclude)))


@main.command()
@paths_options
@click.option(
    "--log-dir", default=None, help="Write each daemon's output to a file here (default: inherit)."
)
@click.option(
    "--fork-server/--no-fork-server",
    default=True,
    help="Fork daemons from a pre-loaded process (default), or exec `routerd daemon` for each.",
)
@log_level_option
def serve(
    config_path: str,
    runtime_dir: str | None,
    state_dir: str | None,
    log_dir: str | None,
    fork_server: bool,
    log_level: str,
) -> None:
    """Supervise one daemon per resource, store their events, serve the control API."""
    from routerd.daemon.server import SocketInUse
    from routerd.errors import ConfigError
    from routerd.permissions import set_umask
    from routerd.plugins import allowed_plugins
    from routerd.plugins import load_plugins
    from routerd.plugins import write_index
    from routerd.serve.main import RouterdServe

    set_umask()  # inherited by every daemon it starts
    setup_logging(log_level)
    plugins = load_plugins()
    for record in plugins.records:
        if record.error:
            click.echo(f"warning: plugin {record.name}: {record.error}", err=True)
    state_root = Path(state_dir or default_state_dir())
    server = RouterdServe(
        plugins,
        absolute_config(config_path),
        Path(runtime_dir or default_runtime_dir()),
        state_root,
        log_dir=Path(log_dir) if log_dir else None,
        fork_server=fork_server,
        log_level=log_level,
    )
    write_index(plugins, state_root, allow=allowed_plugins())  # for `routerd daemon` (exec)
    try:
        code = server.serve()
    except ConfigError as exc:
        _refuse(config_path, exc)
    except SocketInUse as exc:
        raise click.ClickException(f"{exc} (is routerd serve already running?)") from None
    sys.exit(code)


@main.command()
@click.option("-f", "--file", "config_path", required=True, type=click.Path())
def validate(config_path: str) -> None:
    """Validate a config file; print every problem and exit 1 if there are any."""
    from routerd.config import load_config
    from routerd.errors import ConfigError
    from routerd.plugins import allowed_plugins
    from routerd.plugins import load_plugins
    from routerd.plugins import write_index

    plugins = load_plugins()
    for record in plugins.records:
        if record.error:
            click.echo(f"warning: plugin {record.name}: {record.error}", err=True)
    # Where the daemons will look (a state root that exists and that we may write).
    write_index(plugins, Path(default_state_dir()), allow=allowed_plugins())
    try:
        config = load_config(config_path, plugins)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"{config_path}: {len(exc.problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{config_path}: ok ({len(config.resources)} resources)")


@main.command()
def schema() -> None:
    """Print a JSON Schema of the config with every loaded kind."""
    from routerd.config import json_schema
    from routerd.plugins import load_plugins

    click.echo(json.dumps(json_schema(load_plugins()), indent=2))


@main.command()
@click.option(
    "--config",
    "config_path",
    default="/etc/routerd/router.yaml",
    show_default=True,
    help="Router config the unit runs with (absolute path).",
)
@click.option("--bindir", default=None, help="Where routerd is. [default: this installation's]")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
def unit(config_path: str, bindir: str | None, output: str | None) -> None:
    """Print the hardened systemd unit of routerd serve for this installation."""
    from routerd.unit import installation_bindir
    from routerd.unit import render

    try:
        text = render(bindir or installation_bindir(), config_path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text)
    click.echo(f"wrote {output}; now: systemctl daemon-reload && systemctl enable --now routerd")


if __name__ == "__main__":  # pragma: no cover
    main()
