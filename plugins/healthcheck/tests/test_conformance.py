"""The healthcheck daemon against the routerd daemon conformance suite, both ways it starts.

Forked from the fork server (as ``routerd serve`` starts it) and as a
standalone ``routerd daemon`` process (the exec path).
"""

from __future__ import annotations

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config


def _target(port: int, launch: str) -> ConformanceTarget:
    spec = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": port,
        "interval": "2s",
        "timeout": "1s",
    }
    return ConformanceTarget(
        "healthcheck",
        router_config(resource("HealthCheck", "loopback", spec)),
        "loopback",
        env={"ROUTERD_PLUGINS": "healthcheck"},
        launch=launch,
    )


class TestHealthcheckConformance(DaemonConformance):
    """Forked from the fork server."""

    @pytest.fixture
    def conformance_target(self, tcp_listener: int) -> ConformanceTarget:
        return _target(tcp_listener, "fork")


class TestHealthcheckConformanceExec(DaemonConformance):
    """Started as ``routerd daemon``."""

    @pytest.fixture
    def conformance_target(self, tcp_listener: int) -> ConformanceTarget:
        return _target(tcp_listener, "exec")
