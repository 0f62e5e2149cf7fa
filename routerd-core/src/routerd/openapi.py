"""OpenAPI 3.1 documents of the daemon ``/v1`` API and the main control API.

Served at ``GET /v1/openapi.json`` (every daemon) and
``GET /api/control.routerd.net/v1alpha1/openapi.json`` (routerd serve).
One source for each part of the contract:

- the response bodies are the pydantic models below, the wire form of
  :mod:`routerd.model` (``to_dict``) and of routerd serve's answers; the
  schemathesis run (tests/test_openapi.py) holds the live daemon and the
  live routerd serve to them, and the conformance suite checks every daemon
  kind's ``/v1/openapi.json`` against :func:`daemon_document`;
- the parameters come from the limits the API code parses with
  (:mod:`routerd.httpapi`, :mod:`routerd.daemon.eventlog`, :mod:`routerd.topics`);
- the error body is the one of :func:`routerd.httpapi.error_body`.

A daemon kind's own commands (``POST /v1/commands/<name>``) are one path
with ``name`` as a parameter, listed in the document's
``x-routerd-commands``; paths a plugin adds to routerd serve
(``routerd_register_api_routes``) are not described here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import Literal

import pydantic
from pydantic import ConfigDict
from pydantic import Field

from routerd import __version__
from routerd.daemon.eventlog import MAX_LIMIT as DAEMON_MAX_LIMIT
from routerd.daemon.eventlog import MAX_WAIT
from routerd.httpapi import MAX_CURSOR
from routerd.httpapi import MAX_TOPIC_PATTERNS
from routerd.model import CONDITION_STATUSES
from routerd.model import DAEMON_API_VERSION
from routerd.model import DAEMON_PHASES
from routerd.model import PHASES
from routerd.model import SEVERITIES

CONTROL_PREFIX = "/api/control.routerd.net/v1alpha1"
CONTROL_MAX_LIMIT = 1000
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"
CURSOR = r"^[0-9]{1,19}$"
_Scalar = str | int | float | bool | None


class _Wire(pydantic.BaseModel):
    """Extra keys are allowed: a newer daemon may add fields (clients ignore them)."""

    model_config = ConfigDict(extra="allow")


class Error(_Wire):
    """Every 4xx and 5xx, on every socket."""

    title: str = Field(min_length=1)
    description: str


class Healthz(_Wire):
    status: Literal["ok", "failed"]
    reason: str | None = None


class ResourceRef(_Wire):
    apiVersion: str
    kind: str
    name: str


class Condition(_Wire):
    type: str
    status: Literal["True", "False", "Unknown"] = Field(
        json_schema_extra={"enum": list(CONDITION_STATUSES)}
    )
    reason: str
    message: str
    lastTransitionTime: str = Field(pattern=RFC3339)


class ResourceStatus(_Wire):
    resource: ResourceRef
    phase: str = Field(json_schema_extra={"enum": list(PHASES)})
    since: str = Field(pattern=RFC3339)
    conditions: list[Condition]
    observed: dict[str, Any]


class DaemonInfo(_Wire):
    kind: str
    name: str
    pid: int = Field(ge=1)
    version: str
    startedAt: str = Field(pattern=RFC3339)


class DaemonStatus(_Wire):
    apiVersion: Literal["daemon.routerd.net/v1alpha1"]
    kind: Literal["DaemonStatus"]
    daemon: DaemonInfo
    phase: str = Field(json_schema_extra={"enum": list(DAEMON_PHASES)})
    resources: list[ResourceStatus]
    runtime: dict[str, Any]


class Event(_Wire):
    cursor: str = Field(pattern=CURSOR)
    time: str = Field(pattern=RFC3339)
    topic: str
    severity: str = Field(json_schema_extra={"enum": list(SEVERITIES)})
    reason: str
    message: str
    attributes: dict[str, _Scalar]


class EventPage(_Wire):
    cursor: str = Field(pattern=CURSOR)
    events: list[Event]
    more: bool
    reset: bool | None = None


class CommandResult(_Wire):
    apiVersion: Literal["daemon.routerd.net/v1alpha1"]
    kind: Literal["CommandResult"]
    command: str
    accepted: bool
    message: str
    result: dict[str, Any]


# -- routerd serve -------------------------------------------------------------------------
class StoredEvent(_Wire):
    id: str | int
    time: str
    source: str
    topic: str
    severity: str
    message: str
    attributes: dict[str, Any]


class EventList(_Wire):
    apiVersion: Literal["control.routerd.net/v1alpha1"]
    kind: Literal["EventList"]
    cursor: str = Field(pattern=CURSOR)
    items: list[StoredEvent]


class SupervisedRef(_Wire):
    kind: str
    name: str
    apiVersion: str | None = None


class Supervised(_Wire):
    resource: SupervisedRef
    daemonKind: str
    state: str
    pid: int | None = None
    restarts: int


class RouterStatus(_Wire):
    apiVersion: Literal["control.routerd.net/v1alpha1"]
    kind: Literal["RouterStatus"]
    version: str
    pid: int
    startedAt: str = Field(pattern=RFC3339)
    config: dict[str, Any]
    daemons: list[Supervised]
    plugins: list[dict[str, Any]]


class ResourceItem(_Wire):
    resource: ResourceRef
    daemonKind: str
    spec: dict[str, Any]
    phase: str | None = None
    facts: str = ""
    conditions: list[Condition] = []
    observed: dict[str, Any] = {}
    daemon: dict[str, Any] | None = None


class Resource(ResourceItem):
    apiVersion: Literal["control.routerd.net/v1alpha1"]
    kind: Literal["Resource"]
    recentEvents: list[StoredEvent]


class ResourceList(_Wire):
    apiVersion: Literal["control.routerd.net/v1alpha1"]
    kind: Literal["ResourceList"]
    items: list[ResourceItem]


class ReloadResult(_Wire):
    generation: int
    started: list[str] = []
    stopped: list[str] = []
    reloaded: list[str] = []
    restarted: list[str] = []


MODELS: tuple[type[pydantic.BaseModel], ...] = (
    Error,
    Healthz,
    DaemonStatus,
    EventPage,
    CommandResult,
    EventList,
    RouterStatus,
    Resource,
    ResourceList,
    ReloadResult,
)


# -- building the documents ---------------------------------------------------------------------
def _components(models: Sequence[type[pydantic.BaseModel]]) -> dict[str, Any]:
    _, defs = pydantic.json_schema.models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    return dict(defs.get("$defs", {}))


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "a bad parameter or body (the description names it)",
        404: "no such path, resource or command",
        405: "method not allowed",
        409: "not possible now",
        413: "body too large",
        429: "too many long-polls; retry after Retry-After",
        503: "shutting down, or the daemon is unavailable",
    }
    out = {}
    for code in codes:
        headers = None
        if code == 429:
            headers = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
        out[str(code)] = _json("Error", what[code], headers)
    return out


def _param(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


_CURSOR_PARAM = {"type": "string", "pattern": CURSOR, "maxLength": len(str(MAX_CURSOR))}
_WAIT = {
    "type": "string",
    "pattern": r"^(\d{1,6}(\.\d{1,3})?|\.\d{1,3})(ms|s|m|h|d)?$",
    "maxLength": 32,
}
_TOPIC = {
    "type": "array",
    "maxItems": MAX_TOPIC_PATTERNS,
    "items": {
        "type": "string",
        "pattern": r"^([a-z0-9_-]+|\*|\*\*)(\.([a-z0-9_-]+|\*|\*\*)){0,15}$",
        "maxLength": 256,
    },
}


def _events_params(max_limit: int, with_tail: bool) -> list[dict[str, Any]]:
    params = [
        _param("since", _CURSOR_PARAM, "only events after this cursor"),
        _param(
            "wait",
            _WAIT,
            f"long-poll: hold up to this long (capped at {MAX_WAIT:g} s) when nothing matches",
        ),
        _param(
            "topic",
            _TOPIC,
            "topic globs ('*' one segment, '**' any number), OR",
            style="form",
            explode=True,
        ),
        _param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": max_limit},
            f"at most this many (default and cap {max_limit})",
        ),
    ]
    if with_tail:
        params.append(
            _param(
                "tail",
                {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
                "no events, only the head cursor",
            )
        )
    return params


def _document(
    title: str, paths: dict[str, Any], models: Sequence[type[pydantic.BaseModel]], **extra: Any
) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": _components(models)},
        **extra,
    }


def daemon_document(commands: Sequence[str] = ()) -> dict[str, Any]:
    """The daemon ``/v1`` API (DESIGN.md §4); ``commands``: the kind's own, for ``x-routerd-commands``."""
    paths = {
        "/v1/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "liveness of the process (not the resource's health)",
                "responses": {
                    "200": _json("Healthz", "alive"),
                    "503": _json("Healthz", "the engine thread is dead or stuck"),
                    **_errors(405),
                },
            }
        },
        "/v1/status": {
            "get": {
                "operationId": "status",
                "summary": "the daemon's status: phase, conditions, observed, runtime counters",
                "responses": {"200": _json("DaemonStatus", "status"), **_errors(405)},
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "events",
                "summary": "the event log, oldest first; a long-poll with wait",
                "parameters": _events_params(DAEMON_MAX_LIMIT, with_tail=True),
                "responses": {
                    "200": _json("EventPage", "a page of events"),
                    **_errors(400, 405, 429),
                },
            }
        },
        "/v1/commands/{name}": {
            "post": {
                "operationId": "command",
                "summary": "reload, renew, stop, or a command of the kind",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                        },
                    }
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"type": "object", "maxProperties": 64}}
                    },
                },
                "responses": {
                    "200": _json("CommandResult", "done"),
                    **_errors(400, 404, 405, 409, 413, 503),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "this document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(405),
                },
            }
        },
    }
    return _document(
        "routerd daemon API",
        paths,
        (Error, Healthz, DaemonStatus, EventPage, CommandResult),
        **{"x-routerd-commands": list(commands), "x-api-version": DAEMON_API_VERSION},
    )


