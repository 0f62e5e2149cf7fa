"""Conntrack over netlink sockets: live dumps (``connections``) and events (flows).

Sockets are plain ``AF_NETLINK`` sockets read with :mod:`ctnetlink`; each is
created and used on one thread (the pyroute2 thread rule holds for any
netlink reader: a socket shared by threads interleaves their messages).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
import errno
from pathlib import Path
import socket
import time
from typing import Final

from routerd_observe import ctnetlink as ct
from routerd_observe import netlink as nl

PROC_NETFILTER: Final = Path("/proc/sys/net/netfilter")
#: Receive buffer for dumps: a few hundred entries per read.
DUMP_RCVBUF: Final = 1 << 20
RECV_SIZE: Final = 1 << 16


class ConntrackUnavailable(OSError):
    """The kernel cannot answer (no nf_conntrack, no CAP_NET_ADMIN)."""


def open_socket(groups: tuple[int, ...] = (), rcvbuf: int = DUMP_RCVBUF) -> socket.socket:
    """A NETLINK_NETFILTER socket, subscribed to ``groups``.

    The receive buffer is forced (``SO_RCVBUFFORCE``, root) past
    ``rmem_max``: an event burst larger than it is lost (ENOBUFS).
    """
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, nl.NETLINK_NETFILTER
    )
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_ADD_MEMBERSHIP, group)
    except BaseException:
        sock.close()
        raise
    return sock


def table_count() -> int:
    """Entries in this namespace's conntrack table (0 when not loaded)."""
    try:
        return int((PROC_NETFILTER / "nf_conntrack_count").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def enable_accounting() -> list[str]:
    """Turn on per-flow counters and timestamps in this namespace.

    ``nf_conntrack_acct`` and ``nf_conntrack_timestamp`` apply to entries
    created afterwards. Returns what could not be set (one line each).
    """
    problems: list[str] = []
    for name in ("nf_conntrack_acct", "nf_conntrack_timestamp"):
        path = PROC_NETFILTER / name
        try:
            if path.read_text().strip() != "1":
                path.write_text("1\n")
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    return problems


@dataclass
class DumpResult:
    entries: list[ct.CtEntry]
    scanned: int
    truncated: bool
    malformed: int
    seconds: float


def dump(
    *,
    family: int = socket.AF_UNSPEC,
    mark: int | None = None,
    protocol: int | None = None,
    limit: int | None = None,
    match: Callable[[ct.CtEntry], bool] | None = None,
    deadline: float | None = None,
    patterns: Sequence[tuple[bytes, ...]] = (),
) -> DumpResult:
    """Dump the table, filtered in the kernel where it can be, stopping at ``limit``.

    Messages are decoded as they arrive; once ``limit`` entries matched the
    socket is closed, which ends the kernel's dump without reading the rest.
    """
    t0 = time.monotonic()
    try:
        result = _dump(family, mark, protocol, limit, match, deadline, patterns)
    except OSError as exc:
        if protocol is not None and exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            # Kernel < 5.8 has no CTA_FILTER: filter the protocol here.
            proto = protocol

            def both(e: ct.CtEntry) -> bool:
                return e.orig.proto == proto and (match is None or match(e))

            result = _dump(family, mark, None, limit, both, deadline, patterns)
        else:
            raise
    result.seconds = time.monotonic() - t0
    return result


def _dump(
    family: int,
    mark: int | None,
    protocol: int | None,
    limit: int | None,
    match: Callable[[ct.CtEntry], bool] | None,
    deadline: float | None,
    patterns: Sequence[tuple[bytes, ...]],
) -> DumpResult:
    try:
        sock = open_socket()
    except OSError as exc:
        raise ConntrackUnavailable(exc.errno or 0, f"netlink: {exc.strerror or exc}") from None
    out = DumpResult([], 0, False, 0, 0.0)
    with sock:
        sock.sendto(ct.dump_request(family, mark=mark, protocol=protocol), (0, 0))
        for msg in _replies(sock, deadline):
            out.scanned += 1
            if patterns:
                raw = bytes(msg.payload)
                if not all(any(p in raw for p in group) for group in patterns):
                    continue
            try:
                entry = ct.decode_entry(msg)
            except nl.MalformedMessage:
                out.malformed += 1
                continue
            if match is not None and not match(entry):
                continue
            out.entries.append(entry)
            if limit is not None and len(out.entries) >= limit:
                out.truncated = True
                break
    return out


def _replies(sock: socket.socket, deadline: float | None) -> Iterator[nl.Message]:
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("conntrack dump took too long")
            sock.settimeout(left)
        data = sock.recv(RECV_SIZE)
        for msg in nl.messages(data):
            if msg.type == nl.NLMSG_DONE:
                return
            if msg.type == nl.NLMSG_ERROR:
                code = nl.error_code(msg)
                if code:
                    raise OSError(code, f"ctnetlink dump: {errno.errorcode.get(code, code)}")
                continue
            if msg.type in (nl.NLMSG_NOOP, nl.NLMSG_OVERRUN):
                continue
            yield msg
