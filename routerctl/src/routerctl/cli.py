"""``routerctl``: the command line for routerd daemons on this host.

The common commands import only click, the standard library and
:mod:`routerd.client` (raw-socket HTTP/1.1). Plugins (pluggy,
importlib.metadata, the plugins' own imports) are loaded only by
``routerctl plugins list`` and when the command given is not one of
routerctl's own (DESIGN.md §3, python-stack.md §8).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import os
import re
import signal
import sys
import time
from typing import Any
from typing import TypeVar

import click
from routerd.client import COMMAND_RESULT
from routerd.client import DAEMON_STATUS
from routerd.client import EVENT_PAGE
from routerd.client import Deadline
from routerd.client import UnixClient
from routerd.client import default_runtime_dir
from routerd.durations import parse_duration
from routerd.errors import ClientError

from routerctl import api
from routerctl import router as rt
from routerctl import views
from routerctl.errors import CtlError
from routerctl.errors import warn
from routerctl.observe import add_observer_commands
from routerctl.output import FORMATS
from routerctl.output import StreamTable
from routerctl.output import age
from routerctl.output import dump
from routerctl.output import render_table
from routerctl.output import to_json
from routerctl.output import to_yaml
from routerctl.targets import Target
from routerctl.targets import discover
from routerctl.targets import parse_target

F = TypeVar("F", bound=Callable[..., Any])

#: Per-command deadlines when ``--timeout`` is not given (a deadline for the whole command).
DAEMONS_TIMEOUT = 2.0
REQUEST_TIMEOUT = 10.0
COMMAND_TIMEOUT = 35.0
STOP_WAIT = 10.0
STOP_TIMEOUT = COMMAND_TIMEOUT + STOP_WAIT
#: Longest wait for one health probe while ``stop`` waits for the daemon to go.
GONE_PROBE = 1.0
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# -- settings shared by the group and every subcommand --------------------------
@dataclass
class Settings:
    runtime_dir: str | None = None
    timeout: float | None = None
    output: str = "table"  # plugin commands' -o (routerd.ctl.CtlContext.output)
    _deadline: Deadline | None = None

    @property
    def runtime(self) -> str:
        return self.runtime_dir or default_runtime_dir()

    def timeout_or(self, default: float) -> float:
        return self.timeout if self.timeout is not None else default

    def deadline(self, default: float) -> Deadline:
        """The command's deadline: ``--timeout`` (else ``default``) from its first request on.

        Every request of the command shares it, however many daemons or
        pages it asks, so no peer can stretch the command past it.
        """
        if self._deadline is None:
            self._deadline = Deadline(self.timeout_or(default))
        return self._deadline


def settings(ctx: click.Context) -> Settings:
    return ctx.find_root().ensure_object(Settings)


def _set_runtime_dir(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings(ctx).runtime_dir = value


def _set_timeout(ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
    if value is not None:
        settings(ctx).timeout = value


class DurationType(click.ParamType[float]):
    """``10``, ``0.5``, ``500ms``, ``10s``, ``1m`` (routerd.durations); more than zero."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail("must be more than 0", param, ctx)
        return seconds


