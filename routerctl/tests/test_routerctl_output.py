"""Formatting helpers, targets and the events client logic (no daemon)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from routerctl.errors import CtlError
from routerctl.output import StreamTable
from routerctl.output import age
from routerctl.output import compact
from routerctl.output import human_duration
from routerctl.output import render_table
from routerctl.output import short_time
from routerctl.targets import parse_target
from routerd.client import Response

from routerctl import api


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),
        (0.4, "0s"),
        (5, "5s"),
        (59.9, "59s"),
        (60, "1m"),
        (192, "3m12s"),
        (25 * 60 + 7, "25m"),
        (3600, "1h"),
        (5 * 3600 + 180, "5h3m"),
        (15 * 3600 + 180, "15h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (400 * 86400, "400d"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_age_and_short_time() -> None:
    assert age("2026-11-24T10:00:00.000000Z", 1795514405.0) == "5s"
    assert age(None, 0) == "-"
    assert age("garbage", 0) == "-"
    assert short_time("2026-11-24T10:00:01.123456Z") == "2026-11-24T10:00:01.123Z"
    assert short_time("2026-11-24T11:00:01.123456+01:00") == "2026-11-24T10:00:01.123Z"


def test_render_table_aligns_columns() -> None:
    text = render_table(("A", "LONGER", "LAST"), [["x", None, "tail"], ["yyyy", 1, "multi\nline"]])
    assert text.splitlines() == [
        "A     LONGER  LAST",
        "x     -       tail",
        "yyyy  1       multi line",
    ]


def test_stream_table_keeps_widths_of_the_first_batch() -> None:
    out = io.StringIO()
    table = StreamTable(("C", "TOPIC", "MSG"), out, (3, 8, 0))
    table.write([["1", "a.b", "hi"]])
    table.write([["22", "c", "there"]])
    assert out.getvalue().splitlines() == [
        "C    TOPIC     MSG",
        "1    a.b       hi",
        "22   c         there",
    ]


def test_compact_values() -> None:
    assert compact(None) == "null"
    assert compact(True) == "true"
    assert compact("") == '""'
    assert compact(1.5) == "1.5"
    assert compact({"a": [1, 2]}) == '{"a": [1, 2]}'
    long = compact([{"n": i} for i in range(100)], width=60)
    assert len(long) <= 60
    assert long.endswith("… (100 items)")


@pytest.mark.parametrize(
    ("text", "kind", "name", "path"),
    [
        ("healthcheck/internet", "healthcheck", "internet", None),
        ("dhcpv6-client/wan-pd", "dhcpv6-client", "wan-pd", None),
        ("/run/routerd/healthcheck/x.sock", None, None, "/run/routerd/healthcheck/x.sock"),
        ("./x.sock", None, None, "./x.sock"),
    ],
)
def test_parse_target(text: str, kind: str | None, name: str | None, path: str | None) -> None:
    target = parse_target(text)
    assert (target.daemon_kind, target.resource, target.path) == (kind, name, path)


def test_target_resolves_under_the_runtime_dir() -> None:
    assert parse_target("healthcheck/lo").socket_path("/r") == "/r/healthcheck/lo.sock"


@pytest.mark.parametrize("text", ["", "lo", "a/b/c", "../x", "a/..", "-x/y", "a/b c"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        parse_target(text)


class FakeClient:
    """Answers from a list, recording each query (for 429 handling)."""

    path = "/fake.sock"
    deadline = None

    def __init__(self, responses: list[Response]) -> None:
        self.responses = responses
        self.queries: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any],
        timeout: float | None = None,
        hold: float = 0.0,
    ) -> Response:
        self.queries.append({"path": path, "timeout": timeout, "hold": hold, **query})
        return self.responses.pop(0)


def test_get_events_honours_retry_after() -> None:
    busy = Response(429, {"retry-after": "2"}, b'{"title": "Too many waiters"}')
    ok = Response(200, {}, b'{"cursor": "7", "events": [], "more": false}')
    client = FakeClient([busy, busy, ok])
    slept: list[float] = []
    body = api.get_events(
        client,  # type: ignore[arg-type]
        "x/y",
        since="5",
        topics=("a.*", "b.**"),
        limit=None,
        wait=25.0,
        timeout=10.0,
        sleep=slept.append,
    )
    assert body["cursor"] == "7"
    assert slept == [2.0, 2.0]
    assert len(client.queries) == 3
    query = client.queries[0]
    assert query["since"] == "5"
    assert query["wait"] == "25s"
    assert query["topic"] == ["a.*", "b.**"]
    # the daemon may hold the long-poll 25 s; then the answer has the 10 s timeout
    assert (query["hold"], query["timeout"]) == (25.0, 10.0)


def test_http_errors_and_bad_bodies_become_one_line() -> None:
    bad = Response(400, {}, b'{"title": "Invalid parameter", "description": "\'since\': bad"}')
    with pytest.raises(CtlError) as info:
        api.json_body("x/y", bad)
    assert info.value.message == "x/y: Invalid parameter: 'since': bad (HTTP 400)"
    with pytest.raises(CtlError, match="not JSON"):
        api.json_body("x/y", Response(200, {}, b"<html>"))
    with pytest.raises(CtlError, match="malformed answer: the answer has no 'events'"):
        api.get_events(
            FakeClient([Response(200, {}, b'{"cursor": "1"}')]),  # type: ignore[arg-type]
            "x/y",
            since=None,
            topics=(),
            limit=None,
            timeout=1.0,
        )
