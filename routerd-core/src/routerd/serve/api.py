"""The main control API: ``/api/control.routerd.net/v1alpha1/`` (DESIGN.md §7).

Served twice: on the main socket (0660) with commands, and on the status
socket (0666) where every method but GET is refused with 405.
"""

from __future__ import annotations

import json
from typing import Any
from typing import Protocol

import falcon

from routerd.daemon.api import WaiterSlots
from routerd.daemon.eventlog import MAX_WAIT
from routerd.errors import CommandRejected
from routerd.httpapi import configure_app
from routerd.httpapi import parse_cursor
from routerd.httpapi import parse_limit
from routerd.httpapi import parse_topics
from routerd.httpapi import parse_wait
from routerd.httpapi import read_json_object
from routerd.serve.routes import add_plugin_routes
from routerd.serve.store import EventStore

PREFIX = "/api/control.routerd.net/v1alpha1"
API_VERSION = "control.routerd.net/v1alpha1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ServeBackend(Protocol):
    store: EventStore
    waiters: WaiterSlots

    def router_status(self) -> dict[str, Any]: ...

    def resource_items(self) -> list[dict[str, Any]]: ...

    def resource_detail(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def reload(self) -> dict[str, Any]: ...

    def forward_command(
        self, kind: str, name: str, command: str, args: dict[str, Any]
    ) -> tuple[int, Any]: ...


def _limit(raw: str | None) -> int:
    return parse_limit(raw, DEFAULT_LIMIT, MAX_LIMIT)


def _resource(raw: str | None) -> tuple[str, str] | None:
    if not raw:
        return None
    kind, sep, name = raw.partition("/")
    if not sep or not kind or not name:
        raise falcon.HTTPBadRequest(
            title="Invalid parameter", description="'resource': must be <Kind>/<name>"
        )
    return kind, name


class Status:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.backend.router_status()


class Resources:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        items = self.backend.resource_items()
        resp.media = {
            "apiVersion": API_VERSION,
            "kind": "ResourceList",
            "items": items[: _limit(req.get_param("limit"))],
        }


class Resource:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        detail = self.backend.resource_detail(kind, name)
        if detail is None:
            raise falcon.HTTPNotFound(
                title="Unknown resource", description=f"no resource {kind}/{name}"
            )
        resp.media = detail


class Events:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = parse_cursor(req.get_param("since"))
        wait = parse_wait(req.get_param("wait"), MAX_WAIT)
        limit = _limit(req.get_param("limit"))
        topics = parse_topics(req.get_param_as_list("topic") or [])
        resource = _resource(req.get_param("resource"))
        store = self.backend.store
        filters: dict[str, Any] = {"topics": topics, "resource": resource, "limit": limit}
        if since is None:
            items = store.query(**filters)  # newest first
            cursor = int(items[0]["id"]) if items else store.head_id
        elif wait <= 0:
            items = store.query(since=since, **filters)
            cursor = int(items[-1]["id"]) if items else max(since, store.head_id)
        else:
            if not self.backend.waiters.acquire():
                raise falcon.HTTPTooManyRequests(
                    title="Too many waiters",
                    description="too many long-polls are open; retry in 1 s",
                    headers={"Retry-After": "1"},
                )
            try:
                items, cursor = store.wait(since, wait, **filters)
            finally:
                self.backend.waiters.release()
        resp.media = {
            "apiVersion": API_VERSION,
            "kind": "EventList",
            "cursor": str(cursor),
            "items": items,
        }


class Reload:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            resp.media = self.backend.reload()
        except CommandRejected as exc:
            raise falcon.HTTPConflict(title="Config refused", description=exc.message) from None


class Command:
    def __init__(self, backend: ServeBackend) -> None:
        self.backend = backend

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, kind: str, name: str, command: str
    ) -> None:
        status, body = self.backend.forward_command(kind, name, command, read_json_object(req))
        resp.status = falcon.code_to_http_status(status)
        resp.data = json.dumps(body).encode()
        resp.content_type = falcon.MEDIA_JSON


class ReadOnly:
    """Middleware of the status socket: GET (and HEAD) only."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(
                ["GET"], title="Read-only socket", description="the status socket serves GET only"
            )


class OpenAPI:
    """``GET .../openapi.json``: :func:`routerd.openapi.control_document`, built on first use."""

    document: dict[str, Any] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if OpenAPI.document is None:
            from routerd.openapi import control_document

            OpenAPI.document = control_document()
        resp.media = OpenAPI.document


def create_control_app(
    backend: ServeBackend, read_only: bool = False
) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App(middleware=[ReadOnly()] if read_only else [])
    configure_app(app)
    app.add_route(f"{PREFIX}/status", Status(backend))
    app.add_route(f"{PREFIX}/resources", Resources(backend))
    app.add_route(f"{PREFIX}/resources/{{kind}}/{{name}}", Resource(backend))
    app.add_route(f"{PREFIX}/events", Events(backend))
    app.add_route(f"{PREFIX}/reload", Reload(backend))
    app.add_route(f"{PREFIX}/resources/{{kind}}/{{name}}/commands/{{command}}", Command(backend))
    app.add_route(f"{PREFIX}/openapi.json", OpenAPI())
    # Plugins' endpoints (routerd_register_api_routes), and the observer
    # endpoints of DESIGN.md §7 answering "none configured" without them.
    own = {"status", "resources", "events", "reload", "openapi.json"}
    add_plugin_routes(app, backend, PREFIX, API_VERSION, own, status_socket=read_only)
    return app
