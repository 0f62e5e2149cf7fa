"""Property-based fuzzing of every endpoint of a daemon and of the main control API.

Whatever a client sends, the answer is never a 5xx and always JSON; every
4xx/5xx is the ``{"title", "description"}`` body of DESIGN.md §4. The first
round goes through falcon's TestClient (the apps), the second writes raw
bytes to a real waitress socket (the web-server layer: request lines,
headers, bodies waitress refuses before any app runs).
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import socket
import tempfile
import threading
import time
from typing import Any
from urllib.parse import quote

import falcon
import falcon.testing
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from routerd.daemon.api import WaiterSlots
from routerd.daemon.api import create_app
from routerd.daemon.eventlog import EventLog
from routerd.daemon.server import UnixServer
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import CommandResult
from routerd.model import DaemonInfo
from routerd.model import DaemonStatus
from routerd.model import Event
from routerd.model import ResourceRef
from routerd.model import ResourceStatus
from routerd.serve.api import PREFIX
from routerd.serve.api import create_control_app
from routerd.serve.store import Batch
from routerd.serve.store import EventStore

App = falcon.App[falcon.Request, falcon.Response]
TOPICS = (
    "routerd.healthcheck.state.healthy",
    "routerd.daemon.command.received",
    "routerd.resource.phase.changed",
)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class DaemonBackend:
    """A daemon's runtime as the API sees it; no long-poll slot, so a wait answers 429 at once."""

    def __init__(self) -> None:
        self.eventlog = EventLog(None)
        for i in range(30):
            self.eventlog.append(TOPICS[i % 3], reason="R", message=str(i))
        self.waiters = WaiterSlots(0)
        self.stopping = False

    def healthz(self) -> tuple[bool, str | None]:
        return True, None

    def status(self) -> DaemonStatus:
        ref = ResourceRef("net.routerd.net/v1alpha1", "Widget", "w")
        return DaemonStatus(
            DaemonInfo("widget", "widget-w", 1, "0", time.time()),
            "Running",
            (ResourceStatus(ref, "Pending", time.time(), (), {}),),
        )

    def status_json(self) -> bytes:
        return json.dumps(self.status().to_dict()).encode()

    def run_command(self, name: str, args: dict[str, Any]) -> CommandResult:
        if name == "busy":
            raise CommandRejected("not now")
        if name not in ("renew", "reload", "stop"):
            raise UnknownCommand(f"no command {name!r}")
        return CommandResult(name, True, "ok", {"args": args})


