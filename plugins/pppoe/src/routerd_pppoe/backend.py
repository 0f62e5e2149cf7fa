"""The data plane of a PPPoE session: the interface ``ppp-<name>`` and the
path of its packets. Two backends implement :class:`DataPlane`:

- ``kernel`` (:mod:`routerd_pppoe.kernel`): what pppd does. An ``AF_PPPOX``
  socket connected to the session, a ``/dev/ppp`` channel and unit; the
  kernel forwards data, control frames come through the channel and unit
  file descriptors.
- ``tun`` (:mod:`routerd_pppoe.tun`): a TUN device and a user-space
  forwarder between it and the session's ``AF_PACKET`` socket, for kernels
  without PPP (``ppp_generic`` and ``pppoe`` not built or not loadable).

``auto`` picks ``kernel`` when ``/dev/ppp`` opens and an ``AF_PPPOX`` socket
can be made, else ``tun`` (:func:`choose`).

A backend is opened when the PADS arrives and closed when the session ends;
the interface exists only in between (closing the last file descriptor
removes it, so a daemon killed by SIGKILL leaves nothing behind). It starts
down; the glue sets its MTU, addresses and routes and brings it up when IPCP
opens.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
from typing import TYPE_CHECKING
from typing import Protocol

if TYPE_CHECKING:
    from routerd_pppoe.transport import SessionSocket

__all__ = [
    "BACKENDS",
    "BackendError",
    "DataPlane",
    "SessionParams",
    "Stats",
    "choose",
    "ppp_ifname",
]

BACKENDS = ("kernel", "tun")
IFNAMSIZ = 16


class BackendError(OSError):
    """The data plane could not be opened; the message says which step."""


@dataclass(frozen=True)
class SessionParams:
    """What a backend needs to know of the session.

    :ivar ifname: the PPP interface to create (``ppp-<name>``).
    :ivar ethernet: the Ethernet interface the session runs on.
    :ivar mac: our MAC on it.
    :ivar ac_mac: the access concentrator's MAC.
    :ivar session_id: the PPPoE SESSION_ID.
    :ivar mru: our MRU (what the interface may receive).
    """

    ifname: str
    ethernet: str
    mac: bytes
    ac_mac: bytes
    session_id: int
    mru: int


@dataclass
class Stats:
    """Data packets and bytes each way (control frames not included)."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    dropped: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "rxPackets": self.rx_packets,
            "rxBytes": self.rx_bytes,
            "txPackets": self.tx_packets,
            "txBytes": self.tx_bytes,
            "dropped": self.dropped,
        }


class DataPlane(Protocol):
    """One session's data plane (engine thread only)."""

    kind: str
    ifname: str

    def fds(self) -> list[int]:
        """File descriptors to watch for reading; call :meth:`read` when one is readable."""
        ...

    def read(self, fd: int) -> list[bytes]:
        """Forward data that arrived on ``fd``; return the PPP control frames
        (Protocol field first) for the protocol core."""
        ...

    def send_control(self, protocol: int, info: bytes) -> None:
        """Send a control frame (LCP, PAP, CHAP, IPCP, IPv6CP, Protocol-Reject ...)."""
        ...

    def set_protocols(self, ipv4: bool, ipv6: bool) -> None:
        """Which network protocols pass (their NCP is Opened, RFC 1661 §3.5)."""
        ...

    def stats(self) -> Stats: ...

    @property
    def frame_drops(self) -> dict[str, int]:
        """Session frames dropped before the core saw them, by reason."""
        ...

    def close(self) -> None:
        """Remove the interface and release everything; idempotent."""
        ...


def ppp_ifname(resource: str) -> str:
    """``ppp-<name>``; a name too long for IFNAMSIZ keeps 6 characters and a hash.

    ``ppp-`` + 11 characters fit the 15 the kernel allows.
    """
    name = f"ppp-{resource}"
    if len(name) < IFNAMSIZ:
        return name
    digest = hashlib.sha256(resource.encode()).hexdigest()[:4]
    return f"ppp-{resource[:6]}-{digest}"


def choose(requested: str) -> str:
    """The backend to use for ``requested`` (``auto``, ``kernel`` or ``tun``)."""
    if requested in BACKENDS:
        return requested
    from routerd_pppoe.kernel import kernel_ppp_available

    return "kernel" if kernel_ppp_available() is None else "tun"


def open_backend(kind: str, params: SessionParams, early: SessionSocket | None = None) -> DataPlane:
    """Open the data plane of one session (raises :class:`BackendError`).

    ``early``: the session socket opened at the PADR; the ``tun`` backend
    takes it over (the caller closes it for ``kernel``, after reading it).
    """
    if kind == "kernel":
        from routerd_pppoe.kernel import KernelBackend

        return KernelBackend(params)
    from routerd_pppoe.tun import TunBackend

    return TunBackend(params, early)
