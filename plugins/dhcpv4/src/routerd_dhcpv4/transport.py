"""Sockets of the DHCPv4 client: AF_PACKET for everything received and for
broadcasts, UDP for unicast renewals and releases.

- :class:`PacketTransport`: an ``AF_PACKET``/``SOCK_RAW`` socket bound to one
  interface with a classic BPF filter (IPv4, UDP, not a fragment, destination
  port 68) attached *before* it is bound, so nothing unfiltered is ever
  queued. It receives broadcast and unicast replies alike (the client may
  have no address yet) and sends whole Ethernet frames built by
  :func:`routerd_dhcpv4.codec.build_frame`. ``PACKET_AUXDATA`` tells which
  frames carry a checksum the kernel has not filled in yet (veth and
  checksum offload: ``TP_STATUS_CSUMNOTREADY``); those are parsed without
  checksum verification, every other frame is verified.
- :class:`UnicastSender`: a UDP socket bound to ``leased-address:68`` with
  ``SO_BINDTODEVICE``, for RENEWING requests and RELEASE (RFC 2131 §4.4.5,
  §4.4.6). Whatever it receives is drained and discarded: the packet socket
  sees the same datagrams; having port 68 bound only keeps the kernel from
  answering the server's unicast ACKs with ICMP port-unreachable.

Nothing here raises past the caller for a bad frame: frames that are too
big, not Ethernet/IPv4/UDP, or fail checksums are counted in
:attr:`PacketTransport.dropped` and skipped. Frames the kernel dropped
because the socket's buffer was full (a burst) are counted in
:attr:`PacketTransport.kernel_drops` (``PACKET_STATISTICS``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import errno
import socket
import struct

from routerd.packetstats import DropCounter

from routerd_dhcpv4.codec import BROADCAST_MAC
from routerd_dhcpv4.codec import CLIENT_PORT
from routerd_dhcpv4.codec import SERVER_PORT
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import build_frame
from routerd_dhcpv4.codec import parse_frame

__all__ = [
    "BPF_DHCP_CLIENT",
    "MAX_FRAME",
    "PacketTransport",
    "ReceivedFrame",
    "UnicastSender",
    "read_mac",
]

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_BINDTODEVICE = 25
IP_FREEBIND = 15
#: Largest frame accepted: 1500 bytes of IP + Ethernet header + one VLAN tag.
#: DHCP messages are at most 576 bytes unless option 57 says otherwise; the
#: client announces 1500, so anything larger is not for it.
MAX_FRAME = 1500 + 14 + 4
#: Receive buffer of the packet socket (the kernel doubles it).
RCVBUF = 1 << 18
_RECV_BUF = 65536
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata

#: ``tcpdump -dd "ip and udp dst port 68"``: IPv4, UDP, no fragment, dport 68.
BPF_DHCP_CLIENT: tuple[tuple[int, int, int, int], ...] = (
    (0x28, 0, 0, 0x0000000C),  # ldh [12]            ethertype
    (0x15, 0, 8, 0x00000800),  # jeq #0x800          IPv4
    (0x30, 0, 0, 0x00000017),  # ldb [23]            protocol
    (0x15, 0, 6, 0x00000011),  # jeq #17             UDP
    (0x28, 0, 0, 0x00000014),  # ldh [20]            flags/fragment offset
    (0x45, 4, 0, 0x00001FFF),  # jset #0x1fff        a fragment: reject
    (0xB1, 0, 0, 0x0000000E),  # ldxb 4*([14]&0xf)   IP header length
    (0x48, 0, 0, 0x00000010),  # ldh [x + 16]        UDP destination port
    (0x15, 0, 1, 0x00000044),  # jeq #68
    (0x06, 0, 0, 0x00040000),  # ret #262144         accept
    (0x06, 0, 0, 0x00000000),  # ret #0              reject
)


def read_mac(ifname: str) -> bytes:
    """The interface's hardware address (``SIOCGIFHWADDR``)."""
    SIOCGIFHWADDR = 0x8927
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16s16x", ifname.encode())
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, req)
    return bytes(res[18:24])


def _attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    import ctypes

    insns = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass(frozen=True)
