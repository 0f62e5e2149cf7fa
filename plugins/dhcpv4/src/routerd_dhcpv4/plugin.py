"""Entry point of ``routerd-plugin-dhcpv4``: registers daemon kind ``dhcpv4-client``."""

from __future__ import annotations

from collections.abc import Callable

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_dhcpv4.engine import DHCPv4ClientEngine
from routerd_dhcpv4.spec import DHCPv4ClientSpec


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="dhcpv4-client",
            kind="DHCPv4Client",
            spec_model=DHCPv4ClientSpec,
            factory=DHCPv4ClientEngine,
            commands={
                "rebind": "rebind now: broadcast REQUEST to any server (as at T2)",
                "release": "send DHCPRELEASE and remove the lease; renew acquires again",
            },
            description="DHCPv4 client (RFC 2131): lease, address, routes, MTU, DNS file",
        )
    )
