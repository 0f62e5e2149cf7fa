"""The ``kernel`` data plane: the kernel's PPPoE driver and ppp_generic, as
pppd with rp-pppoe.so uses them (``pppd/plugins/pppoe/plugin.c``,
``pppd/sys-linux.c``).

Steps, each a system call pppd makes:

1. ``socket(AF_PPPOX, SOCK_STREAM, PX_PROTO_OE)`` and ``connect`` it with a
   30-byte ``struct sockaddr_pppox`` (family, protocol, session id in
   network order, the AC's MAC, the Ethernet device name). Python's
   ``socket.connect`` rejects this family, so libc's ``connect`` is called
   through ctypes.
2. ``ioctl(PPPIOCGCHAN)`` on the socket: the ppp channel index.
3. ``open("/dev/ppp")`` and ``ioctl(PPPIOCATTCHAN, index)``: the channel fd.
4. ``open("/dev/ppp")`` and ``ioctl(PPPIOCNEWUNIT, -1)``: a new unit
   (``pppN``), renamed to ``ppp-<name>`` (``SIOCSIFNAME``) while down.
5. ``ioctl(PPPIOCCONNECT, unit)`` on the channel fd; ``PPPIOCSMRU`` and
   ``PPPIOCSNPMODE`` (IP and IPv6 dropped until their NCP opens) on the unit.

Control frames: ppp_generic queues frames with a protocol >= 0xc000 (LCP,
PAP, CHAP) on the *channel* fd and other non-data frames (IPCP, IPv6CP, CCP,
unknown) on the *unit* fd (``ppp_input``, ``ppp_receive_nonmp_frame``); each
read gives one frame starting with the Protocol field. Writes follow the
same split (pppd's ``output()``). Data is forwarded by the kernel.

Closing the socket sends no PADT (the driver only drops the session): the
client core sends it. Closing the unit fd removes the interface.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct

from routerd_pppoe.backend import BackendError
from routerd_pppoe.backend import SessionParams
from routerd_pppoe.backend import Stats
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import join_protocol

__all__ = [
    "AF_PPPOX",
    "NPMODE_DROP",
    "NPMODE_PASS",
    "PPPIOCATTCHAN",
    "PPPIOCCONNECT",
    "PPPIOCGCHAN",
    "PPPIOCNEWUNIT",
    "PPPIOCSMRU",
    "PPPIOCSNPMODE",
    "PX_PROTO_OE",
    "SIOCSIFNAME",
    "KernelBackend",
    "ioc",
    "kernel_ppp_available",
    "npioctl",
    "rename_ifreq",
    "sockaddr_pppox",
]

#: linux/socket.h, linux/if_pppox.h.
AF_PPPOX = 24
PX_PROTO_OE = 0
PPP_DEVICE = "/dev/ppp"
SIOCSIFNAME = 0x8923
NPMODE_PASS = 0
NPMODE_DROP = 1
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def ioc(direction: int, kind: str, number: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)`` of asm-generic/ioctl.h."""
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


# linux/ppp-ioctl.h
PPPIOCGCHAN = ioc(_IOC_READ, "t", 55, 4)  # _IOR('t', 55, int)
PPPIOCATTCHAN = ioc(_IOC_WRITE, "t", 56, 4)  # _IOW('t', 56, int)
PPPIOCDISCONN = ioc(_IOC_NONE, "t", 57, 0)  # _IO('t', 57)
PPPIOCCONNECT = ioc(_IOC_WRITE, "t", 58, 4)  # _IOW('t', 58, int)
PPPIOCNEWUNIT = ioc(_IOC_READ | _IOC_WRITE, "t", 62, 4)  # _IOWR('t', 62, int)
PPPIOCSNPMODE = ioc(_IOC_WRITE, "t", 75, 8)  # _IOW('t', 75, struct npioctl)
PPPIOCSMRU = ioc(_IOC_WRITE, "t", 82, 4)  # _IOW('t', 82, int)
PPPIOCGUNIT = ioc(_IOC_READ, "t", 86, 4)  # _IOR('t', 86, int)

_SOCKADDR_PPPOX_HEAD = struct.Struct("=HI")  # sa_family, sa_protocol (host order, packed)


def sockaddr_pppox(session_id: int, remote: bytes, device: str) -> bytes:
    """``struct sockaddr_pppox`` for PX_PROTO_OE: 30 bytes, ``__packed``.

    ``{sa_family_t sa_family; unsigned int sa_protocol; struct pppoe_addr
    {sid_t sid (__be16); unsigned char remote[ETH_ALEN]; char
    dev[IFNAMSIZ];}}``.
    """
    dev = device.encode()
    if len(remote) != 6:
        raise ValueError("remote must be a 6-byte MAC")
    if not 0 < len(dev) < 16:
        raise ValueError(f"device name {device!r} must be 1-15 bytes")
    return (
        _SOCKADDR_PPPOX_HEAD.pack(AF_PPPOX, PX_PROTO_OE)
        + struct.pack("!H", session_id)
        + remote
        + dev.ljust(16, b"\0")
    )


def npioctl(protocol: int, mode: int) -> bytes:
    """``struct npioctl {int protocol; enum NPmode mode;}``."""
    return struct.pack("=ii", protocol, mode)


