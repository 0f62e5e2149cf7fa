"""Datagrams the kernel dropped before a socket could read them.

When a burst fills a socket's receive buffer the kernel drops what does not
fit, and the reader never sees a trace of it. Protocol plugins report these
drops as ``observed.counters.kernelDrops``:

- ``AF_PACKET`` sockets: ``getsockopt(SOL_PACKET, PACKET_STATISTICS)``
  returns ``struct tpacket_stats {tp_packets, tp_drops}`` and *resets* both
  on every read (``net/packet/af_packet.c``, ``packet_getsockopt``), so the
  counts are accumulated here. Frames a socket filter rejects are not
  counted: only frames the socket would have received.
- other sockets (UDP): ``getsockopt(SOL_SOCKET, SO_MEMINFO)`` returns the
  ``sk_meminfo`` array whose ``SK_MEMINFO_DROPS`` entry is the socket's
  cumulative drop count (receive buffer full, checksum errors), read here as
  the increase since the last read.

A :class:`DropCounter` outlives the sockets it reads: a plugin that reopens
its socket (an interface re-created) keeps counting from where it was.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

__all__ = ["PACKET_STATISTICS", "SO_MEMINFO", "DropCounter"]

SOL_PACKET: Final = 263
#: ``linux/if_packet.h``.
PACKET_STATISTICS: Final = 6
#: ``asm-generic/socket.h`` (Linux >= 4.12).
SO_MEMINFO: Final = 55
_TPACKET_STATS: Final = struct.Struct("=II")
#: ``SK_MEMINFO_DROPS`` in ``linux/sock_diag.h``; the array has 9 entries.
_SK_MEMINFO_DROPS: Final = 8
_SK_MEMINFO_SIZE: Final = 4 * 9


class DropCounter:
    """Accumulated kernel drops of one socket after another."""

    def __init__(self) -> None:
        self.total = 0
        self._meminfo_seen = 0
        #: The socket gives no statistics (old kernel, wrong family).
        self.unsupported = False

    def new_socket(self) -> None:
        """A new socket replaces the last one: its own counts start at 0."""
        self._meminfo_seen = 0

    def poll_packet_socket(self, sock: socket.socket) -> int:
        """Add the drops of an ``AF_PACKET`` socket since the last read; return them.

        Reading resets the kernel's counters: only this counter may read them.
        """
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except OSError:
            self.unsupported = True
            return 0
        if len(raw) < _TPACKET_STATS.size:
            return 0
        _packets, drops = _TPACKET_STATS.unpack_from(raw)
        self.total += drops
        return int(drops)

    def poll_socket(self, sock: socket.socket) -> int:
        """Add the increase of a socket's ``SK_MEMINFO_DROPS``; return it."""
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _SK_MEMINFO_SIZE)
        except OSError:
            self.unsupported = True
            return 0
        if len(raw) < _SK_MEMINFO_SIZE:
            return 0
        (dropped,) = struct.unpack_from("=I", raw, 4 * _SK_MEMINFO_DROPS)
        # A 32-bit counter in the kernel: count across a wrap.
        delta = (dropped - self._meminfo_seen) & 0xFFFFFFFF
        self._meminfo_seen = dropped
        self.total += delta
        return int(delta)
