"""Entry point of ``routerd-plugin-dhcpv4``: registers daemon kind ``dhcpv4-client``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_dhcpv4.engine import DHCPv4ClientEngine
from routerd_dhcpv4.spec import DHCPv4ClientSpec


def facts(observed: Mapping[str, Any]) -> str:
    """``192.0.2.100/24 via 192.0.2.1``, or the RFC 2131 state while there is no lease."""
    if not observed.get("address"):
        return str(observed.get("state") or "")
    routers = observed.get("routers")
    if isinstance(routers, list):
        routers = ", ".join(map(str, routers))
    return f"{observed['address']}" + (f" via {routers}" if routers else "")


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="dhcpv4-client",
            kind="DHCPv4Client",
            spec_model=DHCPv4ClientSpec,
            factory=DHCPv4ClientEngine,
            facts=facts,
            commands={
                "rebind": "rebind now: broadcast REQUEST to any server (as at T2)",
                "release": "send DHCPRELEASE and remove the lease; renew acquires again",
            },
            description="DHCPv4 client (RFC 2131): lease, address, routes, MTU, DNS file",
        )
    )