class TargetType(click.ParamType[Target]):
    """``<daemon-kind>/<resource>`` or the path of a daemon socket."""

    name = "target"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Target:
        if isinstance(value, Target):
            return value
        try:
            return parse_target(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def runtime_option(func: F) -> F:
    return click.option(
        "--runtime-dir",
        metavar="DIR",
        expose_value=False,
        callback=_set_runtime_dir,
        help="Where daemon sockets live. [default: $ROUTERD_RUNTIME_DIR or /run/routerd]",
    )(func)


def common_options(func: F) -> F:
    """``--runtime-dir`` and ``--timeout``, accepted before or after the subcommand."""
    func = click.option(
        "--timeout",
        type=DurationType(),
        expose_value=False,
        callback=_set_timeout,
        help="Deadline for the whole command (10, 500ms, 5s); with --follow, for each answer. "
        "Default: 2s for daemons, 35s for commands, 45s for stop, 10s otherwise.",
    )(func)
    func = click.option(
        "--runtime-dir",
        metavar="DIR",
        expose_value=False,
        callback=_set_runtime_dir,
        help="Where daemon sockets live. [default: $ROUTERD_RUNTIME_DIR or /run/routerd]",
    )(func)
    return func


output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
target_argument = click.argument("target", type=TargetType())
optional_target = click.argument("target", type=TargetType(), required=False)


# -- the lazy group --------------------------------------------------------------
class RouterctlGroup(click.Group):
    """routerctl's top-level group.

    ``get_command`` falls back to loading plugins (``routerd_register_commands``)
    only for a name that is not one of routerctl's own commands; the top-level
    ``--help`` loads them to list their commands under "Plugin commands"
    (and shell completion, to complete them); nothing else does. Failures of
    the daemon client become one ``routerctl: ...`` line and exit status 1.
    """

    _plugin_commands_loaded = False
    _broken_plugins: tuple[str, ...] = ()
    _plugin_command_names: tuple[str, ...] = ()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugin_commands_loaded:
            self.load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if os.environ.get("_ROUTERCTL_COMPLETE") and not self._plugin_commands_loaded:
            self.load_plugin_commands()  # completing: plugin commands complete too
        return super().list_commands(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """routerctl's commands, then plugins' under "Plugin commands"."""
        if not self._plugin_commands_loaded:
            self.load_plugin_commands()
        plugin_names = set(self._plugin_command_names)
        limit = formatter.width - 6 - max(len(n) for n in self.commands)
        for title, names in (
            ("Commands", [n for n in self.list_commands(ctx) if n not in plugin_names]),
            ("Plugin commands", [n for n in self.list_commands(ctx) if n in plugin_names]),
        ):
            rows = [
                (name, self.commands[name].get_short_help_str(limit))
                for name in names
                if not self.commands[name].hidden
            ]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        if self._broken_plugins:
            with formatter.section("Plugins that failed to load"):
                formatter.write_text(
                    ", ".join(self._broken_plugins) + " (see 'routerctl plugins list')"
                )

    def load_plugin_commands(self) -> None:
        """Call every plugin's ``routerd_register_commands(cli=self, ctl=...)``, once per process.

        A plugin that fails (to import, or inside the hook) is reported in one
        warning line and does not stop the others. A plugin cannot replace one
        of routerctl's own commands.
        """
        self._plugin_commands_loaded = True
        from routerd import plugins as routerd_plugins

        from routerctl.plugin_ctx import PluginCtl

        quiet_plugin_logging()
        try:
            plugin_set = routerd_plugins.load_plugins()
        except Exception as exc:  # a plugin set that cannot load at all
            warn(f"cannot load plugins: {type(exc).__name__}: {exc}")
            return
        self._broken_plugins = tuple(r.name for r in plugin_set.records if r.error)
        own = dict(self.commands)
        results = routerd_plugins.call_each(
            plugin_set.pm, "routerd_register_commands", cli=self, ctl=PluginCtl()
        )
        for plugin_name, _result, error in results:
            if error is not None:
                warn(f"plugin {plugin_name} failed to add commands: {error}")
        for name, command in own.items():
            if self.commands.get(name) is not command:
                warn(f"a plugin tried to replace the command {name!r}; keeping routerctl's")
                self.commands[name] = command
        self._plugin_command_names = tuple(sorted(set(self.commands) - set(own)))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if not self._broken_plugins:
                raise
            raise click.UsageError(
                f"{exc.message} (plugins that failed to load: {', '.join(self._broken_plugins)};"
                " see 'routerctl plugins list')",
                ctx,
            ) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:  # a plugin command using routerd.client directly
            raise CtlError(str(exc)) from None


def quiet_plugin_logging() -> None:
    """Plugin load failures are shown by ``plugins list``; keep them off stderr here."""
    import logging

    logger = logging.getLogger("routerd.plugins")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


@click.group(
    cls=RouterctlGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="TARGET is <daemon-kind>/<resource> (e.g. healthcheck/internet) or a socket path. "
    "Plugins can add commands: see 'routerctl plugins list'.",
)
@common_options
@click.version_option(package_name="routerctl", prog_name="routerctl")
def main() -> None:
    """Inspect and control routerd daemons on this host."""


def client_for(ctx: click.Context, target: Target, default_timeout: float) -> UnixClient:
    """A client whose every request ends by the command's deadline."""
    s = settings(ctx)
    timeout = s.timeout_or(default_timeout)
    return UnixClient(
        target.socket_path(s.runtime), timeout=timeout, deadline=s.deadline(default_timeout)
    )


# -- daemons ---------------------------------------------------------------------
@main.command(context_settings=CONTEXT_SETTINGS)
@common_options
@output_option
@click.pass_context
def daemons(ctx: click.Context, output: str) -> None:
    """List daemon sockets under the runtime dir with their phases.

    Every socket's /v1/status is asked in parallel, all within one
    --timeout; a socket that does not answer in time, or answers something
    malformed, is listed with phase Unreachable and the reason.
    """
    s = settings(ctx)
    runtime = s.runtime
    timeout = s.timeout_or(DAEMONS_TIMEOUT)
    deadline = s.deadline(DAEMONS_TIMEOUT)
    try:
        sockets = discover(runtime)
    except PermissionError:
        raise CtlError(
            f"permission denied listing {runtime} (run as root or join the routerd group)"
        ) from None
    except OSError as exc:
        raise CtlError(f"{runtime}: {exc.strerror or exc}") from None

    def fetch(found: Any) -> list[dict[str, Any]]:
        client = UnixClient(found.path, timeout=timeout, deadline=deadline)
        label = f"{found.daemon_kind}/{found.resource}"
        try:
            status = api.get_json(client, label, "/v1/status", shape=DAEMON_STATUS)
        except CtlError as exc:
            reason = exc.message.removeprefix(f"{label}: ")
            return [views.unreachable_record(found.daemon_kind, found.resource, found.path, reason)]
        return views.daemon_records(found.daemon_kind, found.resource, found.path, status)

    records: list[dict[str, Any]] = []
    if sockets:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(32, len(sockets))) as pool:
            for batch in pool.map(fetch, sockets):
                records.extend(batch)
    if output != "table":
        click.echo(dump(records, output))
    elif not records:
        click.echo(f"No daemon sockets under {runtime}.", err=True)
    else:
        click.echo(views.daemons_table(records, time.time()))


# -- status ----------------------------------------------------------------------
def router_for(ctx: click.Context, default_timeout: float = REQUEST_TIMEOUT) -> rt.Router:
    """routerd's control API, every request within the command's deadline."""
    s = settings(ctx)
    return rt.Router(s.runtime, s.timeout_or(default_timeout), s.deadline(default_timeout))


@main.command(
    context_settings=CONTEXT_SETTINGS, short_help="The router at a glance, or one daemon's status."
)
@optional_target
@common_options
@output_option
@click.pass_context
def status(ctx: click.Context, target: Target | None, output: str) -> None:
    """Without TARGET: every resource of routerd serve with its phase and key facts.

    With <Kind>/<name>: that resource through routerd (as describe). With
    <daemon-kind>/<resource> or a socket path: the daemon's own status.
    """
    if target is None:
        r = router_for(ctx)
        status_doc = r.get("status", rt.ROUTER_STATUS)
        items = r.get("resources", rt.RESOURCE_LIST)["items"]
        if output != "table":
            click.echo(dump({"router": status_doc, "resources": items}, output))
        else:
            click.echo(rt.glance(status_doc, items, time.time()))
        return
    if target.via_router:
        _describe(ctx, target, output)
        return
    client = client_for(ctx, target, REQUEST_TIMEOUT)
    data = api.get_json(client, str(target), "/v1/status", shape=DAEMON_STATUS)
    if output != "table":
        click.echo(dump(data, output))
    else:
        click.echo(views.status_page(data, client.path, time.time()))


# -- events ----------------------------------------------------------------------
def _check_cursor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.isdigit():
        raise click.BadParameter(f"{value!r} is not a cursor (a decimal number such as 42)")
    return value


@main.command(context_settings=CONTEXT_SETTINGS, short_help="Show or follow events.")
@optional_target
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="GLOB",
    help="Dotted topic glob ('*' one segment, '**' any number); repeat for OR.",
)
@click.option(
    "--since", metavar="CURSOR", callback=_check_cursor, help="Only events after this cursor."
)
@click.option("--limit", type=click.IntRange(1, 1000), help="At most this many events (one page).")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing events as they arrive (Ctrl-C ends)."
)
@click.option("--tail", is_flag=True, help="Start at the current head: no past events.")
@common_options
@output_option
@click.pass_context
def events(
    ctx: click.Context,
    target: Target | None,
    topics: tuple[str, ...],
    since: str | None,
    limit: int | None,
    follow: bool,
    tail: bool,
    output: str,
) -> None:
    """Show events, oldest first; --follow waits for new ones.

    Without TARGET: every resource's events from routerd's store; with
    <Kind>/<name>: that resource's, from the store; with
    <daemon-kind>/<resource> or a socket path: the daemon's own log.
    With --follow and -o json, one JSON object per line (JSON Lines).
    """
    if target is None or target.via_router:
        resource = f"{target.kind}/{target.name}" if target is not None else None
        _router_events(ctx, resource, topics, since, limit, follow, tail, output)
        return
    label = str(target)
    if follow:
        # Following has no end: --timeout bounds each answer, not the command.
        client = UnixClient(
            target.socket_path(settings(ctx).runtime),
            timeout=settings(ctx).timeout_or(REQUEST_TIMEOUT),
        )
    else:
        client = client_for(ctx, target, REQUEST_TIMEOUT)
    timeout = client.timeout
    if tail and since is None:
        head = api.get_json(client, label, "/v1/events", shape=EVENT_PAGE, tail=True)
        if not follow:
            click.echo(head.get("cursor", "") if output == "table" else dump(head, output))
            return
        since = str(head["cursor"])
    if follow:
        _follow(
            client, label, since=since, topics=topics, limit=limit, timeout=timeout, output=output
        )
        return
    cursor = since
    collected: list[dict[str, Any]] = []
    more = reset = False
    while True:
        body = api.get_events(client, label, since=cursor, topics=topics, limit=limit)
        if body.get("reset"):
            reset = True
            _warn_reset(cursor, body)
        collected.extend(body["events"])
        cursor = str(body["cursor"])
        more = bool(body.get("more"))
        if limit is not None or not more or not body["events"]:
            break
    if output != "table":
        doc: dict[str, Any] = {"cursor": cursor, "events": collected, "more": more}
        if reset:
            doc["reset"] = True
        click.echo(dump(doc, output))
        return
    if collected:
        click.echo(views.events_table(collected))
    else:
        click.echo("No events.", err=True)
    if more:
        click.echo(f"routerctl: more events follow; continue with --since {cursor}", err=True)


