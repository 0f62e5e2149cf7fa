"""Blocking health-check probes: ICMP echo, TCP connect, HTTP(S) status, DNS.

The daemon calls :func:`run_probe` from a worker thread.  A probe never raises
and never takes (much) longer than ``spec.timeout``.  Its result tells apart:

* success: ``ok=True``;
* failure: ``ok=False, error=None`` -- the probe ran and the target did not
  answer as expected (timeout, refused, unreachable, wrong HTTP status,
  NXDOMAIN, name not resolvable, TLS verification failure ...);
* error: ``ok=False, error="..."`` -- the probe could not run at all (invalid
  spec, missing source interface, source address not on this host,
  permission denied for a raw socket or SO_MARK ...).

Every packet from the network is untrusted: replies that do not match the
probe (other ids, other sources, malformed) are ignored, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
import errno
import functools
import http.client
import ipaddress
import itertools
import math
import os
import secrets
import socket
import ssl
import struct
import threading
import time
from typing import Final
from typing import NoReturn

import dpkt

__all__ = [
    "DNS_TYPES",
    "PROTOCOLS",
    "ProbeResult",
    "ProbeSpec",
    "run_probe",
    "validate_spec",
]

PROTOCOLS: Final = frozenset({"icmp", "tcp", "http", "https", "dns"})
DNS_TYPES: Final[dict[str, int]] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
}
_DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443, "dns": 53}
_RCODES: Final[dict[int, str]] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}
_MAX_TIMEOUT: Final = 3600.0
_IFNAMSIZ: Final = 16
_USER_AGENT: Final = "routerd-healthcheck/0.1"
_ICMP6_FILTER: Final = 1  # <netinet/icmp6.h>, not exported by the socket module
_RECV_SIZE: Final = 65535

_ident_counter = itertools.count()


@dataclass(frozen=True)
class ProbeSpec:
    protocol: str  # "icmp" | "tcp" | "http" | "https" | "dns"
    target: str  # IP literal or host name (resolved with getaddrinfo)
    port: int | None = None  # tcp required; http 80 / https 443 / dns 53
    timeout: float = 2.0  # seconds, whole probe
    path: str = "/"  # http(s)
    host_header: str | None = None
    expect_status: tuple[int, int] = (200, 399)  # inclusive range
    tls_verify: bool = True
    dns_name: str = "."  # dns: the name to query
    dns_type: str = "A"  # A, AAAA, NS, SOA, TXT, MX, CNAME, PTR
    source_interface: str | None = None  # SO_BINDTODEVICE
    source_address: str | None = None  # bind()
    fwmark: int | None = None  # SO_MARK
    family: int | None = None  # force AF_INET/AF_INET6, else from target


@dataclass(frozen=True)
class ProbeResult:
    ok: bool  # the target answered as expected
    latency: float | None  # seconds (time.monotonic), None if no answer
    detail: str  # short human text
    error: str | None = None  # set ONLY when the probe could not run at all
    address: str | None = None  # the resolved address probed


# --------------------------------------------------------------------------
# internal control flow


class _CannotRun(Exception):
    """The probe could not run (becomes ``ProbeResult.error``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Failed(Exception):
    """The probe ran and failed (``ok=False``, ``error=None``)."""

    def __init__(self, detail: str, latency: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.latency = latency


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def arm(self, sock: socket.socket) -> None:
        """Give the next blocking operation on *sock* the time that is left."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)

    def timed_out(self) -> NoReturn:
        raise _Failed(f"timeout after {_fmt_seconds(self.timeout)} s")


@dataclass(frozen=True)
class _Target:
    family: int
    host: str  # numeric address, "%scope" kept for link-local IPv6
    scope_id: int = 0

    def sockaddr(self, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.family == socket.AF_INET6:
            return (self.host, port, 0, self.scope_id)
        return (self.host, port)

    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.host.partition("%")[0])

    def hostport(self, port: int) -> str:
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{port}"
        return f"{self.host}:{port}"


def _fmt_seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


# --------------------------------------------------------------------------
# validation


def _ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _family_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _valid_hostname(name: str) -> bool:
    name = name.removesuffix(".")
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return False
    return True


def _valid_dns_name(name: str) -> bool:
    if name == ".":
        return True
    stripped = name.removesuffix(".")
    if not stripped or len(stripped) > 253:
        return False
    for label in stripped.split("."):
        if not 0 < len(label) <= 63:
            return False
        if not all(c.isascii() and c.isprintable() and c != " " for c in label):
            return False
    return True


def _valid_header_value(text: str) -> bool:
    return bool(text) and all(c.isascii() and c.isprintable() for c in text)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_target(spec: ProbeSpec) -> list[str]:
    problems: list[str] = []
    if not isinstance(spec.target, str) or not spec.target:
        return ["target: must be a non-empty IP address or host name"]
    target_ip = _ip_literal(spec.target)
    if target_ip is None and not _valid_hostname(spec.target):
        problems.append(f"target: {spec.target!r} is not an IP address or host name")
    if spec.family is not None and spec.family not in (socket.AF_INET, socket.AF_INET6):
        problems.append("family: must be AF_INET or AF_INET6")
    elif spec.family is not None and target_ip is not None and _family_of(target_ip) != spec.family:
        problems.append(f"family: does not match target {spec.target}")
    if spec.source_address is not None:
        source_ip = (
            _ip_literal(spec.source_address) if isinstance(spec.source_address, str) else None
        )
        if source_ip is None:
            problems.append("sourceAddress: must be an IP address")
        elif target_ip is not None and source_ip.version != target_ip.version:
            problems.append(
                f"sourceAddress: IPv{source_ip.version} address cannot reach "
                f"IPv{target_ip.version} target {spec.target}"
            )
        elif spec.family is not None and _family_of(source_ip) != spec.family:
            problems.append("sourceAddress: does not match family")
    return problems


def _validate_socket_options(spec: ProbeSpec) -> list[str]:
    problems: list[str] = []
    name = spec.source_interface
    if name is not None and (
        not isinstance(name, str)
        or not 0 < len(name.encode()) < _IFNAMSIZ
        or name in (".", "..")
        or any(c in "/:" or c.isspace() or not c.isprintable() for c in name)
    ):
        problems.append(f"sourceInterface: {name!r} is not a valid interface name")
    if spec.fwmark is not None and (not _is_int(spec.fwmark) or not 0 <= spec.fwmark <= 0xFFFFFFFF):
        problems.append("fwmark: must be an integer 0..4294967295")
    return problems


def _validate_port_timeout(spec: ProbeSpec) -> list[str]:
    problems: list[str] = []
    if spec.port is None:
        if spec.protocol == "tcp":
            problems.append("port: required for protocol tcp")
    elif spec.protocol == "icmp":
        problems.append("port: not used by protocol icmp")
    elif not _is_int(spec.port) or not 1 <= spec.port <= 65535:
        problems.append("port: must be an integer 1..65535")
    timeout = spec.timeout
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or not 0 < timeout <= _MAX_TIMEOUT
    ):
        problems.append(f"timeout: must be more than 0 and at most {_MAX_TIMEOUT:g} s")
    return problems


def _validate_http(spec: ProbeSpec) -> list[str]:
    problems: list[str] = []
    path = spec.path
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or not all(c.isascii() and c.isprintable() and c != " " for c in path)
    ):
        problems.append("path: must start with '/' and hold no spaces or controls")
    if spec.host_header is not None and (
        not isinstance(spec.host_header, str)
        or not _valid_header_value(spec.host_header)
        or " " in spec.host_header
    ):
        problems.append("hostHeader: must be a host name without spaces or controls")
    status = spec.expect_status
    if (
        not isinstance(status, tuple | list)
        or len(status) != 2
        or not all(_is_int(s) for s in status)
        or not 100 <= status[0] <= status[1] <= 599
    ):
        problems.append(
            "expectStatus: must be an inclusive range [low, high] with 100 <= low <= high <= 599"
        )
    return problems


def _validate_dns(spec: ProbeSpec) -> list[str]:
    problems: list[str] = []
    if not isinstance(spec.dns_type, str) or spec.dns_type.upper() not in DNS_TYPES:
        problems.append(f"dnsType: must be one of {', '.join(DNS_TYPES)}")
    if not isinstance(spec.dns_name, str) or not _valid_dns_name(spec.dns_name):
        problems.append(f"dnsName: {spec.dns_name!r} is not a valid DNS name")
    return problems


def validate_spec(spec: ProbeSpec) -> list[str]:
    """Return the problems with *spec* (empty when it can be probed).

    Each problem starts with the (camelCase) field name it is about.
    """
    if spec.protocol not in PROTOCOLS:
        return [f"protocol: must be one of {', '.join(sorted(PROTOCOLS))}"]
    problems = _validate_target(spec)
    problems += _validate_port_timeout(spec)
    problems += _validate_socket_options(spec)
    if spec.protocol in ("http", "https"):
        problems += _validate_http(spec)
    if spec.protocol == "dns":
        problems += _validate_dns(spec)
    return problems


# --------------------------------------------------------------------------
# resolution


def _target_from_info(sockaddr: tuple[object, ...], family: int) -> _Target:
    host = str(sockaddr[0])
    scope = sockaddr[3] if family == socket.AF_INET6 and len(sockaddr) > 3 else 0
    return _Target(family, host, scope if isinstance(scope, int) else 0)


_Addresses = list[tuple[int, tuple[object, ...]]]  # (family, sockaddr)


def _addresses(name: str, family: int, flags: int = 0) -> _Addresses:
    infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM, 0, flags)
    return [(int(info[0]), tuple(info[4])) for info in infos]


def _getaddrinfo_bounded(name: str, family: int, deadline: _Deadline) -> _Addresses:
    box: list[_Addresses | BaseException] = []

    def work() -> None:
        try:
            box.append(_addresses(name, family))
        except BaseException as exc:  # handed to the probing thread
            box.append(exc)

    thread = threading.Thread(target=work, name=f"resolve {name}", daemon=True)
    thread.start()
    thread.join(max(deadline.remaining(), 0.0))
    if not box:
        raise _Failed(f"timeout resolving {name} after {_fmt_seconds(deadline.timeout)} s")
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise _Failed(f"cannot resolve {name}: {_strerror(outcome)}")
    return outcome


def _resolve(spec: ProbeSpec, deadline: _Deadline) -> _Target:
    family = spec.family
    if family is None and spec.source_address is not None:
        source_ip = _ip_literal(spec.source_address)
        family = _family_of(source_ip) if source_ip is not None else None
    wanted = socket.AF_UNSPEC if family is None else family
    try:
        infos = _addresses(spec.target, wanted, socket.AI_NUMERICHOST)
    except socket.gaierror:  # a name, not a literal: may block, so bounded
        infos = _getaddrinfo_bounded(spec.target, wanted, deadline)
    for fam, sockaddr in infos:
        if fam in (socket.AF_INET, socket.AF_INET6):
            return _target_from_info(sockaddr, fam)
    raise _Failed(f"cannot resolve {spec.target}: no IPv4 or IPv6 address")


# --------------------------------------------------------------------------
# sockets


def _apply_interface(sock: socket.socket, name: str) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise _CannotRun(f"source interface {name} does not exist") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise _CannotRun(f"permission denied binding to source interface {name}") from None
        raise _CannotRun(f"cannot bind to source interface {name}: {_strerror(exc)}") from None


def _apply_fwmark(sock: socket.socket, mark: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, struct.pack("=I", mark))
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise _CannotRun("permission denied setting fwmark (needs CAP_NET_ADMIN)") from None
        raise _CannotRun(f"cannot set fwmark {mark}: {_strerror(exc)}") from None


def _apply_source_address(sock: socket.socket, address: str, family: int) -> None:
    try:
        sockaddr = _addresses(address, family, socket.AI_NUMERICHOST)[0][1]
    except (socket.gaierror, IndexError):
        raise _CannotRun(
            f"source address {address} is not a usable IPv"
            f"{4 if family == socket.AF_INET else 6} address"
        ) from None
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise _CannotRun(f"source address {address} is not an address of this host") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise _CannotRun(f"permission denied binding to source address {address}") from None
        raise _CannotRun(f"cannot bind to source address {address}: {_strerror(exc)}") from None


def _open_socket(spec: ProbeSpec, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket with source interface, fwmark and source address applied.

    Anything going wrong here means the probe cannot run (``_CannotRun``).
    """
    try:
        sock = socket.socket(family, kind, proto)
    except PermissionError:
        if kind == socket.SOCK_RAW:
            raise _CannotRun(
                "permission denied opening raw ICMP socket (needs root or CAP_NET_RAW)"
            ) from None
        raise _CannotRun("permission denied opening socket") from None
    except OSError as exc:
        raise _CannotRun(f"cannot open socket: {_strerror(exc)}") from None
    try:
        if spec.source_interface is not None:
            _apply_interface(sock, spec.source_interface)
        if spec.fwmark is not None:
            _apply_fwmark(sock, spec.fwmark)
        if spec.source_address is not None:
            _apply_source_address(sock, spec.source_address, family)
    except BaseException:
        sock.close()
        raise
    return sock


def _network_failure(exc: OSError, deadline: _Deadline, what: str) -> NoReturn:
    """Turn an error from traffic (not from setup) into a failed probe."""
    if isinstance(exc, TimeoutError) or deadline.expired():
        deadline.timed_out()
    if isinstance(exc, ConnectionRefusedError):
        raise _Failed("connection refused")
    raise _Failed(f"{what} failed: {_strerror(exc)}")


def _connect(sock: socket.socket, target: _Target, port: int, deadline: _Deadline) -> None:
    try:
        deadline.arm(sock)
        sock.connect(target.sockaddr(port))
    except OSError as exc:
        _network_failure(exc, deadline, "connect")


class _Watchdog:
    """Shut a socket down at the deadline, so no slow peer can stretch a probe.

    It works on a duplicate of the descriptor, so it stays valid when the
    socket is wrapped in TLS (which detaches the original object).
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._killer = socket.socket(fileno=os.dup(sock.fileno()))
        self.fired = False
        self._timer = threading.Timer(max(deadline.remaining(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            self._killer.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> bool:
        """Stop the watchdog (idempotent); True if it had fired."""
        self._timer.cancel()
        if self._timer.is_alive():
            self._timer.join()
        self._killer.close()
        return self.fired


# --------------------------------------------------------------------------
# TCP


def _port(spec: ProbeSpec) -> int:
    if spec.port is not None:
        return spec.port
    return _DEFAULT_PORTS[spec.protocol]


def _probe_tcp(spec: ProbeSpec, target: _Target, deadline: _Deadline) -> ProbeResult:
    port = _port(spec)
    sock = _open_socket(spec, target.family, socket.SOCK_STREAM)
    try:
        started = time.monotonic()
        _connect(sock, target, port, deadline)
        latency = time.monotonic() - started
    finally:
        sock.close()
    return ProbeResult(
        ok=True,
        latency=latency,
        detail=f"tcp connect {target.hostport(port)} in {_fmt_ms(latency)}",
        address=target.host,
    )


# --------------------------------------------------------------------------
# HTTP / HTTPS


@functools.cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _host_header(spec: ProbeSpec, port: int) -> str:
    if spec.host_header is not None:
        return spec.host_header
    host = spec.target
    if ":" in host:
        host = f"[{host.partition('%')[0]}]"
    if port != _DEFAULT_PORTS[spec.protocol]:
        host = f"{host}:{port}"
    return host


def _tls_wrap(raw: socket.socket, spec: ProbeSpec, deadline: _Deadline) -> ssl.SSLSocket:
    server_name = (
        _strip_port(spec.host_header)
        if spec.host_header is not None
        else spec.target.partition("%")[0]
    )
    try:
        deadline.arm(raw)
        return _ssl_context(spec.tls_verify).wrap_socket(raw, server_hostname=server_name)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or _strerror(exc)
        raise _Failed(f"TLS certificate verification failed: {reason}") from None
    except ssl.SSLError as exc:
        if deadline.expired():
            deadline.timed_out()
        raise _Failed(f"TLS handshake failed: {exc.reason or exc}") from None
    except OSError as exc:
        _network_failure(exc, deadline, "TLS handshake")


def _http_exchange(
    sock: socket.socket,
    spec: ProbeSpec,
    target: _Target,
    port: int,
    deadline: _Deadline,
) -> tuple[int, str]:
    conn = http.client.HTTPConnection(target.host, port)
    conn.sock = sock
    try:
        conn.putrequest("GET", spec.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", _host_header(spec, port))
        conn.putheader("User-Agent", _USER_AGENT)
        conn.putheader("Accept", "*/*")
        conn.putheader("Connection", "close")
        deadline.arm(sock)
        conn.endheaders()
        deadline.arm(sock)
        response = conn.getresponse()
        return response.status, response.reason
    except OSError as exc:
        _network_failure(exc, deadline, "HTTP request")
    except http.client.HTTPException as exc:
        if deadline.expired():
            deadline.timed_out()
        raise _Failed(f"bad HTTP response: {type(exc).__name__}") from None
    finally:
        conn.close()


def _probe_http(spec: ProbeSpec, target: _Target, deadline: _Deadline) -> ProbeResult:
    port = _port(spec)
    raw = _open_socket(spec, target.family, socket.SOCK_STREAM)
    sock: socket.socket = raw
    watchdog: _Watchdog | None = None
    try:
        started = time.monotonic()
        _connect(raw, target, port, deadline)
        watchdog = _Watchdog(raw, deadline)
        if spec.protocol == "https":
            sock = _tls_wrap(raw, spec, deadline)
        status, _reason = _http_exchange(sock, spec, target, port, deadline)
        latency = time.monotonic() - started
        if watchdog.cancel():  # cut off mid-response: what we read is partial
            deadline.timed_out()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        sock.close()
        raw.close()
    low, high = spec.expect_status
    if low <= status <= high:
        return ProbeResult(
            ok=True,
            latency=latency,
            detail=f"HTTP {status} from {target.hostport(port)} in {_fmt_ms(latency)}",
            address=target.host,
        )
    raise _Failed(f"HTTP {status} outside {low}-{high}", latency)


# --------------------------------------------------------------------------
# DNS


def _dns_name(name: str) -> str:
    return "" if name == "." else name.removesuffix(".")


def _dns_reply(data: bytes, qid: int, qname: str, qtype: int) -> dpkt.dns.DNS | None:
    """The parsed reply if it answers our query, else None (ignored)."""
    if len(data) < 12 or int.from_bytes(data[:2], "big") != qid:
        return None
    try:
        msg = dpkt.dns.DNS(data)
    except Exception:  # malformed packet from the network: drop it
        return None
    if not msg.qr:
        return None
    if msg.qd:
        question = msg.qd[0]
        if len(msg.qd) != 1 or question.type != qtype:
            return None
        if str(question.name).lower().removesuffix(".") != qname.lower():
            return None
    return msg


def _probe_dns(spec: ProbeSpec, target: _Target, deadline: _Deadline) -> ProbeResult:
    port = _port(spec)
    type_name = spec.dns_type.upper()
    qtype = DNS_TYPES[type_name]
    qname = _dns_name(spec.dns_name)
    shown = qname or "."
    qid = secrets.randbits(16)
    query = dpkt.dns.DNS(
        id=qid,
        op=dpkt.dns.DNS_RD,
        qd=[dpkt.dns.DNS.Q(name=qname, type=qtype, cls=dpkt.dns.DNS_IN)],
    )
    sock = _open_socket(spec, target.family, socket.SOCK_DGRAM)
    try:
        started = time.monotonic()
        try:
            deadline.arm(sock)
            sock.connect(target.sockaddr(port))
            sock.send(bytes(query))
            while True:
                deadline.arm(sock)
                reply = _dns_reply(sock.recv(_RECV_SIZE), qid, qname, qtype)
                if reply is not None:
                    break
        except OSError as exc:
            _network_failure(exc, deadline, "DNS query")
        latency = time.monotonic() - started
    finally:
        sock.close()
    rcode = int(reply.rcode)
    if rcode != 0:
        name = _RCODES.get(rcode, f"rcode {rcode}")
        raise _Failed(f"DNS {name} for {shown} {type_name}", latency)
    count = sum(1 for rr in reply.an if rr.type == qtype)
    if count == 0:
        raise _Failed(f"DNS no {type_name} answer for {shown}", latency)
    return ProbeResult(
        ok=True,
        latency=latency,
        detail=(
            f"DNS {shown} {type_name}: {count} answer{'s' if count != 1 else ''} "
            f"from {target.hostport(port)} in {_fmt_ms(latency)}"
        ),
        address=target.host,
    )


# --------------------------------------------------------------------------
# ICMP


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum
        return header + payload
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, checksum, ident, seq) + payload


_UNREACH4: Final[dict[int, str]] = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    9: "network prohibited",
    10: "host prohibited",
    13: "administratively prohibited",
}
_UNREACH6: Final[dict[int, str]] = {
    0: "no route",
    1: "administratively prohibited",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed policy",
    6: "reject route",
}


def _icmp4_match(
    data: bytes, source: str, want: _Target, ident: int, seq: int, payload: bytes
) -> str | None:
    """ "reply", a failure text for an ICMP error about our echo, or None."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    icmp = data[(data[0] & 0x0F) * 4 :]
    if len(icmp) < 8:
        return None
    kind, code, _sum, r_ident, r_seq = struct.unpack("!BBHHH", icmp[:8])
    if kind == 0:
        if (r_ident, r_seq) == (ident, seq) and icmp[8:] == payload:
            return "reply" if source == want.host else None
        return None
    if kind not in (3, 11):
        return None
    inner = icmp[8:]
    if len(inner) < 20 or inner[0] >> 4 != 4 or inner[9] != socket.IPPROTO_ICMP:
        return None
    if ipaddress.IPv4Address(inner[16:20]) != want.ip():
        return None
    echo = inner[(inner[0] & 0x0F) * 4 :]
    if len(echo) < 8 or struct.unpack("!BxxxHH", echo[:8]) != (8, ident, seq):
        return None
    if kind == 11:
        return f"time exceeded from {source}"
    return f"{_UNREACH4.get(code, f'unreachable code {code}')} from {source}"


def _icmp6_match(
    data: bytes, source: str, want: _Target, ident: int, seq: int, payload: bytes
) -> str | None:
    if len(data) < 8:
        return None
    kind, code, _sum, r_ident, r_seq = struct.unpack("!BBHHH", data[:8])
    if kind == 129:
        if (r_ident, r_seq) == (ident, seq) and data[8:] == payload:
            matches = ipaddress.ip_address(source.partition("%")[0]) == want.ip()
            return "reply" if matches else None
        return None
    if kind not in (1, 3):
        return None
    inner = data[8:]
    if len(inner) < 48 or inner[0] >> 4 != 6 or inner[6] != socket.IPPROTO_ICMPV6:
        return None
    if ipaddress.IPv6Address(inner[24:40]) != want.ip():
        return None
    if struct.unpack("!BxxxHH", inner[40:48]) != (128, ident, seq):
        return None
    if kind == 3:
        return f"time exceeded from {source}"
    return f"{_UNREACH6.get(code, f'unreachable code {code}')} from {source}"


def _icmp6_filter() -> bytes:
    """ICMP6_FILTER letting only echo replies and errors through."""
    words = [0xFFFFFFFF] * 8  # a set bit blocks the type
    for kind in (1, 3, 129):
        words[kind >> 5] &= ~(1 << (kind & 31))
    return struct.pack("=8I", *words)


def _probe_icmp(spec: ProbeSpec, target: _Target, deadline: _Deadline, seq: int) -> ProbeResult:
    v6 = target.family == socket.AF_INET6
    ident = (os.getpid() + next(_ident_counter)) & 0xFFFF
    seq &= 0xFFFF
    payload = b"routerd-hc" + secrets.token_bytes(22)
    if v6:
        sock = _open_socket(spec, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, _icmp6_filter())
        except OSError:
            pass  # only an optimisation: matching below does not rely on it
        matcher = _icmp6_match
    else:
        sock = _open_socket(spec, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        matcher = _icmp4_match
    try:
        started = time.monotonic()
        try:
            deadline.arm(sock)
            sock.sendto(_echo_request(v6, ident, seq, payload), target.sockaddr(0))
            while True:
                deadline.arm(sock)
                data, source = sock.recvfrom(_RECV_SIZE)
                verdict = matcher(data, str(source[0]), target, ident, seq, payload)
                if verdict is not None:
                    break
        except OSError as exc:
            _network_failure(exc, deadline, "ICMP echo")
        latency = time.monotonic() - started
    finally:
        sock.close()
    if verdict != "reply":
        raise _Failed(verdict)
    return ProbeResult(
        ok=True,
        latency=latency,
        detail=f"icmp echo reply from {target.host} in {_fmt_ms(latency)}",
        address=target.host,
    )


# --------------------------------------------------------------------------
# entry point


def _dispatch(spec: ProbeSpec, target: _Target, deadline: _Deadline, seq: int) -> ProbeResult:
    if spec.protocol == "icmp":
        return _probe_icmp(spec, target, deadline, seq)
    if spec.protocol == "tcp":
        return _probe_tcp(spec, target, deadline)
    if spec.protocol in ("http", "https"):
        return _probe_http(spec, target, deadline)
    return _probe_dns(spec, target, deadline)


def run_probe(spec: ProbeSpec, *, seq: int = 0) -> ProbeResult:
    """Run one probe; blocking, bounded by ``spec.timeout``, never raises.

    *seq* is the ICMP echo sequence number (the daemon's probe counter).
    """
    target: _Target | None = None
    try:
        problems = validate_spec(spec)
        if problems:
            reason = "invalid spec: " + "; ".join(problems)
            return ProbeResult(ok=False, latency=None, detail=reason, error=reason)
        deadline = _Deadline(float(spec.timeout))
        target = _resolve(spec, deadline)
        return _dispatch(spec, target, deadline, seq)
    except _Failed as exc:
        return ProbeResult(
            ok=False,
            latency=exc.latency,
            detail=exc.detail,
            address=target.host if target is not None else None,
        )
    except _CannotRun as exc:
        return ProbeResult(
            ok=False,
            latency=None,
            detail=exc.reason,
            error=exc.reason,
            address=target.host if target is not None else None,
        )
    except Exception as exc:  # a bug here must not kill the daemon's worker
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return ProbeResult(
            ok=False,
            latency=None,
            detail=reason,
            error=reason,
            address=target.host if target is not None else None,
        )