def rename_ifreq(old: str, new: str) -> bytes:
    """``struct ifreq`` for ``SIOCSIFNAME``: old name, then the new one in ``ifr_newname``."""
    return struct.pack("16s16s8x", old.encode(), new.encode())


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _connect(fd: int, address: bytes) -> None:
    buf = ctypes.create_string_buffer(address, len(address))
    if _libc().connect(fd, buf, len(address)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ioctl_int(fd: int, request: int, value: int = 0) -> int:
    buf = bytearray(struct.pack("=i", value))
    fcntl.ioctl(fd, request, buf, True)
    return int(struct.unpack("=i", buf)[0])


def kernel_ppp_available() -> str | None:
    """None when the kernel can run PPPoE sessions, else why not."""
    try:
        fd = os.open(PPP_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {PPP_DEVICE}: {exc.strerror}"
    os.close(fd)
    try:
        sock = socket.socket(AF_PPPOX, socket.SOCK_STREAM, PX_PROTO_OE)
    except OSError as exc:
        return f"no AF_PPPOX sockets (pppoe module): {exc.strerror}"
    sock.close()
    return None


def _read_stat(ifname: str, name: str) -> int:
    try:
        with open(f"/sys/class/net/{ifname}/statistics/{name}") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


class KernelBackend:
    """One session on the kernel's PPPoE driver."""

    kind = "kernel"

    def __init__(self, params: SessionParams) -> None:
        self.params = params
        self.ifname = params.ifname
        self.sock: socket.socket | None = None
        self.chan_fd: int | None = None
        self.unit_fd: int | None = None
        self.unit: int | None = None
        self._closed = False
        step = "create an AF_PPPOX socket"
        try:
            self.sock = socket.socket(
                AF_PPPOX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC, PX_PROTO_OE
            )
            step = "connect the PPPoE session"
            _connect(
                self.sock.fileno(),
                sockaddr_pppox(params.session_id, params.ac_mac, params.ethernet),
            )
            step = "PPPIOCGCHAN"
            channel = _ioctl_int(self.sock.fileno(), PPPIOCGCHAN)
            step = f"open {PPP_DEVICE}"
            self.chan_fd = os.open(PPP_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            step = "PPPIOCATTCHAN"
            _ioctl_int(self.chan_fd, PPPIOCATTCHAN, channel)
            step = f"open {PPP_DEVICE} for a unit"
            self.unit_fd = os.open(PPP_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            step = "PPPIOCNEWUNIT"
            self.unit = _ioctl_int(self.unit_fd, PPPIOCNEWUNIT, -1)
            step = f"rename ppp{self.unit} to {params.ifname}"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
                fcntl.ioctl(
                    ctl.fileno(), SIOCSIFNAME, rename_ifreq(f"ppp{self.unit}", params.ifname)
                )
            step = "PPPIOCCONNECT"
            _ioctl_int(self.chan_fd, PPPIOCCONNECT, self.unit)
            step = "PPPIOCSMRU"
            _ioctl_int(self.unit_fd, PPPIOCSMRU, params.mru)
            self.set_protocols(False, False)
        except OSError as exc:
            self.close()
            code = exc.errno or errno.EIO
            if code == errno.EEXIST and step.startswith("rename"):
                raise BackendError(
                    code, f"interface {params.ifname} exists and is not ours"
                ) from None
            raise BackendError(
                code, f"kernel PPPoE: cannot {step}: {exc.strerror or exc}"
            ) from None

    def fds(self) -> list[int]:
        return [fd for fd in (self.chan_fd, self.unit_fd) if fd is not None]

    def read(self, fd: int) -> list[bytes]:
        frames: list[bytes] = []
        for _ in range(64):
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # the channel went away (session ended under us)
            if not data:
                break
            frames.append(data)
        return frames

    def send_control(self, protocol: int, info: bytes) -> None:
        # pppd sys-linux.c output(): >= 0xc000 on the channel, the rest on the unit.
        fd = self.chan_fd if protocol >= 0xC000 else self.unit_fd
        if fd is None:
            raise OSError(errno.EBADF, "the PPP channel is closed")
        os.write(fd, join_protocol(protocol, info))

    def set_protocols(self, ipv4: bool, ipv6: bool) -> None:
        if self.unit_fd is None:
            return
        for protocol, on in ((Protocol.IPV4, ipv4), (Protocol.IPV6, ipv6)):
            fcntl.ioctl(
                self.unit_fd, PPPIOCSNPMODE, npioctl(protocol, NPMODE_PASS if on else NPMODE_DROP)
            )

    def stats(self) -> Stats:
        name = self.ifname
        return Stats(
            rx_packets=_read_stat(name, "rx_packets"),
            rx_bytes=_read_stat(name, "rx_bytes"),
            tx_packets=_read_stat(name, "tx_packets"),
            tx_bytes=_read_stat(name, "tx_bytes"),
            dropped=_read_stat(name, "rx_dropped") + _read_stat(name, "tx_dropped"),
        )

    @property
    def frame_drops(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # pppd: disconnect the channel, close the unit (the interface goes),
        # then the socket (the driver forgets the session; no PADT is sent).
        if self.chan_fd is not None:
            try:
                fcntl.ioctl(self.chan_fd, PPPIOCDISCONN)
            except OSError:
                pass
            os.close(self.chan_fd)
            self.chan_fd = None
        if self.unit_fd is not None:
            os.close(self.unit_fd)
            self.unit_fd = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
