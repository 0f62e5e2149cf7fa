"""IPv4 address conflict detection before using a lease (RFC 5227 §2.1).

Used when the spec sets ``declineOnConflict``: before an offered address is
put on the interface, ARP probes (sender IP 0.0.0.0, target the address) are
broadcast; an ARP packet from another host that claims the address, or
probes for it at the same time, is a conflict, and the client declines the
lease (RFC 2131 §3.1 step 5). With no conflict the address is announced
once (sender and target IP both the address) and applied.

Timing is RFC 5227 §1.1's: wait a random 0..PROBE_WAIT, PROBE_NUM probes
PROBE_MIN..PROBE_MAX apart, then ANNOUNCE_WAIT; about 5 s on average.
"""

from __future__ import annotations

from collections.abc import Callable
import socket
import struct

from routerd.daemon.loop import EngineLoop
from routerd.daemon.loop import TimerHandle

from routerd_dhcpv4.core import RandomLike

__all__ = [
    "ANNOUNCE_WAIT",
    "PROBE_MAX",
    "PROBE_MIN",
    "PROBE_NUM",
    "PROBE_WAIT",
    "ArpProbe",
    "build_arp",
    "parse_arp",
]

# RFC 5227 §1.1 constants (seconds).
PROBE_WAIT = 1.0
PROBE_NUM = 3
PROBE_MIN = 1.0
PROBE_MAX = 2.0
ANNOUNCE_WAIT = 2.0

ETH_P_ARP = 0x0806
_ZERO_MAC = b"\0" * 6
_BCAST = b"\xff" * 6


def build_arp(op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    """An Ethernet frame holding an ARP packet (broadcast)."""
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        op,
        sha,
        socket.inet_aton(spa),
        tha,
        socket.inet_aton(tpa),
    )
    return _BCAST + sha + struct.pack("!H", ETH_P_ARP) + arp


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """``(op, sender MAC, sender IP, target IP)`` of an Ethernet ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    sha = frame[22:28]
    spa = socket.inet_ntoa(frame[28:32])
    tpa = socket.inet_ntoa(frame[38:42])
    return op, bytes(sha), spa, tpa


class ArpProbe:
    """One probe of ``address`` on ``ifname``; ``on_done(conflicting_mac or None)``.

    Runs on the engine loop; create it on the engine thread.
    """

    def __init__(
        self,
        loop: EngineLoop,
        ifname: str,
        mac: bytes,
        address: str,
        rng: RandomLike,
        on_done: Callable[[bytes | None], None],
    ) -> None:
        self.loop = loop
        self.ifname = ifname
        self.mac = mac
        self.address = address
        self.rng = rng
        self.on_done = on_done
        self.sent = 0
        self._timer: TimerHandle | None = None
        self._sock: socket.socket | None = None
        self.finished = False

    def start(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            sock.bind((self.ifname, ETH_P_ARP))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.loop.add_reader(sock, self._on_readable)
        self._timer = self.loop.call_later(self.rng.uniform(0.0, PROBE_WAIT), self._probe)

    def cancel(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self.loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None

    def _send(self, spa: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send(build_arp(1, self.mac, spa, _ZERO_MAC, self.address))
        except OSError:
            pass  # link went away: the engine cancels the probe on link down

    def _probe(self) -> None:
        self._timer = None
        if self.finished:
            return
        self._send("0.0.0.0")
        self.sent += 1
        if self.sent < PROBE_NUM:
            delay = self.rng.uniform(PROBE_MIN, PROBE_MAX)
            self._timer = self.loop.call_later(delay, self._probe)
        else:
            self._timer = self.loop.call_later(ANNOUNCE_WAIT, self._finish, None)

    def _on_readable(self) -> None:
        if self._sock is None:
            return
        for _ in range(64):
            try:
                frame = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            parsed = parse_arp(frame)
            if parsed is None:
                continue
            op, sha, spa, tpa = parsed
            if sha == self.mac:
                continue
            # RFC 5227 §2.1.1: a packet with the address as sender IP, or a
            # probe (sender 0.0.0.0) for it from someone else, is a conflict.
            if spa == self.address or (op == 1 and spa == "0.0.0.0" and tpa == self.address):
                self._finish(sha)
                return

    def _finish(self, conflict: bytes | None) -> None:
        if self.finished:
            return
        if conflict is None:
            # RFC 5227 §2.3: announce the address now that it is ours.
            self._send(self.address)
        self.cancel()
        self.on_done(conflict)
