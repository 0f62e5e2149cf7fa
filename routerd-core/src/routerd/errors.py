"""routerd's exception tree.

::

    RouterdError
    ├── ConfigError (ValueError)          config that does not validate; carries every problem
    ├── PluginError                       a plugin that cannot be loaded or registers badly
    ├── CommandRejected                   a daemon command that is not possible now (HTTP 409)
    │   └── UnknownCommand (LookupError)  a command the daemon does not have (HTTP 404)
    └── ClientError (ConnectionError)     talking to a daemon over its socket failed
        ├── SocketNotFound
        ├── SocketPermissionDenied
        └── DaemonUnavailable
            └── BadResponse                   an answer that is not valid HTTP/1.1 or not the expected JSON

Protocol failures are not exceptions: they are phases, conditions and events.
"""

from __future__ import annotations

from dataclasses import dataclass


class RouterdError(Exception):
    """Base of every error routerd raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One validation problem: which resource, which field, what was expected."""

    resource: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.resource}: " if self.resource else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.problem}"


class ConfigError(RouterdError, ValueError):
    """Config that does not validate. ``problems`` lists all of them."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems) or "invalid configuration")


class PluginError(RouterdError):
    """A plugin failed to load or registered something invalid."""


class CommandRejected(RouterdError):
    """A command that cannot run now; the API answers ``status`` (409 by default)."""

    status = 409

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnknownCommand(CommandRejected, LookupError):
    """A command name the daemon does not implement (HTTP 404)."""

    status = 404


class ClientError(RouterdError, ConnectionError):
    """Talking to a routerd socket failed; the message is one line for humans."""


class SocketNotFound(ClientError):
    """No socket at the path: the daemon is not running (or another runtime dir)."""


class SocketPermissionDenied(ClientError):
    """The socket exists but this user may not connect to it."""


class DaemonUnavailable(ClientError):
    """Connected (or tried to) but got no usable answer."""


class BadResponse(DaemonUnavailable):
    """The peer answered, but not with a valid HTTP/1.1 response or not with the expected JSON."""
