"""Entry point of ``routerd-plugin-healthcheck``: registers daemon kind ``healthcheck``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_healthcheck.engine import HealthCheckEngine
from routerd_healthcheck.spec import HealthCheckSpec


def facts(observed: Mapping[str, Any]) -> str:
    """``tcp 198.51.100.1:443 12.5 ms``: what is probed and the last latency; "" before anything is."""
    if not observed.get("protocol") or not observed.get("target"):
        return ""
    target = f"{observed['protocol']} {observed['target']}"
    if observed.get("port"):
        target += f":{observed['port']}"
    latency = observed.get("lastLatencyMs")
    return target + (f" {latency} ms" if latency is not None else "")


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="healthcheck",
            kind="HealthCheck",
            spec_model=HealthCheckSpec,
            factory=HealthCheckEngine,
            facts=facts,
            description="ICMP, TCP, HTTP(S) and DNS probes with rise/fall thresholds",
        )
    )