class ServeBackend:
    """routerd serve's side of the control API over a real SQLite store."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.waiters = WaiterSlots(0)

    def router_status(self) -> dict[str, Any]:
        return {"kind": "RouterStatus", "daemons": []}

    def resource_items(self) -> list[dict[str, Any]]:
        return self.store.resources()

    def resource_detail(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.store.resource(kind, name)

    def reload(self) -> dict[str, Any]:
        raise CommandRejected("the config does not validate")

    def forward_command(
        self, kind: str, name: str, command: str, args: dict[str, Any]
    ) -> tuple[int, Any]:
        return 404, {"title": "Unknown resource", "description": f"no resource {kind}/{name}"}


@pytest.fixture(scope="module")
def store() -> Iterator[EventStore]:
    with tempfile.TemporaryDirectory(prefix="rdfuzz-") as tmp:
        st_ = EventStore(Path(tmp) / "routerd.db")
        st_.start()
        attrs = {"resource.kind": "HealthCheck", "resource.name": "a", "daemon.kind": "hc"}
        events = [Event(i, 1.8e9 + i, TOPICS[i % 3], "info", "R", "m", attrs) for i in range(1, 41)]
        assert st_.submit(Batch("healthcheck/a", 0, 40, events)).wait(5)
        yield st_
        st_.close()


@pytest.fixture(scope="module")
def apps(store: EventStore) -> dict[str, App]:
    serve = ServeBackend(store)
    return {
        "daemon": create_app(DaemonBackend()),  # type: ignore[arg-type]
        "main": create_control_app(serve),  # type: ignore[arg-type]
        "status": create_control_app(serve, read_only=True),  # type: ignore[arg-type]
    }


# -- what a client can send ---------------------------------------------------
UNICODE_DIGITS = ["²", "³", "¹", "٣", "߁", "१", "௫", "ⅷ", "①", "𝟗", "１"]  # noqa: RUF001
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["2" * 19, str(2**63 - 1), str(2**63), str(2**64), "9" * 5000, "0" * 40 + "1"]),
    st.sampled_from(UNICODE_DIGITS),
    st.lists(st.sampled_from([*UNICODE_DIGITS, "1", "0"]), min_size=1, max_size=4).map("".join),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["500ms", "1m", "0.001", ".5", "1e3", "1_0", " 1", "1\n", "0x10", "-0", "+1"]),
)
segments = st.one_of(
    st.sampled_from(["*", "**", "routerd", "daemon", "a", "b-c", "x_y", "", "A", "é", " "]),
    st.text(min_size=0, max_size=6),
)
globs = st.one_of(
    st.lists(segments, min_size=1, max_size=12).map(".".join),
    st.integers(min_value=1, max_value=80).map(lambda n: ".".join(["**"] * n) + ".zzz"),
    st.integers(min_value=200, max_value=400).map(lambda n: "a" * n),
)
param_values = st.one_of(numbers, globs, st.text(max_size=40), st.just(""))
param_names = st.one_of(
    st.sampled_from(["since", "wait", "topic", "limit", "tail", "resource"]),
    st.sampled_from(["since", "limit", "topic"]),
    st.text(max_size=8),
)
params = st.one_of(
    st.lists(st.tuples(param_names, param_values), max_size=8),
    # many repeats of one parameter
    st.tuples(st.sampled_from(["topic", "since", "limit"]), param_values, st.integers(2, 60)).map(
        lambda t: [(t[0], t[1])] * t[2]
    ),
)
raw_query_tails = st.sampled_from(
    ["", "&%zz", "&since=%ff", "&%00=1", "&topic=%2e%2e", "&&&", "&="]
)


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.just(b""),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.integers(1, 30_000), st.sampled_from(["list", "dict"])).map(
        lambda t: _nested(*t).encode()
    ),
    st.binary(max_size=200),
    st.integers(65_000, 70_000).map(lambda n: b'{"a":"' + b"x" * n + b'"}'),
)
EVENTS = {"daemon": "/v1/events", "main": f"{PREFIX}/events", "status": f"{PREFIX}/events"}
ENDPOINTS = [
    *(("daemon", "GET", p) for p in ("/v1/healthz", "/v1/status", "/v1/events")),
    *(("daemon", "POST", f"/v1/commands/{c}") for c in ("renew", "reload", "busy", "zap")),
    *((app, "GET", f"{PREFIX}/{p}") for app in ("main", "status") for p in ("status", "resources")),
    *(
        (app, "GET", f"{PREFIX}/resources/HealthCheck/{n}")
        for app in ("main", "status")
        for n in "ab"
    ),
    *(
        (app, "POST", f"{PREFIX}/{p}")
        for app in ("main", "status")
        for p in ("reload", "resources/HealthCheck/a/commands/renew")
    ),
]
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])
path_noise = st.one_of(
    st.just("/"),
    st.text(min_size=1, max_size=12).map(lambda s: "/" + quote(s, safe="")),
)
endpoints = st.one_of(
    # the events endpoint of each app, where most parameters are parsed
    st.sampled_from(sorted(EVENTS)).map(lambda app: (app, "GET", EVENTS[app])),
    st.sampled_from(ENDPOINTS),
    # anything else: other methods, unknown paths
    st.tuples(
        st.sampled_from(sorted(EVENTS)),
        methods,
        st.tuples(st.sampled_from([p for _, _, p in ENDPOINTS]), path_noise).map("".join),
    ),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(["application/xml", "text/html", "*/*", "application/json"]),
        "Content-Type": st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "x/y"]
        ),
    },
)


def check_response(status: int, content_type: str, body: bytes, what: str) -> None:
    assert status < 500, f"{status} for {what}: {body[:300]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), f"{status} {content_type} for {what}"
        doc = json.loads(body)
        assert set(doc) == {"title", "description"}, doc
        assert isinstance(doc["title"], str) and isinstance(doc["description"], str)
    elif status != 204 and body:
        json.loads(body)


def _query_string(pairs: list[tuple[str, str]], tail: str) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs) + tail


@FUZZ
@given(
    endpoint=endpoints,
    pairs=params,
    tail=raw_query_tails,
    hdrs=headers,
    body=bodies,
)
def test_every_endpoint_answers_json_never_5xx(
    apps: dict[str, App],
    endpoint: tuple[str, str, str],
    pairs: list[tuple[str, str]],
    tail: str,
    hdrs: dict[str, str],
    body: bytes,
) -> None:
    app, method, path = endpoint
    client = falcon.testing.TestClient(apps[app])
    qs = _query_string(pairs, tail)
    result = client.simulate_request(method, path, query_string=qs, headers=hdrs, body=body)
    if method == "HEAD":
        assert result.status_code < 500
        return
    check_response(
        result.status_code,
        result.headers.get("content-type", ""),
        result.content,
        f"{method} {path}?{qs[:200]}",
    )


# -- the web-server layer: raw bytes on a real waitress socket ----------------
@pytest.fixture(scope="module")
def sockets(apps: dict[str, App]) -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="rdfz-") as tmp:
        servers: list[tuple[UnixServer, threading.Thread]] = []
        paths = {}
        for name in ("daemon", "status"):
            path = Path(tmp) / name / "api.sock"
            srv = UnixServer(apps[name], path, threads=4, group=None, request_timeout=5.0)
            thread = threading.Thread(target=srv.run, name=f"fuzz-{name}", daemon=True)
            thread.start()
            servers.append((srv, thread))
            paths[name] = path
        yield paths
        for srv, thread in servers:
            srv.graceful_stop()
            assert srv.wait_stopped(5), "the waitress loop did not stop"
            thread.join(5)


def exchange(path: Path, request: bytes, timeout: float = 10.0) -> tuple[int, str, bytes]:
    """Send ``request``; read one response (by Content-Length, or to EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early (e.g. header too large): the answer is still there
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a response: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        length = int(fields.get("content-length", "-1"))
        while len(rest) < length or length < 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return (
            status,
            fields.get("content-type", ""),
            rest[: max(length, 0)] if length >= 0 else rest,
        )


def _clean(raw: bytes) -> bytes:
    return raw.replace(b"\r", b"").replace(b"\n", b"")


request_methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"get", b"G ET", b"", b"\x00", b"PRI"]),
    st.binary(min_size=1, max_size=8).map(_clean),
)
targets = st.one_of(
    st.sampled_from(
        [b"/v1/healthz", b"/v1/events?since=%C2%B2", f"{PREFIX}/events?limit=%D9%A3".encode(), b"*"]
    ),
    st.sampled_from([b"http://x/v1/status", b"/v1/events?topic=" + b"**." * 40 + b"z"]),
    st.binary(max_size=40).map(_clean),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b"http/1.1", b""])
