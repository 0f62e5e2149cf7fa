"""Entry point of ``routerd-plugin-healthcheck``: registers daemon kind ``healthcheck``."""

from __future__ import annotations

from collections.abc import Callable

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_healthcheck.engine import HealthCheckEngine
from routerd_healthcheck.spec import HealthCheckSpec


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="healthcheck",
            kind="HealthCheck",
            spec_model=HealthCheckSpec,
            factory=HealthCheckEngine,
            description="ICMP, TCP, HTTP(S) and DNS probes with rise/fall thresholds",
        )
    )
