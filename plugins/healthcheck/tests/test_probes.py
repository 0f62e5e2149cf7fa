"""Probe tests against real servers on loopback (127.0.0.1 and ::1) only."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import http.server
import itertools
import os
from pathlib import Path
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

import dpkt
import pytest
from routerd_healthcheck import probes
from routerd_healthcheck.probes import ProbeResult
from routerd_healthcheck.probes import ProbeSpec
from routerd_healthcheck.probes import run_probe
from routerd_healthcheck.probes import validate_spec

SLACK = 0.5  # a probe must return within spec.timeout + SLACK
IN_CI = os.environ.get("CI") == "true"
LOOPBACKS = ["127.0.0.1", "::1"]


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, but fail in CI (DESIGN.md §10)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite in CI: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (raw sockets, SO_MARK)")


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def timed(spec: ProbeSpec, **kwargs: Any) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = run_probe(spec, **kwargs)
    return result, time.monotonic() - started


def stop_thread(thread: threading.Thread) -> None:
    thread.join(timeout=5)
    assert not thread.is_alive(), f"{thread.name} did not stop"


# --------------------------------------------------------------------------
# TCP server


@dataclass
class TcpServer:
    host: str
    port: int
    peers: queue.Queue[str] = field(default_factory=queue.Queue)


@pytest.fixture(params=LOOPBACKS)
def tcp_server(request: pytest.FixtureRequest) -> Iterator[TcpServer]:
    host: str = request.param
    listener = socket.socket(family_of(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(16)
    server = TcpServer(host, listener.getsockname()[1])
    stopping = threading.Event()

    def serve() -> None:
        while True:
            conn, peer = listener.accept()
            conn.close()
            if stopping.is_set():
                return
            server.peers.put(peer[0])

    thread = threading.Thread(target=serve, name="tcp-server", daemon=True)
    thread.start()
    yield server
    stopping.set()
    with socket.create_connection((host, server.port), timeout=2):
        pass  # wakes accept() so the thread sees `stopping`
    stop_thread(thread)
    listener.close()


@pytest.fixture(params=LOOPBACKS)
def closed_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A port bound but not listening: connecting to it is refused (RST)."""
    host: str = request.param
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    sock.bind((host, 0))
    yield host, sock.getsockname()[1]
    sock.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A listener whose accept queue is full: new SYNs are dropped silently."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    yield port
    filler.close()
    listener.close()


def test_tcp_connect_ok(tcp_server: TcpServer) -> None:
    spec = ProbeSpec("tcp", tcp_server.host, port=tcp_server.port)
    result = run_probe(spec)
    assert result.ok, result
    assert result.error is None
    assert result.address == tcp_server.host
    assert result.latency is not None and 0 <= result.latency < spec.timeout
    assert result.detail.startswith("tcp connect ")
    assert str(tcp_server.port) in result.detail
    assert tcp_server.peers.get(timeout=2) == tcp_server.host


def test_tcp_connection_refused(closed_port: tuple[str, int]) -> None:
    host, port = closed_port
    result = run_probe(ProbeSpec("tcp", host, port=port))
    assert result == ProbeResult(ok=False, latency=None, detail="connection refused", address=host)


def test_tcp_timeout_is_honoured(blackhole_port: int) -> None:
    spec = ProbeSpec("tcp", "127.0.0.1", port=blackhole_port, timeout=0.5)
    result, elapsed = timed(spec)
    assert not result.ok
    assert result.error is None
    assert result.detail == "timeout after 0.5 s"
    assert result.latency is None
    assert 0.45 <= elapsed < spec.timeout + SLACK


# --------------------------------------------------------------------------
# source interface / address / fwmark


def test_source_interface_lo(tcp_server: TcpServer) -> None:
    spec = ProbeSpec("tcp", tcp_server.host, port=tcp_server.port, source_interface="lo")
    result = run_probe(spec)
    assert result.ok, result
    assert tcp_server.peers.get(timeout=2) == tcp_server.host


