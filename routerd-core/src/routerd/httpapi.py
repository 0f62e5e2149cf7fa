"""What the daemon API (``/v1``) and the main control API share.

One way to do each thing on every socket: strict parameter parsing, bounded
JSON bodies, and the one JSON error body of DESIGN.md §4
(``{"title", "description"}``), which :mod:`routerd.daemon.server` also uses
for the errors waitress answers itself.

Parsing is ASCII-only on purpose: ``str.isdigit`` and ``int`` also take
``²`` and ``٣`` (the first passes ``isdigit`` but fails ``int``: a 500), and
``int`` refuses more than 4300 digits; every number is checked against its
range before it reaches SQLite (64-bit) or the event log.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import falcon

from routerd.durations import parse_duration
from routerd.topics import TopicPatternError
from routerd.topics import compile_glob

log = logging.getLogger("routerd.api")

#: Cursors and ids are SQLite INTEGERs: signed 64-bit.
MAX_CURSOR = 2**63 - 1
#: A command body is a small JSON object of arguments.
MAX_BODY = 64 * 1024
MAX_BODY_DEPTH = 32
#: ``topic`` globs per request (repeated or comma-separated), each bounded in
#: :mod:`routerd.topics`.
MAX_TOPIC_PATTERNS = 32
_MAX_DURATION_CHARS = 32

_UINT = re.compile(r"[0-9]+")


def bad_param(param: str, why: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title="Invalid parameter", description=f"{param!r}: {why}")


def _uint(raw: str) -> int | None:
    """An ASCII decimal integer up to :data:`MAX_CURSOR`; None when it is not one."""
    if _UINT.fullmatch(raw) is None:
        return None
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(MAX_CURSOR)):
        return MAX_CURSOR + 1  # over the range, whatever its exact value
    return int(digits)


def parse_cursor(raw: str | None, param: str = "since") -> int | None:
    """A cursor or id: 0 to 2**63-1; absent or empty is None."""
    if raw is None or raw == "":
        return None
    value = _uint(raw)
    if value is None or value > MAX_CURSOR:
        raise bad_param(param, f"must be a cursor: a decimal integer from 0 to {MAX_CURSOR}")
    return value


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    """1 or more; larger than ``maximum`` is capped (documented), not an error."""
    if raw is None or raw == "":
        return default
    value = _uint(raw)
    if value is None or value < 1:
        raise bad_param("limit", f"must be an integer from 1 to {maximum}")
    return min(value, maximum)


def parse_wait(raw: str | None, maximum: float) -> float:
    """A duration (``10``, ``0.5``, ``500ms``, ``1m``), capped at ``maximum``."""
    if raw is None or raw == "":
        return 0.0
    if not raw.isascii() or len(raw) > _MAX_DURATION_CHARS:
        raise bad_param("wait", "must be a duration such as 10, 0.5, 500ms, 10s or 1m")
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise bad_param("wait", str(exc)) from None
    return min(seconds, maximum)


def parse_bool(raw: str | None, param: str) -> bool:
    if raw is None or raw == "":
        return False
    value = raw.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise bad_param(param, "must be true or false")


def parse_topics(raw: list[str]) -> tuple[str, ...]:
    """Topic globs, repeated or comma-separated (OR); each checked and bounded."""
    topics: list[str] = []
    for item in raw:
        for pattern in item.split(","):
            if len(topics) == MAX_TOPIC_PATTERNS:
                raise bad_param("topic", f"at most {MAX_TOPIC_PATTERNS} patterns per request")
            try:
                compile_glob(pattern)
            except TopicPatternError as exc:
                raise bad_param("topic", str(exc)) from None
            topics.append(pattern)
    return tuple(topics)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_json_object(req: falcon.Request) -> dict[str, Any]:
    """A command's arguments: a JSON object, at most MAX_BODY bytes and MAX_BODY_DEPTH deep."""
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
    except RecursionError:
        body = None  # deeper than the parser goes: reported as too deep below
        depth = MAX_BODY_DEPTH + 1
    except (ValueError, UnicodeDecodeError):
        raise falcon.HTTPBadRequest(
            title="Invalid JSON", description="the body is not valid JSON"
        ) from None
    else:
        depth = _depth(body)
    if depth > MAX_BODY_DEPTH:
        raise falcon.HTTPBadRequest(
            title="Invalid body", description=f"the body nests deeper than {MAX_BODY_DEPTH} levels"
        )
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(
            title="Invalid body", description="the body must be a JSON object"
        )
    return body


def error_body(title: str, description: str) -> bytes:
    """The JSON error body of every 4xx/5xx on every socket."""
    return json.dumps({"title": title, "description": description}).encode()


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
    resp.data = error_body(title, description)


def _unexpected(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]
) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal error", description=f"{type(ex).__name__}")


def configure_app(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Query parsing and JSON errors, the same for every routerd Falcon app."""
    app.req_options.auto_parse_qs_csv = False
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_error_serializer)
    app.add_error_handler(Exception, _unexpected)