def _warn_reset(cursor: str | None, body: dict[str, Any]) -> None:
    warn(
        f"cursor {cursor} is not in the daemon's event log (the log was lost or rotated "
        "past it); showing the events it has"
    )


class _Stop(Exception):
    """SIGTERM while following: end like Ctrl-C."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Stop


def _follow(
    client: UnixClient,
    label: str,
    *,
    since: str | None,
    topics: tuple[str, ...],
    limit: int | None,
    timeout: float,
    output: str,
) -> None:
    """Long-poll ``/v1/events`` from ``since`` and print as events arrive until interrupted.

    The daemon may hold each long-poll for its ``wait``; once it answers, the
    answer must be complete within ``timeout``. A malformed answer ends
    following with one line (CtlError), like a daemon that went away.
    """
    table = StreamTable(views.EVENT_HEADERS, sys.stdout, views.EVENT_MIN_WIDTHS)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        # SIGINT ends following even when started with SIGINT ignored (a
        # background job of a non-interactive shell): Ctrl-C is the way out.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous = previous_int = None
    cursor = since
    idle = 0.0
    try:
        while True:
            started = time.monotonic()
            body = api.get_events(
                client,
                label,
                since=cursor,
                topics=topics,
                limit=limit,
                wait=api.FOLLOW_WAIT,
                timeout=timeout,
            )
            if body.get("reset"):
                _warn_reset(cursor, body)
            batch: list[dict[str, Any]] = body["events"]
            if batch:
                _print_batch(batch, output, table)
                idle = 0.0
            elif time.monotonic() - started < 1.0:
                # Empty long before the wait was up: the daemon is stopping and
                # no longer holds long-polls. Back off instead of spinning.
                idle = min(idle * 2 or 0.1, 2.0)
                time.sleep(idle)
            cursor = str(body["cursor"])
    except (KeyboardInterrupt, _Stop):
        return
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _print_batch(batch: Sequence[dict[str, Any]], output: str, table: StreamTable) -> None:
    if output == "table":
        table.write([views.event_row(e) for e in batch])
        return
    out = sys.stdout
    for event in batch:
        if output == "json":
            out.write(to_json(event, indent=None) + "\n")
        else:
            out.write("---\n" + to_yaml(event) + "\n")
    out.flush()


# -- commands --------------------------------------------------------------------
def _parse_args(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    """``key=value`` (a string) or ``key:=json`` (a JSON value), as in httpie."""
    import json

    args: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or key == ":":
            raise click.BadParameter(f"{item!r} is not key=value or key:=json")
        if key.endswith(":"):
            try:
                args[key[:-1]] = json.loads(value)
            except ValueError:
                raise click.BadParameter(f"{item!r}: {value!r} is not valid JSON") from None
        else:
            args[key] = value
    return args


arg_option = click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_args,
    help="Command argument: key=value (string) or key:=json; repeatable.",
)


def run_command(
    ctx: click.Context,
    target: Target,
    name: str,
    args: dict[str, Any],
    output: str,
    default_timeout: float = COMMAND_TIMEOUT,
) -> dict[str, Any]:
    if target.via_router:
        result = router_for(ctx, default_timeout).post(
            f"resources/{target.kind}/{target.name}/commands/{name}", args or None, COMMAND_RESULT
        )
    else:
        client = client_for(ctx, target, default_timeout)
        result = api.post_command(client, str(target), name, args)
    accepted = result["accepted"] is not False
    message = str(result.get("message") or "")
    if output != "table":
        click.echo(dump(result, output))
        if not accepted:
            ctx.exit(1)
    elif not accepted:
        raise CtlError(f"{target}: {name} was not accepted: {message or 'no reason given'}")
    else:
        click.echo(message or f"{name}: accepted")
    return result


def _command(name: str, help_text: str, short_help: str) -> None:
    @main.command(name, help=help_text, short_help=short_help, context_settings=CONTEXT_SETTINGS)
    @target_argument
    @arg_option
    @common_options
    @output_option
    @click.pass_context
    def command(ctx: click.Context, target: Target, args: dict[str, Any], output: str) -> None:
        run_command(ctx, target, name, args, output)


_command(
    "renew",
    "Run the daemon's active operation now (DHCP renew, an immediate health probe, "
    "PPPoE reconnect) and print its result.",
    "Run the daemon's active operation now (renew, probe).",
)


@main.command(
    context_settings=CONTEXT_SETTINGS, short_help="Re-read the config (routerd, or one daemon)."
)
@optional_target
@arg_option
@common_options
@output_option
@click.pass_context
def reload(ctx: click.Context, target: Target | None, args: dict[str, Any], output: str) -> None:
    """Without TARGET: routerd serve re-reads its config, starts new resources,
    stops removed ones and reloads changed ones. With a TARGET: that daemon
    re-reads its configuration file and applies what changed.
    """
    if target is not None:
        run_command(ctx, target, "reload", args, output)
        return
    result = router_for(ctx, COMMAND_TIMEOUT).post("reload", None, rt.RELOAD_RESULT)
    if output != "table":
        click.echo(dump(result, output))
        return
    click.echo(f"config generation {result.get('generation')}")
    for key in ("started", "stopped", "reloaded", "restarted"):
        if result.get(key):
            click.echo(f"  {key}: {', '.join(result[key])}")


@main.command(context_settings=CONTEXT_SETTINGS)
@target_argument
@arg_option
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the daemon has exited (its socket is gone).",
)
@common_options
@output_option
@click.pass_context
def stop(ctx: click.Context, target: Target, args: dict[str, Any], wait: bool, output: str) -> None:
    """Stop the daemon gracefully (protocol teardown, then exit).

    --timeout covers both the command and the wait for the daemon to go.
    """
    run_command(ctx, target, "stop", args, output, STOP_TIMEOUT)
    deadline = settings(ctx).deadline(STOP_TIMEOUT)
    if wait and target.via_router:
        if not _wait_router_state(ctx, target, "Stopped", deadline):
            raise CtlError(
                f"{target}: the daemon accepted stop but is not Stopped "
                f"within {deadline.seconds:g} s"
            )
    elif wait:
        path = target.socket_path(settings(ctx).runtime)
        if not _wait_gone(path, deadline):
            raise CtlError(
                f"{target}: the daemon accepted stop but is still answering "
                f"within {deadline.seconds:g} s"
            )


def _wait_gone(path: str, deadline: Deadline) -> bool:
    """True once nothing listens on ``path`` any more (removed, or a stale socket)."""
    while True:
        if not os.path.exists(path):
            return True
        try:
            UnixClient(path, timeout=GONE_PROBE, deadline=deadline).get("/v1/healthz")
        except ClientError:
            # Not answering counts as gone, unless it was our own deadline that ran out.
            return not deadline.expired
        if deadline.expired:
            return False
        time.sleep(min(0.05, deadline.remaining()))


@main.command("command", context_settings=CONTEXT_SETTINGS)
@target_argument
@click.argument("name")
@arg_option
@common_options
@output_option
@click.pass_context
def command_(
    ctx: click.Context, target: Target, name: str, args: dict[str, Any], output: str
) -> None:
    """Run a plugin-specific command NAME (e.g. release, rebind)."""
    if not _COMMAND_NAME.match(name):
        raise click.BadParameter(f"{name!r} is not a command name", param_hint="'NAME'")
    run_command(ctx, target, name, args, output)


# -- routerd serve: get, describe, wait -------------------------------------------
def _router_events(
    ctx: click.Context,
    resource: str | None,
    topics: tuple[str, ...],
    since: str | None,
    limit: int | None,
    follow: bool,
    tail: bool,
    output: str,
) -> None:
    if follow:
        # Following has no end: --timeout bounds each answer, not the command.
        s = settings(ctx)
        r = rt.Router(s.runtime, s.timeout_or(REQUEST_TIMEOUT))
    else:
        r = router_for(ctx)
    if (tail or follow) and since is None:
        since = str(r.events(since=None, topics=(), resource=None, limit=1)["cursor"])
        if tail and not follow:
            click.echo(since if output == "table" else dump({"cursor": since}, output))
            return
    if not follow:
        body = r.events(since=since, topics=topics, resource=resource, limit=limit)
        items = body["items"] if since is not None else list(reversed(body["items"]))
        if output != "table":
            click.echo(dump({"cursor": body["cursor"], "items": items}, output))
        elif items:
            click.echo(rt.events_table(items))
        else:
            click.echo("No events.", err=True)
        return
    table = StreamTable(rt.EVENT_HEADERS, sys.stdout, (4, 24, 20, 36, 8, 0))
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        previous = None
    try:
        while True:
            body = r.events(
                since=since, topics=topics, resource=resource, limit=limit, wait=api.FOLLOW_WAIT
            )
            items = body["items"]
            if items:
                if output == "table":
                    table.write([rt.event_row(e) for e in items])
                else:
                    _print_batch(items, output, table)
            since = str(body["cursor"])
    except (KeyboardInterrupt, _Stop):
        return
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@main.group(context_settings=CONTEXT_SETTINGS)
def get() -> None:
    """List routerd serve's resources, events or daemons."""


