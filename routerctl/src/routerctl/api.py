"""Requests to a daemon's ``/v1`` API with routerctl's error handling.

Every failure becomes :class:`routerctl.errors.CtlError` (one line, exit 1):
connection problems from :mod:`routerd.client`, HTTP errors (the daemon's
JSON ``title: description``), bodies that are not the expected JSON.
"""

from __future__ import annotations

from collections.abc import Callable
import time
from typing import Any

from routerd.client import QueryValue
from routerd.client import Response
from routerd.client import UnixClient
from routerd.errors import ClientError

from routerctl.errors import CtlError

#: ``wait`` of each long-poll in ``events --follow`` (the daemon caps it at 30 s).
FOLLOW_WAIT = 25.0
#: Longest pause honoured from a ``Retry-After`` header.
MAX_RETRY_AFTER = 30.0


def client_error(client: UnixClient, exc: ClientError) -> CtlError:
    """One line for a connection failure (routerd.client already names a non-socket)."""
    return CtlError(str(exc))


def http_error(label: str, resp: Response) -> CtlError:
    return CtlError(f"{label}: {resp.error_text()} (HTTP {resp.status})")


def json_body(label: str, resp: Response) -> dict[str, Any]:
    """The JSON object of a 2xx response; CtlError for an HTTP error or another body."""
    if not resp.ok:
        raise http_error(label, resp)
    try:
        data = resp.json()
    except ValueError:
        raise CtlError(f"{label}: the daemon's answer is not JSON") from None
    if not isinstance(data, dict):
        raise CtlError(f"{label}: expected a JSON object, got {type(data).__name__}")
    return data


def get_json(
    client: UnixClient, label: str, path: str, *, timeout: float | None = None, **query: QueryValue
) -> dict[str, Any]:
    try:
        resp = client.get(path, timeout=timeout, **query)
    except ClientError as exc:
        raise client_error(client, exc) from None
    return json_body(label, resp)


def retry_after(resp: Response, default: float = 1.0) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds), bounded to 0-30."""
    try:
        value = float(resp.headers.get("retry-after", default))
    except ValueError:
        value = default
    return min(max(value, 0.0), MAX_RETRY_AFTER)


def get_events(
    client: UnixClient,
    label: str,
    *,
    since: str | None,
    topics: tuple[str, ...],
    limit: int | None,
    wait: float | None = None,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One ``GET /v1/events`` page; a ``429`` is retried after its ``Retry-After``."""
    query: dict[str, QueryValue] = {
        "since": since,
        "topic": list(topics) or None,
        "limit": limit,
        "wait": f"{wait:g}s" if wait else None,
    }
    request_timeout = timeout + (wait or 0.0)
    while True:
        try:
            resp = client.get("/v1/events", timeout=request_timeout, **query)
        except ClientError as exc:
            raise client_error(client, exc) from None
        if resp.status == 429:
            sleep(retry_after(resp))
            continue
        body = json_body(label, resp)
        if not isinstance(body.get("events"), list):
            raise CtlError(f"{label}: the events answer has no event list")
        return body


def post_command(
    client: UnixClient, label: str, name: str, args: dict[str, Any], *, timeout: float
) -> dict[str, Any]:
    try:
        resp = client.post(f"/v1/commands/{name}", args or None, timeout=timeout)
    except ClientError as exc:
        raise client_error(client, exc) from None
    return json_body(label, resp)
