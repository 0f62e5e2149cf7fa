"""routerctl against a misbehaving peer on its Unix socket.

No real daemon misbehaves on demand, so the peer here is a small socket
server in a thread that answers each request with one scripted fault: it
trickles bytes, never answers, closes mid-answer, frames the body wrongly,
sends JSON of the wrong shape. The real ``routerctl`` runs as a subprocess
(it finds the socket through ``ROUTERD_RUNTIME_DIR``) and must, every time:
end within ``--timeout`` plus a small margin, exit non-zero with exactly one
``routerctl: ...`` line on stderr and no traceback. ``routerctl daemons``
lists such a daemon as Unreachable with the same one-line reason instead.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
import json
import os
from pathlib import Path
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

#: The deadline given to routerctl in these tests.
TIMEOUT = 1.0
#: From the peer receiving routerctl's first request to routerctl's exit: the
#: deadline plus a little for scheduling and interpreter exit.
MARGIN = 0.75
#: The whole run, interpreter start and imports included (a loaded 2-core
#: machine runs several routerctl at once here).
WALL = TIMEOUT + 4.0
#: Kill a routerctl that has not ended by then (the old client never did).
HARD_KILL = TIMEOUT + 8.0

GOOD_BODY = {
    # One body that is a valid DaemonStatus, events page and CommandResult at
    # once, so a scenario's fault is the only thing wrong with an answer.
    "apiVersion": "daemon.routerd.net/v1alpha1",
    "kind": "DaemonStatus",
    "daemon": {
        "kind": "hc",
        "name": "hc-x",
        "pid": 4242,
        "version": "0.0.0",
        "startedAt": "2026-01-01T00:00:00.000000Z",
    },
    "phase": "Running",
    "resources": [
        {
            "resource": {
                "apiVersion": "net.routerd.net/v1alpha1",
                "kind": "HealthCheck",
                "name": "x",
            },
            "phase": "Healthy",
            "since": "2026-01-01T00:00:01.000000Z",
            "conditions": [],
            "observed": {},
        }
    ],
    "runtime": {"commands": ["release"], "eventLog": {"head": "0"}},
    "cursor": "1",
    "events": [
        {
            "cursor": "1",
            "time": "2026-01-01T00:00:02.000000Z",
            "topic": "routerd.test.thing.happened",
            "severity": "info",
            "reason": "Happened",
            "message": "event number 1",
            "attributes": {},
        }
    ],
    "more": False,
    "command": "release",
    "accepted": True,
    "message": "released",
}


def event(cursor: int) -> dict[str, Any]:
    return {
        "cursor": str(cursor),
        "time": "2026-01-01T00:00:02.000000Z",
        "topic": "routerd.test.thing.happened",
        "severity": "info",
        "reason": "Happened",
        "message": f"event number {cursor}",
        "attributes": {},
    }


# -- the misbehaving peer ----------------------------------------------------------
Behaviour = Callable[[socket.socket, threading.Event], None]


def answer(head: bytes, body: bytes = b"") -> Behaviour:
    """Send ``head`` (status line and fields, without the blank line) and ``body`` at once."""

    def send(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(head + b"\r\n" + body)

    return send


def json_answer(doc: object, status: str = "200 OK") -> Behaviour:
    body = json.dumps(doc).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return answer(head.encode(), body)


def raw(data: bytes) -> Behaviour:
    """Send exactly ``data``, then close."""

    def send(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(data)

    return send


def trickle(prefix: bytes, then: bytes) -> Behaviour:
    """``prefix`` then ``then`` endlessly, one byte every 0.5 s, until the client hangs up."""

    def send(conn: socket.socket, stop: threading.Event) -> None:
        data = prefix
        i = 0
        while not stop.is_set():
            if i >= len(data):
                data, i = then, 0
            conn.sendall(data[i : i + 1])
            i += 1
            stop.wait(0.5)  # the pace of the fault itself, not a wait for a state

    return send


def never(conn: socket.socket, stop: threading.Event) -> None:
    """Take the request and hold the connection open without a byte."""
    stop.wait()


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 without framing, then body bytes as fast as the socket takes them."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    block = b"1," * 32768
    while not stop.is_set():
        conn.sendall(block)


@dataclass
class HostileServer:
    """A Unix-socket server whose every answer is ``behaviour`` (per connection: ``script``)."""

    path: str
    script: Callable[[int], Behaviour]
    requests: list[bytes] = field(default_factory=list)
    #: time.monotonic() when the first request had arrived
    first_request_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _conns: list[socket.socket] = field(default_factory=list)

    def start(self) -> HostileServer:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(16)
        self._spawn(self._accept_loop)
        return self

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self._spawn(self._serve, conn, n)
            n += 1

    def _serve(self, conn: socket.socket, n: int) -> None:
        conn.settimeout(5.0)
        try:
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            self.requests.append(request.split(b"\r\n", 1)[0])
            self.script(n)(conn, self._stop)
        except OSError:  # the client gave up (as it should): EPIPE, reset, timeout
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self._sock.close()
        for conn in self._conns:
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        assert not any(t.is_alive() for t in self._threads), "hostile server threads still running"


@pytest.fixture
def runtime() -> Iterator[str]:
    """A short runtime dir (Unix socket paths are limited to 108 bytes)."""
    path = tempfile.mkdtemp(prefix="rc-hostile-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve(runtime: str) -> Iterator[Callable[..., HostileServer]]:
    """Start a hostile server at ``<runtime>[/<under>]/<name>.sock``; all are closed afterwards."""
    servers: list[HostileServer] = []

    def start(
        behaviour: Behaviour | None = None,
        *,
        script: Callable[[int], Behaviour] | None = None,
        name: str = "hc/x",
        under: str = "",
    ) -> HostileServer:
        chosen = script if script is not None else (lambda _n: behaviour)
        path = os.path.join(runtime, under, f"{name}.sock")
        server = HostileServer(path, chosen).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


# -- running the real routerctl ----------------------------------------------------
@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    ended_at: float


def routerctl_argv() -> list[str]:
    script = Path(sys.executable).with_name("routerctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "routerctl"]


def routerctl(runtime: str, *args: str, timeout: float = TIMEOUT) -> Run:
    env = {**os.environ, "ROUTERD_RUNTIME_DIR": runtime}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*routerctl_argv(), "--timeout", f"{timeout:g}", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=HARD_KILL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"routerctl {' '.join(args)} still running after {HARD_KILL:g} s "
            f"with --timeout {timeout:g} (killed); stderr: {exc.stderr!r}"
        )
    ended = time.monotonic()
    return Run(proc.returncode, proc.stdout, proc.stderr, ended - started, ended)


def assert_in_time(run: Run, *servers: HostileServer) -> None:
    """Ended within the deadline (+ MARGIN) of its first request, and within WALL overall."""
    asked = [s.first_request_at for s in servers if s.first_request_at is not None]
    assert asked, "routerctl never sent a request"
    since_request = run.ended_at - min(asked)
    assert since_request < TIMEOUT + MARGIN, (
        f"ended {since_request:.2f} s after its first request: {run.stderr!r}"
    )
    assert run.elapsed < WALL, f"took {run.elapsed:.2f} s in all: {run.stderr!r}"


def assert_one_error_line(run: Run, pattern: str) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    line = lines[0]
    assert line.startswith("routerctl: "), line
    assert re.search(pattern, line), (pattern, line)
    assert "\x1b" not in line
    return line


# -- the scenarios -----------------------------------------------------------------
GOOD = json.dumps(GOOD_BODY).encode()
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
ALL = ("status", "events", "follow", "command")


@dataclass(frozen=True)
class Scenario:
    behaviour: Behaviour
    error: str  # a regex the one error line must match
    commands: tuple[str, ...] = ALL


SCENARIOS: dict[str, Scenario] = {
    # time
    "trickle-status-line": Scenario(
        trickle(b"HTTP/1.1 200 OK\r\n", b"X-Pad: slow\r\n"), r"answer not complete within 1 s"
    ),
    "trickle-body": Scenario(
        trickle(OK_HEAD + b"Content-Length: 100000\r\n\r\n", b" "),
        r"answer not complete within 1 s",
    ),
    # a long-poll may be held for its wait (25 s), so --follow is not timed here
    "never-answers": Scenario(never, r"no answer within 1 s", ("status", "events", "command")),
    # framing
    "closes-mid-headers": Scenario(
        raw(b"HTTP/1.1 200 OK\r\nContent-Le"), r"connection closed inside the header line"
    ),
    "content-length-not-digits": Scenario(
        answer(OK_HEAD + b"Content-Length: abc\r\n", GOOD),
        r"Content-Length 'abc' is not a decimal number",
    ),
    "content-length-negative": Scenario(
        answer(OK_HEAD + b"Content-Length: -5\r\n", GOOD),
        r"Content-Length '-5' is not a decimal number",
    ),
    "content-length-huge": Scenario(
        answer(OK_HEAD + b"Content-Length: 99999999999999999999999\r\n", GOOD),
        r"Content-Length \d+ is over the 16777216-byte limit",
    ),
    "content-length-shorter-than-body": Scenario(
        answer(OK_HEAD + b"Content-Length: 5\r\n", GOOD),
        r"bytes after the end of the body \(wrong Content-Length\?\)|not JSON",
    ),
    "content-length-longer-than-body": Scenario(
        answer(OK_HEAD + b"Content-Length: 100000\r\n", GOOD),
        r"connection closed inside the body \(\d+ of 100000 bytes\)",
    ),
    "content-length-conflicting": Scenario(
        answer(OK_HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n", GOOD),
        r"conflicting Content-Length values",
    ),
    "chunk-size-not-hex": Scenario(
        answer(OK_HEAD + b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + GOOD + b"\r\n0\r\n\r\n"),
        r"bad chunk size 'zz'",
    ),
    "chunk-truncated": Scenario(
        answer(OK_HEAD + b"Transfer-Encoding: chunked\r\n", b"1000\r\n" + GOOD),
        r"connection closed inside the chunk",
    ),
    "chunk-longer-than-its-size": Scenario(
        answer(OK_HEAD + b"Transfer-Encoding: chunked\r\n", b"2\r\n" + GOOD + b"\r\n0\r\n\r\n"),
        r"chunk data not followed by CRLF",
    ),
    "transfer-encoding-unknown": Scenario(
        answer(OK_HEAD + b"Transfer-Encoding: gzip\r\n", GOOD),
        r"unsupported Transfer-Encoding 'gzip'",
    ),
    "endless-body": Scenario(endless_body, r"body larger than 16777216 bytes"),
    # status line and headers
    "http-0.9-body-only": Scenario(raw(GOOD), r"not an HTTP/1.x answer: '\{"),
    "garbage": Scenario(raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), r"not an HTTP/1.x answer: 'SSH-"),
    "status-code-not-a-number": Scenario(
        raw(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"), r"not an HTTP/1.x status line"
    ),
    "bare-lf": Scenario(
        raw(b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}"), r"status line not ended by CRLF"
    ),
    "too-many-headers": Scenario(
        answer(OK_HEAD + b"X-Pad: a\r\n" * 200 + b"Content-Length: 2\r\n", b"{}"),
        r"more than 100 header fields",
    ),
    "huge-header-line": Scenario(
        answer(OK_HEAD + b"X-Pad: " + b"a" * 20000 + b"\r\n", b"{}"),
        r"header line longer than 8192 bytes",
    ),
    # bodies
    "not-json": Scenario(
        answer(OK_HEAD + b"Content-Length: 6\r\n", b"<html>"), r"malformed answer: not JSON"
    ),
    "json-nested-too-deep": Scenario(
        answer(OK_HEAD + b"Content-Length: 200000\r\n", b"[" * 200000),
        r"malformed answer: not JSON \(JSON nested too deeply\)",
    ),
    "json-array": Scenario(
        json_answer([GOOD_BODY]), r"malformed answer: the answer is a list, expected an object"
    ),
    "json-missing-fields": Scenario(json_answer({}), r"malformed answer: the answer has no '"),
    "event-not-an-object": Scenario(
        json_answer({**GOOD_BODY, "events": [event(1), 7]}),
        r"malformed answer: events\[1\] is a number, expected an object",
        ("events", "follow"),
    ),
    "events-not-a-list": Scenario(
        json_answer({**GOOD_BODY, "events": {"0": event(1)}}),
        r"malformed answer: events is an object, expected a list",
        ("events", "follow"),
    ),
    "resources-not-a-list": Scenario(
        json_answer({**GOOD_BODY, "resources": "all of them"}),
        r"malformed answer: resources is a string, expected a list",
        ("status",),
    ),
    "http-error-with-terminal-codes": Scenario(
        json_answer(
            {"title": "Bad\x1b[2J", "description": "line one\nline two\r\nthree"},
            "400 Bad Request",
        ),
        r"Bad\?\[2J: line one line two three \(HTTP 400\)",
    ),
}

ARGS = {
    "status": ("status", "hc/x"),
    "events": ("events", "hc/x"),
    "follow": ("events", "--follow", "hc/x"),
    "command": ("command", "hc/x", "release"),
    "daemons": ("daemons", "-o", "json"),
}


def check_daemons(run: Run, error: str) -> None:
    """The listing still works (exit 0); the bad daemon's row carries the one-line reason."""
    assert (run.returncode, run.stderr) == (0, ""), run
    records = {r["daemonKind"]: r for r in json.loads(run.stdout)}
    assert records.keys() == {"hc", "ok"}
    bad = records["hc"]
    assert (bad["resource"], bad["phase"], bad["pid"]) == ("x", "Unreachable", None)
    assert re.search(error, bad["error"]), bad["error"]
    assert "\n" not in bad["error"] and "\x1b" not in bad["error"]
    good = records["ok"]
    assert (good["phase"], good["pid"], good["error"]) == ("Healthy", 4242, None)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_malformed_or_slow_answer_is_one_line_within_the_deadline(
    serve: Callable[..., HostileServer], runtime: str, scenario: str
) -> None:
    """Each command (and ``daemons``, next to a good daemon) against the fault, in parallel."""
    case = SCENARIOS[scenario]
    commands = (*case.commands, "daemons") if "status" in case.commands else case.commands
    # One routerctl per command at once, each with its own runtime dir and peer,
    # so each is timed from its own first request.
    bad = {c: serve(case.behaviour, under=c) for c in commands}
    if "daemons" in commands:
        serve(json_answer(GOOD_BODY), name="ok/y", under="daemons")

    def run(command: str) -> Run:
        return routerctl(os.path.join(runtime, command), *ARGS[command])

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        runs = dict(zip(commands, pool.map(run, commands), strict=True))
    for command, result in runs.items():
        try:
            assert_in_time(result, bad[command])
            if command == "daemons":
                check_daemons(result, case.error)
            else:
                assert_one_error_line(result, case.error)
        except AssertionError as exc:
            raise AssertionError(f"routerctl {' '.join(ARGS[command])}: {exc}") from None