def control_document() -> dict[str, Any]:
    """routerd serve's main control API (DESIGN.md §7), as served on both sockets."""
    p = CONTROL_PREFIX
    kind_name = [
        {
            "name": "kind",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9]{0,62}$"},
        },
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
        },
    ]
    read = _errors(400, 404, 405)
    paths = {
        f"{p}/status": {
            "get": {
                "operationId": "routerStatus",
                "responses": {"200": _json("RouterStatus", "routerd's own status"), **_errors(405)},
            }
        },
        f"{p}/resources": {
            "get": {
                "operationId": "resources",
                "parameters": [
                    _param(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": CONTROL_MAX_LIMIT},
                        "at most this many",
                    )
                ],
                "responses": {
                    "200": _json("ResourceList", "every configured resource with its status"),
                    **read,
                },
            }
        },
        f"{p}/resources/{{kind}}/{{name}}": {
            "get": {
                "operationId": "resource",
                "parameters": kind_name,
                "responses": {"200": _json("Resource", "one resource with recent events"), **read},
            }
        },
        f"{p}/events": {
            "get": {
                "operationId": "storedEvents",
                "parameters": [
                    *_events_params(CONTROL_MAX_LIMIT, with_tail=False),
                    _param(
                        "resource",
                        {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9]*/[a-z0-9-]+$"},
                        "<Kind>/<name>",
                    ),
                ],
                "responses": {
                    "200": _json("EventList", "stored events (newest first without since)"),
                    **_errors(400, 405, 429),
                },
            }
        },
        f"{p}/reload": {
            "post": {
                "operationId": "reload",
                "responses": {
                    "200": _json("ReloadResult", "config re-read and applied"),
                    **_errors(405, 409),
                },
            }
        },
        f"{p}/resources/{{kind}}/{{name}}/commands/{{command}}": {
            "post": {
                "operationId": "resourceCommand",
                "parameters": [
                    *kind_name,
                    {
                        "name": "command",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                        },
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"type": "object", "maxProperties": 64}}
                    },
                },
                "responses": {
                    "200": _json("CommandResult", "the daemon's answer"),
                    **_errors(400, 404, 405, 409, 413, 503),
                },
            }
        },
        f"{p}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(405),
                },
            }
        },
    }
    return _document(
        "routerd control API",
        paths,
        (Error, RouterStatus, ResourceList, Resource, EventList, ReloadResult, CommandResult),
        **{"x-api-version": "control.routerd.net/v1alpha1"},
    )