class ReceivedFrame:
    """A DHCP payload that came in on the packet socket."""

    payload: bytes
    src_mac: bytes
    src_ip: str
    dst_ip: str
    checksum_verified: bool


class PacketTransport:
    """The AF_PACKET socket of one interface (create it on the engine thread).

    :param rcvbuf: ``SO_RCVBUF`` of the socket.
    :param drops: where kernel drops are counted; pass the previous
        transport's to keep counting across a reopen.
    """

    def __init__(
        self, ifname: str, mac: bytes, *, rcvbuf: int = RCVBUF, drops: DropCounter | None = None
    ) -> None:
        self.ifname = ifname
        self.mac = mac
        self.index = socket.if_nametoindex(ifname)
        self.dropped: Counter[str] = Counter()
        self.drops = drops if drops is not None else DropCounter()
        self.drops.new_socket()
        self.received = 0
        self.sent = 0
        # Protocol 0 receives nothing until bound: the filter is in place first.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            _attach_filter(sock, BPF_DHCP_CLIENT)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((ifname, ETH_P_IP))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def kernel_drops(self) -> int:
        """Frames dropped by the kernel (buffer full), this socket and earlier ones."""
        return self.drops.total

    def close(self) -> None:
        self.drops.poll_packet_socket(self._sock)
        self._sock.close()

    def receive(self) -> list[ReceivedFrame]:
        """Every frame queued now; bad ones are counted and skipped."""
        try:
            return self._receive()
        finally:
            # Frames lost to a full buffer leave no trace but this counter.
            self.drops.poll_packet_socket(self._sock)

    def _receive(self) -> list[ReceivedFrame]:
        frames: list[ReceivedFrame] = []
        for _ in range(256):  # bounded: a flood cannot starve the loop
            try:
                data, ancdata, flags, addr = self._sock.recvmsg(
                    _RECV_BUF, socket.CMSG_SPACE(_AUXDATA.size)
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    break
                raise
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue  # our own frame, looped back by the kernel
            if flags & socket.MSG_TRUNC or len(data) > MAX_FRAME:
                self.dropped["oversized"] += 1
                continue
            verify = True
            for level, kind, cdata in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 4:
                    (status,) = struct.unpack_from("=I", cdata)
                    if status & TP_STATUS_CSUMNOTREADY:
                        verify = False
            try:
                frame = parse_frame(data, verify_checksums=verify)
            except DecodeError:
                self.dropped["bad_frame"] += 1
                continue
            if frame.udp_dport != CLIENT_PORT:
                self.dropped["bad_frame"] += 1
                continue
            self.received += 1
            frames.append(
                ReceivedFrame(frame.payload, bytes(data[6:12]), frame.src_ip, frame.dst_ip, verify)
            )
        return frames

    def send(
        self,
        payload: bytes,
        *,
        src_ip: str = "0.0.0.0",
        dst_ip: str = "255.255.255.255",
        dst_mac: bytes = BROADCAST_MAC,
    ) -> None:
        """Send a DHCP payload from port 68 to port 67 in one Ethernet frame."""
        frame = build_frame(
            payload,
            src_mac=self.mac,
            dst_mac=dst_mac,
            src_ip=src_ip,
            dst_ip=dst_ip,
            sport=CLIENT_PORT,
            dport=SERVER_PORT,
        )
        self._sock.send(frame)
        self.sent += 1


class UnicastSender:
    """A UDP socket on ``address:68`` bound to the interface."""

    def __init__(self, ifname: str, address: str) -> None:
        self.address = address
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            # The address may not be on the interface (applyAddress: false,
            # or removed a moment ago): bind anyway.
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.bind((address, CLIENT_PORT))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, payload: bytes, dest: str) -> None:
        self._sock.sendto(payload, (dest, SERVER_PORT))

    def drain(self) -> int:
        """Read and discard what arrived (the packet socket has it too)."""
        count = 0
        for _ in range(256):
            try:
                self._sock.recv(_RECV_BUF)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # e.g. a queued ICMP error
            count += 1
        return count

    def close(self) -> None:
        self._sock.close()
