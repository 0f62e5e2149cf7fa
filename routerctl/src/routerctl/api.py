"""Requests to a daemon's ``/v1`` API with routerctl's error handling.

Every failure becomes :class:`routerctl.errors.CtlError` (one line, exit 1):
connection problems and malformed answers from :mod:`routerd.client`, HTTP
errors (the daemon's JSON ``title: description``), bodies that are not JSON
of the expected shape. Shapes are checked here, once, when an answer
arrives (:meth:`routerd.client.Response.json_as`), so the views can index
what they were promised.
"""

from __future__ import annotations

from collections.abc import Callable
import math
import time
from typing import Any

from routerd.client import COMMAND_RESULT
from routerd.client import EVENT_PAGE
from routerd.client import OBJECT
from routerd.client import QueryValue
from routerd.client import Response
from routerd.client import Shape
from routerd.client import UnixClient
from routerd.errors import BadResponse
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


def json_body(label: str, resp: Response, shape: Shape = OBJECT) -> dict[str, Any]:
    """The JSON object of a 2xx response, checked against ``shape``; CtlError otherwise."""
    if not resp.ok:
        raise http_error(label, resp)
    try:
        data: dict[str, Any] = resp.json_as(shape)
    except BadResponse as exc:
        raise CtlError(f"{label}: {exc}") from None
    return data


def retry_after(resp: Response, default: float = 1.0) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds), bounded to 0-30."""
    try:
        value = float(resp.headers.get("retry-after", default))
    except ValueError:
        value = default
    if not math.isfinite(value):  # "nan", "inf"
        value = default
    return min(max(value, 0.0), MAX_RETRY_AFTER)


def get_answer(
    client: UnixClient,
    label: str,
    path: str,
    *,
    hold: float = 0.0,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    fail: Callable[[UnixClient, ClientError], CtlError] = client_error,
    **query: QueryValue,
) -> Response:
    """``GET path``; a ``429`` is retried after its ``Retry-After``, within the client's deadline."""
    while True:
        try:
            resp = client.request("GET", path, query=query, timeout=timeout, hold=hold)
        except ClientError as exc:
            raise fail(client, exc) from None
        if resp.status != 429:
            return resp
        pause = retry_after(resp)
        if client.deadline is not None and client.deadline.remaining() <= pause:
            raise CtlError(
                f"{label}: still busy ({resp.error_text()}, HTTP 429) "
                f"at the end of the {client.deadline.seconds:g} s timeout"
            )
        sleep(pause)


def get_json(
    client: UnixClient,
    label: str,
    path: str,
    *,
    shape: Shape = OBJECT,
    timeout: float | None = None,
    **query: QueryValue,
) -> dict[str, Any]:
    try:
        resp = client.request("GET", path, query=query, timeout=timeout)
    except ClientError as exc:
        raise client_error(client, exc) from None
    return json_body(label, resp, shape)


def get_events(
    client: UnixClient,
    label: str,
    *,
    since: str | None,
    topics: tuple[str, ...],
    limit: int | None,
    wait: float | None = None,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One ``GET /v1/events`` page (a checked ``EVENT_PAGE``).

    With ``wait`` the daemon may hold the request that long before it
    answers; the answer itself must then arrive within ``timeout``.
    """
    resp = get_answer(
        client,
        label,
        "/v1/events",
        hold=wait or 0.0,
        timeout=timeout,
        sleep=sleep,
        since=since,
        topic=list(topics) or None,
        limit=limit,
        wait=f"{wait:g}s" if wait else None,
    )
    return json_body(label, resp, EVENT_PAGE)


def post_command(
    client: UnixClient, label: str, name: str, args: dict[str, Any], *, timeout: float | None = None
) -> dict[str, Any]:
    try:
        resp = client.post(f"/v1/commands/{name}", args or None, timeout=timeout)
    except ClientError as exc:
        raise client_error(client, exc) from None
    return json_body(label, resp, COMMAND_RESULT)
