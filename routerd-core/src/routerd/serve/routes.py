"""Main API routes added by plugins (``routerd_register_api_routes``).

``routerd serve`` calls the hook once per control socket while it builds the
Falcon app. A plugin adds routes under ``/api/control.routerd.net/v1alpha1/``
and reaches the daemons it needs through :class:`ServeView`. A plugin whose
hook raises, or that asks for a path already taken, is logged with the
reason and its routes are left out; serve keeps running.

The observer endpoints of DESIGN.md §7 (``connections``, ``traffic-flows``,
``firewall-logs``, ``dns-queries``) always exist: when no loaded plugin adds
one, it answers ``items: []`` with an ``ObserverAvailable=False`` condition
saying so, never a 404 or 500.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from pathlib import Path
import re
import threading
from typing import Any
from typing import Protocol
from typing import runtime_checkable

import falcon

from routerd.errors import PluginError
from routerd.plugins import PluginSet

log = logging.getLogger("routerd.serve.routes")

#: Endpoints DESIGN.md §7 names; each answers even without a plugin.
OBSERVER_ENDPOINTS = {
    "connections": "ConnectionList",
    "traffic-flows": "TrafficFlowList",
    "firewall-logs": "FirewallLogList",
    "dns-queries": "DNSQueryList",
}
_PATH = re.compile(r"^[a-z0-9][a-z0-9-]*(/[a-z0-9{}][a-z0-9{}_-]*)*$")


@dataclass(frozen=True)
class DaemonTarget:
    """A daemon routerd serve runs, as a plugin's route sees it.

    :ivar kind: the resource kind (``FlowLog``).
    :ivar name: the resource name.
    :ivar daemon_kind: the daemon kind (``flow-log``).
    :ivar state: the supervisor's state: ``Starting``, ``Running``, ``Backoff``,
        ``Stopped``, ``Foreign``.
    :ivar socket: the daemon's API socket.
    :ivar state_dir: the daemon's state directory.
    """

    kind: str
    name: str
    daemon_kind: str
    state: str
    socket: Path
    state_dir: Path


@runtime_checkable
class RouteBackend(Protocol):
    plugins: PluginSet
    state_dir: Path

    @property
    def supervisor(self) -> Any: ...


class ServeView:
    """What a plugin's routes may read of routerd serve (any thread).

    :ivar api_version: the control API's version string.
    :ivar status_socket: the routes being added are for the status socket,
        which every local user may read (0666): a route serving data not
        meant for everyone answers 403 there.
    """

    def __init__(
        self, backend: RouteBackend, api_version: str, status_socket: bool = False
    ) -> None:
        self._backend = backend
        self.api_version = api_version
        self.status_socket = status_socket

    def daemons(self, daemon_kind: str | None = None) -> list[DaemonTarget]:
        """The daemons of the current config (of ``daemon_kind``), in config order."""
        out = []
        for d in self._backend.supervisor.snapshot():
            if daemon_kind is not None and d["daemonKind"] != daemon_kind:
                continue
            name = d["resource"]["name"]
            out.append(
                DaemonTarget(
                    kind=d["resource"]["kind"],
                    name=name,
                    daemon_kind=d["daemonKind"],
                    state=d["state"],
                    socket=Path(d["socket"]),
                    state_dir=self._backend.state_dir / d["daemonKind"] / name,
                )
            )
        return out


class NoObserver:
    """An observer endpoint no loaded plugin serves."""

    def __init__(self, path: str, list_kind: str, api_version: str) -> None:
        self.path = path
        self.list_kind = list_kind
        self.api_version = api_version

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "apiVersion": self.api_version,
            "kind": self.list_kind,
            "items": [],
            "conditions": [
                {
                    "type": "ObserverAvailable",
                    "status": "False",
                    "reason": "NoObserverPlugin",
                    "message": f"no loaded plugin serves {self.path} "
                    "(install routerd-plugin-observe and configure an observer)",
                    "lastTransitionTime": None,
                }
            ],
        }


_registered_lock = threading.Lock()


def add_plugin_routes(
    app: falcon.App[falcon.Request, falcon.Response],
    backend: object,
    prefix: str,
    api_version: str,
    taken: set[str],
    status_socket: bool = False,
) -> dict[str, str]:
    """Ask every plugin for its routes; add the observer fallbacks.

    :param taken: paths (relative to ``prefix``) the core serves itself.
    :param status_socket: the app is the world-readable status socket's.
    :returns: path → the plugin that added it.
    """
    owners: dict[str, str] = {}
    if isinstance(backend, RouteBackend):
        view = ServeView(backend, api_version, status_socket)
        pm = backend.plugins.pm
        for impl in pm.hook.routerd_register_api_routes.get_hookimpls():
            plugin = impl.plugin_name
            added: list[tuple[str, object]] = []

            def add_route(
                path: str,
                resource: object,
                _plugin: str = plugin,
                added: list[tuple[str, object]] = added,
            ) -> None:
                path = path.strip("/")
                if not _PATH.match(path):
                    raise PluginError(f"plugin {_plugin!r}: bad route path {path!r}")
                if path in taken:
                    raise PluginError(f"plugin {_plugin!r}: {path!r} is served by routerd itself")
                if path in owners:
                    raise PluginError(
                        f"route {path!r} is added by both plugin {owners[path]!r} "
                        f"and plugin {_plugin!r}"
                    )
                added.append((path, resource))

            try:
                impl.function(
                    **{k: {"add_route": add_route, "serve": view}[k] for k in impl.argnames}
                )
            except Exception as exc:
                log.error(
                    "plugin %s: its API routes are left out: %s: %s",
                    plugin,
                    type(exc).__name__,
                    exc,
                )
                continue
            for path, resource in added:
                app.add_route(f"{prefix}/{path}", resource)
                owners[path] = plugin
    for path, list_kind in OBSERVER_ENDPOINTS.items():
        if path not in owners:
            app.add_route(f"{prefix}/{path}", NoObserver(path, list_kind, api_version))
    return owners
