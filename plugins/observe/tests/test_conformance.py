"""The DNS observer against the routerd daemon conformance suite (capturing on ``lo``)."""

from __future__ import annotations

import os

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config


class TestDnsObserverConformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        if os.geteuid() != 0:  # an AF_PACKET socket needs CAP_NET_RAW
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true: the DNS observer's conformance needs root")
            pytest.skip("needs root (AF_PACKET)")
        spec = {"interfaces": ["lo"], "retention": {"maxAge": "1h", "maxRecords": 1000}}
        return ConformanceTarget(
            "dns-query-log",
            router_config(resource("DNSQueryLog", "lo-dns", spec)),
            "lo-dns",
            env={"ROUTERD_PLUGINS": "observe"},
        )
