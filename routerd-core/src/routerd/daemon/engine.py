"""The interface between the daemon runtime and a plugin's protocol engine.

A plugin's :class:`routerd.kinds.DaemonKind` factory returns a
:class:`DaemonEngine`. The runtime calls every engine method on the engine
thread (one thread per daemon, separate from the HTTP threads), so an engine
needs no locks for its own state. Everything the engine needs from the outside
world comes through the :class:`DaemonContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from dataclasses import field
import logging
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

if TYPE_CHECKING:
    from routerd.config import SpecModel
    from routerd.daemon.loop import EngineLoop
    from routerd.daemon.resource import ResourceState
    from routerd.daemon.statefile import StateFile
    from routerd.model import ResourceRef
    from routerd.model import Scalar
    from routerd.model import Severity


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did: a line for humans and optional structured detail."""

    message: str
    result: dict[str, Any] = field(default_factory=dict)


class Emit(Protocol):
    def __call__(
        self,
        topic: str,
        *,
        reason: str,
        message: str = "",
        severity: Severity = "info",
        **attributes: Scalar,
    ) -> None: ...


class DaemonContext(Protocol):
    """What the runtime hands an engine.

    :ivar resource: the resource this daemon serves.
    :ivar spec: the validated spec (the kind's ``spec_model``).
    :ivar loop: the engine thread's loop: timers, readers, worker threads.
    :ivar status: phase, conditions and ``observed`` of the resource.
    :ivar state: the resource's ``state.json`` (atomic writes, torn files survived).
    :ivar emit: append an event; ``resource.*`` and ``daemon.kind`` attributes are added.
    :ivar wall: the wall clock (seconds since the epoch) for times shown to people.
    :ivar log: a logger named after the daemon.
    """

    resource: ResourceRef
    spec: SpecModel
    loop: EngineLoop
    status: ResourceState
    state: StateFile
    emit: Emit
    wall: Callable[[], float]
    log: logging.Logger

    def add_secret(self, value: str) -> None:
        """Keep ``value`` out of every output from now on, like a secret spec field.

        For secrets an engine reads at run time (the PPPoE password from its
        ``passwordFile``): call it before the value can reach a message.
        """
        ...


class DaemonEngine:
    """Base class of a protocol engine. Override what you need.

    All methods run on the engine thread. Exceptions escaping ``start`` put
    the resource in phase ``Error``; exceptions from ``command`` become a
    409 answer; exceptions from timers and readers are logged and counted by
    the loop. None of them ends the process.
    """

    def start(self, ctx: DaemonContext) -> None:
        """Begin work: open sockets, restore state, schedule the first timer."""

    def reload(self, spec: SpecModel) -> str:
        """Apply a changed spec without dropping what it does not affect.

        Return a one-line description of what changed. Raise
        :class:`routerd.errors.CommandRejected` when the change cannot be
        applied live (the old spec stays in force).
        """
        return "no change applied"

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        """Run ``renew`` or a command the kind declared.

        Return the outcome, or a :class:`concurrent.futures.Future` of it when
        the work finishes later (e.g. a probe run on a worker thread); the
        HTTP request waits for it up to the command timeout. Raise
        :class:`routerd.errors.CommandRejected` when it is not possible now.
        """
        from routerd.errors import UnknownCommand

        raise UnknownCommand(f"command {name!r} is not supported")

    def stop(self) -> None:
        """Tear down (release a lease, send PADT, remove applied state).

        Must finish within about a second: the daemon stops within 2 s.
        """
