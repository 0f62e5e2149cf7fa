"""No client can stall a daemon's API: not a pathological glob, not slow connections.

Real daemons and a real ``routerd serve`` on their sockets: while one client
does its worst, healthz, status and commands keep answering within a second.
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

import falcon
import pytest
from routerd.client import UnixClient
from routerd.daemon.server import UnixServer
from routerd.errors import ClientError
from routerd.httpapi import configure_app
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import PREFIX
from routerd.testing.serve import ServeProcess

ENV = {"ROUTERD_PLUGINS": "healthcheck"}
#: 26 '**' held a daemon's event log for 12 s; 31 plus one segment is the most allowed.
PATHOLOGICAL = ".".join(["**"] * 31) + ".zzz"


def check(port: int) -> dict[str, Any]:
    return resource(
        "HealthCheck",
        "internet",
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": port,
            "interval": "1s",
            "timeout": "500ms",
            "healthyThreshold": 1,
            "unhealthyThreshold": 1,
        },
    )


@pytest.fixture
def daemon(routerd_daemon: DaemonFactory, tcp_listener: int) -> DaemonProcess:
    return routerd_daemon("healthcheck", router_config(check(tcp_listener)), "internet", env=ENV)


def timed_get(path: Path, url: str, timeout: float = 5.0, **query: Any) -> tuple[float, int]:
    t0 = time.monotonic()
    try:
        status = UnixClient(str(path), timeout=timeout).get(url, **query).status
    except ClientError:
        status = 0  # no answer within the timeout
    return time.monotonic() - t0, status


class Poller:
    """Polls one URL from a thread; records (latency, status) of every answer."""

    def __init__(self, path: Path, url: str) -> None:
        self.path, self.url = path, url
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(timed_get(self.path, self.url))
            self._stop.wait(0.05)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def assert_prompt(self, within: float) -> None:
        assert self.samples, "the poller got no answer at all"
        worst = max(latency for latency, _ in self.samples)
        assert all(status == 200 for _, status in self.samples), self.samples
        assert worst < within, f"slowest answer {worst:.2f} s of {len(self.samples)}"


def test_a_pathological_glob_does_not_stall_a_daemon(daemon: DaemonProcess) -> None:
    client = daemon.client(timeout=30)
    while daemon.head() < 300:  # a few hundred events, as in the report
        assert client.post("/v1/commands/renew", None).status == 200
    with Poller(daemon.socket_path, "/v1/status") as status:
        latency, code = timed_get(
            daemon.socket_path, "/v1/events", timeout=30, topic=PATHOLOGICAL, limit=1000
        )
        # status keeps answering while the query runs (and after it).
        poll(lambda: len(status.samples) >= 3, 10, "three status answers")
    assert code == 200 and latency < 1.0, f"{latency:.2f} s"
    status.assert_prompt(within=1.0)
    too_many = daemon.get("/v1/events", topic=".".join(["**"] * 60))
    assert too_many.status == 400 and "at most 32" in too_many.json()["description"]


class Trickler:
    """``count`` connections that each send one byte of a request every ``every`` s.

    A connection the daemon closes is opened again at once, as an attacker would.
    """

    REQUEST = b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 4000

    def __init__(self, path: Path, count: int, every: float) -> None:
        self.path, self.count, self.every = path, count, every
        self.refusals: list[bytes] = []
        self.reopened = 0
        self._conns: list[tuple[socket.socket, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)

    def _open(self) -> tuple[socket.socket, int]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect(str(self.path))
        return sock, 0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for i, (sock, sent) in enumerate(self._conns):
                try:
                    answer = sock.recv(4096)
                except BlockingIOError:
                    answer = None
                except OSError:
                    answer = b""
                if answer is None:
                    try:
                        sock.send(self.REQUEST[sent : sent + 1])
                        self._conns[i] = (sock, sent + 1)
                        continue
                    except OSError:
                        answer = b""
                if answer:
                    self.refusals.append(answer)
                sock.close()
                self._conns[i] = self._open()
                self.reopened += 1

    def __enter__(self) -> Trickler:
        for _ in range(self.count):
            self._conns.append(self._open())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock, _ in self._conns:
            sock.close()


def test_slow_connections_cannot_keep_healthz_waiting(daemon: DaemonProcess) -> None:
    # 300 connections trickling a byte each 0.2 s: past the connection limit
    # (256) waitress alone stopped accepting and healthz went unanswered.
    with Trickler(daemon.socket_path, 300, 0.2) as trickler:
        with Poller(daemon.socket_path, "/v1/healthz") as healthz:
            poll(lambda: trickler.reopened >= 100, 20, "the daemon refusing slow connections")
            poll(lambda: len(healthz.samples) >= 20, 20, "twenty healthz answers")
        resp = daemon.command("renew", timeout=5)
        assert resp.status == 200, "commands are served too"
    healthz.assert_prompt(within=1.0)
    # The slow ones were told why, in the API's JSON error body.
    heads = {r.split(b"\r\n", 1)[0] for r in trickler.refusals}
    assert heads <= {b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 408 Request Timeout"}, heads
    body = json.loads(trickler.refusals[0].partition(b"\r\n\r\n")[2])
    assert set(body) == {"title", "description"}


# -- the same guards on an in-process server, with small limits ----------------
@pytest.fixture
def small_server() -> Iterator[tuple[Path, UnixServer]]:
    class Healthz:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"status": "ok"}

    app = falcon.App()
    configure_app(app)
    app.add_route("/v1/healthz", Healthz())
    with tempfile.TemporaryDirectory(prefix="rdsl-") as tmp:
        path = Path(tmp) / "d" / "api.sock"
        srv = UnixServer(app, path, threads=2, group=None, request_timeout=1.0, max_connections=4)
        thread = threading.Thread(target=srv.run, name="small-server", daemon=True)
        thread.start()
        yield path, srv
        srv.graceful_stop()
        assert srv.wait_stopped(5)
        thread.join(5)


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_a_request_must_arrive_within_the_request_timeout(
    small_server: tuple[Path, UnixServer],
) -> None:
    path, srv = small_server
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(path))
    partial = socket.socket(socket.AF_UNIX)
    partial.connect(str(path))
    partial.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    for sock in (silent, partial):
        answer = read_answer(sock, timeout=5)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert body["title"] == "Request Timeout" and "1 s" in body["description"]
        sock.close()
    # 1 s deadline, checked every second.
    assert 0.9 < time.monotonic() - t0 < 3.5
    assert srv.srv.timed_out == 2
    assert timed_get(path, "/v1/healthz")[1] == 200, "a prompt request is unaffected"


def test_past_the_limit_the_longest_waiting_connection_is_evicted(
    small_server: tuple[Path, UnixServer],
) -> None:
    path, srv = small_server
    slow = []
    for _ in range(4):  # the limit, each with an unfinished request
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(path))
        sock.sendall(b"GET /v1/he")
        slow.append(sock)
    poll(lambda: len(srv.srv.active_channels) == 4, 5, "four open connections")
    latency, status = timed_get(path, "/v1/healthz", timeout=2)
    assert status == 200 and latency < 0.5
    answer = read_answer(slow[0], timeout=2)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["title"] == "Too many connections"
    assert srv.srv.evicted == 1
    for sock in slow:
        sock.close()


def test_the_serve_status_socket_answers_a_pathological_glob_at_once(
    tmp_path: Path, tcp_listener: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="rdss-") as short:
        base = Path(short)
        config = write_config(tmp_path / "router.yaml", router_config(check(tcp_listener)))
        sp = ServeProcess(config, base / "run", base / "state", tmp_path / "serve.log", env=ENV)
        sp.start()
        try:
            sp.wait_for_phase("HealthCheck", "internet", "Healthy")
            status_socket = UnixClient(str(sp.status_socket_path), timeout=30)
            t0 = time.monotonic()
            resp = status_socket.get(f"{PREFIX}/events", topic=PATHOLOGICAL)
            assert resp.status == 200 and resp.json()["items"] == []
            assert time.monotonic() - t0 < 1.0
            for query in ({"since": str(2**63)}, {"since": "²"}, {"limit": "²"}):
                bad = status_socket.get(f"{PREFIX}/events", **query)
                assert bad.status == 400, (query, bad.body)
                assert bad.headers["content-type"] == "application/json"
                assert next(iter(query)) in bad.json()["description"]
        finally:
            sp.stop()
