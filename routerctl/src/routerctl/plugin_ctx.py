"""routerctl's side of ``routerd_register_commands(cli, ctl)``: :class:`PluginCtl`.

Implements :class:`routerd.ctl.CtlContext` on top of the settings every
routerctl command shares (``--runtime-dir``, ``--timeout``, ``-o``), so a
plugin's commands behave like routerctl's own: one deadline for the whole
command, one-line errors, the same output formats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import NoReturn
from typing import TypeVar

import click
from routerd.client import COMMAND_RESULT
from routerd.client import UnixClient

from routerctl import api
from routerctl.errors import CtlError
from routerctl.output import FORMATS
from routerctl.output import compact
from routerctl.output import dump
from routerctl.output import render_table
from routerctl.targets import Target
from routerctl.targets import parse_target

if TYPE_CHECKING:
    from routerctl.cli import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    from routerctl.cli import settings

    return settings(click.get_current_context())


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        from routerctl.cli import settings

        settings(ctx).output = value


class PluginCtl:
    """The ``ctl`` argument of ``routerd_register_commands``."""

    def options(self, func: F) -> F:
        from routerctl.cli import common_options

        func = click.option(
            "-o",
            "--output",
            type=click.Choice(FORMATS),
            expose_value=False,
            callback=_set_output,
            help="Output format. [default: table]",
        )(func)
        return common_options(func)

    def runtime_dir(self) -> str:
        return _settings().runtime

    def timeout(self, default: float) -> float:
        return _settings().timeout_or(default)

    def output(self) -> str:
        return _settings().output

    def _target(self, target: str) -> Target:
        try:
            parsed = parse_target(target)
        except ValueError as exc:
            raise CtlError(str(exc)) from None
        if parsed.via_router:
            raise CtlError(
                f"{target}: a daemon target is <daemon-kind>/<resource> or a socket path"
            )
        return parsed

    def client(self, target: str, default_timeout: float = 10.0) -> UnixClient:
        s = _settings()
        return UnixClient(
            self._target(target).socket_path(s.runtime),
            timeout=s.timeout_or(default_timeout),
            deadline=s.deadline(default_timeout),
        )

    def get(self, target: str, path: str, **query: Any) -> dict[str, Any]:
        return api.get_json(self.client(target), target, path, **query)

    def command(self, target: str, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        from routerctl.cli import COMMAND_TIMEOUT

        result = api.post_command(self.client(target, COMMAND_TIMEOUT), target, name, args or {})
        if not result.get("accepted", True):
            raise CtlError(f"{target}: {name} was not accepted: {result.get('message') or ''}")
        COMMAND_RESULT.check(result)
        return result

    def echo(self, data: Any) -> None:
        fmt = self.output()
        if fmt != "table":
            click.echo(dump(data, fmt))
        elif isinstance(data, dict):
            width = max((len(str(k)) for k in data), default=0) + 1
            for key, value in data.items():
                click.echo(f"{(str(key) + ':'):<{width}} {compact(value)}")
        elif isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
            keys = list(dict.fromkeys(k for row in data for k in row))
            rows = [[row.get(k) for k in keys] for row in data]
            click.echo(render_table(tuple(str(k).upper() for k in keys), rows))
        else:
            click.echo(data)

    def fail(self, message: str) -> NoReturn:
        raise CtlError(message)
