"""What a plugin registers: a daemon kind and the resource kind it serves."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
import logging
import re
from typing import TYPE_CHECKING
from typing import Any

from routerd.model import RESOURCE_API_VERSION

if TYPE_CHECKING:
    from routerd.config import ResourceConfig
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonContext
    from routerd.daemon.engine import DaemonEngine
    from routerd.errors import ConfigProblem

_KIND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$")
_TOPIC_PREFIX = re.compile(r"^routerd(\.[a-z0-9_-]+)+$")
#: ``routerd.<segment>.*`` topics the runtime and routerd serve emit; no kind's.
RESERVED_TOPIC_SEGMENTS = frozenset({"daemon", "resource", "serve", "derived", "rule", "rules"})
log = logging.getLogger("routerd.kinds")
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
    :ivar topic_prefix: the topics its engine emits under ``routerd.``; default
        ``routerd.<first segment of name>`` (``dhcpv4-client`` emits
        ``routerd.dhcpv4.*``). The engine may also emit outside ``routerd.``
        (its own namespace, ``example.widget.*``); anything else under
        ``routerd.`` (``routerd.daemon.*``, ``routerd.resource.*``, another
        plugin's) is refused by ``ctx.emit``.
    :ivar facts: ``facts(observed) -> str``: the resource's key facts in one
        short line (an address, a prefix, a verdict) for the FACTS column of
        ``routerctl status``, from its status ``observed``; called by
        ``routerd serve`` (in its own process) on every resource listing, so
        it must be quick and must not raise (an exception shows no facts).
        Default: ``observed["state"]`` when it is a string.
    """

    name: str
    kind: str
    spec_model: type[SpecModel]
    factory: Callable[[DaemonContext], DaemonEngine]
    commands: Mapping[str, str] = field(default_factory=dict)
    api_version: str = RESOURCE_API_VERSION
    description: str = ""
    version: str = ""
    topic_prefix: str = ""
    facts: Callable[[Mapping[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        if not _KIND_NAME.match(self.name):
            raise ValueError(
                f"daemon kind name {self.name!r} must be lower-case letters, digits and '-'"
            )
        clash = set(self.commands) & set(COMMON_COMMANDS)
        if clash:
            raise ValueError(f"daemon kind {self.name!r} redefines common commands {sorted(clash)}")
        prefix = self.topics
        if not _TOPIC_PREFIX.match(prefix):
            raise ValueError(
                f"daemon kind {self.name!r}: topic prefix {prefix!r} must be 'routerd.' and "
                "dotted lower-case segments"
            )
        if prefix.split(".")[1] in RESERVED_TOPIC_SEGMENTS:
            raise ValueError(
                f"daemon kind {self.name!r}: topic prefix {prefix!r} is routerd's own namespace"
            )

    @property
    def topics(self) -> str:
        """The prefix of the ``routerd.`` topics the kind's engine emits (no trailing dot)."""
        return self.topic_prefix or f"routerd.{self.name.split('-')[0]}"

    def emits(self, topic: str) -> bool:
        """Whether an engine of this kind may emit ``topic`` (its prefix, or outside ``routerd.``)."""
        return topic.startswith(self.topics + ".") or not topic.startswith("routerd.")

    def key_facts(self, observed: Mapping[str, Any]) -> str:
        """:attr:`facts` of ``observed``, one line of at most 120 characters; "" when it fails."""
        try:
            if self.facts is None:
                state = observed.get("state")
                text = state if isinstance(state, str) else ""
            else:
                text = self.facts(observed)
        except Exception:
            log.debug("facts of %s failed", self.name, exc_info=True)
            return ""
        if not isinstance(text, str):
            return ""
        text = " ".join(text.split())
        return text if len(text) <= 120 else text[:117] + "..."

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


def serve_kind_names() -> frozenset[str]:
    """The resource kinds of :func:`serve_kinds`, without importing their spec models.

    What the plugin loader reserves: a daemon need not build the rules' models.
    """
    from routerd.rules import DERIVED_EVENT
    from routerd.rules import EVENT_RULE

    return frozenset({EVENT_RULE, DERIVED_EVENT})


def serve_kinds() -> dict[str, ServeKind]:
    """Every kind routerd serve runs itself, by resource kind."""
    # Imported here: the rules' spec models build on routerd.config, which imports this module.
    from routerd.rules.kinds import SERVE_KINDS

    return SERVE_KINDS
