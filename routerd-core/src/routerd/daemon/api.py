"""The daemon's ``/v1`` Falcon app (DESIGN.md §4).

Every error is JSON ``{"title", "description"}`` whatever the client's
``Accept``; bad input is a 4xx naming the parameter, never a 500.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from typing import Protocol

import falcon

from routerd.daemon.eventlog import MAX_LIMIT
from routerd.daemon.eventlog import MAX_WAIT
from routerd.daemon.eventlog import EventLog
from routerd.durations import parse_duration
from routerd.errors import CommandRejected
from routerd.model import CommandResult
from routerd.model import DaemonStatus
from routerd.topics import TopicPatternError
from routerd.topics import compile_glob

log = logging.getLogger("routerd.api")
MAX_BODY = 64 * 1024


class WaiterSlots:
    """A bounded count of open long-polls, observable in status."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                self.rejected += 1
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1

    def to_dict(self) -> dict[str, int]:
        with self._lock:
            return {"active": self.active, "max": self.limit, "rejected": self.rejected}


class DaemonBackend(Protocol):
    """What the API needs from the runtime."""

    eventlog: EventLog
    waiters: WaiterSlots

    @property
    def stopping(self) -> bool: ...

    def healthz(self) -> tuple[bool, str | None]: ...

    def status(self) -> DaemonStatus: ...

    def run_command(self, name: str, args: dict[str, Any]) -> CommandResult: ...


def _bad(param: str, why: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title="Invalid parameter", description=f"{param!r}: {why}")


def parse_cursor(raw: str | None, param: str = "since") -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise _bad(param, "must be a cursor: a non-negative decimal integer")
    return int(raw)


def parse_wait(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise _bad("wait", str(exc)) from None
    return min(seconds, MAX_WAIT)


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise _bad("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return min(int(raw), MAX_LIMIT)


def parse_bool(raw: str | None, param: str) -> bool:
    if raw is None or raw == "":
        return False
    value = raw.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise _bad(param, "must be true or false")


def parse_topics(raw: list[str]) -> tuple[str, ...]:
    topics: list[str] = []
    for item in raw:
        for pattern in item.split(","):
            try:
                compile_glob(pattern)
            except TopicPatternError as exc:
                raise _bad("topic", str(exc)) from None
            topics.append(pattern)
    return tuple(topics)


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
        resp.media = self.backend.status().to_dict()


class Events:
    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = parse_cursor(req.get_param("since"))
        wait = parse_wait(req.get_param("wait"))
        limit = parse_limit(req.get_param("limit"))
        tail = parse_bool(req.get_param("tail"), "tail")
        topics = parse_topics(req.get_param_as_list("topic") or [])
        log_ = self.backend.eventlog
        if tail:
            resp.media = {"cursor": str(log_.head), "events": [], "more": False}
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
        args = _read_args(req)
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


def _read_args(req: falcon.Request) -> dict[str, Any]:
    length = req.content_length or 0
    if length > MAX_BODY:
        raise falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"command bodies are at most {MAX_BODY} bytes",
        )
    if length == 0:
        return {}
    raw = req.bounded_stream.read(length)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise falcon.HTTPBadRequest(
            title="Invalid JSON", description="the body is not valid JSON"
        ) from None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(
            title="Invalid body", description="the body must be a JSON object"
        )
    return body


def _error_serializer(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    title = exc.title or "Error"
    description = exc.description
    if description is None:
        if exc.status_code == 404:
            description = f"no such path: {req.path}"
        elif exc.status_code == 405:
            description = f"{req.method} is not allowed on {req.path}"
        else:
            description = title
    resp.data = json.dumps({"title": title, "description": description}).encode()


def _unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal error", description=f"{type(ex).__name__}")


def create_app(backend: DaemonBackend) -> falcon.App[falcon.Request, falcon.Response]:
    app = falcon.App()
    app.req_options.auto_parse_qs_csv = False
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_error_serializer)
    app.add_error_handler(Exception, _unexpected)
    app.add_route("/v1/healthz", Healthz(backend))
    app.add_route("/v1/status", Status(backend))
    app.add_route("/v1/events", Events(backend))
    app.add_route("/v1/commands/{name}", Commands(backend))
    return app
