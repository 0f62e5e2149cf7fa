"""The ``tun`` data plane: a TUN device ``ppp-<name>`` and a user-space
forwarder between it and the session's 0x8864 frames.

For kernels without PPP (``/dev/ppp`` missing, as on this project's
development machine). IPv4 packets read from the TUN device go out as PPP
protocol 0x0021 and IPv6 as 0x0057 while their NCP is Opened; received
frames of those protocols are written to the device, every other protocol
goes to the protocol core. Everything runs on the engine thread.

The device is made with ``IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL``: with
``IFF_TUN_EXCL`` the kernel refuses (EBUSY) when any interface of that name
exists, so a device that is not ours is never attached to. It is not
persistent: closing the file descriptor (or the process dying) removes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from routerd_pppoe.backend import BackendError
from routerd_pppoe.backend import SessionParams
from routerd_pppoe.backend import Stats
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import join_protocol
from routerd_pppoe.pppcodec import split_protocol
from routerd_pppoe.transport import BATCH
from routerd_pppoe.transport import SessionSocket

__all__ = ["TUNSETIFF", "TunBackend", "tun_ifreq"]

TUN_DEVICE = "/dev/net/tun"
#: ``_IOW('T', 202, int)`` (linux/if_tun.h).
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_TUN_EXCL = 0x8000
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, flags, the rest of the union


def tun_ifreq(ifname: str) -> bytes:
    """The ``struct ifreq`` for ``TUNSETIFF``."""
    name = ifname.encode()
    if not 0 < len(name) < 16:
        raise ValueError(f"interface name {ifname!r} must be 1-15 bytes")
    return _IFREQ.pack(name, IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL)


class TunBackend:
    """One session's TUN device and forwarder."""

    kind = "tun"

    def __init__(self, params: SessionParams, early: SessionSocket | None = None) -> None:
        self.params = params
        self.ifname = params.ifname
        self._stats = Stats()
        self.ipv4 = False
        self.ipv6 = False
        self._closed = False
        try:
            if early is not None:
                # Opened at the PADR: it holds what the AC sent right after the PADS.
                early.attach(params.ac_mac, params.session_id)
                self.session = early
            else:
                self.session = SessionSocket(
                    params.ethernet, params.mac, params.ac_mac, params.session_id
                )
        except OSError as exc:
            raise BackendError(
                exc.errno or errno.EIO,
                f"cannot open a packet socket for the session on {params.ethernet}: {exc}",
            ) from None
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.session.close()
            raise BackendError(
                exc.errno or errno.EIO, f"cannot open {TUN_DEVICE}: {exc.strerror}"
            ) from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, tun_ifreq(params.ifname))
        except OSError as exc:
            os.close(fd)
            self.session.close()
            if exc.errno == errno.EBUSY:
                raise BackendError(
                    errno.EEXIST, f"interface {params.ifname} exists and is not ours"
                ) from None
            raise BackendError(
                exc.errno or errno.EIO, f"cannot create TUN device {params.ifname}: {exc.strerror}"
            ) from None
        self.tun_fd = fd

    def fds(self) -> list[int]:
        return [self.session.fileno(), self.tun_fd]

    def read(self, fd: int) -> list[bytes]:
        if self._closed:
            return []
        if fd == self.tun_fd:
            self._from_tun()
            return []
        control: list[bytes] = []
        for ppp in self.session.receive():
            try:
                protocol, info = split_protocol(ppp)
            except DecodeError:
                control.append(ppp)  # the core counts it
                continue
            if protocol in (Protocol.IPV4, Protocol.IPV6):
                self._to_tun(protocol, info)
            else:
                control.append(ppp)
        return control

    def _to_tun(self, protocol: int, packet: bytes) -> None:
        allowed = self.ipv4 if protocol == Protocol.IPV4 else self.ipv6
        if not allowed:
            # RFC 1661 §3.5: packets of a network protocol whose NCP is not
            # Opened are silently discarded.
            self._stats.dropped += 1
            return
        try:
            os.write(self.tun_fd, packet)
        except OSError:
            self._stats.dropped += 1  # interface down, or a queue full
            return
        self._stats.rx_packets += 1
        self._stats.rx_bytes += len(packet)

    def _from_tun(self) -> None:
        for _ in range(BATCH):
            try:
                packet = os.read(self.tun_fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not packet:
                return
            version = packet[0] >> 4
            if version == 4 and self.ipv4:
                protocol = Protocol.IPV4
            elif version == 6 and self.ipv6:
                protocol = Protocol.IPV6
            else:
                self._stats.dropped += 1
                continue
            try:
                self.session.send(join_protocol(protocol, packet))
            except OSError:
                self._stats.dropped += 1
                continue
            self._stats.tx_packets += 1
            self._stats.tx_bytes += len(packet)

    def send_control(self, protocol: int, info: bytes) -> None:
        self.session.send(join_protocol(protocol, info))

    def set_protocols(self, ipv4: bool, ipv6: bool) -> None:
        self.ipv4, self.ipv6 = ipv4, ipv6

    def stats(self) -> Stats:
        self._stats.dropped = max(self._stats.dropped, 0)
        return self._stats

    @property
    def frame_drops(self) -> dict[str, int]:
        return dict(self.session.dropped)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            os.close(self.tun_fd)
        finally:
            self.session.close()
