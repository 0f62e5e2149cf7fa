"""Packet sockets of the PPPoE client.

- :class:`DiscoverySocket`: ``AF_PACKET``/``SOCK_RAW`` bound to the Ethernet
  interface with ethertype 0x8863 (PADI, PADO, PADR, PADS, PADT). Created
  with protocol 0 (it receives nothing until bound), so nothing of another
  ethertype is ever queued.
- :class:`SessionSocket`: the same for 0x8864 session frames of *one*
  session, with a classic BPF filter (ethertype and SESSION_ID) attached
  before the bind; used by the ``tun`` backend, which forwards data in user
  space. The ``kernel`` backend needs none: the kernel's pppoe driver takes
  the session frames.

Frames the kernel loops back (``PACKET_OUTGOING``) and frames for another
host (``PACKET_OTHERHOST``: a veth or a bridge port in promiscuous mode)
are skipped. Frames too short, too long or not decodable are counted in
``dropped`` and skipped; a burst that overflowed the buffer is counted in
``drops`` (``PACKET_STATISTICS``). Nothing here raises for a bad frame.
"""

from __future__ import annotations

from collections import Counter
import ctypes
import errno
import socket
import struct

from routerd.packetstats import DropCounter

from routerd_pppoe.codec import ETH_HEADER
from routerd_pppoe.codec import ETH_P_PPPOE_DISC
from routerd_pppoe.codec import ETH_P_PPPOE_SESS
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.codec import decode_session
from routerd_pppoe.codec import encode_session
from routerd_pppoe.codec import ethernet_frame

__all__ = [
    "MAX_FRAME",
    "DiscoverySocket",
    "ReceivedDiscovery",
    "SessionSocket",
    "read_mac",
    "session_filter",
]

SOL_PACKET = 263
SO_ATTACH_FILTER = 26
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4
#: Largest frame accepted: 1500 bytes of payload (1508 with RFC 4638 jumbo
#: PPPoE: 1500 of PPP plus the 8-byte PPPoE and PPP headers), the Ethernet
#: header and a VLAN tag.
MAX_FRAME = 1508 + ETH_HEADER + 4
RCVBUF = 1 << 20
_RECV = 65536
#: At most this many frames per readable event, so a flood cannot starve the loop.
BATCH = 256

ReceivedDiscovery = tuple[bytes, bytes, bytes]  # (src, dst, PPPoE payload)


def read_mac(ifname: str) -> bytes:
    """The interface's hardware address (``SIOCGIFHWADDR``)."""
    import fcntl

    SIOCGIFHWADDR = 0x8927
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", ifname.encode()))
    return bytes(res[18:24])


def session_filter(session_id: int) -> tuple[tuple[int, int, int, int], ...]:
    """Classic BPF: ethertype 0x8864 and SESSION_ID ``session_id``."""
    return (
        (0x28, 0, 0, 12),  # ldh [12]          ethertype
        (0x15, 0, 3, ETH_P_PPPOE_SESS),  # jeq 0x8864
        (0x28, 0, 0, 16),  # ldh [16]          SESSION_ID
        (0x15, 0, 1, session_id & 0xFFFF),  # jeq sid
        (0x06, 0, 0, 0x00040000),  # ret #262144    accept
        (0x06, 0, 0, 0),  # ret #0            reject
    )


def _attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    insns = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class _PacketSocket:
    def __init__(
        self,
        ifname: str,
        ethertype: int,
        program: tuple[tuple[int, int, int, int], ...] | None,
        drops: DropCounter | None,
    ) -> None:
        self.ifname = ifname
        self.index = socket.if_nametoindex(ifname)
        self.ethertype = ethertype
        self.dropped: Counter[str] = Counter()
        self.drops = drops if drops is not None else DropCounter()
        self.drops.new_socket()
        self.received = 0
        self.sent = 0
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            if program is not None:
                _attach_filter(sock, program)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((ifname, ethertype))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return  # closed already
        self.drops.poll_packet_socket(self._sock)
        self._sock.close()

    def _frames(self) -> list[bytes]:
        frames: list[bytes] = []
        try:
            for _ in range(BATCH):
                try:
                    data, addr = self._sock.recvfrom(_RECV)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                        break
                    raise
                if len(addr) > 2 and addr[2] in (PACKET_OUTGOING, PACKET_OTHERHOST):
                    continue
                if len(data) > MAX_FRAME:
                    self.dropped["oversized"] += 1
                    continue
                if len(data) < ETH_HEADER + 6:
                    self.dropped["runt"] += 1
                    continue
                frames.append(data)
        finally:
            # Frames lost to a full buffer leave no trace but this counter.
            self.drops.poll_packet_socket(self._sock)
        return frames

    def send_frame(self, frame: bytes) -> None:
        self._sock.send(frame)
        self.sent += 1


class DiscoverySocket(_PacketSocket):
    """Discovery frames (0x8863) of one interface (create on the engine thread)."""

    def __init__(self, ifname: str, mac: bytes, *, drops: DropCounter | None = None) -> None:
        super().__init__(ifname, ETH_P_PPPOE_DISC, None, drops)
        self.mac = mac

    def receive(self) -> list[ReceivedDiscovery]:
        out: list[ReceivedDiscovery] = []
        for data in self._frames():
            self.received += 1
            out.append((bytes(data[6:12]), bytes(data[0:6]), bytes(data[ETH_HEADER:])))
        return out

    def send(self, dst: bytes, payload: bytes) -> None:
        self.send_frame(ethernet_frame(dst, self.mac, ETH_P_PPPOE_DISC, payload))


class SessionSocket(_PacketSocket):
    """Session frames (0x8864) of one PPPoE session, from its AC only.

    Made without a session (``ac_mac``/``session_id`` None) when the PADR
    goes out, so that the AC's first LCP frames, sent right after its PADS,
    are queued before the session is known; :meth:`attach` then narrows it
    to the session. Until attached, :meth:`receive` returns nothing.
    """

    def __init__(
        self,
        ifname: str,
        mac: bytes,
        ac_mac: bytes | None = None,
        session_id: int | None = None,
        *,
        drops: DropCounter | None = None,
    ) -> None:
        program = session_filter(session_id) if session_id is not None else None
        super().__init__(ifname, ETH_P_PPPOE_SESS, program, drops)
        self.mac = mac
        self.ac_mac = ac_mac
        self.session_id = session_id
        self._header = b""
        if ac_mac is not None and session_id is not None:
            self.attach(ac_mac, session_id)

    def attach(self, ac_mac: bytes, session_id: int) -> None:
        """Narrow the socket to one session (frames already queued stay; checked on receive)."""
        if self.session_id is None:
            _attach_filter(self._sock, session_filter(session_id))
        self.ac_mac = ac_mac
        self.session_id = session_id
        self._header = ac_mac + self.mac + struct.pack("!H", ETH_P_PPPOE_SESS)

    def receive(self) -> list[bytes]:
        """The PPP frames (Protocol field first) of this session that arrived."""
        out: list[bytes] = []
        for data in self._frames():
            if self.session_id is None:
                continue
            if data[6:12] != self.ac_mac:
                self.dropped["other_source"] += 1
                continue
            try:
                session_id, ppp = decode_session(data[ETH_HEADER:])
            except DecodeError:
                self.dropped["malformed_session"] += 1
                continue
            if session_id != self.session_id:
                self.dropped["other_session"] += 1
                continue
            self.received += 1
            out.append(ppp)
        return out

    def send(self, ppp: bytes) -> None:
        if self.session_id is None:
            raise OSError(errno.ENOTCONN, "no session attached")
        self.send_frame(self._header + encode_session(self.session_id, ppp))
