"""What ``routerctl`` hands a plugin's commands: :class:`CtlContext`.

A plugin adds commands with ``routerd_register_commands(cli, ctl)``. ``ctl``
gives those commands what routerctl's own commands have: the runtime dir
and the ``--timeout`` deadline the user chose, the output format, a client
for a daemon target, and routerctl's one-line errors. routerctl implements
it (``routerctl.plugin_ctx``); this module holds only the contract, so a
plugin type-checks against ``routerd-core`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import NoReturn
from typing import Protocol
from typing import TypeVar

if TYPE_CHECKING:
    from routerd.client import UnixClient

F = TypeVar("F", bound=Callable[..., Any])


class CtlContext(Protocol):
    """routerctl's context for a plugin command. Use it inside the command's callback.

    Decorate the command with :meth:`options` so that ``--runtime-dir``,
    ``--timeout`` and ``-o/--output`` work after the command name as they do
    for routerctl's own commands (before it they always work).
    """

    def options(self, func: F) -> F:
        """Add ``--runtime-dir``, ``--timeout`` and ``-o/--output`` to a command."""
        ...

    def runtime_dir(self) -> str:
        """``--runtime-dir``, else ``$ROUTERD_RUNTIME_DIR``, else ``/run/routerd``."""
        ...

    def timeout(self, default: float) -> float:
        """``--timeout`` in seconds, else ``default``."""
        ...

    def output(self) -> str:
        """The output format chosen with ``-o``: ``table`` (default), ``json`` or ``yaml``."""
        ...

    def client(self, target: str, default_timeout: float = 10.0) -> UnixClient:
        """A client for ``<daemon-kind>/<resource>`` or a socket path.

        Every request it makes ends by the command's deadline (``--timeout``,
        else ``default_timeout``), shared with every other client of the command.
        """
        ...

    def get(self, target: str, path: str, **query: Any) -> dict[str, Any]:
        """``GET path`` on a daemon; the JSON object answered, or a one-line error (exit 1)."""
        ...

    def command(self, target: str, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run daemon command ``name`` (``POST /v1/commands/<name>``); its ``CommandResult``.

        An error answer, an unreachable daemon or a malformed answer is a
        one-line error and exit status 1.
        """
        ...

    def echo(self, data: Any) -> None:
        """Print ``data`` in the chosen output format (a mapping as ``key: value`` lines for ``table``)."""
        ...

    def fail(self, message: str) -> NoReturn:
        """End the command: ``routerctl: <message>`` on stderr, exit status 1."""
        ...
