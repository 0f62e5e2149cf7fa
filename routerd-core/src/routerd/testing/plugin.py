"""pytest plugin of routerd (entry point ``pytest11``): fixtures for daemon tests.

``routerd_daemon`` starts real daemon processes in temporary runtime and
state dirs and stops them at teardown, failing the test if one does not stop
in time. The network-namespace lab fixtures live in
:mod:`routerd.testing.lab_fixtures`, the qemu VM ones in
:mod:`routerd.testing.vm_fixtures`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import socket
import tempfile
import threading

import pytest

from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import ForkServers
from routerd.testing.daemon import daemon_factory
from routerd.testing.lab_fixtures import dhcp4_pair  # noqa: F401
from routerd.testing.lab_fixtures import dhcp6_pair  # noqa: F401
from routerd.testing.lab_fixtures import lab  # noqa: F401
from routerd.testing.vm_fixtures import ppp_vm  # noqa: F401
from routerd.testing.vm_fixtures import vm_pppoe_host_lab  # noqa: F401
from routerd.testing.vm_fixtures import vm_pppoe_lab  # noqa: F401


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A loopback (127.0.0.1) TCP listener that accepts and closes; yields its port.

    A probe target for tests that need a live TCP service and nothing more.
    """
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    srv.settimeout(0.1)  # so the thread notices the end of the test
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=accept, name="tcp-listener", daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(5)
    srv.close()


@pytest.fixture(scope="session")
def routerd_fork_servers() -> Iterator[ForkServers]:
    """Fork servers shared by the session's tests (``launch="fork"`` daemons)."""
    servers = ForkServers()
    yield servers
    servers.close()


@pytest.fixture
def routerd_daemon(tmp_path: Path, routerd_fork_servers: ForkServers) -> Iterator[DaemonFactory]:
    """Factory: ``routerd_daemon(kind, config, resource, netns=None, env=None, launch=None)``.

    Unix socket paths are limited to 107 bytes, so the dirs live in a short
    temporary directory rather than under pytest's deep ``tmp_path``.
    """
    with tempfile.TemporaryDirectory(prefix="rd-") as short:
        base = Path(short)
        (base / "logs").symlink_to(tmp_path)
        with daemon_factory(base, forks=routerd_fork_servers) as factory:
            yield factory
