"""The healthcheck daemon against the routerd daemon conformance suite."""

from __future__ import annotations

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config


class TestHealthcheckConformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(self, tcp_listener: int) -> ConformanceTarget:
        spec = {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": tcp_listener,
            "interval": "2s",
            "timeout": "1s",
        }
        return ConformanceTarget(
            "healthcheck",
            router_config(resource("HealthCheck", "loopback", spec)),
            "loopback",
            env={"ROUTERD_PLUGINS": "healthcheck"},
        )