@pytest.mark.parametrize("protocol", ["tcp", "http", "https", "dns", "icmp"])
def test_missing_source_interface_is_error(protocol: str) -> None:
    if protocol == "icmp":
        require_root()
    port = 1 if protocol != "icmp" else None
    spec = ProbeSpec(protocol, "127.0.0.1", port=port, source_interface="nonexistent0")
    result = run_probe(spec)
    assert not result.ok
    assert result.error == "source interface nonexistent0 does not exist"
    assert result.latency is None


def test_source_address_is_bound() -> None:
    # All of 127.0.0.0/8 is local: bind 127.0.0.2 and see it as the peer.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        spec = ProbeSpec(
            "tcp",
            "127.0.0.1",
            port=listener.getsockname()[1],
            source_address="127.0.0.2",
        )
        result = run_probe(spec)
        assert result.ok, result
        listener.settimeout(2)
        conn, peer = listener.accept()
        conn.close()
        assert peer[0] == "127.0.0.2"
    finally:
        listener.close()


def test_source_address_loopback(tcp_server: TcpServer) -> None:
    source = "::1" if tcp_server.host == "::1" else "127.0.0.1"
    spec = ProbeSpec("tcp", tcp_server.host, port=tcp_server.port, source_address=source)
    assert run_probe(spec).ok


@pytest.mark.parametrize(
    ("target", "source"), [("127.0.0.1", "192.0.2.55"), ("::1", "2001:db8::55")]
)
@pytest.mark.parametrize("protocol", ["tcp", "dns", "icmp"])
def test_source_address_not_local_is_error(protocol: str, target: str, source: str) -> None:
    if protocol == "icmp":
        require_root()
    port = 1 if protocol != "icmp" else None
    spec = ProbeSpec(protocol, target, port=port, source_address=source)
    result = run_probe(spec)
    assert not result.ok
    assert result.error == f"source address {source} is not an address of this host"


def test_fwmark_tcp(tcp_server: TcpServer) -> None:
    require_root()
    spec = ProbeSpec("tcp", tcp_server.host, port=tcp_server.port, fwmark=1)
    result = run_probe(spec)
    assert result.ok, result
    assert result.error is None


def test_socket_options_are_applied() -> None:
    require_root()
    spec = ProbeSpec("tcp", "127.0.0.1", port=1, fwmark=0xFFFFFFFE, source_interface="lo")
    sock = probes._open_socket(spec, socket.AF_INET, socket.SOCK_STREAM)
    try:
        mark = sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK)
        device = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
    finally:
        sock.close()
    assert mark & 0xFFFFFFFF == 0xFFFFFFFE
    assert device.rstrip(b"\0") == b"lo"