def test_daemons_with_hanging_and_trickling_daemons_ends_by_the_deadline(
    serve: Callable[..., HostileServer], runtime: str
) -> None:
    servers = [serve(json_answer(GOOD_BODY), name="hc/good")]
    for i in range(3):
        servers.append(serve(never, name=f"hang/h{i}"))
        servers.append(
            serve(trickle(b"HTTP/1.1 200 OK\r\n", b"X-Pad: slow\r\n"), name=f"slow/s{i}")
        )
    run = routerctl(runtime, "daemons")
    assert_in_time(run, *servers)
    assert (run.returncode, run.stderr) == (0, ""), run
    rows = [re.split(r"\s{2,}", line.strip()) for line in run.stdout.splitlines()]
    assert rows[0] == ["KIND", "RESOURCE", "PHASE", "SINCE", "DAEMON", "PID", "ERROR"]
    by_kind = {(r[0], r[1]): r for r in rows[1:]}
    assert by_kind[("hc", "x")][2] == "Healthy"  # the good one answers for resource "x"
    for i in range(3):
        assert by_kind[("hang", f"h{i}")][2] == "Unreachable"
        assert by_kind[("hang", f"h{i}")][-1] == "no answer within 1 s"
        assert by_kind[("slow", f"s{i}")][2] == "Unreachable"
        assert by_kind[("slow", f"s{i}")][-1].startswith("answer not complete within 1 s")


