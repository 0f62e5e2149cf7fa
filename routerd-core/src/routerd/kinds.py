"""What a plugin registers: a daemon kind and the resource kind it serves."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import re
from typing import TYPE_CHECKING

from routerd.model import RESOURCE_API_VERSION

if TYPE_CHECKING:
    from routerd.config import ResourceConfig
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonContext
    from routerd.daemon.engine import DaemonEngine
    from routerd.errors import ConfigProblem

_KIND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$")
#: Commands every daemon has; a kind lists only the ones it adds.
COMMON_COMMANDS = ("reload", "renew", "stop")


@dataclass(frozen=True)
class DaemonKind:
    """A daemon kind, registered through ``routerd_register_daemon_kinds``.

    :ivar name: daemon kind, e.g. ``dhcpv4-client``; names the socket directory.
    :ivar kind: resource kind served, e.g. ``DHCPv4Client``.
    :ivar spec_model: pydantic model (subclass of :class:`routerd.config.SpecModel`)
        that validates the resource's ``spec``. Fields holding secrets are marked
        ``Annotated[str, routerd.secrets.Secret()]`` (or ``SecretURL()``): the
        runtime then keeps their values out of status, events and logs.
    :ivar factory: builds the engine for one resource; called once per process,
        on the engine thread, with the daemon context (``ctx.spec`` is the
        validated spec), just before ``engine.start(ctx)``.
    :ivar commands: extra commands beyond ``reload``, ``renew`` and ``stop``,
        name to one-line description (e.g. ``{"release": "release the lease"}``).
    :ivar api_version: the resource ``apiVersion``.
    :ivar description: one line for ``routerctl plugins list``.
    :ivar version: leave empty: the loader fills in the plugin distribution's version.
    """

    name: str
    kind: str
    spec_model: type[SpecModel]
    factory: Callable[[DaemonContext], DaemonEngine]
    commands: Mapping[str, str] = field(default_factory=dict)
    api_version: str = RESOURCE_API_VERSION
    description: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if not _KIND_NAME.match(self.name):
            raise ValueError(
                f"daemon kind name {self.name!r} must be lower-case letters, digits and '-'"
            )
        clash = set(self.commands) & set(COMMON_COMMANDS)
        if clash:
            raise ValueError(f"daemon kind {self.name!r} redefines common commands {sorted(clash)}")

    def all_commands(self) -> tuple[str, ...]:
        return (*COMMON_COMMANDS, *sorted(self.commands))


@dataclass(frozen=True)
class ServeKind:
    """A resource kind routerd serve runs itself, without a daemon or a plugin
    (``EventRule``, ``DerivedEvent``: docs/rules.md).

    :ivar name: the engine inside serve that runs it; the resource's
        ``daemon_kind`` in the config (no daemon of that name exists).
    :ivar kind: resource kind.
    :ivar spec_model: validates the resource's ``spec``.
    :ivar api_version: the resource ``apiVersion``.
    :ivar check: problems of these resources against the whole config, called
        with the valid resources and the ``<Kind>/<name>`` of every resource
        declared (valid or not), after each resource was validated on its own.
    """

    name: str
    kind: str
    spec_model: type[SpecModel]
    api_version: str
    check: Callable[[Sequence[ResourceConfig], set[str]], list[ConfigProblem]] | None = None
    description: str = ""


def serve_kinds() -> dict[str, ServeKind]:
    """Every kind routerd serve runs itself, by resource kind."""
    # Imported here: the rules' spec models build on routerd.config, which imports this module.
    from routerd.rules.kinds import SERVE_KINDS

    return SERVE_KINDS
