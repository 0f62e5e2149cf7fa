"""The DHCPv6 client's UDP socket (RFC 9915 §7.2): port 546 on one interface.

One ``AF_INET6`` datagram socket bound to ``[::]:546`` and pinned to the WAN
interface with ``SO_BINDTODEVICE``. Everything goes to
All_DHCP_Relay_Agents_and_Servers (``ff02::1:2``) port 547 on that interface
(RFC 9915 §18.2 removed unicast), with a hop limit of 1; servers answer to
the link-local source address, port 546.

Datagrams are untrusted (DESIGN §9): anything bigger than
:data:`MAX_DATAGRAM` or not from port 547 is dropped here and counted in
:attr:`Transport.dropped`; everything else goes to the protocol core, which
drops and counts what does not decode or does not match. Datagrams the
kernel dropped because the socket's buffer was full (a burst) are counted in
:attr:`Transport.kernel_drops` (``SO_MEMINFO``), across reopens.

The socket must be created in the network namespace of the interface (the
daemon runs inside it). An interface that is deleted and created again has a
new index; the engine then reopens the transport (:meth:`Transport.reopen`).
"""

from __future__ import annotations

import errno
import socket
from typing import Final

from routerd.packetstats import DropCounter

from routerd_dhcpv6.constants import ALL_DHCP_RELAY_AGENTS_AND_SERVERS
from routerd_dhcpv6.constants import CLIENT_PORT
from routerd_dhcpv6.constants import SERVER_PORT

__all__ = ["MAX_DATAGRAM", "Transport", "TransportError"]

#: Largest datagram accepted (64 KiB); a longer one is dropped as ``oversize``.
MAX_DATAGRAM: Final = 64 * 1024
#: Linux ``SO_BINDTODEVICE`` (missing from the socket module on some builds).
SO_BINDTODEVICE: Final = getattr(socket, "SO_BINDTODEVICE", 25)
#: At most this many datagrams are read per readable event (fairness).
_MAX_BATCH: Final = 64


class TransportError(OSError):
    """The socket could not be opened or used; the message says why."""


class Transport:
    """The client socket on one interface.

    :param ifname: the WAN interface.
    :param port: local port (546; tests may pick another).
    :param server_port: the only source port accepted, and the destination.
    :param max_datagram: datagrams longer than this are dropped.
    :param rcvbuf: ``SO_RCVBUF`` of the socket, or None for the kernel default.
    """

    def __init__(
        self,
        ifname: str,
        *,
        port: int = CLIENT_PORT,
        server_port: int = SERVER_PORT,
        max_datagram: int = MAX_DATAGRAM,
        rcvbuf: int | None = None,
    ) -> None:
        self.ifname = ifname
        self.port = port
        self.server_port = server_port
        self.max_datagram = max_datagram
        self.rcvbuf = rcvbuf
        #: Kernel drops (receive buffer full) of every socket opened so far.
        self.drops = DropCounter()
        self.ifindex: int | None = None
        self._sock: socket.socket | None = None
        #: Datagrams dropped before the protocol core saw them, per reason.
        self.dropped: dict[str, int] = {}
        #: Send failures, per errno name.
        self.send_errors: dict[str, int] = {}
        self.opened = 0

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def fileno(self) -> int:
        if self._sock is None:
            raise TransportError(errno.EBADF, "transport is closed")
        return self._sock.fileno()

    def open(self) -> None:
        """Open and bind the socket.

        :raises TransportError: the interface is missing, or binding failed
            (another client holds port 546 on this interface, no privilege).
        """
        self.close()
        try:
            ifindex = socket.if_nametoindex(self.ifname)
        except OSError:
            raise TransportError(errno.ENODEV, f"interface {self.ifname} does not exist") from None
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.ifname.encode())
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            # RFC 9915 §7.1: link-scoped multicast, never forwarded.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            if self.rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind(("::", self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise TransportError(
                exc.errno or errno.EIO,
                f"cannot bind [::]:{self.port} on {self.ifname}: {exc.strerror or exc}",
            ) from None
        self._sock = sock
        self.ifindex = ifindex
        self.opened += 1
        self.drops.new_socket()

    def reopen(self) -> None:
        """Close and open again (the interface was recreated)."""
        self.open()

    @property
    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped before they could be read."""
        return self.drops.total

    def close(self) -> None:
        if self._sock is not None:
            self.drops.poll_socket(self._sock)
            self._sock.close()
            self._sock = None

    def send(self, payload: bytes) -> None:
        """Send one message to ff02::1:2 port 547 on the interface.

        :raises TransportError: the kernel refused (no link-local address
            yet, link down, interface gone); counted in :attr:`send_errors`.
        """
        if self._sock is None or self.ifindex is None:
            self._count(self.send_errors, "ENOTCONN")
            raise TransportError(errno.ENOTCONN, "transport is closed")
        dest = (ALL_DHCP_RELAY_AGENTS_AND_SERVERS, self.server_port, 0, self.ifindex)
        try:
            self._sock.sendto(payload, dest)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, "EIO")
            self._count(self.send_errors, name)
            raise TransportError(
                exc.errno or errno.EIO, f"send on {self.ifname}: {exc.strerror or exc}"
            ) from None

    def receive(self) -> list[tuple[bytes, str]]:
        """Read what is waiting: ``(payload, source address)`` per datagram.

        Oversize datagrams and datagrams not from the server port are dropped
        and counted. Never raises.
        """
        out: list[tuple[bytes, str]] = []
        sock = self._sock
        if sock is None:
            return out
        try:
            self._receive(sock, out)
        finally:
            # Datagrams lost to a full buffer leave no trace but this counter.
            self.drops.poll_socket(sock)
        return out

    def _receive(self, sock: socket.socket, out: list[tuple[bytes, str]]) -> None:
        for _ in range(_MAX_BATCH):
            try:
                # One byte more than allowed, so an oversize datagram shows as
                # longer (and MSG_TRUNC catches anything beyond the buffer).
                data, _anc, flags, addr = sock.recvmsg(self.max_datagram + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._count(self.dropped, f"recv_{errno.errorcode.get(exc.errno or 0, 'error')}")
                break
            if flags & socket.MSG_TRUNC or len(data) > self.max_datagram:
                self._count(self.dropped, "oversize")
                continue
            if not isinstance(addr, tuple) or len(addr) < 2 or addr[1] != self.server_port:
                self._count(self.dropped, "bad_source_port")
                continue
            out.append((data, str(addr[0])))

    @staticmethod
    def _count(counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1