header_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Host: x",
                b"Content-Type: application/json",
                b"Expect: 100-continue",
                b"Transfer-Encoding: gzip",
                b"Content-Length: abc",
                b"Content-Length: -1",
                b"Content-Length: 1, 2",
                b" folded: line",
                b"NoColon",
                b"Bad Name: x",
                b"X: \x00\x7f\xff",
            ]
        ),
        st.binary(max_size=30).map(_clean),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target_socket=st.sampled_from(["daemon", "status"]),
    method=request_methods,
    target=targets,
    version=versions,
    lines=header_lines,
    body=st.binary(max_size=100),
)
def test_raw_requests_get_json_errors_from_the_server_layer(
    sockets: dict[str, Path],
    target_socket: str,
    method: bytes,
    target: bytes,
    version: bytes,
    lines: list[bytes],
    body: bytes,
) -> None:
    # Content-Length is always the real one (sent last); Connection: close ends every exchange.
    fields = [*lines, b"Connection: close", b"Content-Length: %d" % len(body)]
    if any(ln.lower().startswith(b"content-length") for ln in lines):
        body = b""  # a fuzzed Content-Length may promise what never comes
        fields = [*lines, b"Connection: close"]
    request = b" ".join(p for p in (method, target, version) if p) + b"\r\n"
    request += b"".join(ln + b"\r\n" for ln in fields) + b"\r\n" + body
    status, ctype, data = exchange(sockets[target_socket], request)
    if status == 501:
        # RFC 9112 §6.1: an unknown transfer coding is answered 501 (Not Implemented).
        assert any(b"transfer-encoding" in ln.lower() for ln in lines), request
        status = 400
    if method.upper() == b"HEAD":
        assert status < 500, request
        return  # no body in an answer to HEAD, errors included
    check_response(status, ctype, data, repr(request[:200]))


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/healthz HTTP/1.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (
            b"POST /v1/commands/renew HTTP/1.1\r\nContent-Length: 70000\r\n\r\n" + b"{" * 70_000,
            413,
        ),
        (
            b"POST /v1/commands/renew HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (
            b"POST /v1/commands/renew HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"8000\r\n"
            + b"[" * 0x8000
            + b"\r\n"
            + b"8000\r\n"
            + b"[" * 0x8000
            + b"\r\n0\r\n\r\n",
            413,
        ),
        (b"POST /v1/commands/renew HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            b"POST /v1/commands/renew HTTP/1.1\r\nContent-Length: 20001\r\n\r\n"
            + b"[" * 10_000
            + b"1"
            + b"]" * 10_000,
            400,
        ),
    ],
    ids=[
        "bad-request-line",
        "header-too-large",
        "body-too-large",
        "bad-chunk",
        "chunked-too-large",
        "unknown-coding",
        "nested-body",
    ],
)
def test_server_layer_errors_are_json(
    sockets: dict[str, Path], request_bytes: bytes, status: int
) -> None:
    got, ctype, data = exchange(sockets["daemon"], request_bytes)
    assert got == status, data
    assert ctype == "application/json"
    doc = json.loads(data)
    assert set(doc) == {"title", "description"} and doc["title"], doc