@get.command("resources", context_settings=CONTEXT_SETTINGS)
@common_options
@output_option
@click.pass_context
def get_resources(ctx: click.Context, output: str) -> None:
    """Every configured resource: phase, since, daemon state, key facts."""
    items = router_for(ctx).get("resources", rt.RESOURCE_LIST)["items"]
    click.echo(dump(items, output) if output != "table" else rt.resources_table(items, time.time()))


@get.command("events", context_settings=CONTEXT_SETTINGS)
@click.option("--topic", "topics", multiple=True, metavar="GLOB", help="Topic glob; repeat for OR.")
@click.option("--resource", metavar="KIND/NAME", help="Only this resource's events.")
@click.option("--since", metavar="ID", callback=_check_cursor, help="Only events after this id.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@common_options
@output_option
@click.pass_context
def get_events(
    ctx: click.Context,
    topics: tuple[str, ...],
    resource: str | None,
    since: str | None,
    limit: int,
    output: str,
) -> None:
    """Stored events, oldest first (the newest LIMIT without --since)."""
    _router_events(ctx, resource, topics, since, limit, False, False, output)


@get.command("daemons", context_settings=CONTEXT_SETTINGS)
@common_options
@output_option
@click.pass_context
def get_daemons(ctx: click.Context, output: str) -> None:
    """The daemons routerd supervises: state, pid, restarts, phase."""
    daemons_ = router_for(ctx).get("status", rt.ROUTER_STATUS)["daemons"]
    if output != "table":
        click.echo(dump(daemons_, output))
        return
    now = time.time()
    rows = [
        [
            f"{d['resource']['kind']}/{d['resource']['name']}",
            d.get("daemonKind"),
            d.get("state"),
            d.get("pid"),
            d.get("restarts"),
            d.get("phase"),
            age(d.get("since"), now) if d.get("since") else "-",
        ]
        for d in daemons_
    ]
    click.echo(
        render_table(
            ("RESOURCE", "DAEMON KIND", "STATE", "PID", "RESTARTS", "PHASE", "SINCE"), rows
        )
    )


def _describe(ctx: click.Context, target: Target, output: str) -> None:
    item = router_for(ctx).get(f"resources/{target.kind}/{target.name}", rt.RESOURCE_ITEM)
    click.echo(dump(item, output) if output != "table" else rt.describe_page(item, time.time()))


@main.command(context_settings=CONTEXT_SETTINGS)
@target_argument
@common_options
@output_option
@click.pass_context
def describe(ctx: click.Context, target: Target, output: str) -> None:
    """One resource of routerd serve (<Kind>/<name>): spec, phase, conditions, observed, recent events."""
    if not target.via_router:
        raise click.BadParameter(
            "describe takes <Kind>/<name>, e.g. DHCPv4Client/wan", param_hint="'TARGET'"
        )
    _describe(ctx, target, output)


def _parse_for(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    if not sep or key not in ("phase", "condition") or not wanted:
        raise click.BadParameter("use phase=<Phase> or condition=<Type>")
    return key, wanted


def _router_state(r: rt.Router, target: Target) -> dict[str, Any]:
    return r.get(f"resources/{target.kind}/{target.name}", rt.RESOURCE_ITEM)


def _holds(item: dict[str, Any], key: str, wanted: str) -> bool:
    if key == "phase":
        return bool(item.get("phase") == wanted)
    return any(
        c.get("type") == wanted and c.get("status") == "True" for c in item.get("conditions") or []
    )


def _wait_router_state(ctx: click.Context, target: Target, state: str, deadline: Deadline) -> bool:
    r = router_for(ctx)
    while not deadline.expired:
        daemons_ = r.get("status", rt.ROUTER_STATUS)["daemons"]
        if any(
            (d["resource"]["kind"], d["resource"]["name"]) == (target.kind, target.name)
            and d["state"] == state
            for d in daemons_
        ):
            return True
        time.sleep(min(0.1, deadline.remaining()))
    return False


@main.command(context_settings=CONTEXT_SETTINGS)
@target_argument
@click.option(
    "--for", "condition", required=True, callback=_parse_for, metavar="phase=P|condition=T"
)
@click.option(
    "--timeout",
    "wait_timeout",
    type=DurationType(),
    default="60s",
    show_default=True,
    help="How long to wait.",
)
@runtime_option
@click.pass_context
def wait(
    ctx: click.Context, target: Target, condition: tuple[str, str], wait_timeout: float
) -> None:
    """Return as soon as <Kind>/<name> has the phase (or the True condition); exit 1 on timeout.

    Follows the resource's events with long-polls, so it returns at once
    when the phase changes rather than at the next poll. A routerd serve
    still starting (no socket yet) is waited for within the same timeout.
    """
    if not target.via_router:
        raise click.BadParameter(
            "wait takes <Kind>/<name>, e.g. DHCPv4Client/wan", param_hint="'TARGET'"
        )
    key, wanted = condition
    # --timeout here is the wait itself; every request falls within it too.
    deadline = Deadline(wait_timeout)
    r = rt.Router(settings(ctx).runtime, REQUEST_TIMEOUT, deadline)
    resource = f"{target.kind}/{target.name}"

    def timed_out(item: dict[str, Any] | None) -> CtlError:
        phase = item.get("phase") if item is not None else "unknown"
        return CtlError(
            f"{resource}: timed out after {wait_timeout:g} s waiting for {key}={wanted} "
            f"(phase is {phase})"
        )

    # routerd serve may still be starting (its socket not there yet): waiting
    # for it is part of waiting, within the same deadline.
    status_socket = os.path.join(settings(ctx).runtime, rt.STATUS_SOCKET)
    while not os.path.exists(status_socket) and deadline.remaining() > 0.1:
        time.sleep(0.1)
    cursor = str(r.events(since=None, topics=(), resource=None, limit=1)["cursor"])
    while True:
        item = _router_state(r, target)
        if _holds(item, key, wanted):
            click.echo(f"{resource}: {key} {wanted}")
            return
        remaining = deadline.remaining()
        if remaining <= 0:
            raise timed_out(item)
        # routerd refreshes a resource's status when its phase changes: wake on those events.
        # The long-poll ends a little before the deadline, leaving time for a last look.
        try:
            body = r.events(
                since=cursor,
                topics=("routerd.resource.phase.changed", "routerd.daemon.lifecycle.*"),
                resource=resource,
                limit=100,
                wait=min(max(remaining - 0.25, 0.05), 5.0),
            )
        except CtlError:
            if deadline.expired:
                raise timed_out(item) from None
            raise
        cursor = str(body["cursor"])


# -- plugins ---------------------------------------------------------------------
@main.group(context_settings=CONTEXT_SETTINGS)
def plugins() -> None:
    """Installed routerd plugins."""


@plugins.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--hook", metavar="NAME", help="Only plugins implementing this hook.")
@output_option
def plugins_list(hook: str | None, output: str) -> None:
    """List plugins of the 'routerd' entry-point group: version, daemon kinds, commands, hooks, errors.

    Exits with status 1 when any plugin failed to load (the list is printed
    all the same). ROUTERD_PLUGINS=a,b restricts the list to those names.
    """
    from pathlib import Path

    from routerd.client import default_state_dir
    from routerd.plugins import allowed_plugins
    from routerd.plugins import load_plugins
    from routerd.plugins import write_index

    quiet_plugin_logging()
    plugin_set = load_plugins()
    # Refreshes the index `routerd daemon` reads (when we may write the state root).
    write_index(plugin_set, Path(default_state_dir()), allow=allowed_plugins())
    commands = _commands_by_plugin(plugin_set)
    records = []
    for record in plugin_set.records:
        row = record.to_dict()
        added, error = commands.get(record.name, ([], None))
        row["commands"] = added
        if error is not None:
            record.add_error(f"routerd_register_commands: {error}")
            row["error"] = record.error
        records.append(row)
    if hook is not None:
        records = [r for r in records if hook in r["hooks"]]
    if output != "table":
        click.echo(dump(records, output))
    elif not records:
        click.echo("No plugins." if hook is None else f"No plugin implements {hook}.", err=True)
    else:
        click.echo(views.plugins_table(records))
    failed = [r.name for r in plugin_set.records if r.error]
    if failed:
        noun = "plugin" if len(failed) == 1 else "plugins"
        raise CtlError(f"{len(failed)} {noun} failed to load: {', '.join(failed)}")


@plugins.command("new", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Where to write it. [default: ./routerd-plugin-NAME]",
)
def plugins_new(name: str, directory: str | None) -> None:
    """Write a working plugin NAME to start from: daemon kind NAME, engine, tests, README.

    The distribution routerd-plugin-NAME has the routerd entry point and the
    routerd-core version range; its tests run the conformance suite
    (pip install -e '.[test]' && pytest). docs/writing-a-plugin.md explains
    every file.
    """
    from pathlib import Path

    from routerctl import starter

    try:
        values = starter.names(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'NAME'") from None
    target = Path(directory or values["@dist@"])
    try:
        written = starter.write(name, target)
    except FileExistsError as exc:
        raise CtlError(str(exc)) from None
    for path in written:
        click.echo(str(path))
    click.echo(
        f"\nNext: cd {target} && pip install -e '.[test]' && pytest\n"
        f"Then routerctl plugins list shows {name}; a {values['@Kind@']} resource in the "
        "config runs under routerd serve.",
        err=True,
    )


def _commands_by_plugin(plugin_set: Any) -> dict[str, tuple[list[str], str | None]]:
    """The routerctl commands each plugin adds: its hook called on a scratch group."""
    from routerd.plugins import call_impl

    from routerctl.plugin_ctx import PluginCtl

    out: dict[str, tuple[list[str], str | None]] = {}
    for impl in plugin_set.pm.hook.routerd_register_commands.get_hookimpls():
        scratch = click.Group("scratch")
        try:
            call_impl(impl, "routerd_register_commands", {"cli": scratch, "ctl": PluginCtl()})
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            out[impl.plugin_name] = (sorted(scratch.commands), f"{type(exc).__name__}: {exc}")
            continue
        out[impl.plugin_name] = (sorted(scratch.commands), None)
    return out


# What the router sees (docs/observe.md): the observers' listings.
add_observer_commands(get, common_options, output_option, router_for)

if __name__ == "__main__":
    sys.exit(main())