def test_permission_denied_is_error() -> None:
    """Without CAP_NET_RAW/CAP_NET_ADMIN, raw ICMP and SO_MARK cannot run."""
    require_root()
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "setpriv (util-linux) not installed")
    assert setpriv is not None
    script = (
        "from routerd_healthcheck.probes import ProbeSpec, run_probe\n"
        "print(run_probe(ProbeSpec('icmp', '127.0.0.1')).error)\n"
        "print(run_probe(ProbeSpec('tcp', '127.0.0.1', port=1, fwmark=1)).error)\n"
    )
    drop = "-net_raw,-net_admin"
    out = subprocess.run(
        [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("permission denied opening raw ICMP socket")
    assert out[1].startswith("permission denied setting fwmark")


# --------------------------------------------------------------------------
# HTTP / HTTPS


class _Handler(http.server.BaseHTTPRequestHandler):
    statuses = {"/": 200, "/ok": 200, "/down": 503, "/teapot": 418, "/moved": 302}

    def do_GET(self) -> None:
        self.server.requests.put((self.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        status = self.statuses.get(self.path, 404)
        body = b"hello\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class HttpServer:
    host: str
    port: int
    requests: queue.Queue[tuple[str, str | None]]


def _serve_http(
    host: str, wrap: Callable[[socket.socket], socket.socket] | None = None
) -> Iterator[HttpServer]:
    class Server(http.server.ThreadingHTTPServer):
        address_family = family_of(host)
        daemon_threads = True

    server = Server((host, 0), _Handler)
    requests: queue.Queue[tuple[str, str | None]] = queue.Queue()
    server.requests = requests  # type: ignore[attr-defined]
    if wrap is not None:
        server.socket = wrap(server.socket)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="http", daemon=True)
    thread.start()
    yield HttpServer(host, server.server_address[1], requests)
    server.shutdown()
    stop_thread(thread)
    server.server_close()


@pytest.fixture(params=LOOPBACKS)
def http_server(request: pytest.FixtureRequest) -> Iterator[HttpServer]:
    yield from _serve_http(request.param)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl command not installed")
    assert openssl is not None
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=routerd.test",
            "-addext",
            "subjectAltName=DNS:routerd.test,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def https_server(certificate: tuple[Path, Path]) -> Iterator[HttpServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def wrap(sock: socket.socket) -> socket.socket:
        return context.wrap_socket(sock, server_side=True)

    yield from _serve_http("127.0.0.1", wrap)


def test_http_ok(http_server: HttpServer) -> None:
    spec = ProbeSpec("http", http_server.host, port=http_server.port, path="/ok")
    result = run_probe(spec)
    assert result.ok, result
    assert result.error is None
    assert result.latency is not None and result.latency < spec.timeout
    assert result.detail.startswith("HTTP 200 from ")
    host = f"[{http_server.host}]" if ":" in http_server.host else http_server.host
    assert http_server.requests.get(timeout=2) == ("/ok", f"{host}:{http_server.port}")


def test_http_status_outside_range(http_server: HttpServer) -> None:
    spec = ProbeSpec("http", http_server.host, port=http_server.port, path="/down")
    result = run_probe(spec)
    assert not result.ok
    assert result.error is None
    assert result.detail == "HTTP 503 outside 200-399"
    assert result.latency is not None  # the server did answer


@pytest.mark.parametrize(
    ("path", "expect", "ok"),
    [
        ("/teapot", (418, 418), True),
        ("/ok", (418, 418), False),
        ("/moved", (200, 299), False),
        ("/moved", (200, 399), True),
        ("/down", (500, 599), True),
    ],
)
def test_http_expect_status(
    http_server: HttpServer, path: str, expect: tuple[int, int], ok: bool
) -> None:
    spec = ProbeSpec(
        "http",
        http_server.host,
        port=http_server.port,
        path=path,
        expect_status=expect,
    )
    result = run_probe(spec)
    assert result.ok is ok, result
    assert result.error is None


def test_http_host_header(http_server: HttpServer) -> None:
    spec = ProbeSpec(
        "http",
        http_server.host,
        port=http_server.port,
        host_header="status.example",
    )
    assert run_probe(spec).ok
    assert http_server.requests.get(timeout=2) == ("/", "status.example")


def test_http_over_source_interface_and_fwmark(http_server: HttpServer) -> None:
    require_root()
    spec = ProbeSpec(
        "http",
        http_server.host,
        port=http_server.port,
        source_interface="lo",
        fwmark=1,
    )
    assert run_probe(spec).ok


def test_http_refused(closed_port: tuple[str, int]) -> None:
    host, port = closed_port
    result = run_probe(ProbeSpec("http", host, port=port))
    assert (result.ok, result.error, result.detail) == (False, None, "connection refused")


def test_https_without_verification(https_server: HttpServer) -> None:
    spec = ProbeSpec("https", "127.0.0.1", port=https_server.port, path="/ok", tls_verify=False)
    result = run_probe(spec)
    assert result.ok, result
    assert https_server.requests.get(timeout=2)[0] == "/ok"


def test_https_untrusted_certificate_fails(https_server: HttpServer) -> None:
    spec = ProbeSpec("https", "127.0.0.1", port=https_server.port)
    result = run_probe(spec)
    assert not result.ok
    assert result.error is None  # the target is at fault: a failure, not an error
    assert result.detail.startswith("TLS certificate verification failed")


def test_https_against_plain_http_fails(http_server: HttpServer) -> None:
    spec = ProbeSpec(
        "https",
        http_server.host,
        port=http_server.port,
        tls_verify=False,
        timeout=1.0,
    )
    result, elapsed = timed(spec)
    assert not result.ok
    assert result.error is None
    assert elapsed < spec.timeout + SLACK


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """Accepts, then sends a status line one byte at a time, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stopping = threading.Event()

    def serve() -> None:
        conn, _peer = listener.accept()
        with conn:
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                if stopping.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=serve, name="drip", daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopping.set()
    with contextlib.suppress(OSError), socket.create_connection(listener.getsockname(), timeout=1):
        pass  # in case the probe never connected
    stop_thread(thread)
    listener.close()


def test_http_slow_server_is_cut_at_timeout(dripping_server: int) -> None:
    """Per-read timeouts never expire here; the whole probe must still stop."""
    spec = ProbeSpec("http", "127.0.0.1", port=dripping_server, timeout=0.8)
    result, elapsed = timed(spec)
    assert not result.ok
    assert result.error is None
    assert result.detail == "timeout after 0.8 s"
    assert 0.7 <= elapsed < spec.timeout + SLACK


def test_http_timeout_on_silent_listener(blackhole_port: int) -> None:
    spec = ProbeSpec("http", "127.0.0.1", port=blackhole_port, timeout=0.5)
    result, elapsed = timed(spec)
    assert (result.ok, result.error, result.detail) == (False, None, "timeout after 0.5 s")
    assert elapsed < spec.timeout + SLACK


# --------------------------------------------------------------------------
# DNS


@dataclass
class DnsServer:
    host: str
    port: int
    queries: queue.Queue[tuple[str, int]] = field(default_factory=queue.Queue)


def _dns_answer(query: dpkt.dns.DNS) -> list[bytes]:
    """The datagrams to send back for *query* (possibly none)."""
    question = query.qd[0]
    name = str(question.name).lower()
    reply = dpkt.dns.DNS(bytes(query))
    reply.qr = dpkt.dns.DNS_R
    reply.ra = 1
    if name == "silent.test":
        return []
    if name == "nx.test":
        reply.rcode = dpkt.dns.DNS_RCODE_NXDOMAIN
        return [bytes(reply)]
    if name == "servfail.test":
        reply.rcode = dpkt.dns.DNS_RCODE_SERVFAIL
        return [bytes(reply)]
    if name in ("ok.test", "noisy.test"):
        reply.an = [
            dpkt.dns.DNS.RR(
                name=name,
                type=dpkt.dns.DNS_A,
                cls=dpkt.dns.DNS_IN,
                ttl=60,
                rdata=socket.inet_aton("192.0.2.1"),
            )
        ]
    elif name == "" and question.type == dpkt.dns.DNS_NS:
        reply.an = [
            dpkt.dns.DNS.RR(
                name="",
                type=dpkt.dns.DNS_NS,
                cls=dpkt.dns.DNS_IN,
                ttl=60,
                nsname="a.root.test",
            )
        ]
    else:  # unknown names: NXDOMAIN
        reply.rcode = dpkt.dns.DNS_RCODE_NXDOMAIN
    if name != "noisy.test":
        return [bytes(reply)]
    wrong_id = dpkt.dns.DNS(bytes(reply))
    wrong_id.id = (reply.id + 1) & 0xFFFF
    wrong_question = dpkt.dns.DNS(bytes(reply))
    wrong_question.qd = [dpkt.dns.DNS.Q(name="other.test", type=question.type)]
    wrong_question.an = []
    truncated = bytes(reply)[:14]
    not_a_reply = bytes(query)
    return [
        bytes(wrong_id),
        truncated,
        bytes(wrong_question),
        not_a_reply,
        b"\xff" * 3,
        bytes(reply),
    ]


@pytest.fixture(params=LOOPBACKS)
def dns_server(request: pytest.FixtureRequest) -> Iterator[DnsServer]:
    host: str = request.param
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    sock.bind((host, 0))
    server = DnsServer(host, sock.getsockname()[1])

    def serve() -> None:
        while True:
            data, peer = sock.recvfrom(4096)
            if data == b"stop":
                return
            query = dpkt.dns.DNS(data)
            server.queries.put((str(query.qd[0].name), query.qd[0].type))
            for datagram in _dns_answer(query):
                sock.sendto(datagram, peer)

    thread = threading.Thread(target=serve, name="dns", daemon=True)
    thread.start()
    yield server
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as stopper:
        stopper.sendto(b"stop", (host, server.port))
    stop_thread(thread)
    sock.close()


def dns_spec(server: DnsServer, name: str, rtype: str = "A", **kw: Any) -> ProbeSpec:
    return ProbeSpec("dns", server.host, port=server.port, dns_name=name, dns_type=rtype, **kw)


def test_dns_answer_ok(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, "ok.test"))
    assert result.ok, result
    assert result.error is None
    assert result.address == dns_server.host
    assert result.latency is not None
    assert result.detail.startswith("DNS ok.test A: 1 answer from ")
    assert dns_server.queries.get(timeout=2) == ("ok.test", dpkt.dns.DNS_A)


def test_dns_root_ns(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, ".", "NS"))
    assert result.ok, result
    assert dns_server.queries.get(timeout=2) == ("", dpkt.dns.DNS_NS)


def test_dns_trailing_dot_and_case(dns_server: DnsServer) -> None:
    assert run_probe(dns_spec(dns_server, "OK.test.", "a")).ok


def test_dns_ignores_mismatched_and_malformed_replies(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, "noisy.test", timeout=1.0))
    assert result.ok, result


def test_dns_nxdomain_fails(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, "nx.test"))
    assert not result.ok
    assert result.error is None
    assert result.detail == "DNS NXDOMAIN for nx.test A"
    assert result.latency is not None


def test_dns_servfail_fails(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, "servfail.test"))
    assert (result.ok, result.detail) == (False, "DNS SERVFAIL for servfail.test A")


def test_dns_no_answer_of_type_fails(dns_server: DnsServer) -> None:
    result = run_probe(dns_spec(dns_server, "ok.test", "AAAA"))
    assert not result.ok
    assert result.error is None
    assert result.detail == "DNS no AAAA answer for ok.test"


def test_dns_no_reply_times_out(dns_server: DnsServer) -> None:
    spec = dns_spec(dns_server, "silent.test", timeout=0.5)
    result, elapsed = timed(spec)
    assert (result.ok, result.error, result.detail, result.latency) == (
        False,
        None,
        "timeout after 0.5 s",
        None,
    )
    assert 0.45 <= elapsed < spec.timeout + SLACK
    assert dns_server.queries.get(timeout=2) == ("silent.test", dpkt.dns.DNS_A)


def test_dns_port_unreachable_fails_fast() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: ICMP port unreachable
    result, elapsed = timed(ProbeSpec("dns", "127.0.0.1", port=port, timeout=2.0))
    assert not result.ok
    assert result.error is None
    assert result.detail == "connection refused"
    assert elapsed < 1.0


def test_dns_over_source_interface_and_fwmark(dns_server: DnsServer) -> None:
    require_root()
    spec = dns_spec(dns_server, "ok.test", source_interface="lo", fwmark=7)
    assert run_probe(spec).ok


# --------------------------------------------------------------------------
# ICMP


@pytest.mark.parametrize("host", LOOPBACKS)
def test_icmp_echo(host: str) -> None:
    require_root()
    result = run_probe(ProbeSpec("icmp", host), seq=7)
    assert result.ok, result
    assert result.error is None
    assert result.address == host
    assert result.latency is not None and result.latency < 2.0
    assert result.detail.startswith(f"icmp echo reply from {host} in ")


@pytest.mark.parametrize("host", LOOPBACKS)
def test_icmp_source_interface_fwmark_and_address(host: str) -> None:
    require_root()
    spec = ProbeSpec("icmp", host, source_interface="lo", fwmark=1, source_address=host)
    result = run_probe(spec, seq=0x1_0005)  # seq is taken modulo 2**16
    assert result.ok, result


@pytest.mark.parametrize("host", LOOPBACKS)
def test_icmp_concurrent_probes_match_their_own_replies(host: str) -> None:
    """Raw sockets see every ICMP packet; each probe must pick only its own."""
    require_root()
    results: queue.Queue[ProbeResult] = queue.Queue()
    threads = [
        threading.Thread(target=lambda n=n: results.put(run_probe(ProbeSpec("icmp", host), seq=n)))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        stop_thread(thread)
    collected = [results.get_nowait() for _ in threads]
    assert all(r.ok for r in collected), collected


def test_icmp_ignores_foreign_packets() -> None:
    target = probes._Target(socket.AF_INET, "127.0.0.1")
    payload = b"x" * 8
    echo = probes._echo_request(False, 0x1234, 9, payload)
    reply = b"\x00" + echo[1:]
    header = bytes([0x45]) + bytes(11) + socket.inet_aton("127.0.0.1") * 2
    match = probes._icmp4_match
    assert match(header + reply, "127.0.0.1", target, 0x1234, 9, payload) == "reply"
    assert match(header + reply, "127.0.0.9", target, 0x1234, 9, payload) is None
    assert match(header + reply, "127.0.0.1", target, 0x1235, 9, payload) is None
    assert match(header + reply, "127.0.0.1", target, 0x1234, 8, payload) is None
    assert match(header + reply, "127.0.0.1", target, 0x1234, 9, b"y" * 8) is None
    assert match(header + echo, "127.0.0.1", target, 0x1234, 9, payload) is None
    assert match(header[:10], "127.0.0.1", target, 0x1234, 9, payload) is None
    assert match(b"", "127.0.0.1", target, 0x1234, 9, payload) is None
    # An ICMP "host unreachable" quoting our echo request fails the probe.
    quoted = bytes([0x45]) + bytes(8) + b"\x01" + bytes(2)
    quoted += socket.inet_aton("127.0.0.1") * 2 + echo[:8]
    unreachable = b"\x03\x01" + bytes(6) + quoted
    verdict = match(header + unreachable, "10.0.0.1", target, 0x1234, 9, payload)
    assert verdict == "host unreachable from 10.0.0.1"


def test_icmp_checksum_is_valid() -> None:
    packet = probes._echo_request(False, 0xBEEF, 3, b"abcde")
    assert probes._checksum(packet) == 0  # a correct checksum sums to zero
    assert dpkt.icmp.ICMP(packet).type == dpkt.icmp.ICMP_ECHO


# --------------------------------------------------------------------------
# resolution


def test_host_name_is_resolved() -> None:
    """ "localhost" comes from /etc/hosts (no DNS traffic); AF_INET picks v4."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        spec = ProbeSpec("tcp", "localhost", port=listener.getsockname()[1], family=socket.AF_INET)
        result = run_probe(spec)
    finally:
        listener.close()
    assert result.ok, result
    assert result.address == "127.0.0.1"


def test_unresolvable_name_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    result = run_probe(ProbeSpec("tcp", "nowhere.test", port=80))
    assert result == ProbeResult(
        ok=False,
        latency=None,
        detail="cannot resolve nowhere.test: Name or service not known",
    )


def test_slow_resolver_is_bounded_by_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo
    release = threading.Event()

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        numeric = len(args) > 4 and args[4] & socket.AI_NUMERICHOST
        if host == "slow.test" and not numeric:
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        spec = ProbeSpec("tcp", "slow.test", port=80, timeout=0.4)
        result, elapsed = timed(spec)
    finally:
        release.set()
    assert (result.ok, result.error) == (False, None)
    assert result.detail == "timeout resolving slow.test after 0.4 s"
    assert elapsed < spec.timeout + SLACK


# --------------------------------------------------------------------------
# validation and robustness


def _base(protocol: str = "tcp", **kw: Any) -> ProbeSpec:
    port = kw.pop("port", 443 if protocol == "tcp" else None)
    return ProbeSpec(protocol, kw.pop("target", "192.0.2.1"), port=port, **kw)


@pytest.mark.parametrize(
    "spec",
    [
        _base("tcp"),
        _base("icmp"),
        _base("icmp", target="2001:db8::1"),
        _base("icmp", target="fe80::1%lo"),
        _base("http", target="status.example.com", path="/health?x=1"),
        _base("https", host_header="example.com:8443", expect_status=(200, 200)),
        _base("dns", dns_name="example.com.", dns_type="aaaa"),
        _base("dns"),  # defaults: "." A
        _base("tcp", source_interface="wan0", fwmark=0xFFFFFFFF, timeout=0.1),
        _base("tcp", source_address="192.0.2.9", family=socket.AF_INET),
        _base("tcp", target="router.lan", source_address="2001:db8::9"),
    ],
)
def test_validate_spec_accepts(spec: ProbeSpec) -> None:
    assert validate_spec(spec) == []


@pytest.mark.parametrize(
    ("spec", "field_name"),
    [
        (_base("udp"), "protocol"),
        (_base("tcp", port=None), "port"),
        (_base("tcp", port=0), "port"),
        (_base("tcp", port=70000), "port"),
        (_base("icmp", port=80), "port"),
        (_base("tcp", target=""), "target"),
        (_base("tcp", target="bad host"), "target"),
        (_base("tcp", target="-x.example"), "target"),
        (_base("tcp", timeout=0), "timeout"),
        (_base("tcp", timeout=-1.0), "timeout"),
        (_base("tcp", timeout=float("nan")), "timeout"),
        (_base("http", expect_status=(399, 200)), "expectStatus"),
        (_base("http", expect_status=(0, 200)), "expectStatus"),
        (_base("http", expect_status=(200, 600)), "expectStatus"),
        (_base("http", path="health"), "path"),
        (_base("http", path="/a b"), "path"),
        (_base("http", host_header="a\r\nX-Evil: 1"), "hostHeader"),
        (_base("dns", dns_type="ANY"), "dnsType"),
        (_base("dns", dns_name="a..b"), "dnsName"),
        (_base("dns", dns_name="x" * 64 + ".example"), "dnsName"),
        (_base("tcp", source_interface="a-very-long-ifname0"), "sourceInterface"),
        (_base("tcp", source_interface="eth/0"), "sourceInterface"),
        (_base("tcp", source_interface=""), "sourceInterface"),
        (_base("tcp", source_address="not-an-ip"), "sourceAddress"),
        (_base("tcp", source_address="2001:db8::1"), "sourceAddress"),
        (_base("tcp", fwmark=-1), "fwmark"),
        (_base("tcp", fwmark=2**32), "fwmark"),
        (_base("tcp", family=socket.AF_INET6), "family"),
        (_base("tcp", family=socket.AF_UNIX), "family"),
    ],
)
def test_validate_spec_rejects(spec: ProbeSpec, field_name: str) -> None:
    problems = validate_spec(spec)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{field_name}: ")


def test_validate_spec_reports_all_problems() -> None:
    spec = _base("http", port=0, timeout=0, path="x", expect_status=(500, 100))
    fields = sorted(p.split(":")[0] for p in validate_spec(spec))
    assert fields == ["expectStatus", "path", "port", "timeout"]


def test_invalid_spec_is_an_error_not_an_exception() -> None:
    result = run_probe(_base("tcp", port=None))
    assert not result.ok
    assert result.error == "invalid spec: port: required for protocol tcp"
    assert result.latency is None


@pytest.mark.parametrize(
    "spec",
    [
        ProbeSpec("tcp", 123, port=80),  # type: ignore[arg-type]
        ProbeSpec("tcp", "127.0.0.1", port="80"),  # type: ignore[arg-type]
        ProbeSpec("http", "127.0.0.1", expect_status=[200]),  # type: ignore[arg-type]
        ProbeSpec("dns", "127.0.0.1", dns_type=None),  # type: ignore[arg-type]
        ProbeSpec("tcp", "127.0.0.1", port=1, timeout="2"),  # type: ignore[arg-type]
    ],
)
def test_run_probe_never_raises_on_garbage(spec: ProbeSpec) -> None:
    result = run_probe(spec)
    assert not result.ok
    assert result.error is not None and result.error.startswith("invalid spec: ")


def test_unexpected_exception_becomes_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> ProbeResult:
        raise RuntimeError("bug")

    monkeypatch.setattr(probes, "_probe_tcp", boom)
    result = run_probe(ProbeSpec("tcp", "127.0.0.1", port=1))
    assert not result.ok
    assert result.error == "internal error: RuntimeError: bug"


def test_spec_is_hashable_and_frozen() -> None:
    spec = ProbeSpec("tcp", "127.0.0.1", port=1)
    assert {spec: 1}[replace(spec)] == 1
    with pytest.raises(AttributeError):
        spec.port = 2  # type: ignore[misc]
