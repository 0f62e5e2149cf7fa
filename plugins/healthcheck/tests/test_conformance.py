"""The healthcheck daemon against the routerd daemon conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
import socket
import threading

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config


@pytest.fixture
def tcp_target() -> Iterator[int]:
    """A loopback TCP listener that accepts and closes; yields its port."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(2)
    srv.close()


class TestHealthcheckConformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(self, tcp_target: int) -> ConformanceTarget:
        spec = {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": tcp_target,
            "interval": "2s",
            "timeout": "1s",
        }
        return ConformanceTarget(
            "healthcheck",
            router_config(resource("HealthCheck", "loopback", spec)),
            "loopback",
            env={"ROUTERD_PLUGINS": "healthcheck"},
        )
