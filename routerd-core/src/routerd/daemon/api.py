"""The daemon's ``/v1`` Falcon app (DESIGN.md §4).

Every error is JSON ``{"title", "description"}`` whatever the client's
``Accept``; bad input is a 4xx naming the parameter, never a 500. Parsing
and errors are shared with the main control API (:mod:`routerd.httpapi`).
"""

from __future__ import annotations

import mimetypes
from typing import Any
from typing import Protocol

import falcon

from routerd.daemon.eventlog import MAX_LIMIT
from routerd.daemon.eventlog import MAX_WAIT
from routerd.daemon.eventlog import EventLog
from routerd.daemon.waiters import WaiterSlots
from routerd.errors import CommandRejected
from routerd.httpapi import configure_app
from routerd.httpapi import parse_bool
from routerd.httpapi import parse_cursor
from routerd.httpapi import parse_limit
from routerd.httpapi import parse_topics
from routerd.httpapi import parse_wait
from routerd.httpapi import read_json_object
from routerd.model import CommandResult
from routerd.model import DaemonStatus

__all__ = ["DaemonBackend", "WaiterSlots", "create_app"]


class DaemonBackend(Protocol):
    """What the API needs from the runtime."""

    eventlog: EventLog
    waiters: WaiterSlots

    @property
    def stopping(self) -> bool: ...

    def healthz(self) -> tuple[bool, str | None]: ...

    def status(self) -> DaemonStatus: ...

    def status_json(self) -> bytes:
        """``status()`` as the JSON body, built once per change (docs/decisions.md)."""
        ...

    def run_command(self, name: str, args: dict[str, Any]) -> CommandResult: ...


class Healthz:
    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok, reason = self.backend.healthz()
        if ok:
            resp.media = {"status": "ok"}
        else:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "failed", "reason": reason}


class Status:
    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.backend.status_json()
        resp.content_type = falcon.MEDIA_JSON


class Events:
    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = parse_cursor(req.get_param("since"))
        wait = parse_wait(req.get_param("wait"), MAX_WAIT)
        limit = parse_limit(req.get_param("limit"), MAX_LIMIT, MAX_LIMIT)
        tail = parse_bool(req.get_param("tail"), "tail")
        topics = parse_topics(req.get_param_as_list("topic") or [])
        log_ = self.backend.eventlog
        if tail:
            resp.media = {"cursor": str(log_.visible), "events": [], "more": False}
            return
        if wait <= 0 or self.backend.stopping:
            resp.media = log_.query(since, topics, limit).to_dict()
            return
        # A long-poll holds a worker thread: bound them so healthz and
        # commands always find one (python-stack.md §1).
        if not self.backend.waiters.acquire():
            resp.set_header("Retry-After", "1")
            raise falcon.HTTPTooManyRequests(
                title="Too many waiters",
                description="too many long-polls are open; retry in 1 s",
                headers={"Retry-After": "1"},
            )
        try:
            resp.media = log_.wait(since, topics, limit, wait).to_dict()
        finally:
            self.backend.waiters.release()


class Commands:
    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        args = read_json_object(req)
        if self.backend.stopping and name != "stop":
            raise falcon.HTTPServiceUnavailable(
                title="Shutting down", description="the daemon is stopping"
            )
        try:
            result = self.backend.run_command(name, args)
        except CommandRejected as exc:
            raise falcon.HTTPError(
                falcon.code_to_http_status(exc.status),
                title="Unknown command" if exc.status == 404 else "Command not possible now",
                description=exc.message,
            ) from None
        resp.media = result.to_dict()


class OpenAPI:
    """``GET /v1/openapi.json``: :func:`routerd.openapi.daemon_document`, built on first use."""

    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend
        self.document: dict[str, Any] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.document is None:
            from routerd.openapi import daemon_document

            kind = getattr(self.backend, "kind", None)
            self.document = daemon_document(kind.all_commands() if kind is not None else ())
        resp.media = self.document


def create_app(backend: DaemonBackend) -> falcon.App[falcon.Request, falcon.Response]:
    if not mimetypes.inited:
        # falcon.App copies the MIME tables for static routes, and first has
        # mimetypes read the system's files (/etc/mime.types: 5-12 ms, on the
        # main thread while the engine starts its protocol). A daemon serves
        # no files: Python's built-in table will do. (mimetypes.guess_type
        # still reads the files when anything calls it: it checks its own db.)
        mimetypes.inited = True
    app = falcon.App()
    configure_app(app)
    app.add_route("/v1/healthz", Healthz(backend))
    app.add_route("/v1/status", Status(backend))
    app.add_route("/v1/events", Events(backend))
    app.add_route("/v1/commands/{name}", Commands(backend))
    app.add_route("/v1/openapi.json", OpenAPI(backend))
    return app
