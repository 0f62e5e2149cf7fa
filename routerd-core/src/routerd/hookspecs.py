"""The routerd plugin contract.

A plugin is a module (or an object) registered under the ``routerd``
entry-point group, implementing any of the hooks below with
``@routerd.hookimpl``. Hooks are called with keyword arguments only; a plugin
may accept a subset of them. Every hook is documented in
``docs/plugin-hooks.md`` (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from routerd.ctl import CtlContext
    from routerd.kinds import DaemonKind
    from routerd.model import Condition
    from routerd.model import Event
    from routerd.model import ResourceRef
    from routerd.serve.routes import ServeView

hookspec = pluggy.HookspecMarker("routerd")


@hookspec
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    """Register the daemon kinds this plugin provides.

    Call ``register(DaemonKind(...))`` once per kind. The return value is
    ignored. ``register`` raises :class:`routerd.errors.PluginError` for
    something that is not a ``DaemonKind``, a kind this plugin registers
    twice, or one of routerd serve's own resource kinds. An exception
    escaping the hook is this plugin's load error and none of its kinds is
    served. A daemon kind name or resource kind that another plugin also
    registers is a load error of both plugins (naming both distributions),
    and nobody serves that kind until one of them is uninstalled: the order
    plugins happen to load in never decides.

    :param register: callback taking a :class:`routerd.kinds.DaemonKind`.

    Called once per process while plugins load (``routerd serve``,
    ``routerd daemon``, ``routerd validate``, ``routerctl plugins list``), on
    the main thread, before any daemon starts. Must not block or do I/O
    beyond importing the plugin's own modules.

    .. versionadded:: 0.1
    """


@hookspec
def routerd_phase_changed(
    resource: ResourceRef, old: str, new: str, conditions: list[Condition]
) -> None:
    """React to a resource's phase changing inside a daemon.

    The return value is ignored. An exception is logged and swallowed: it
    never stops the daemon or the other observers.

    :param resource: the resource whose phase changed.
    :param old: the previous phase (``Pending`` for the first report).
    :param new: the new phase, one of :data:`routerd.model.PHASES`.
    :param conditions: the resource's conditions at the moment of the change.

    Called inside the daemon process on the thread that changed the phase
    (usually the protocol engine thread), after the
    ``routerd.resource.phase.changed`` event was appended. Must return
    quickly and must not call back into the daemon's API.

    .. versionadded:: 0.1
    """


@hookspec
def routerd_event_emitted(event: Event) -> None:
    """Observe every event a daemon emits (metrics, exporters, tests).

    The return value is ignored. An exception is logged and swallowed.

    :param event: the event, with its cursor, after it has been appended to
        ``events.jsonl`` and is visible to ``/v1/events`` readers.

    Called inside the daemon process on the thread that emitted the event
    (the engine thread or an HTTP worker thread), with the event log's
    append lock released. Must return quickly; hand slow work to a thread
    of your own.

    .. versionadded:: 0.1
    """


@hookspec
def routerd_register_commands(cli: click.Group, ctl: CtlContext) -> None:
    """Add subcommands to ``routerctl``.

    Use ``@cli.command()`` or ``cli.add_command(...)``. The return value is
    ignored. A command named like one of routerctl's own is not added.
    routerctl calls this hook only when the command given is not one of its
    own, for ``routerctl --help`` (which lists plugin commands under "Plugin
    commands") and for ``routerctl plugins list`` (which shows each plugin's
    commands), so plugins never slow down the common commands.

    :param cli: routerctl's top-level click group.
    :param ctl: routerctl's context for the commands' callbacks: runtime dir,
        ``--timeout``, output format, a client for a daemon target, one-line
        errors (:class:`routerd.ctl.CtlContext`); decorate a command with
        ``ctl.options`` to accept routerctl's common options after its name.

    Called on the main thread of the ``routerctl`` process, once per process
    (``plugins list`` calls it once more per plugin, on a scratch group, to
    see which commands each adds).

    .. versionadded:: 0.1
    """


@hookspec
def routerd_register_api_routes(add_route: Callable[[str, object], None], serve: ServeView) -> None:
    """Add endpoints to the main control API of ``routerd serve``.

    Call ``add_route(path, resource)`` once per endpoint. ``path`` is
    relative to ``/api/control.routerd.net/v1alpha1/`` (``"traffic-flows"``,
    ``"widgets/{name}"``); ``resource`` is a Falcon resource (``on_get``,
    ``on_post``, ...). The hook is called once per socket: on the read-only
    status socket every method but GET is refused before it is reached.
    The return value is ignored.

    ``add_route`` raises :class:`routerd.errors.PluginError` for a path
    routerd serves itself or another plugin added; an exception from this
    hook leaves all of this plugin's routes out (logged) and serve runs on.

    :param add_route: callback taking the path and the resource.
    :param serve: a :class:`routerd.serve.routes.ServeView`: the daemons of
        the running config (kind, name, daemon kind, state, socket, state
        directory), read at request time, and ``status_socket``: True while
        the routes of the world-readable status socket are added (a route
        with data not meant for every local user answers 403 there).

    Called by ``routerd serve`` once per control socket while it builds its
    API, on the main thread, before any daemon starts; must not block.
    The resources' responders run on the API's worker threads, several at
    once: keep per-thread state (a database connection) thread-local, bound
    the work of a request (limit, deadline), and answer errors with
    ``falcon.HTTPError`` subclasses (4xx for bad input, never a 500). An
    endpoint whose source is not configured answers an empty list with a
    condition saying why.

    .. versionadded:: 0.1
    """