def test_follow_keeps_following_until_an_answer_is_malformed(
    serve: Callable[..., HostileServer], runtime: str
) -> None:
    """Valid long-poll answers are printed as they come; the first malformed one ends it."""
    pages: list[Behaviour] = [
        json_answer({"cursor": "2", "events": [event(1), event(2)], "more": False}),
        json_answer({"cursor": "2", "events": [], "more": False}),  # a long-poll that timed out
        json_answer({"cursor": "3", "events": [event(3)], "more": False}),
        json_answer({"cursor": "3", "events": ["not an event"], "more": False}),
    ]
    server = serve(script=lambda n: pages[min(n, len(pages) - 1)])
    run = routerctl(runtime, "events", "--follow", "hc/x", "-o", "json")
    assert run.elapsed < WALL, f"took {run.elapsed:.2f} s"
    assert_one_error_line(
        run, r"hc/x: malformed answer: events\[0\] is a string, expected an object"
    )
    printed = [json.loads(text)["cursor"] for text in run.stdout.splitlines()]
    assert printed == ["1", "2", "3"]
    # each long-poll went on from the cursor of the answer before
    assert [r.split(b"?", 1)[1].split(b" ")[0] for r in server.requests] == [
        b"wait=25s",
        b"since=2&wait=25s",
        b"since=2&wait=25s",
        b"since=3&wait=25s",
    ]


def test_a_good_answer_from_the_fake_is_accepted(
    serve: Callable[..., HostileServer], runtime: str
) -> None:
    """The baseline: without a fault, the fake's answers are good enough for every command."""
    serve(json_answer(GOOD_BODY))
    for command in ("status", "events", "command"):
        run = routerctl(runtime, *ARGS[command])
        assert (run.returncode, run.stderr) == (0, ""), (command, run)
    chunked = GOOD[:100] + b"\r\n" + b"%x\r\n" % (len(GOOD) - 100) + GOOD[100:]
    body = b"%x\r\n" % 100 + chunked + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    serve(answer(OK_HEAD + b"Transfer-Encoding: chunked\r\n", body), name="hc/chunked")
    run = routerctl(runtime, "status", "hc/chunked", "-o", "json")
    assert (run.returncode, run.stderr) == (0, ""), run
    assert json.loads(run.stdout) == GOOD_BODY
