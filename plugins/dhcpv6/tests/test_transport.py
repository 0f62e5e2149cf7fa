"""The client socket: binding, source-port and size filtering (needs root for
SO_BINDTODEVICE; runs on loopback, no namespace needed)."""

from __future__ import annotations

import os
import select
import socket

import pytest
from routerd_dhcpv6.transport import Transport
from routerd_dhcpv6.transport import TransportError

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true", reason="SO_BINDTODEVICE needs root"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


def sender(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::1", port))
    return s


@needs_root
def test_receive_filters_source_port_and_size() -> None:
    server_port, client_port = free_port(), free_port()
    t = Transport("lo", port=client_port, server_port=server_port, max_datagram=100)
    t.open()
    good, bad = sender(server_port), sender(free_port())
    try:
        good.sendto(b"\x07abc", ("::1", client_port))
        bad.sendto(b"\x07abc", ("::1", client_port))
        good.sendto(b"\x07" * 101, ("::1", client_port))
        good.sendto(b"\x07" * 100, ("::1", client_port))
        got: list[tuple[bytes, str]] = []
        while len(got) < 2 or sum(t.dropped.values()) < 2:
            ready, _, _ = select.select([t.fileno()], [], [], 2)
            assert ready, f"nothing more to read: {got} {t.dropped}"
            got += t.receive()
        assert got == [(b"\x07abc", "::1"), (b"\x07" * 100, "::1")]
        assert t.dropped == {"bad_source_port": 1, "oversize": 1}
    finally:
        good.close()
        bad.close()
        t.close()
    assert not t.is_open and t.receive() == []


@needs_root
def test_missing_interface_and_closed_socket_are_clean_errors() -> None:
    t = Transport("nosuch0")
    with pytest.raises(TransportError) as info:
        t.open()
    assert "nosuch0" in str(info.value)
    with pytest.raises(TransportError):
        t.send(b"x")
    assert t.send_errors == {"ENOTCONN": 1}


@needs_root
def test_port_already_taken_on_the_interface() -> None:
    port = free_port()
    first = Transport("lo", port=port)
    first.open()
    holder = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        # Without SO_REUSEADDR, another wildcard bind on the port conflicts.
        with pytest.raises(OSError):
            holder.bind(("::", port))
    finally:
        holder.close()
        first.close()


@needs_root
def test_a_burst_that_overflows_the_buffer_is_counted_as_kernel_drops() -> None:
    server_port, client_port = free_port(), free_port()
    t = Transport("lo", port=client_port, server_port=server_port, rcvbuf=4096)
    t.open()
    burst = 300
    good = sender(server_port)
    try:
        for _ in range(burst):
            good.sendto(b"\x07" + bytes(299), ("::1", client_port))
        got: list[tuple[bytes, str]] = []
        while batch := t.receive():
            got += batch
        drops = t.kernel_drops
        assert 0 < len(got) < burst // 10
        assert len(got) + drops == burst, (len(got), drops)
        # The count survives a reopen (the interface was re-created).
        t.reopen()
        assert t.kernel_drops == drops and t.receive() == []
    finally:
        good.close()
        t.close()
