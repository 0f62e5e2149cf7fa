"""The pppoe-client daemon against the routerd daemon conformance suite.

The daemon runs in the client namespace of the module's namespace pair with
the scapy access concentrator at the other end, so the suite exercises a
daemon that really holds a session (a stop sends Terminate and PADT, a
SIGKILL leaves a stale session the restart closes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config

pytestmark = pytest.mark.netns


class TestPppoeConformance(DaemonConformance):
    @pytest.fixture
    def daemon(
        self, conformance_target: ConformanceTarget, routerd_daemon: DaemonFactory
    ) -> DaemonProcess:
        # As the suite's own fixture, then wait for the session: a daemon still
        # dialing emits events between two requests of a test (test_events_tail
        # reads the head, then the events, and expects nothing new in between).
        t = conformance_target
        daemon = routerd_daemon(
            t.daemon_kind, t.config, t.resource, netns=t.netns, env=t.env, launch=t.launch
        )
        daemon.wait_for_phase("Up", timeout=15)
        return daemon

    @pytest.fixture
    def conformance_target(
        self, pair: Any, ac: Any, password_file: Path, tmp_path: Path
    ) -> ConformanceTarget:
        spec = {
            "interface": "wan0",
            "username": "user@isp.example",
            "passwordFile": str(password_file),
            "backend": "tun",
            "dnsFile": str(tmp_path / "resolv.conf"),
            "holdoff": "200ms",
        }
        return ConformanceTarget(
            "pppoe-client",
            router_config(resource("PPPoESession", "wan", spec)),
            "wan",
            netns=pair.client.name,
            env={"ROUTERD_PLUGINS": "pppoe"},
        )

    def test_reaches_up(self, daemon: DaemonProcess, ac: Any) -> None:
        res = daemon.wait_for_phase("Up", timeout=15)
        assert res["observed"]["state"] == "RUNNING"
        assert res["observed"]["localAddress"] == "198.51.100.7"
        assert res["observed"]["sessionId"] in ac.call("status")["sessions"]
