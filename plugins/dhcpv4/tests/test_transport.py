"""The packet socket against the kernel: kernel drops of a burst are counted
(needs root for AF_PACKET; runs on loopback, no namespace needed)."""

from __future__ import annotations

import os
import select
import socket

import pytest
from routerd_dhcpv4.transport import PacketTransport

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true", reason="AF_PACKET needs root"
)


@needs_root
def test_a_burst_that_overflows_the_buffer_is_counted_as_kernel_drops() -> None:
    transport = PacketTransport("lo", bytes(6), rcvbuf=4096)
    burst = 300
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(burst):
            # Port 68 passes the socket filter; nothing reads until the end.
            sender.sendto(b"\x02" + bytes(299), ("127.0.0.1", 68))
    try:
        ready, _, _ = select.select([transport.fileno()], [], [], 2)
        assert ready
        queued = 0
        while frames := transport.receive():
            queued += len(frames)
        drops = transport.kernel_drops
        # A 4 KiB buffer holds a handful; the kernel dropped the rest, and
        # every datagram is accounted for.
        assert 0 < queued < burst // 10
        assert queued + drops == burst, (queued, drops)
        assert transport.receive() == [] and transport.kernel_drops == drops, "read once"
    finally:
        transport.close()


@needs_root
def test_kernel_drops_survive_a_new_socket() -> None:
    first = PacketTransport("lo", bytes(6), rcvbuf=4096)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(100):
            sender.sendto(b"\x02" + bytes(299), ("127.0.0.1", 68))
    first.close()  # counts what the closing socket dropped
    dropped = first.kernel_drops
    assert dropped > 0
    second = PacketTransport("lo", bytes(6), drops=first.drops)
    try:
        assert second.kernel_drops == dropped
    finally:
        second.close()
